"""Worker process entry: `python -m hwbench.measure.worker JOB.json`.

A fresh interpreter per trial (the 'spawn' start method, without inheriting the
parent's imports), so trials of different adapters never share a process and a
crash, hang or leak in a vendor runtime takes down only this worker. The job is
JSON in and Parquet fragments out: no pickle crosses the process boundary.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

JOB_TRIAL = "trial"
JOB_REFERENCE = "reference"


def set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (the CLI was killed)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(job: dict) -> int:
    from hwbench.models.spec import ModelSpec
    from hwbench.measure.settings import SweepConfig

    spec = ModelSpec.from_json(job["model_spec"])
    if job["kind"] == JOB_REFERENCE:
        from hwbench.measure.trial import compute_reference

        compute_reference(spec, job["batch_sizes"], job["seed"], Path(job["out_npz"]), job["cache_dir"], job["min_items"])
        return 0

    from hwbench.results.store import RunWriter
    from hwbench.measure.trial import Trial, TrialContext, run_trial

    if "process" in job:  # one of the trial's --processes repeats; hwbench.measure.runner merges the parts
        os.environ["HWBENCH_PROCESS"] = str(job["process"])
    trial = Trial(**job["trial"])
    ctx = TrialContext(config=SweepConfig.from_dict(job["config"]), **job["context"])
    record, samples = run_trial(trial, spec, ctx)
    RunWriter(Path(job.get("part_dir") or job["run_dir"])).write_trial(record, samples)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hwbench.measure.worker JOB.json", file=sys.stderr)
        return 2
    if os.environ.get("HWBENCH_WORKER_PARENT") and str(os.getppid()) != os.environ["HWBENCH_WORKER_PARENT"]:
        return 3  # the parent died before we started: do nothing
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    return _run(job)


if __name__ == "__main__":
    code = main()
    # The record is saved and fsynced: skip interpreter teardown, where a vendor runtime's
    # atexit handlers and destructors could still crash or hang a finished trial.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
