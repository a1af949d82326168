"""Worker process entry: `python -m hwbench.measure.worker JOB.json`.

A fresh process per trial: forked by hwbench.measure.forkserver (which has imported the
measurement stack once, and nothing else), or a fresh interpreter when no server
runs, so trials never share a process and a crash, hang or leak in a vendor runtime
takes down only this worker. The job is JSON in and Parquet fragments out: no pickle
crosses the process boundary.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

WORKER_START = time.time()  # this module runs: the interpreter is up
FORKED_AT: float | None = None  # set by hwbench.measure.forkserver in a forked worker
JOB_TRIAL = "trial"
JOB_REFERENCE = "reference"
JOB_LLM_REFERENCE = "llm-reference"  # the generate workload's fp32 torch reference (hwbench.measure.genaccuracy)
SPAWNED_ENV = "HWBENCH_SPAWNED_AT"  # the parent's time.time() just before it started this worker


def _process_start() -> float | None:
    """When the kernel created this process (time.time() scale, 10 ms resolution), from /proc."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks since boot
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _start_timings() -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        out["spawned"] = float(os.environ[SPAWNED_ENV])
    except (KeyError, ValueError):
        pass
    started = _process_start()
    if started is not None:
        out["process_started"] = started
    out["worker_started"] = WORKER_START
    if FORKED_AT is not None:
        out["forked"] = FORKED_AT
    return out


def set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (the CLI was killed)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(job: dict, timings: dict[str, float]) -> int:
    from hwbench.models.spec import ModelSpec
    from hwbench.measure.settings import SweepConfig

    if job.get("workload") == "generate":  # an LLM: its spec is an LlmSpec
        from hwbench.models.llmspec import LlmSpec

        spec = LlmSpec.from_json(job["model_spec"])
    else:
        spec = ModelSpec.from_json(job["model_spec"])
    if job["kind"] == JOB_LLM_REFERENCE:
        from hwbench.measure.genaccuracy import compute_llm_reference

        compute_llm_reference(spec, job["prompt_lengths"], job["batch_sizes"], job["greedy_tokens"], job["seed"],
                              Path(job["out_npz"]), job["cache_dir"], job.get("threads", 0), job.get("sequences", 32))
        return 0
    if job["kind"] == JOB_REFERENCE:
        from hwbench.measure.trial import compute_reference

        compute_reference(spec, job["batch_sizes"], job["seed"], Path(job["out_npz"]), job["cache_dir"], job["min_items"])
        return 0

    from hwbench.results.store import RunWriter
    from hwbench.measure.trial import Trial, TrialContext, run_trial_records, stamp_timings

    timings["imported"] = time.time()
    if "process" in job:  # one of the trial's --processes repeats; hwbench.measure.runner merges the parts
        os.environ["HWBENCH_PROCESS"] = str(job["process"])
    trial = Trial(**job["trial"])
    ctx = TrialContext(config=SweepConfig.from_dict(job["config"]), **job["context"])
    writer = RunWriter(Path(job.get("part_dir") or job["run_dir"]))
    if job.get("group"):  # generate: several points on one prepared model (hwbench.measure.gentrial)
        from hwbench.measure.gentrial import run_generate_trials

        results = run_generate_trials([Trial(**t) for t in job["group"]], spec, ctx)  # type: ignore[arg-type]
    else:
        results = run_trial_records(trial, spec, ctx)  # type: ignore[assignment]
    for record, samples in results:  # the server scenario: one per rate; a group: one per point
        stamp_timings(record, timings)
        writer.write_trial(record, samples)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--serve":  # RUN_DIR names the run it serves (for ps)
        from hwbench.measure.forkserver import serve

        return serve()
    if len(args) != 1:
        print("usage: python -m hwbench.measure.worker JOB.json | --serve RUN_DIR", file=sys.stderr)
        return 2
    if os.environ.get("HWBENCH_WORKER_PARENT") and str(os.getppid()) != os.environ["HWBENCH_WORKER_PARENT"]:
        return 3  # the parent died before we started: do nothing
    timings = _start_timings()
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    timings["job_loaded"] = time.time()
    return _run(job, timings)


if __name__ == "__main__":
    code = main()
    # The record is saved and fsynced: skip interpreter teardown, where a vendor runtime's
    # atexit handlers and destructors could still crash or hang a finished trial.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
