"""The timed loop with a fake clock: stopping rules, warm-up, raw samples, meter windows."""

from __future__ import annotations

import numpy as np

from hwbench.concurrency import ThreadedRunner
from hwbench.power.base import EnergyReading, PowerMeter
from hwbench.profiler import measure_offline, measure_single_stream
from hwbench.settings import MeasureSettings


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
    assert len(m.samples_ns) == 1000 and m.capped


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
