"""The profiler: the only code in hwbench that keeps time.

Warm-up first, then a timed loop that must meet BOTH a minimum iteration count
and a minimum duration. Past both, it stops once the p50's 95% interval is tight
(relative half-width at most target_p50_rel_halfwidth), or at a cap: max_duration_s
of timed window or max_iters calls. Every raw sample is kept. Nothing but the
adapter's call sits between the two clock reads; the interval is checked rarely
(when n has doubled, or 0.5 s of window has passed, and at least 20 x concurrency
samples since the last check), only between calls, and with nothing in flight
(the offline scenario drains its queue first). The check's own time is left out
of the timed window. An optional power meter opens its window around the timed
loop, and the window is stretched to at least ten of the meter's update periods.
An optional activity probe (hwbench.host.activity) snapshots the host's CPU counters
just outside the same window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwbench.adapter import ConcurrentRunner
from hwbench.host.activity import ActivityProbe, ActivityWindow
from hwbench.power.base import EnergyReading, PowerMeter
from hwbench.measure.settings import MeasureSettings
from hwbench.measure.stats import p50_ci_rel_halfwidth

Clock = Callable[[], int]

STOP_P50_TIGHT = "p50-interval-tight"
STOP_TIME_CAP = "time-cap"
STOP_ITERATION_CAP = "iteration-cap"
STOP_REASONS: dict[str, str] = {
    STOP_P50_TIGHT: "both minimums met, and the p50's 95% interval within target_p50_rel_halfwidth",
    STOP_TIME_CAP: "the timed window reached max_duration_s (possibly before min_iters: then invalid)",
    STOP_ITERATION_CAP: "max_iters calls (a trivially fast call: a window below min_duration_s is excused)",
}
CHECK_EVERY_NS = 500_000_000  # check the interval after 0.5 s of window...
CHECK_MIN_NEW_PER_SLOT = 20  # ...and at least 20 new samples per request in flight (bounds the drain's cost)


@dataclass
class Measurement:
    """What one timed loop produced."""

    samples_ns: np.ndarray  # int64, one latency per batch, in completion order
    wall_s: float  # the timed window, first start to last completion, less the checks' pauses
    completed: int  # batches completed in the window
    concurrency: int
    capped: bool  # stopped at max_iters or max_duration_s
    warmup_iters: int
    energy: EnergyReading | None = None
    stop_reason: str = ""  # one of STOP_REASONS
    pause_s: float = 0.0  # time spent checking the stopping rule, not counted in wall_s
    checks: int = 0  # how many times the p50 interval was checked
    activity: ActivityWindow | None = None  # the host's activity around the timed window


class _IntervalCheck:
    """When the p50 interval is worth checking, and whether it is tight.

    The samples stay a Python list in the loop (the cheapest append); new ones are
    copied into a growing int64 array only at a check, so a check costs one copy of
    what is new plus one np.partition.
    """

    def __init__(self, target: float, concurrency: int) -> None:
        self.target = target
        self.min_new = CHECK_MIN_NEW_PER_SLOT * concurrency
        self.buf = np.empty(1024, dtype=np.int64)
        self.filled = 0
        self.checks = 0
        self.set_due(0, 0)

    def set_due(self, n: int, elapsed_ns: int) -> None:
        """After a check at n samples: due at 2n samples, or 0.5 s later with min_new more samples."""
        self.due_n = max(2 * n, n + self.min_new)
        self.due_min_n = n + self.min_new
        self.due_ns = elapsed_ns + CHECK_EVERY_NS

    def due(self, n: int, elapsed_ns: int) -> bool:
        return n >= self.due_n or (elapsed_ns >= self.due_ns and n >= self.due_min_n)

    def tight(self, samples: list[int], elapsed_ns: int) -> bool:
        n = len(samples)
        if n > len(self.buf):
            grown = np.empty(max(n, 2 * len(self.buf)), dtype=np.int64)
            grown[: self.filled] = self.buf[: self.filled]
            self.buf = grown
        self.buf[self.filled : n] = samples[self.filled : n]
        self.filled = n
        self.checks += 1
        self.set_due(n, elapsed_ns)
        rel = p50_ci_rel_halfwidth(self.buf[:n])
        return rel is not None and rel <= self.target


def _open_window(meter: PowerMeter | None, activity: ActivityProbe | None) -> None:
    """The host-activity snapshot, then the power window: both just outside the timed loop."""
    if activity is not None:
        activity.begin()
    if meter is not None:
        meter.begin()


def _close_window(samples: list[int], window_ns: int, paused_ns: int, concurrency: int, reason: str, warm: int,
                  checks: int, meter: PowerMeter | None, activity: ActivityProbe | None) -> Measurement:
    """Close the power window, then the activity snapshot, and package what the loop produced."""
    energy = meter.end() if meter is not None else None
    host = activity.end() if activity is not None else None
    return Measurement(
        samples_ns=np.asarray(samples, dtype=np.int64), wall_s=window_ns / 1e9, completed=len(samples),
        concurrency=concurrency, capped=reason != STOP_P50_TIGHT, warmup_iters=warm, energy=energy,
        stop_reason=reason, pause_s=paused_ns / 1e9, checks=checks, activity=host,
    )


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
    check = _IntervalCheck(settings.target_p50_rel_halfwidth, 1)
    due_n, due_min_n, due_ns = check.due_n, check.due_min_n, check.due_ns
    samples: list[int] = []
    append = samples.append
    paused = 0
    _open_window(meter, activity)
    start = t1 = clock()
    while True:
        t0 = clock()
        run()
        t1 = clock()
        append(t1 - t0)
        n = len(samples)
        elapsed = t1 - start - paused
        if n >= min_iters and elapsed >= min_ns and (n >= due_n or (elapsed >= due_ns and n >= due_min_n)):
            if check.tight(samples, elapsed):
                reason = STOP_P50_TIGHT
                break
            due_n, due_min_n, due_ns = check.due_n, check.due_min_n, check.due_ns
            paused += clock() - t1  # the check is not part of the timed window
        if n >= max_iters:
            reason = STOP_ITERATION_CAP
            break
        if elapsed >= max_ns:
            reason = STOP_TIME_CAP
            break
    return _close_window(samples, t1 - start - paused, paused, 1, reason, warm, check.checks, meter, activity)


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
    check = _IntervalCheck(settings.target_p50_rel_halfwidth, conc)
    submitted_at: dict[int, int] = {}
    samples: list[int] = []
    next_tag = 0
    paused = 0
    _open_window(meter, activity)
    start = now = clock()
    for _ in range(conc):
        submitted_at[next_tag] = clock()
        runner.submit(next_tag)
        next_tag += 1
    reason = ""  # set: stop submitting, and collect what is in flight
    checking = False  # stop submitting, collect what is in flight, then check the interval
    while submitted_at:
        done = runner.wait()  # wait, not drain: each batch is stamped as soon as it is seen finished
        now = clock()
        for tag in done:
            samples.append(now - submitted_at.pop(tag))
        if reason:
            continue
        n = len(samples)
        elapsed = now - start - paused
        if not checking and n >= min_iters and elapsed >= min_ns and check.due(n, elapsed):
            checking = True
        refill = len(done)
        if checking:
            if submitted_at:
                continue
            checking = False
            if check.tight(samples, elapsed):
                reason = STOP_P50_TIGHT
                break
            paused += clock() - now  # the check is not part of the timed window
            refill = conc
        if n + len(submitted_at) >= max_iters:
            reason = STOP_ITERATION_CAP
        elif elapsed >= max_ns:
            reason = STOP_TIME_CAP
        else:
            for _ in range(refill):
                submitted_at[next_tag] = clock()
                runner.submit(next_tag)
                next_tag += 1
    return _close_window(samples, now - start - paused, paused, conc, reason, warm, check.checks, meter, activity)
