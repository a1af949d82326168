"""The server scenario: early-stopping arithmetic, the open-loop issuer, dynamic batching, the capacity
search against the M/D/1 queue, the records of a run, and bad flags."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.capacity import RatePoint, bracket_of, confirm_capacity, search_capacity
from hwbench.measure.earlystop import claimable_bound, describe_bound, max_overlatency, min_passing_queries
from hwbench.measure.server import measure_server


# -- early stopping (LoadGen) --------------------------------------------------------------

def _min_h_bruteforce(t: int, p: float, c: float) -> int:
    """The smallest h with P(Binomial(h + t, 1 - p) <= t) < 1 - c, by a linear scan over exact sums."""
    h = 0
    while True:
        n = h + t
        odds = sum(math.comb(n, x) * (1 - p) ** x * p ** (n - x) for x in range(t + 1))
        if odds < 1 - c:
            return h
        h += 1


def test_early_stopping_needs_459_queries_at_p99_with_none_over():
    assert min_passing_queries(0, 0.99, 0.99) == 459
    assert max_overlatency(458) is None and max_overlatency(459) == 0


@pytest.mark.parametrize("p,c", [(0.99, 0.99), (0.9, 0.95), (0.999, 0.9), (0.95, 0.99)])
def test_early_stopping_matches_loadgens_closed_form_and_binomial_sum(p, c):
    assert min_passing_queries(0, p, c) == math.ceil(math.log(1 - c) / math.log(p))  # LoadGen's t = 0 start point
    for t in (1, 2, 5):
        assert min_passing_queries(t, p, c) == _min_h_bruteforce(t, p, c)


def test_claimed_bound_covers_the_true_p99_by_simulation():
    """A claimed p99 bound is below the true p99 in at most 1 - 0.99 of runs (plus simulation noise)."""
    rng = np.random.default_rng(7)
    true_p99 = -math.log(0.01)  # exponential(1)
    misses, runs = 0, 400
    for _ in range(runs):
        bound, t = claimable_bound(rng.exponential(size=1500))
        assert bound is not None and t == max_overlatency(1500)
        misses += bound < true_p99
    assert misses / runs <= 0.025


def test_no_bound_below_the_minimum_and_unserved_count_as_over():
    assert claimable_bound(np.ones(458)) == (None, None)
    assert claimable_bound(np.arange(459.0)) == (458.0, 0)  # none may exceed it: the maximum
    assert claimable_bound(np.arange(459.0), unserved=1)[0] is None
    assert describe_bound(np.ones(100)).startswith("none: 100 queries, early stopping needs at least 459")
    assert "p99 <= " in describe_bound(np.ones(1000))


# -- the issuer and the batcher ---------------------------------------------------------------

def _sleeper(service_s: float, log: list[int] | None = None):
    def run_batch(n: int) -> None:
        if log is not None:
            log.append(n)
        time.sleep(service_s)
    return run_batch


def test_open_loop_arrivals_are_not_slowed_by_a_slow_system():
    """300 req/s into a 10 ms server (capacity 100/s): a closed loop would issue late by up to ~0.6 s."""
    offsets = ArrivalProcess(300.0, seed=3).offsets_for(0.3)
    m = measure_server(_sleeper(0.010), offsets, max_batch=1, drain_s=5.0)
    assert m.served.all()
    assert np.percentile(m.lag_ns, 99) / 1e6 < 30.0  # issued on schedule (a busy host adds some ms)
    lat_ms = m.latency_ns / 1e6
    assert lat_ms.max() > 400.0  # queueing counted from the scheduled arrival
    assert np.all(m.queue_ns >= 0) and np.all(m.service_ns >= 9e6)
    assert sum(m.batch_sizes.values()) == len(offsets)


def test_dynamic_batching_respects_max_batch():
    log: list[int] = []
    offsets = np.full(21, 1e-3)  # a burst of 21 requests at 1 ms
    m = measure_server(_sleeper(0.02, log), offsets, max_batch=4, drain_s=5.0)
    assert max(log) == 4 and sum(log) == 21 and m.served.all()
    assert sum(k * v for k, v in m.batch_sizes.items()) == 21 and max(m.batch_sizes) == 4


def test_max_queue_delay_waits_for_a_batch_then_gives_up():
    # requests 2 ms apart, a 12 ms delay: several join the oldest; the oldest waits at most the delay
    offsets = np.arange(1, 41) * 2e-3
    m = measure_server(_sleeper(0.0), offsets, max_batch=8, max_queue_delay_ms=12.0, drain_s=5.0)
    assert max(m.batch_sizes) > 1 and max(m.batch_sizes) <= 8
    assert np.percentile(m.queue_ns, 50) / 1e6 > 2.0
    # spaced 60 ms apart, nobody joins: every batch is one request that waited the whole delay
    far = np.arange(1, 6) * 0.06
    m = measure_server(_sleeper(0.0), far, max_batch=8, max_queue_delay_ms=15.0, drain_s=5.0)
    assert m.batch_sizes == {1: 5}
    assert np.all(m.queue_ns / 1e6 >= 15.0) and np.all(m.queue_ns / 1e6 < 60.0)
    none = measure_server(_sleeper(0.0), far, max_batch=8, max_queue_delay_ms=0.0)
    assert np.median(none.queue_ns) / 1e6 < 10.0


def test_requests_left_after_the_drain_window_are_timed_out_and_a_full_queue_drops():
    offsets = np.full(20, 1e-3)
    m = measure_server(_sleeper(0.03), offsets, max_batch=1, drain_s=0.1)
    assert 0 < m.timed_out < 20 and m.served.sum() + m.timed_out == 20
    m = measure_server(_sleeper(0.03), offsets, max_batch=1, max_queue=5, drain_s=5.0)
    assert m.dropped.sum() >= 10 and (m.served | m.dropped).all()


# -- the capacity search against M/D/1 --------------------------------------------------------

def md1_wait_cdf(t: float, rho: float, d: float) -> float:
    """Erlang's M/D/1 waiting-time distribution: (1 - rho) sum_{k<=t/d} [rho (k - t/d)]^k / k! e^{-rho (k - t/d)}."""
    x = t / d
    return (1 - rho) * sum((rho * (k - x)) ** k / math.factorial(k) * math.exp(-rho * (k - x)) for k in range(int(x) + 1))


def md1_p99_sojourn(rate: float, d: float) -> float:
    """The p99 of wait + service, for loads whose p99 wait is below 12 service times (the alternating
    sum above loses its precision far past that)."""
    rho = rate * d
    lo, hi = 0.0, 12 * d
    assert md1_wait_cdf(hi, rho, d) >= 0.99
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(mid, rho, d) < 0.99 else (lo, mid)
    return hi + d


def md1_capacity(slo: float, d: float) -> float:
    """The rate at which the M/D/1 p99 sojourn equals slo: P(W <= slo - d) = 0.99 (falls as the rate rises)."""
    lo, hi = 1e-6, (1 - 1e-6) / d
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(slo - d, mid * d, d) >= 0.99 else (lo, mid)
    return lo


def simulate_md1(rate: float, d: float, n: int, seed: int) -> np.ndarray:
    """Sojourn times of n Poisson arrivals at one deterministic server (Lindley's recursion)."""
    arrivals = ArrivalProcess(rate, seed=seed).offsets_s(n)
    out = np.empty(n)
    free = 0.0
    for i, a in enumerate(arrivals):
        start = max(a, free)
        free = start + d
        out[i] = free - a
    return out


def test_md1_formulas_against_simulation():
    d = 5e-3
    rho = 0.7
    wait = simulate_md1(rho / d, d, 200_000, seed=1) - d
    mean_wait = rho * d / (2 * (1 - rho))  # rho / (2 mu (1 - rho)), mu = 1 / d: 5.83 ms (the number)
    assert mean_wait == pytest.approx(5.83e-3, abs=0.01e-3)
    assert wait.mean() == pytest.approx(mean_wait, rel=0.05)
    assert np.percentile(wait + d, 99) == pytest.approx(md1_p99_sojourn(rho / d, d), rel=0.05)


def test_search_converges_on_the_md1_capacity():
    d, slo = 5e-3, 25e-3
    expected = md1_capacity(slo, d)

    def measure(rate: float) -> RatePoint:
        p99 = float(np.percentile(simulate_md1(rate, d, 40_000, seed=int(rate * 1000)), 99))
        return RatePoint(rate, p99 <= slo, p99 * 1e3)

    cap = search_capacity(measure, slo * 1e3, start_rps=0.5 / d, max_rates=10, rel_tol=0.05)
    assert cap.converged and cap.hi_rps / cap.lo_rps <= 1.05
    assert cap.lo_rps == pytest.approx(expected, rel=0.05) and cap.hi_rps >= expected * 0.97
    assert len(cap.points) <= 10


def test_search_brackets_down_and_reports_when_nothing_meets():
    cap = search_capacity(lambda r: RatePoint(r, False, 1e3), 10.0, start_rps=100.0, max_rates=4)
    assert cap.capacity_rps is None and len(cap.points) == 4 and "no rate" in cap.note
    assert [p.rate_rps for p in cap.points] == [100.0, 50.0, 25.0, 12.5]
    floor = search_capacity(lambda r: RatePoint(r, False, 900.0, 850.0), 100.0, start_rps=1.0, max_rates=8)
    assert len(floor.points) == 1 and "service time alone" in floor.note  # going lower cannot help
    low = search_capacity(lambda r: RatePoint(r, False, 900.0), 100.0, start_rps=1.0, max_rates=8, min_rate_rps=0.3)
    assert [p.rate_rps for p in low.points] == [1.0, 0.5] and "no rate down to 0.5" in low.note
    assert bracket_of([RatePoint(5, True), RatePoint(10, False), RatePoint(20, True), RatePoint(40, False)]) == (20, 40)


# -- a real trial on a sleep-based fake adapter with a known service time ------------------------

SERVICE_S = 0.005


def test_confirmation_steps_down_until_a_full_length_point_meets():
    tried: list[float] = []

    def full(rate: float) -> RatePoint:
        tried.append(rate)
        return RatePoint(rate, rate <= 8.0, 50.0 if rate <= 8.0 else 150.0)

    done = confirm_capacity(full, 10.0, 12.0, tries=3, step=0.85)
    assert tried == pytest.approx([10.0, 8.5, 7.225])
    assert done.lo_rps == pytest.approx(7.225) and done.hi_rps == pytest.approx(8.5) and "confirmed" in done.note
    assert confirm_capacity(full, 8.0, 9.0).lo_rps == 8.0 and confirm_capacity(full, 8.0, 9.0).hi_rps == 9.0


def test_confirmation_gives_up_rather_than_claim_an_unconfirmed_capacity():
    never = confirm_capacity(lambda r: RatePoint(r, False, 500.0), 10.0, None, tries=2, step=0.5)
    assert never.lo_rps is None and never.hi_rps == 5.0 and never.rates_rps == (10.0, 5.0)
    assert "did not hold" in never.note
    # too few queries within the cap: a lower rate cannot cure it, so the confirmation stops at once
    short = confirm_capacity(lambda r: RatePoint(r, True, 50.0, valid=False, why_invalid="only 90 queries"), 1.0, 2.0)
    assert short.lo_rps is None and short.rates_rps == (1.0,) and "only 90 queries" in short.note
    with pytest.raises(ValueError):
        confirm_capacity(lambda r: RatePoint(r, True), 1.0, None, step=1.0)



def _sleep_adapter_class():
    """Built on the null adapter's base: run_batch(n) sleeps a fixed 5 ms, whatever n."""
    from hwbench.adapter.kit import NullBase

    class SleepAdapter(NullBase):
        name = "sleep"
        partial_batch = "exact"

        def run_batch(self, n: int) -> None:
            time.sleep(SERVICE_S)

        def run(self) -> None:
            time.sleep(SERVICE_S)

    return SleepAdapter


def _ctx(tmp_path: Path, **server):
    from hwbench.measure.settings import ServerSettings, SweepConfig
    from hwbench.measure.trial import TrialContext

    cfg = SweepConfig(scenarios=("server",), idle_power_s=0.0, server=ServerSettings(**server))
    return TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h", cache_dir=str(tmp_path))


def test_server_trial_search_finds_the_md1_capacity_of_a_sleep_adapter(tmp_path, monkeypatch):
    from hwbench.adapter import registry
    from hwbench.measure.trial import Trial, run_trial_records
    from hwbench.models.spec import InputSpec, ModelSpec

    monkeypatch.setattr(registry, "load", lambda name: _sleep_adapter_class())
    spec = ModelSpec(name="m", onnx_path=tmp_path / "m.onnx", sha256="0" * 64, inputs=(InputSpec("x", "float32", (1, 4)),),
                     outputs=("y",))
    slo_ms = 40.0  # eight service times: room for a busy host's wake-up delays
    ctx = _ctx(tmp_path, slo_p99_ms=slo_ms, max_batch=1, min_duration_s=0.3, min_queries=300, max_duration_s=3.0,
               max_rates=6, rel_tol=0.2, warmup_s=0.1, drain_s=0.5,
               max_sched_lag_ms=1000.0)  # a busy test host wakes threads late: not what this test is about
    trial = Trial("m", "sleep", "fp32", 1, "server")
    out = run_trial_records(trial, spec, ctx)
    recs = [r for r, _ in out]
    assert all(r.status == "ok" and r.scenario == "server" for r in recs), [r.error for r in recs]
    assert len({r.trial_id for r in recs}) == len(recs) and {r.capacity_search for r in recs} == {trial.trial_id}
    expected = md1_capacity(slo_ms / 1e3, SERVICE_S)  # a sleep takes at least its time: never more capacity
    cap = recs[0].capacity_at_slo_rps
    # a sleep takes at least its time, and a busy host wakes threads late: not much more than M/D/1
    # (a p99 from 300 queries of one queue is noisy: the simulated search above holds it to 5%)
    assert cap is not None and 0.35 * expected <= cap <= 1.25 * expected, (cap, expected, [(r.offered_rps, r.latency_p99_ms) for r in recs])
    confirmations = [r for r in recs if json.loads(r.settings)["server"]["confirmation"]]
    # the search's rate is re-measured at full length (LoadGen's final run): the capacity rests on a valid point
    held = [r for r in confirmations if r.offered_rps == cap]
    assert len(held) == 1 and held[0].valid and held[0].n_samples >= 460 and held[0].latency_p99_ms <= slo_ms, \
        [(r.offered_rps, r.valid, r.n_samples, r.latency_p99_ms, r.invalid_reasons) for r in confirmations]
    for rec, lat in out:
        assert rec.n_samples == len(lat) and rec.max_batch == 1 and json.loads(rec.batch_sizes_json) == {"1": rec.n_samples}
        assert rec.service_p50_ms >= SERVICE_S * 1e3 and rec.latency_p99_ms >= rec.service_p99_ms * 0.99
        assert rec.p99_bound_claimed and rec.slo_p99_ms == slo_ms and rec.capacity_hi_rps is not None
        assert json.loads(rec.settings)["server"]["partial_batch"] == "exact"


# -- the command line -----------------------------------------------------------------------

def _hwbench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT")}
    env.update(HWBENCH_CACHE=str(cwd / "cache"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "hwbench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)


BAD_FLAGS = [
    ((), "--scenario: the server scenario needs rates"),
    (("--rate-rps", "5,-1"), "--rate-rps[1]: expected a rate"),
    (("--rate-rps", "5,fast"), "--rate-rps: 'fast' is not a number"),
    (("--slo-p99-ms", "nan"), "--slo-p99-ms: expected a latency"),
    (("--slo-p99-ms", "inf"), "--slo-p99-ms: expected a latency"),
    (("--slo-p99-ms", "100", "--max-batch", "0"), "--max-batch: expected a batch size"),
    (("--slo-p99-ms", "100", "--max-batch", "100000"), "--max-batch: expected a batch size"),
    (("--slo-p99-ms", "100", "--burstiness", "0"), "--burstiness: expected a gamma shape"),
    (("--slo-p99-ms", "100", "--max-queue-delay-ms", "-1"), "--max-queue-delay-ms: expected a delay"),
    (("--slo-p99-ms", "100", "--processes", "2"), "--processes: the server scenario runs in one process"),
    (("--slo-p99-ms", "100", "--timeout-s", "60"), "--timeout-s: 60 s may not hold"),
]


@pytest.mark.parametrize("args,message", BAD_FLAGS)
def test_bad_server_flags_are_usage_errors(args, message):
    """Every bad flag through the sweep model, in process (the same check the CLI makes)."""
    from hwbench.errors import UsageError
    from hwbench.measure.session import requested_config

    flags = {"model": "mlp-tiny", "adapter": "null", "scenario": "server"}
    it = iter(args)
    for flag in it:
        value = next(it)
        key = flag.lstrip("-").replace("-", "_")
        key = {"timeout_s": "trial_timeout_s"}.get(key, key)
        flags[key] = value if key == "rate_rps" else (int(value) if key in ("max_batch", "processes") else float(value))
    with pytest.raises(UsageError) as e:
        requested_config(flags)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("args,message", [BAD_FLAGS[0], BAD_FLAGS[1], BAD_FLAGS[3]])
def test_bad_server_flags_are_one_line_errors(tmp_path, args, message):
    proc = _hwbench(tmp_path, "profile", "mlp-tiny", "--adapter", "null", "--scenario", "server", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def _add_model(path: Path) -> Path:
    """A one-Add ONNX model with a dynamic batch axis (no torch needed to build it)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_server_run_keeps_one_record_per_rate_and_their_latencies(tmp_path):
    from hwbench.measure.session import build_config, run_profile
    from hwbench.measure.settings import ServerSettings, SweepConfig
    from hwbench.results.store import LATENCIES, load_run_records

    model = _add_model(tmp_path / "add.onnx")
    base = SweepConfig(idle_power_s=0.0, server=ServerSettings(min_duration_s=0.3, min_queries=60, warmup_s=0.05))
    cfg = build_config(base, model=str(model), adapter="null", precision="fp32", scenario="server",
                       rate_rps="100,200", slo_p99_ms=50.0, no_accuracy=True)
    result = run_profile(cfg, tmp_path / "out")
    df = load_run_records(result.run_dir)
    assert len(df) == 2 and set(df["scenario"]) == {"server"} and df["capacity_search"].nunique() == 1
    assert sorted(df["offered_rps"]) == [100.0, 200.0] and set(df["slo_p99_ms"]) == {50.0}
    import pandas as pd

    lat = pd.read_parquet(result.run_dir / LATENCIES)
    assert lat.groupby("trial_id").size().to_dict() == dict(zip(df["trial_id"], df["n_samples"]))


def test_a_server_config_round_trips_through_its_document_and_a_sweep_file(tmp_path):
    from hwbench.measure.settings import ServerSettings, SweepConfig
    from hwbench.measure.sweepfile import config_doc, load_sweep, validate

    cfg = SweepConfig(scenarios=("server",), server=ServerSettings(rates_rps=(5.0, 10.0), slo_p99_ms=100.0, max_batch=4,
                                                                   max_queue_delay_ms=2.0, burstiness=0.5))
    assert validate(config_doc(cfg)) == (cfg, [])
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "sweep.toml"
    path.write_text('scenarios = ["server"]\n[server]\nslo_p99_ms = 50\nmax_batch = 2\nrates_rps = [1, 2.5]\n')
    got = load_sweep(path).server
    assert got.slo_p99_ms == 50.0 and got.max_batch == 2 and got.rates_rps == (1.0, 2.5)
    path.write_text('scenarios = ["server"]\n[server]\nslo_p99_ms = 50\nmax_bacth = 2\n')
    with pytest.raises(Exception, match="server.max_bacth: unknown key"):
        load_sweep(path)
