"""The profiler: the only code in hwbench that keeps time.

Warm-up first, then a timed loop that must meet BOTH a minimum iteration count
and a minimum duration (capped by max_iters / max_duration_s). Every raw sample
is kept. Nothing but the adapter's call sits between the two clock reads. An
optional power meter opens its window around the timed loop, and the window is
stretched to at least ten of the meter's update periods. An optional activity probe
(hwbench.hostactivity) snapshots the host's CPU counters just outside the same window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwbench.adapter import ConcurrentRunner
from hwbench.hostactivity import ActivityProbe, ActivityWindow
from hwbench.power.base import EnergyReading, PowerMeter
from hwbench.settings import MeasureSettings

Clock = Callable[[], int]


@dataclass
class Measurement:
    """What one timed loop produced."""

    samples_ns: np.ndarray  # int64, one latency per batch, in completion order
    wall_s: float  # the timed window, first start to last completion
    completed: int  # batches completed in the window
    concurrency: int
    capped: bool  # stopped at max_iters or max_duration_s
    warmup_iters: int
    energy: EnergyReading | None = None
    activity: ActivityWindow | None = None  # the host's activity around the timed window


def _min_window_ns(settings: MeasureSettings, meter: PowerMeter | None) -> int:
    min_s = settings.min_duration_s
    if meter is not None:
        min_s = max(min_s, meter.min_window_s())
    return int(min_s * 1e9)


def measure_single_stream(
    run: Callable[[], None],
    settings: MeasureSettings,
    meter: PowerMeter | None = None,
    clock: Clock = time.perf_counter_ns,
    activity: ActivityProbe | None = None,
) -> Measurement:
    """Time `run` one call at a time (the single-stream scenario)."""
    warm_end = clock() + int(settings.warmup_s * 1e9)
    warm = 0
    while warm < settings.warmup_min_iters or clock() < warm_end:
        run()
        warm += 1

    min_iters = settings.min_iters
    max_iters = settings.max_iters
    min_ns = _min_window_ns(settings, meter)
    max_ns = int(settings.max_duration_s * 1e9)
    samples: list[int] = []
    append = samples.append
    if activity is not None:
        activity.begin()
    if meter is not None:
        meter.begin()
    start = t1 = clock()
    while True:
        t0 = clock()
        run()
        t1 = clock()
        append(t1 - t0)
        n = len(samples)
        elapsed = t1 - start
        if n >= min_iters and elapsed >= min_ns:
            capped = False
            break
        if n >= max_iters or elapsed >= max_ns:
            capped = True
            break
    energy = meter.end() if meter is not None else None
    host = activity.end() if activity is not None else None
    return Measurement(
        samples_ns=np.asarray(samples, dtype=np.int64),
        wall_s=(t1 - start) / 1e9,
        completed=len(samples),
        concurrency=1,
        capped=capped,
        warmup_iters=warm,
        energy=energy,
        activity=host,
    )


def measure_offline(
    runner: ConcurrentRunner,
    settings: MeasureSettings,
    meter: PowerMeter | None = None,
    clock: Clock = time.perf_counter_ns,
    activity: ActivityProbe | None = None,
) -> Measurement:
    """Keep `runner.concurrency` batches in flight (the offline scenario).

    A batch's latency runs from its submission, made only once a slot is free,
    to the moment the profiler sees it finished; queueing is never counted.
    """
    conc = max(1, int(runner.concurrency))
    # warm-up: keep the queue full for warmup_s, then drain
    warm = 0
    warm_end = clock() + int(settings.warmup_s * 1e9)
    for tag in range(conc):
        runner.submit(tag)
    while True:
        done = runner.wait()
        warm += len(done)
        if warm >= settings.warmup_min_iters and clock() >= warm_end:
            break
        for tag in done:
            runner.submit(tag)
    warm += len(runner.drain())

    min_iters = settings.min_iters
    min_ns = _min_window_ns(settings, meter)
    max_ns = int(settings.max_duration_s * 1e9)
    max_iters = settings.max_iters
    submitted_at: dict[int, int] = {}
    samples: list[int] = []
    next_tag = 0
    if activity is not None:
        activity.begin()
    if meter is not None:
        meter.begin()
    start = now = clock()
    for _ in range(conc):
        submitted_at[next_tag] = clock()
        runner.submit(next_tag)
        next_tag += 1
    stopping = False
    capped = False
    while submitted_at:
        done = runner.drain() if stopping else runner.wait()
        now = clock()
        for tag in done:
            samples.append(now - submitted_at.pop(tag))
        if not stopping:
            elapsed = now - start
            n = len(samples)
            if n >= min_iters and elapsed >= min_ns:
                stopping = True
            elif n + len(submitted_at) >= max_iters or elapsed >= max_ns:
                stopping = capped = True
            else:
                for _ in done:
                    submitted_at[next_tag] = clock()
                    runner.submit(next_tag)
                    next_tag += 1
    energy = meter.end() if meter is not None else None
    host = activity.end() if activity is not None else None
    return Measurement(
        samples_ns=np.asarray(samples, dtype=np.int64),
        wall_s=(now - start) / 1e9,
        completed=len(samples),
        concurrency=conc,
        capped=capped,
        warmup_iters=warm,
        energy=energy,
        activity=host,
    )
