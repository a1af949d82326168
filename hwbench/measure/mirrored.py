"""`hwbench profile --out s3://...`: a sweep into an object store, through a local run folder mirrored as it goes.

The workers write a local run folder as always (a temporary folder, kept: it is also what
`--resume` completes); every completed trial is then mirrored to `<store>/<run_id>/` at once, with
the store's one-step commits (hwbench.results.remote), and the compacted files at the end. A crash
loses only the unfinished trial there too. A file:// URI is just a local folder: no mirroring.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwbench.results.remote import RunMirror
from hwbench.results.store import safe_name
from hwbench.results.uri import Location

if TYPE_CHECKING:
    from hwbench.measure.runner import Event, SweepResult
    from hwbench.measure.settings import SweepConfig


def run_into_store(cfg: SweepConfig, loc: Location, *, on_event: Event | None = None,
                   explicit_adapters: bool = True) -> SweepResult:
    """Run `cfg` into a local staging folder, mirrored trial by trial to `loc`; the result's run_dir is local."""
    from hwbench.measure.runner import SweepRunner

    staging = Path(tempfile.mkdtemp(prefix="hwbench-run-"))
    mirror: dict[str, RunMirror] = {}

    def event(kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            mirror["m"].manifest()
        elif kind == "trial_done":
            mirror["m"].trial(safe_name(data["record"].trial_id) + ".parquet")
        if on_event is not None:
            on_event(kind, data)

    runner = SweepRunner(cfg, staging, on_event=event, explicit_adapters=explicit_adapters)
    mirror["m"] = RunMirror(loc, runner.run_id, runner.run_dir)
    result = runner.run()
    mirror["m"].compacted()
    mirror["m"].manifest()
    result.notes.append(f"results mirrored to {loc.display(mirror['m'].remote_dir)} (local copy: {result.run_dir})")
    return result
