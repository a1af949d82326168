"""--processes N: the merge of per-process results (by simulation) and real sweeps through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwbench.measure import repeats
from hwbench.results.schema import TrialRecord, settings_json
from hwbench.measure.settings import MeasureSettings
from hwbench.measure.stats import quantile_ci, summarize
from hwbench.results.store import load_latencies, load_records


def _part(samples_ns: np.ndarray, settings: MeasureSettings, **extra: object) -> TrialRecord:
    """A per-process record as trial.run_trial builds it, from its samples."""
    rec = TrialRecord(run_id="r", trial_id="t", model="m", model_sha256="", adapter="null", device="cpu",
                      precision="fp32", batch_size=2)
    wall_s = float(samples_ns.sum()) / 1e9
    for k, v in summarize(samples_ns, 2, wall_s, len(samples_ns), settings).items():
        setattr(rec, k, v)
    rec.settings = settings_json({"capped": False, "host_activity": {"governor": None, "turbo": None}})
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_p50_spread_and_interval_arithmetic() -> None:
    assert repeats.p50_spread([1.0]) is None
    assert repeats.p50_spread([1.0, 1.2, 1.1]) == pytest.approx(0.2 / 1.1)
    # processes that agree exactly: the pooled interval stands
    assert repeats.p50_interval(0.9, 1.1, [1.0, 1.0, 1.0]) == (0.9, 1.1)
    # two that disagree: t(0.975, 1) = 12.706, sd = 0.01414, half-width = 12.706 * 0.01 = 0.127
    lo, hi = repeats.p50_interval(0.995, 1.015, [1.0, 1.02])
    assert lo == pytest.approx(1.01 - 0.12706, rel=1e-3) and hi == pytest.approx(1.01 + 0.12706, rel=1e-3)
    assert repeats.p50_interval(0.9, 1.1, [1.0]) == (0.9, 1.1)
    assert repeats.p50_interval(1e-4, 2e-4, [1.0e-4, 1.5e-4])[0] == 0.0  # never a negative latency


def test_merge_pools_samples_and_keeps_per_process_figures() -> None:
    rng = np.random.default_rng(1)
    s = MeasureSettings(min_duration_s=0.0)
    samples = [rng.normal(1e6 * (1 + 0.1 * i), 2e4, 300).astype(np.int64) for i in range(3)]
    parts = [_part(x, s, cold_start_s=3.0 - i, cpu_steal_pct=[0.0, 9.0, 0.0][i], other_cpu_pct=1.0,
                   warnings=["bf16 emulated"] + (["noisy host: 18.0% of CPU time stolen"] if i == 1 else []),
                   peak_rss_mb=100.0 + i)
             for i, x in enumerate(samples)]
    rec, pooled = repeats.merge(parts, samples, s)
    assert len(pooled) == 900 and rec.n_samples == 900 and rec.processes == 3
    assert rec.latency_p50_ms == pytest.approx(np.percentile(pooled / 1e6, 50))
    p50s = [p.latency_p50_ms for p in parts]
    assert rec.process_p50_spread == pytest.approx((max(p50s) - min(p50s)) / np.median(p50s))
    pooled_lo, pooled_hi = quantile_ci(np.sort(pooled / 1e6), 0.5)
    assert rec.latency_p50_ci_low_ms < pooled_lo and rec.latency_p50_ci_high_ms > pooled_hi  # widened
    assert rec.cold_start_s == 3.0 and rec.peak_rss_mb == 102.0
    durations = [p.duration_s for p in parts]
    assert rec.cpu_steal_pct == pytest.approx(9.0 * durations[1] / sum(durations))  # duration-weighted
    assert rec.warnings[0] == "bf16 emulated" and len(rec.warnings) == 2 and "stolen" in rec.warnings[1]
    settings = json.loads(rec.settings)
    assert [p["n_samples"] for p in settings["processes"]] == [300, 300, 300]
    assert settings["process_cold_start_s"] == [3.0, 2.0, 1.0]
    assert settings["host_activity"]["cpu_steal_pct"] == rec.cpu_steal_pct


def test_merge_keeps_reasons_not_about_the_samples() -> None:
    s = MeasureSettings(min_duration_s=0.0)
    x = np.full(200, 1_000_000, dtype=np.int64)
    a = _part(x, s)
    b = _part(x, s, valid=False, invalid_reasons=["power window 0.10 s shorter than ten meter periods"])
    rec, _ = repeats.merge([a, b], [x, x], s)
    assert rec.valid is False and rec.invalid_reasons == ["power window 0.10 s shorter than ten meter periods"]
    rec, _ = repeats.merge([a, a], [x, x], s)
    assert rec.valid is True and rec.invalid_reasons == []


def test_envelope_covers_the_median_when_processes_differ_by_simulation() -> None:
    """Each process draws a random offset (sd 5%) on top of within-process noise (sd 2%): the pooled
    interval, which treats every sample as independent, misses the true median far more than 5% of
    the time; the envelope with the t-interval over per-process p50s keeps near-nominal coverage."""
    rng = np.random.default_rng(20261127)
    reps, n_proc, n = 400, 4, 200
    true_median = 1.0
    pooled_hits = envelope_hits = 0
    for _ in range(reps):
        offsets = rng.normal(0.0, 0.05, n_proc)
        per = [np.sort(true_median + o + rng.normal(0.0, 0.02, n)) for o in offsets]
        p50s = [float(np.median(p)) for p in per]
        lo, hi = quantile_ci(np.sort(np.concatenate(per)), 0.5)
        pooled_hits += lo <= true_median <= hi
        elo, ehi = repeats.p50_interval(lo, hi, p50s)
        envelope_hits += elo <= true_median <= ehi
    assert pooled_hits / reps < 0.6, pooled_hits
    assert envelope_hits / reps >= 0.92, envelope_hits
    # and when processes agree, the envelope costs little: mostly the pooled interval itself
    agree = [np.sort(true_median + rng.normal(0.0, 0.02, n)) for _ in range(n_proc)]
    lo, hi = quantile_ci(np.sort(np.concatenate(agree)), 0.5)
    elo, ehi = repeats.p50_interval(lo, hi, [float(np.median(a)) for a in agree])
    assert (ehi - elo) < 3 * (hi - lo)


# -- real sweeps ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="building mlp-tiny needs torch")
    from hwbench.models import resolve

    cache = tmp_path_factory.mktemp("repeats-cache")
    resolve("mlp-tiny", cache_dir=cache)
    return cache


def _profile(out: Path, cache: Path, adapter: str, processes: str, fault: str = "", *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT")}
    env.update(HWBENCH_CACHE=str(cache), HWBENCH_TEST_ADAPTERS="1", COLUMNS="200")
    if fault:
        env["HWBENCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "hwbench", "profile", "mlp-tiny", "--adapter", adapter, "--quick",
                           "--precision", "fp32", "--batch", "1", "--no-accuracy", "--timeout-s", "30",
                           "--processes", processes, "--out", str(out), "--json", *extra],
                          env=env, capture_output=True, text=True, timeout=240)


def test_sweep_with_two_processes_gives_one_pooled_record(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "runs"
    proc = _profile(out, cache_dir, "null", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(proc.stdout)["records"]
    assert len(records) == 1
    r = records[0]
    assert r["status"] == "ok" and r["processes"] == 2 and r["process_p50_spread"] is not None
    settings = json.loads(r["settings"])
    per = [p["n_samples"] for p in settings["processes"]]
    assert len(per) == 2 and all(n > 0 for n in per) and r["n_samples"] == sum(per)
    assert len(settings["process_cold_start_s"]) == 2 and r["cold_start_s"] == settings["process_cold_start_s"][0]
    run_dir = next(out.iterdir())
    on_disk = load_records([run_dir])
    assert len(on_disk) == 1
    assert (load_latencies([run_dir]).trial_id == r["trial_id"]).sum() == sum(per)
    assert not (run_dir / "parts").exists()
    if Path("/proc/stat").exists():
        assert r["cpu_steal_pct"] is not None and r["other_cpu_pct"] is not None
        assert "host_activity" in settings


@pytest.mark.parametrize("fault, needle", [("crash@p2", "worker killed by SIGSEGV"),
                                           ("raise@p2", "RuntimeError: injected fault")])
def test_a_failing_process_makes_an_error_record_and_keeps_the_rest(tmp_path: Path, cache_dir: Path,
                                                                    fault: str, needle: str) -> None:
    out = tmp_path / "runs"
    proc = _profile(out, cache_dir, "faulty", "3", fault)
    assert proc.returncode == 3, proc.stderr[-2000:]  # the sweep's only trial ended in error: exit 3
    assert "all 1 trial(s) failed" in proc.stderr
    (r,) = json.loads(proc.stdout)["records"]
    assert r["status"] == "error" and r["valid"] is False
    assert "process 2 of 3 failed" in r["error"] and needle in r["error"], r["error"]
    assert "1 of 3 processes succeeded" in r["error"] and r["processes"] == 1
    settings = json.loads(r["settings"])
    assert settings["processes_requested"] == 3 and settings["failed_process"] == 2
    assert len(settings["processes"]) == 1 and settings["processes"][0]["n_samples"] == r["n_samples"] > 0
    run_dir = next(out.iterdir())
    assert (load_latencies([run_dir]).trial_id == r["trial_id"]).sum() == r["n_samples"]  # nothing measured lost
    assert len(load_records([run_dir])) == 1


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_processes_flag_is_validated(tmp_path: Path, value: str) -> None:
    res = subprocess.run([sys.executable, "-m", "hwbench", "profile", "mlp-tiny", "--adapter", "null",
                          "--processes", value, "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    if value != "x":  # "x" is refused by the option parser itself
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "--processes: expected an integer from 1 to 64, got" in lines[0], res.stderr


def test_kill_during_the_second_process_then_resume_redoes_the_trial(tmp_path: Path, cache_dir: Path) -> None:
    """A CLI killed with SIGKILL between a trial's processes saves no record for it (no half-pooled
    result), and --resume runs the trial again from its first process into one whole record."""
    import signal
    import time

    out = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT")}
    env.update(HWBENCH_CACHE=str(cache_dir), HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT="hang@p2")
    args = [sys.executable, "-m", "hwbench", "profile", "mlp-tiny", "--adapter", "faulty", "--quick", "--precision",
            "fp32", "--batch", "1", "--no-accuracy", "--timeout-s", "120", "--processes", "2", "--out", str(out)]
    cli = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("*/parts/*/p2/records/*.parquet")) and time.monotonic() < deadline:
            if list(out.glob("*/parts/*/p1/records/*.parquet")) and list(out.glob("*/jobs/*.p2.json")):
                break  # process 1 saved its part; process 2's job is out (a forked worker's command line is the server's)
            time.sleep(0.1)
        else:
            pytest.fail("process 2 never started")
        cli.send_signal(signal.SIGKILL)
        cli.wait()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    run_dir = next(out.iterdir())
    assert len(load_records([run_dir])) == 0  # the trial is not complete: nothing half-pooled was saved
    assert list(run_dir.glob("parts/*/p1/records/*.parquet"))
    env.pop("HWBENCH_FAULT")
    done = subprocess.run([sys.executable, "-m", "hwbench", "profile", "--resume", str(run_dir), "--json"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    (r,) = load_records([run_dir]).to_dict("records")
    assert r["status"] == "ok" and r["processes"] == 2
    assert (load_latencies([run_dir]).trial_id == r["trial_id"]).sum() == r["n_samples"]
    assert not (run_dir / "parts").exists()
