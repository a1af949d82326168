"""The worker fork server: each trial in a fresh forked process, the server gone with the sweep.

The fault semantics (crash, hang, memory limit, SIGKILL of the CLI, Ctrl-C, resume) with the
server in use are tests/test_faults.py's; here: that the server is used, that it can be turned
off, and that it never outlives its sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from hwbench.measure.runner import SweepRunner
from hwbench.measure.settings import AccuracySettings, MeasureSettings, SweepConfig


def _config() -> SweepConfig:
    quick = MeasureSettings(warmup_s=0.0, warmup_min_iters=2, min_duration_s=0.05, min_iters=20, max_iters=2000)
    return SweepConfig(models=("mlp-tiny",), adapters=("null",), precisions=("fp32",), batch_sizes=(1, 2, 3),
                       measure=quick, accuracy=AccuracySettings(enabled=False), idle_power_s=0)


def _servers(run_dir: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "--serve" in cmd and str(run_dir) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def _timings(records: list[dict]) -> list[dict[str, float]]:
    return [json.loads(r["settings"])["timings"] for r in records]


def test_trials_run_in_forked_workers_and_the_server_is_reaped(tiny_models: dict, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tiny_models["mlp-tiny"].onnx_path.parents[2]))
    monkeypatch.delenv("HWBENCH_FORKSERVER", raising=False)
    runner = SweepRunner(_config(), tmp_path / "runs")
    result = runner.run()
    records = result.records.to_dict("records")
    assert [r["status"] for r in records] == ["ok"] * 3, [r["error"] for r in records]
    assert not any("worker server" in n for n in result.notes), result.notes
    timings = _timings(records)
    assert all("forked" in t for t in timings), timings
    # a fresh process per trial: forked one after another, none before the previous trial ended
    forks = sorted(t["forked"] for t in timings)
    ends = sorted(t["trial_done"] for t in timings)
    assert all(later > end for later, end in zip(forks[1:], ends[:-1]))
    assert (result.run_dir / "logs" / "forkserver.log").exists()
    assert not _servers(result.run_dir)  # stopped and reaped at the end of the sweep


def test_server_off_spawns_fresh_interpreters(tiny_models: dict, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tiny_models["mlp-tiny"].onnx_path.parents[2]))
    monkeypatch.setenv("HWBENCH_FORKSERVER", "0")
    result = SweepRunner(_config(), tmp_path / "runs").run()
    records = result.records.to_dict("records")
    assert [r["status"] for r in records] == ["ok"] * 3
    timings = _timings(records)
    assert not any("forked" in t for t in timings)
    assert all(t["spawned"] <= t["worker_started"] <= t["job_loaded"] <= t["trial_done"] for t in timings)
    assert not (result.run_dir / "logs" / "forkserver.log").exists()


def test_server_loads_no_adapter_runtime(tmp_path: Path) -> None:
    """Forking after a runtime has started is unsafe, and runtimes sharing a process skew timings:
    the server maps no vendor runtime library, and has started no thread since its imports."""
    from hwbench.measure.forkserver import ForkServer

    server = ForkServer(str(tmp_path), str(tmp_path / "forkserver.log"))
    try:
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        libs = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
        assert any("numpy" in lib for lib in libs)  # the preload happened (the check can see libraries)
        for runtime in ("onnxruntime", "openvino", "libtorch", "libcuda", "libnvinfer"):
            assert not any(runtime in lib for lib in libs), runtime
    finally:
        server.close()
    assert server.proc.returncode == 0  # stdin closed: it exited by itself


@pytest.mark.parametrize("clean", [True, False])
def test_a_failing_server_falls_back_to_fresh_interpreters(tiny_models: dict, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, clean: bool) -> None:
    """A server that says it forked nothing: the job is spawned instead. One whose state is unknown
    (no reply): that trial is an error record (a worker may exist; it is not run twice), later ones spawn."""
    from hwbench.measure import forkserver

    monkeypatch.setenv("HWBENCH_CACHE", str(tiny_models["mlp-tiny"].onnx_path.parents[2]))
    monkeypatch.delenv("HWBENCH_FORKSERVER", raising=False)
    calls: list[str] = []

    def failing_start(self: forkserver.ForkServer, job_path: str, log_path: str, env: dict, timeout_s: float = 30.0) -> int:
        calls.append(job_path)
        raise forkserver.ForkServerError("injected", clean=clean)

    monkeypatch.setattr(forkserver.ForkServer, "start", failing_start)
    result = SweepRunner(_config(), tmp_path / "runs").run()
    records = result.records.sort_values("batch_size").to_dict("records")
    assert len(calls) == 1  # the server is dropped after its first failure
    assert any("worker server failed (injected)" in n for n in result.notes), result.notes
    expected = ["ok"] * 3 if clean else ["error", "ok", "ok"]
    assert [r["status"] for r in records] == expected, [r["error"] for r in records]
    if not clean:
        assert "worker server failed: injected" in records[0]["error"]
    assert not any("forked" in t for t in _timings([r for r in records if r["status"] == "ok"]))
    assert not _servers(result.run_dir)
