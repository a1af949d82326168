"""Fault injection: real sweeps through `python -m hwbench profile` with the faulty adapter.

Every fault kind must become one status=error record with its cause while every
other trial completes; a SIGKILL of the CLI mid-sweep must leave a folder that
loads, no orphaned worker, and `--resume` must finish the sweep without redoing
finished trials; Ctrl-C must exit 130 with the resume command. The last test
prints the figures: faults injected, faults survived, trials lost (must be 0).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hwbench.adapter import registry
from hwbench.results.store import load_records, read_manifest

FIGURES: dict[str, int] = {"faults_injected": 0, "faults_survived": 0, "trials_lost": 0, "orphan_workers": 0}
TIMEOUT_S = 8  # a healthy quick trial of the faulty adapter takes about 2.5 s here, mostly interpreter start-up

# batch size -> (fault rule, substrings the error must contain)
FAULTS: dict[int, tuple[str, tuple[str, ...]]] = {
    2: ("crash@2", ("worker killed by SIGSEGV", "injecting crash")),
    3: ("abort@3", ("worker killed by SIGABRT",)),
    4: ("exit@4", ("worker exited with code 17",)),
    5: ("raise@5", ("RuntimeError: injected fault at run (b5",)),
    6: ("sigkill@6", ("worker killed by SIGKILL",)),
    7: ("leak@7", ("memory limit:", "above the 400 MB limit")),
    8: ("hang@8", (f"timeout: no result after {TIMEOUT_S} s", "injecting hang")),
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding mlp-tiny, built once for this module."""
    pytest.importorskip("torch", reason="building mlp-tiny needs torch")
    from hwbench.models import resolve

    cache = tmp_path_factory.mktemp("fault-cache")
    resolve("mlp-tiny", cache_dir=cache)
    return cache


def _env(cache: Path, fault: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT")}
    env.update(HWBENCH_CACHE=str(cache), HWBENCH_TEST_ADAPTERS="1", COLUMNS="200")
    if fault:
        env["HWBENCH_FAULT"] = fault
    return env


def _profile_args(out: Path, batches: str, timeout_s: float, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hwbench", "profile", "mlp-tiny", "--adapter", "faulty", "--quick",
            "--precision", "fp32", "--batch", batches, "--no-accuracy", "--timeout-s", str(timeout_s),
            "--out", str(out), *extra]


def _workers_of(out: Path) -> list[psutil.Process]:
    """Live worker processes whose job lies under `out` (only this test's workers)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "hwbench.measure.worker" in cmd and any(str(out) in c for c in cmd) and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def _fragments(out: Path) -> set[str]:
    return {p.stem for p in out.glob("*/records/*.parquet")}


@pytest.fixture
def popen() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; any still running at teardown are killed by their pid."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_parse_faults_selects_one_trial() -> None:
    from device_adapters.faulty import Fault, parse_faults

    faults = parse_faults("crash@2, hang@b4+fp16:prepare, raise, abort@int8:exit")
    assert faults == [Fault("crash", ("2",)), Fault("hang", ("b4", "fp16"), "prepare"), Fault("raise"),
                      Fault("abort", ("int8",), "exit")]
    assert faults[0].matches(2, "fp32", "single-stream") and not faults[0].matches(4, "fp32", "single-stream")
    assert faults[1].matches(4, "fp16", "offline") and not faults[1].matches(4, "fp32", "offline")
    assert faults[2].matches(99, "int8", "offline")
    for bad in ("explode@2", "crash@x7", "crash:later", "importerror@2"):
        with pytest.raises(ValueError, match="HWBENCH_FAULT"):
            parse_faults(bad)


def test_raise_in_prepare_becomes_an_error_record(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """In-process: an exception from the adapter is a record with the exception's text, not a crash."""
    from hwbench.models import resolve
    from hwbench.measure.settings import MeasureSettings, SweepConfig
    from hwbench.measure.trial import Trial, TrialContext, run_trial

    monkeypatch.setenv("HWBENCH_TEST_ADAPTERS", "1")
    monkeypatch.setenv("HWBENCH_FAULT", "raise@fp16:prepare")
    spec = resolve("mlp-tiny", cache_dir=cache_dir)
    cfg = SweepConfig(models=("mlp-tiny",), measure=MeasureSettings.quick(), idle_power_s=0)
    ctx = TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h", cache_dir=str(cache_dir))
    bad, _ = run_trial(Trial("mlp-tiny", "faulty", "fp16", 1), spec, ctx)
    good, samples = run_trial(Trial("mlp-tiny", "faulty", "fp32", 1), spec, ctx)
    assert bad.status == "error" and "RuntimeError: injected fault at prepare (b1 fp16" in (bad.error or "")
    assert good.status == "ok" and samples is not None and len(samples) >= cfg.measure.min_iters


def test_every_fault_kind_is_an_error_record_and_the_sweep_goes_on(tmp_path: Path, cache_dir: Path) -> None:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text("memory_limit_mb = 400  # the leak fault must hit this, not the machine\n")
    out = tmp_path / "runs"
    fault = ",".join(rule for rule, _ in FAULTS.values())
    batches = "1,2,3,4,5,6,7,8,9"
    proc = subprocess.run(_profile_args(out, batches, TIMEOUT_S, "--config", str(sweep), "--json"),
                          env=_env(cache_dir, fault), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    FIGURES["faults_injected"] += len(FAULTS)
    assert proc.returncode == 3, proc.stderr[-2000:]  # some trials ended in error (README, "Exit codes")
    records = {r["batch_size"]: r for r in json.loads(proc.stdout)["records"]}
    assert sorted(records) == list(range(1, 10))
    for b, (_, needles) in FAULTS.items():
        r = records[b]
        if r["status"] == "error" and r["valid"] is False and all(n in (r["error"] or "") for n in needles):
            FIGURES["faults_survived"] += 1
        else:
            pytest.fail(f"b{b}: expected an error record with {needles}, got {r['status']}: {r['error']}")
    for b in (1, 9):
        assert records[b]["status"] == "ok" and records[b]["n_samples"] >= 20, records[b]
    assert records[7]["peak_rss_mb"] > 400  # the worker's memory is measured, faulted or not
    on_disk = load_records([out])
    assert len(on_disk) == 9 and on_disk["trial_id"].is_unique
    FIGURES["trials_lost"] += 2 - int((on_disk["status"] == "ok").sum())
    assert not _workers_of(out)


def test_sigkill_mid_sweep_then_resume(tmp_path: Path, cache_dir: Path, popen: list[subprocess.Popen]) -> None:
    out = tmp_path / "runs"
    log = (tmp_path / "cli.log").open("w")
    cli = subprocess.Popen(_profile_args(out, "1,2,3", 120), env=_env(cache_dir, "hang@3"), cwd=tmp_path,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    popen.append(cli)
    _wait_for(lambda: len(_fragments(out)) >= 2 or cli.poll() is not None, 60, "two completed trials")
    _wait_for(lambda: bool(_workers_of(out)) or cli.poll() is not None, 30, "the hanging b3 worker")
    assert cli.poll() is None, (tmp_path / "cli.log").read_text()[-2000:]
    before = load_records([out])
    completed = dict(zip(before["trial_id"], before["started_at"]))
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    FIGURES["faults_injected"] += 1
    run_dir = next(out.iterdir())
    try:
        _wait_for(lambda: not _workers_of(out), 5, "the orphaned worker to die with its parent")
    finally:
        FIGURES["orphan_workers"] += len(_workers_of(out))
    after = load_records([out])  # no compaction happened: fragments only, and they load
    assert after["trial_id"].is_unique and set(after["trial_id"]) == set(completed)
    FIGURES["trials_lost"] += len(set(completed) - set(after["trial_id"]))

    resumed = subprocess.run([sys.executable, "-m", "hwbench", "profile", "--resume", str(run_dir), "--json"],
                             env=_env(cache_dir, ""), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = load_records([out])
    assert len(final) == 3 and final["trial_id"].is_unique and set(final["status"]) == {"ok"}
    assert set(final["run_id"]) == {read_manifest(run_dir)["run_id"]}
    for trial_id, started_at in completed.items():  # finished trials were not redone
        assert final.loc[final["trial_id"] == trial_id, "started_at"].item() == started_at
    jobs_run = json.loads(resumed.stdout)["records"]
    assert len(jobs_run) == 3
    assert (run_dir / "records.parquet").exists() and not list((run_dir / "records").glob("*.parquet"))
    FIGURES["trials_lost"] += len(set(completed) - set(final["trial_id"]))
    FIGURES["faults_survived"] += 1


def test_resume_retry_errors_reruns_only_failed_trials(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "runs"
    first = subprocess.run(_profile_args(out, "1,2", 60), env=_env(cache_dir, "raise@2"), cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 3, first.stderr[-2000:]  # one trial ended in error
    run_dir = next(out.iterdir())
    before = load_records([out]).set_index("trial_id")
    assert sorted(before["status"]) == ["error", "ok"]
    ok_id = before.index[before["status"] == "ok"][0]
    again = subprocess.run([sys.executable, "-m", "hwbench", "profile", "--resume", str(run_dir), "--retry-errors"],
                           env=_env(cache_dir, ""), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    after = load_records([out]).set_index("trial_id")
    assert len(after) == 2 and set(after["status"]) == {"ok"}
    assert after.loc[ok_id, "started_at"] == before.loc[ok_id, "started_at"]  # the good trial was not redone


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, cache_dir: Path,
                                                 popen: list[subprocess.Popen]) -> None:
    """Kill the CLI at seeded random moments (start-up, a trial, a write), resume each time, finish."""
    rng = random.Random(int(os.environ.get("HWBENCH_KILL_SEED", "20261127")))
    out = tmp_path / "runs"
    seen: dict[str, str] = {}  # trial_id -> started_at of every completed trial seen so far
    run_dir: Path | None = None
    kills = lost = 0
    for _ in range(3):
        args = ([sys.executable, "-m", "hwbench", "profile", "--resume", str(run_dir)] if run_dir
                else _profile_args(out, "1,2,3", 60))
        cli = subprocess.Popen(args, env=_env(cache_dir, ""), cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        popen.append(cli)
        delay_s = rng.uniform(0.5, 5.0)
        try:
            cli.wait(timeout=delay_s)
            break  # finished before the kill
        except subprocess.TimeoutExpired:
            cli.kill()
            cli.wait()
        kills += 1
        try:
            _wait_for(lambda: not _workers_of(out), 5, f"workers to die with the CLI killed after {delay_s:.2f} s")
        finally:
            FIGURES["orphan_workers"] += len(_workers_of(out))
        manifests = sorted(out.glob("*/manifest.json"))
        run_dir = manifests[-1].parent if manifests else None  # killed before the manifest: start afresh
        if run_dir is not None:
            now = load_records([run_dir])  # the folder loads, whenever the kill came
            assert now["trial_id"].is_unique
            now_started = dict(zip(now["trial_id"], now["started_at"]))
            lost += sum(now_started.get(t) != started for t, started in seen.items())
            seen.update(now_started)
    args = ([sys.executable, "-m", "hwbench", "profile", "--resume", str(run_dir)] if run_dir
            else _profile_args(out, "1,2,3", 60))
    done = subprocess.run(args, env=_env(cache_dir, ""), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    final = load_records(sorted(m.parent for m in out.glob("*/manifest.json"))[-1:])
    assert len(final) == 3 and final["trial_id"].is_unique and set(final["status"]) == {"ok"}
    final_started = dict(zip(final["trial_id"], final["started_at"]))
    lost += sum(final_started.get(t) != started for t, started in seen.items())
    FIGURES["trials_lost"] += lost
    FIGURES["faults_injected"] += kills
    assert lost == 0
    FIGURES["faults_survived"] += kills


def test_ctrl_c_exits_130_keeps_results_and_prints_resume(tmp_path: Path, cache_dir: Path,
                                                          popen: list[subprocess.Popen]) -> None:
    out = tmp_path / "runs"
    cli = subprocess.Popen(_profile_args(out, "1,2", 120), env=_env(cache_dir, "hang@2"), cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    popen.append(cli)
    _wait_for(lambda: len(_fragments(out)) >= 1 or cli.poll() is not None, 60, "one completed trial")
    _wait_for(lambda: bool(_workers_of(out)) or cli.poll() is not None, 30, "the hanging b2 worker")
    assert cli.poll() is None
    completed = set(load_records([out])["trial_id"])
    cli.send_signal(signal.SIGINT)
    FIGURES["faults_injected"] += 1
    stdout, stderr = cli.communicate(timeout=30)
    run_dir = next(out.iterdir())
    assert cli.returncode == 130, stderr[-2000:]
    assert f"hwbench profile --resume {run_dir}" in stderr, stderr
    assert "Traceback" not in stderr + stdout
    records = load_records([out])
    assert set(records["trial_id"]) == completed and set(records["status"]) == {"ok"}
    assert "interrupted_at" in read_manifest(run_dir)
    assert (run_dir / "records.parquet").exists()  # compacted on the way out
    FIGURES["orphan_workers"] += len(_workers_of(out))
    assert not _workers_of(out)
    FIGURES["trials_lost"] += len(completed - set(records["trial_id"]))
    FIGURES["faults_survived"] += 1


def test_crash_after_the_record_is_saved_keeps_the_result(tmp_path: Path, cache_dir: Path) -> None:
    """A runtime whose teardown segfaults (common with GPU stacks) must not cost a measured result."""
    out = tmp_path / "runs"
    proc = subprocess.run(_profile_args(out, "1,2", TIMEOUT_S, "--json"), env=_env(cache_dir, "crash@2:exit"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    FIGURES["faults_injected"] += 1
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    records = {r["batch_size"]: r for r in result["records"]}
    FIGURES["trials_lost"] += int(records[2]["status"] != "ok")
    assert records[2]["status"] == "ok" and records[2]["n_samples"] >= 20, records[2]["error"]
    # the runner notes the crash after the save (unless the worker skips teardown and never crashes)
    assert all("result kept" in n for n in result["notes"] if "__b2__" in n), result["notes"]
    FIGURES["faults_survived"] += 1


def test_import_and_probe_failures_are_probe_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_TEST_ADAPTERS", "1")
    monkeypatch.delitem(sys.modules, "device_adapters.faulty", raising=False)
    monkeypatch.setenv("HWBENCH_FAULT", "importerror")
    p = registry.probe("faulty")
    assert not p.available and "ImportError: libfaulty.so.1" in p.reason
    monkeypatch.setenv("HWBENCH_FAULT", "probeerror")
    p = registry.probe("faulty")
    assert not p.available and "probe raised RuntimeError" in p.reason
    monkeypatch.setenv("HWBENCH_FAULT", "crash@nowhere")
    p = registry.probe("faulty")
    assert not p.available and "cannot select on 'nowhere'" in p.reason
    FIGURES["faults_injected"] += 2
    FIGURES["faults_survived"] += 2


def test_zz_fault_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the figures, printed whether or not pytest captures output."""
    if FIGURES["faults_injected"] == 0:
        pytest.skip("no fault test ran in this session")
    line = ("fault injection: {faults_injected} faults injected, {faults_survived} survived, "
            "{trials_lost} completed trials lost, {orphan_workers} orphaned workers").format(**FIGURES)
    with capsys.disabled():
        print("\n" + line)
    assert FIGURES["trials_lost"] == 0 and FIGURES["orphan_workers"] == 0
    assert FIGURES["faults_survived"] == FIGURES["faults_injected"], line
