"""One rate point of the server scenario: an open-loop issuer and a dynamic batcher, after LoadGen and Triton.

MLPerf LoadGen's Server scenario issues queries at Poisson arrival times whatever the system
under test is doing (hwbench.measure.arrivals), so a slow system cannot slow its own arrivals
and hide its queue. Here an issuer thread sleeps until each scheduled time and enqueues the
request, stamping when it actually did (the scheduling lag: actual minus scheduled issue
time). The calling thread is the server: like Triton's dynamic batcher it takes the oldest
queued request, waits at most `max_queue_delay_ms` from that request's arrival for the batch
to fill to `max_batch`, then runs one batch of what it holds (`run_batch(n)`). One batch runs
at a time (one model instance). A request's latency runs from its SCHEDULED arrival to the end
of its batch, so queueing, batching waits and any issuer lag all count against the system.

Requests refused because the queue held `max_queue` of them (0: unbounded) are dropped; requests
still queued `drain_s` after the last scheduled arrival are timed out. Neither has a latency.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwbench.host.activity import ActivityProbe, ActivityWindow
from hwbench.power.base import EnergyReading, PowerMeter

Clock = Callable[[], int]
NOT_DONE = -1


@dataclass
class ServerMeasurement:
    """What one rate point produced: per-request stamps (ns, relative to the schedule's start)."""

    scheduled_ns: np.ndarray  # int64, when each request was due
    issued_ns: np.ndarray  # when the issuer actually enqueued it
    started_ns: np.ndarray  # when its batch started (NOT_DONE: never served)
    done_ns: np.ndarray  # when its batch finished (NOT_DONE: never served)
    dropped: np.ndarray  # bool: refused, the queue was full
    batch_of: np.ndarray  # int64: the size of the batch that served it (0: never served)
    batch_sizes: dict[int, int] = field(default_factory=dict)  # batch size -> batches formed
    energy: EnergyReading | None = None
    activity: ActivityWindow | None = None

    @property
    def served(self) -> np.ndarray:
        return self.done_ns != NOT_DONE

    @property
    def latency_ns(self) -> np.ndarray:
        """End to end, scheduled arrival to completion, for the served requests, in arrival order."""
        s = self.served
        return self.done_ns[s] - self.scheduled_ns[s]

    @property
    def queue_ns(self) -> np.ndarray:
        s = self.served
        return self.started_ns[s] - self.scheduled_ns[s]

    @property
    def service_ns(self) -> np.ndarray:
        s = self.served
        return self.done_ns[s] - self.started_ns[s]

    @property
    def single_service_ns(self) -> np.ndarray:
        """Service times of batches of one: no dynamic batching, no queue, the fastest a request can be served."""
        one = self.batch_of == 1
        return self.done_ns[one] - self.started_ns[one]

    @property
    def lag_ns(self) -> np.ndarray:
        return self.issued_ns - self.scheduled_ns

    @property
    def timed_out(self) -> int:
        return int((~self.served & ~self.dropped).sum())

    @property
    def wall_s(self) -> float:
        """From the schedule's start to the last completion (LoadGen's achieved-QPS window)."""
        s = self.served
        return float(self.done_ns[s].max()) / 1e9 if s.any() else 0.0


def warm_up(run_batch: Callable[[int], None], max_batch: int, warmup_s: float, min_iters: int = 5,
            clock: Clock = time.perf_counter_ns) -> float:
    """Run every batch size once (runtimes allocate per shape), then batch 1 for warmup_s; returns
    batch 1's median service time in ms (the capacity search's first guess)."""
    for n in range(max_batch, 0, -1):
        run_batch(n)
    times: list[int] = []
    end = clock() + int(warmup_s * 1e9)
    while len(times) < min_iters or clock() < end:
        t0 = clock()
        run_batch(1)
        times.append(clock() - t0)
    return float(np.median(times)) / 1e6


def measure_server(
    run_batch: Callable[[int], None],
    offsets_s: np.ndarray,
    max_batch: int = 1,
    max_queue_delay_ms: float = 0.0,
    drain_s: float = 2.0,
    max_queue: int = 0,
    meter: PowerMeter | None = None,
    activity: ActivityProbe | None = None,
    clock: Clock = time.perf_counter_ns,
) -> ServerMeasurement:
    """Issue one request at each of `offsets_s` (seconds after the start) and serve them in dynamic batches."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    n = len(offsets_s)
    sched = np.round(np.asarray(offsets_s, dtype=np.float64) * 1e9).astype(np.int64)
    issued = np.full(n, NOT_DONE, dtype=np.int64)
    started = np.full(n, NOT_DONE, dtype=np.int64)
    done = np.full(n, NOT_DONE, dtype=np.int64)
    dropped = np.zeros(n, dtype=bool)
    batch_of = np.zeros(n, dtype=np.int64)
    hist: dict[int, int] = {}
    queue: deque[int] = deque()
    cond = threading.Condition()
    state = {"issuing": True, "stop": False}
    delay_ns = int(max_queue_delay_ms * 1e6)
    sched_list = sched.tolist()

    if activity is not None:
        activity.begin()
    if meter is not None:
        meter.begin()
    start = clock()

    def issue() -> None:
        sleep = time.sleep
        for i, due in enumerate(sched_list):
            if state["stop"]:  # the server failed: stop issuing
                break
            now = clock() - start
            if due > now:
                sleep((due - now) / 1e9)
                now = clock() - start
            issued[i] = now
            with cond:
                if max_queue and len(queue) >= max_queue:
                    dropped[i] = True
                    continue
                queue.append(i)
                cond.notify()
        with cond:
            state["issuing"] = False
            cond.notify()

    issuer = threading.Thread(target=issue, name="hwbench-issuer", daemon=True)
    issuer.start()
    drain_deadline = (sched_list[-1] if n else 0) + int(drain_s * 1e9)
    try:
        while True:
            with cond:
                while not queue and state["issuing"]:
                    cond.wait()
                if not queue:
                    break  # everything issued and served
                if delay_ns > 0:
                    deadline = int(issued[queue[0]]) + delay_ns
                    while len(queue) < max_batch:  # the batcher cannot know that no more will come
                        left = deadline - (clock() - start)
                        if left <= 0:
                            break
                        cond.wait(left / 1e9)
                take = [queue.popleft() for _ in range(min(max_batch, len(queue)))]
            t0 = clock() - start
            if t0 > drain_deadline:
                with cond:
                    queue.clear()  # never served: timed out
                break
            run_batch(len(take))
            t1 = clock() - start
            started[take] = t0
            done[take] = t1
            batch_of[take] = len(take)
            hist[len(take)] = hist.get(len(take), 0) + 1
    finally:
        state["stop"] = True
        if issuer.is_alive():
            issuer.join()
        energy = meter.end() if meter is not None else None
        window = activity.end() if activity is not None else None
    return ServerMeasurement(sched, issued, started, done, dropped, batch_of, dict(sorted(hist.items())), energy, window)
