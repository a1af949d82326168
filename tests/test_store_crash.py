"""Compaction is crash-consistent and a run folder has one writer (issue 16, items 3 and 4).

A crash is injected at every step boundary of RunWriter.compact (hwbench.results.store._step); a
second compaction, as the next `--resume` runs, must then leave each trial exactly once, with the
samples of its newest attempt, and no fragment or staged file behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hwbench.errors import RunLocked
from hwbench.results import store
from hwbench.results.lock import LOCK_FILE, RunLock
from hwbench.results.store import RunWriter, load_run_records
from test_cli_analysis import record

SAMPLES = {"r-1": 50, "r-2": 70, "r-3": 30}  # r-2's retried attempt has 70 samples, its first had 40


class _Crash(BaseException):
    """Stands for the process dying at a step boundary (not an Exception: nothing may catch it)."""


def _samples(n: int, offset: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * 1000 + offset


@pytest.fixture
def interrupted_run(tmp_path: Path) -> Path:
    """A compacted run (r-1, r-2 failed) then, in fragments, r-2 retried and r-3: the state a resume compacts."""
    run = tmp_path / "base" / "r"
    w = RunWriter(run)
    w.write_manifest({"run_id": "r"})
    w.write_trial(record("r", 1), _samples(50, 1))
    w.write_trial(record("r", 2, status="error", valid=False, error="worker exited with code 1"), _samples(40, 9))
    w.compact()
    w.write_trial(record("r", 2), _samples(70, 2))
    w.write_trial(record("r", 3), _samples(30, 3))
    (run / "latencies" / "r-4.parquet").write_bytes((run / "latencies" / "r-3.parquet").read_bytes())  # no record: cut short
    (run / ".latencies.parquet.tmp999").write_bytes(b"half a file")  # left by an earlier crash
    return run


def _steps(run: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(store, "_step", seen.append)
    RunWriter(run).compact()
    monkeypatch.undo()
    return seen


def _check(run: Path) -> None:
    lats = pq.read_table(run / store.LATENCIES).to_pandas()
    counts = lats.groupby("trial_id").size().to_dict()
    assert counts == SAMPLES, counts  # each trial once, no sample twice, the cut-short r-4 dropped
    assert lats[lats["trial_id"] == "r-2"]["latency_ns"].iloc[0] == 2  # the retried attempt's samples
    recs = load_run_records(run)
    assert sorted(recs["trial_id"]) == sorted(SAMPLES) and len(pq.read_table(run / store.RECORDS)) == 3
    assert recs.set_index("trial_id").loc["r-2", "status"] == "ok"
    assert not list(run.glob("records/*")) + list(run.glob("latencies/*")) + list(run.rglob("*.tmp*"))


def test_a_crash_at_every_step_of_compaction_then_a_resume_keeps_each_trial_once(
        interrupted_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = tmp_path / "probe"
    shutil.copytree(interrupted_run, probe)
    steps = _steps(probe, monkeypatch)
    _check(probe)
    assert len(steps) >= 10, steps  # stale files, read, 2 x (staged, in place), one per fragment removed
    for k, name in enumerate(steps):
        run = tmp_path / f"crash{k}"
        shutil.copytree(interrupted_run, run)

        def crash_at(step: str, k: int = k, calls: list[str] = []) -> None:  # noqa: B006 (a per-k counter)
            calls.append(step)
            if len(calls) == k + 1:
                raise _Crash(step)

        monkeypatch.setattr(store, "_step", crash_at)
        with pytest.raises(_Crash):
            RunWriter(run).compact()
        monkeypatch.undo()
        assert sorted(load_run_records(run)["trial_id"]) == sorted(SAMPLES), name  # loads whole, mid-compaction
        RunWriter(run).compact()  # what the next --resume does before and after its trials
        _check(run)
        RunWriter(run).compact()  # and once more: idempotent
        _check(run)


def test_the_lock_names_its_holder_and_a_dead_holders_lock_is_taken(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from hwbench.results.lock import RunLock\n"
        f"RunLock(Path({str(run)!r})).acquire(); print('held', flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"in use by hwbench process {holder.pid} "):
            RunLock(run).acquire()
    finally:
        holder.kill()  # as kill -9: the lock file stays, with the dead PID in it
        holder.wait()
    assert (run / LOCK_FILE).read_text().strip() == str(holder.pid)
    with RunLock(run) as lock:
        assert lock.held and (run / LOCK_FILE).read_text().strip() == str(__import__("os").getpid())
