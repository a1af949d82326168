"""The timed loop with a fake clock: stopping rules and their reasons, warm-up, raw samples, meter windows."""

from __future__ import annotations

import numpy as np
import pytest

from hwbench.measure import profiler
from hwbench.adapter.concurrency import ThreadedRunner
from hwbench.power.base import EnergyReading, PowerMeter
from hwbench.measure.profiler import STOP_REASONS, measure_offline, measure_single_stream
from hwbench.measure.settings import MeasureSettings
from hwbench.measure.stats import summarize


class FakeClock:
    """Advances only when the system under test 'runs'."""

    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def make_run(clock: FakeClock, cost_ns: int):
    calls = []

    def run() -> None:
        clock.t += cost_ns
        calls.append(1)

    return run, calls


def test_min_iters_dominates() -> None:
    clock = FakeClock()
    run, calls = make_run(clock, 1_000_000)  # 1 ms a call
    s = MeasureSettings(warmup_s=0.0, warmup_min_iters=3, min_duration_s=0.05, min_iters=200)
    m = measure_single_stream(run, s, clock=clock)
    assert m.warmup_iters == 3
    assert len(m.samples_ns) == 200 and m.completed == 200
    assert set(m.samples_ns.tolist()) == {1_000_000}
    assert m.wall_s == 0.2 and not m.capped
    assert len(calls) == 203


def test_min_duration_dominates() -> None:
    clock = FakeClock()
    run, _ = make_run(clock, 10_000_000)  # 10 ms a call
    s = MeasureSettings(warmup_s=0.05, warmup_min_iters=1, min_duration_s=2.0, min_iters=10)
    m = measure_single_stream(run, s, clock=clock)
    assert m.warmup_iters == 5
    assert len(m.samples_ns) == 200  # 2 s / 10 ms
    assert m.wall_s >= 2.0


def test_max_iters_caps() -> None:
    clock = FakeClock()
    run, _ = make_run(clock, 100)
    s = MeasureSettings(warmup_s=0, warmup_min_iters=1, min_duration_s=10.0, min_iters=10, max_iters=1000)
    m = measure_single_stream(run, s, clock=clock)
    assert len(m.samples_ns) == 1000 and m.capped and m.stop_reason == "iteration-cap"


class Meter(PowerMeter):
    method = "test"

    def __init__(self, period_ms: float, clock: FakeClock) -> None:
        self._p, self.clock, self.windows = period_ms, clock, []

    @property
    def period_ms(self) -> float:
        return self._p

    def begin(self) -> None:
        self.t0 = self.clock.t

    def end(self) -> EnergyReading:
        d = (self.clock.t - self.t0) / 1e9
        self.windows.append(d)
        return EnergyReading(energy_j=50.0 * d, duration_s=d, method="test", period_ms=self._p, estimated=False)


def test_meter_window_is_stretched_to_ten_periods() -> None:
    clock = FakeClock()
    run, _ = make_run(clock, 1_000_000)
    meter = Meter(period_ms=500.0, clock=clock)  # ten periods = 5 s
    s = MeasureSettings(warmup_s=0, warmup_min_iters=1, min_duration_s=0.1, min_iters=10)
    m = measure_single_stream(run, s, meter=meter, clock=clock)
    assert m.wall_s >= 5.0
    assert m.energy is not None and m.energy.avg_power_w == 50.0


def test_offline_completes_every_tag_once() -> None:
    seen: list[int] = []
    runner = ThreadedRunner(lambda slot: seen.append(slot), concurrency=3)
    s = MeasureSettings(warmup_s=0.0, warmup_min_iters=6, min_duration_s=0.0, min_iters=300)
    m = measure_offline(runner, s)
    runner.close()
    assert m.concurrency == 3
    assert m.completed == len(m.samples_ns) >= 300
    assert np.all(m.samples_ns > 0)
    assert len(seen) == m.completed + m.warmup_iters


def test_one_request_in_flight_runs_in_the_callers_thread() -> None:
    import threading

    seen: list[int] = []
    runner = ThreadedRunner(lambda slot: seen.append(threading.get_ident()), concurrency=1)
    m = measure_offline(runner, MeasureSettings(warmup_s=0.0, warmup_min_iters=2, min_duration_s=0.0, min_iters=50))
    runner.close()
    assert m.concurrency == 1 and m.completed >= 50
    assert set(seen) == {threading.get_ident()}


# -- the stopping rule: both minimums, then a tight p50 interval, or a cap -------------

def make_costs_run(clock: FakeClock, cost_ns):
    """A run whose i-th call (warm-up included) costs cost_ns(i)."""
    calls = [0]

    def run() -> None:
        clock.t += cost_ns(calls[0])
        calls[0] += 1

    return run


def _settings(**kw) -> MeasureSettings:
    return MeasureSettings(**{"warmup_s": 0.0, "warmup_min_iters": 0, "min_duration_s": 0.1, "min_iters": 100, **kw})


def test_stop_reasons_are_documented() -> None:
    assert set(STOP_REASONS) == {"p50-interval-tight", "time-cap", "iteration-cap"}
    assert all(STOP_REASONS.values())


def test_tight_interval_stops_once_both_minimums_are_met() -> None:
    clock = FakeClock()
    run, _ = make_run(clock, 1_000_000)  # constant: the interval is tight at the first check
    m = measure_single_stream(run, _settings(min_duration_s=1.0, min_iters=100), clock=clock)
    assert m.stop_reason == "p50-interval-tight" and not m.capped
    assert len(m.samples_ns) == 1000 and m.wall_s == 1.0  # the duration, not the count, came last
    assert m.checks == 1


def test_wide_interval_keeps_going_until_it_is_tight() -> None:
    # 100 calls alternating 1 ms / 3 ms (p50 interval +-50%), then 2 ms calls: tight at the next check (n doubled)
    clock = FakeClock()
    run = make_costs_run(clock, lambda i: (1_000_000 if i % 2 else 3_000_000) if i < 100 else 2_000_000)
    m = measure_single_stream(run, _settings(), clock=clock)
    assert m.stop_reason == "p50-interval-tight" and m.checks == 2
    assert len(m.samples_ns) == 200


def test_time_cap_stops_a_noisy_point() -> None:
    clock = FakeClock()
    run = make_costs_run(clock, lambda i: 1_000_000 if i % 2 else 3_000_000)  # never tight
    m = measure_single_stream(run, _settings(max_duration_s=5.0), clock=clock)
    assert m.stop_reason == "time-cap" and m.capped
    assert m.wall_s == 5.0 and len(m.samples_ns) == 2500
    assert 2 <= m.checks <= 12  # every 0.5 s of window (or when n doubles), not every call


def test_time_cap_before_min_iters_keeps_the_samples() -> None:
    clock = FakeClock()
    run, _ = make_run(clock, 100_000_000)  # 100 ms a call
    s = _settings(min_iters=100, max_duration_s=4.8)
    m = measure_single_stream(run, s, clock=clock)
    assert m.stop_reason == "time-cap" and len(m.samples_ns) == 48 and m.checks == 0
    stats = summarize(m.samples_ns, 1, m.wall_s, m.completed, s, capped=m.capped, stop_reason=m.stop_reason)
    assert stats["valid"] is True and stats["n_samples"] == 48 and stats["stop_reason"] == "time-cap"
    assert "stopped by the 4.8 s time cap at 48 samples (< 100)" in stats["warnings"][0]
    assert stats["unresolved_percentiles"] == ["p95", "p99", "p99.9"]


def test_iteration_cap_has_its_reason() -> None:
    clock = FakeClock()
    run, _ = make_run(clock, 100)
    s = _settings(min_duration_s=10.0, min_iters=10, max_iters=1000)
    m = measure_single_stream(run, s, clock=clock)
    assert m.stop_reason == "iteration-cap" and len(m.samples_ns) == 1000
    stats = summarize(m.samples_ns, 1, m.wall_s, m.completed, s, capped=m.capped, stop_reason=m.stop_reason)
    assert stats["valid"] is True  # a trivially fast call is excused a short window


def _slow_check(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, tight_after: int) -> list[int]:
    """Each check advances the fake clock by 1 s; it reports a wide interval until call `tight_after`."""
    seen: list[int] = []

    def check(values: np.ndarray) -> float:
        seen.append(len(values))
        clock.t += 1_000_000_000
        return 0.0 if len(seen) >= tight_after else 0.5

    monkeypatch.setattr(profiler, "p50_ci_rel_halfwidth", check)
    return seen


def test_check_sits_between_calls_not_inside_the_timed_region(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    seen = _slow_check(monkeypatch, clock, tight_after=3)
    run, _ = make_run(clock, 1_000_000)
    m = measure_single_stream(run, _settings(min_duration_s=0.5, min_iters=100), clock=clock)
    assert seen == [500, 1000, 1500]  # first once both minimums are met, then every 0.5 s of window
    # a check inside a timed call would have added its 1 s to one sample, and to the window
    assert set(m.samples_ns.tolist()) == {1_000_000}
    assert m.pause_s == 2.0 and m.wall_s == 1.5 and m.checks == 3  # the last check ends the window


class FakeQueue:
    """A ConcurrentRunner on the fake clock: each batch takes cost_ns(i) from its submission."""

    def __init__(self, clock: FakeClock, concurrency: int, cost_ns) -> None:
        self.clock, self.concurrency, self.cost_ns = clock, concurrency, cost_ns
        self.finish: dict[int, int] = {}
        self.submitted = 0

    def submit(self, tag: int) -> None:
        assert len(self.finish) < self.concurrency, "a slot must be free"
        self.finish[tag] = self.clock.t + self.cost_ns(self.submitted)
        self.submitted += 1

    def wait(self) -> list[int]:
        if not self.finish:
            return []
        self.clock.t = max(self.clock.t, min(self.finish.values()))
        done = [tag for tag, f in self.finish.items() if f <= self.clock.t]
        for tag in done:
            del self.finish[tag]
        return done

    def drain(self) -> list[int]:
        out: list[int] = []
        while self.finish:
            out += self.wait()
        return out


def test_offline_check_runs_with_nothing_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    seen = _slow_check(monkeypatch, clock, tight_after=2)
    queue = FakeQueue(clock, 4, lambda i: 1_000_000)
    m = measure_offline(queue, _settings(min_duration_s=0.1, min_iters=100), clock=clock)
    assert m.stop_reason == "p50-interval-tight" and len(seen) == 2
    # a batch in flight during a 1 s check would be stamped 1 s late
    assert set(m.samples_ns.tolist()) == {1_000_000}
    assert m.pause_s == 1.0 and m.wall_s == pytest.approx(m.completed / 4 * 1e-3)


def test_offline_stop_reasons() -> None:
    clock = FakeClock()
    tight = measure_offline(FakeQueue(clock, 4, lambda i: 1_000_000), _settings(), clock=clock)
    assert tight.stop_reason == "p50-interval-tight" and tight.completed == 400  # 0.1 s at 4 per ms
    noisy = FakeQueue(clock, 4, lambda i: 1_000_000 if (i // 4) % 2 else 3_000_000)
    capped = measure_offline(noisy, _settings(max_duration_s=3.0), clock=clock)
    assert capped.stop_reason == "time-cap" and capped.capped and 3.0 <= capped.wall_s < 3.1
    fast = measure_offline(FakeQueue(clock, 4, lambda i: 100), _settings(min_duration_s=5.0, max_iters=2000),
                           clock=clock)
    assert fast.stop_reason == "iteration-cap" and fast.completed == 2000
