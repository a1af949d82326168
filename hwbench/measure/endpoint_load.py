"""Load for a served model: open-loop arrivals at a rate, or a closed loop at a fixed concurrency.

Open loop: request i is due at start + offsets_s[i] (hwbench.measure.arrivals) and is issued then
whatever the server is doing, so a slow server cannot slow the arrivals and hide its queue; each
TokenTiming carries its scheduled time, so TTFT and E2E count any wait the client imposed. The
issuer sleeps until a request is due and issues late ones at once; its lateness (actual minus
scheduled issue time) is the scheduling lag, kept per request. When the lag is material the load
generator, not the server, is being measured: the result says so.

Closed loop: `concurrency` workers each send their next request as soon as the last one finished
(vLLM's --max-concurrency, AIPerf's concurrency mode). It measures capacity at that concurrency,
not latency under an arrival rate.

One asyncio loop in this process runs it all, on uvloop when it is installed (hwbench[serve]
pulls it in; it costs the client less CPU per request than the stock loop). Above what one
process can issue on time, an open-loop schedule is spread over several client processes
(hwbench.measure.endpoint_spread). The client's own CPU use is measured too, over the window
alone. Inside the window the client does as little as it can: the adapter's send() keeps what came
back unparsed, and settle() reads it after the window (so the client's own CPU is what issuing
and receiving cost); the open-loop issuer wakes at each due instant exactly instead of spinning
(hwbench.measure.due_timer); the cyclic garbage collector is paused (gc_paused).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from hwbench.adapter.endpoint import Clock, EndpointAdapter
from hwbench.adapter.tokens import TokenTiming
from hwbench.measure.due_timer import DueTimer

# Lag is material, as in the server scenario (hwbench.measure.server), when its p99 is above both
# LAG_MATERIAL_MS and LAG_MATERIAL_FRACTION of the TTFT p99 it would distort.
LAG_MATERIAL_MS = 5.0
LAG_MATERIAL_FRACTION = 0.10
_SPIN_S = 0.0005  # sleep only when the next request is due further away than this

Progress = Callable[[int, int], None]  # (finished, total)


@dataclass
class LoadResult:
    """What one load run produced: every request's timing, and the client's own health."""

    timings: list[TokenTiming]
    wall_s: float  # first issue to last completion
    mode: str  # "open-loop" | "closed-loop"
    offered_rps: float | None  # open loop: the target rate
    concurrency: int | None  # closed loop: the worker count
    client_cpu_pct: float  # the client process's CPU time over the wall time, % of one core
    lag_ms: np.ndarray = field(default_factory=lambda: np.empty(0))  # open loop: per-request lateness
    processes: int = 1  # client processes the schedule was spread over
    client_cpu_pct_per_process: list[float] = field(default_factory=list)
    lag_p99_ms_per_process: list[float | None] = field(default_factory=list)
    event_loop: str = "asyncio"

    @property
    def completed(self) -> list[TokenTiming]:
        return [t for t in self.timings if t.ok]

    @property
    def failed(self) -> list[TokenTiming]:
        return [t for t in self.timings if not t.ok]

    @property
    def achieved_rps(self) -> float:
        return len(self.completed) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def lag_p99_ms(self) -> float | None:
        return float(np.percentile(self.lag_ms, 99)) if len(self.lag_ms) else None

    def lag_problem(self) -> str | None:
        """Why the client's lateness makes this run invalid, or None."""
        p99 = self.lag_p99_ms
        if p99 is None:
            return None
        ttfts = [t.ttft_ns for t in self.completed if t.ttft_ns is not None]
        bound = LAG_MATERIAL_MS
        if ttfts:
            bound = max(bound, LAG_MATERIAL_FRACTION * float(np.percentile(ttfts, 99)) / 1e6)
        if p99 > bound:
            spread = ""
            if self.processes > 1:
                spread = (f" over {self.processes} processes, each "
                          + "/".join(f"{c:.0f}%" for c in self.client_cpu_pct_per_process))
            return (f"client scheduling lag p99 {p99:.2f} ms exceeds {bound:.2f} ms: the load generator fell "
                    f"behind its schedule (client CPU {self.client_cpu_pct:.0f}% of a core{spread})")
        return None


EVENT_LOOP_ENV = "HWBENCH_EVENT_LOOP"  # "asyncio" forces the stock loop (to compare the two side by side)


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """uvloop's event loop when it is installed, else asyncio's; and its name for the record."""
    import os

    if os.environ.get(EVENT_LOOP_ENV, "").strip().lower() == "asyncio":
        return asyncio.new_event_loop, "asyncio (forced by HWBENCH_EVENT_LOOP)"
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a measurement window, back on (and catching up) after.

    The window's results pile up in memory, and each full collection walks all of them: with the
    collector on, a streamed request cost the client about 1.6x the CPU (0.58 against 0.35 ms at
    2,000 requests/s, side by side, busy 2-core host), and every collection is a pause the next
    requests are issued late by. A request leaves no cyclic garbage (measured: 0 objects per request,
    streamed or not), so memory does not grow for want of it; reference counting frees the rest."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_async(main: Callable[[], Awaitable[object]]) -> object:
    """Run a coroutine function to completion on a fresh loop of loop_factory()'s kind."""
    factory, _ = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def failed_timing(error: str, scheduled_ns: int | None, at_ns: int) -> TokenTiming:
    """A request the client itself could not carry out, as data."""
    return TokenTiming(start_ns=at_ns, token_ns=(), prompt_tokens=0, ok=False, error=error, scheduled_ns=scheduled_ns)


Send = Callable[[int, "int | None"], Awaitable[object]]  # (arrival index, scheduled ns) -> what adapter.send returned
Done = Callable[[int, object], None]  # called as each request ends, with its index and what send returned


def client_error(e: Exception, scheduled: int | None, clock: Clock) -> TokenTiming:
    """The failed record of a request whose send() raised (the adapter should not have: a client bug)."""
    return failed_timing(f"client error: {type(e).__name__}: {str(e)[:200]}", scheduled, clock())


async def _guarded(send: Send, i: int, scheduled: int | None, clock: Clock) -> object:
    """send(i, scheduled), with an exception the adapter should not have raised turned into a failed record."""
    try:
        return await send(i, scheduled)
    except Exception as e:  # noqa: BLE001 - a client bug must not take the other requests down
        return client_error(e, scheduled, clock)


def settle_all(adapter: EndpointAdapter, sent: Sequence[object], clock: Clock = time.perf_counter_ns) -> list[TokenTiming]:
    """After the measurement window: what send() returned, as TokenTimings (a settle bug fails that request only)."""
    out = []
    for s in sent:
        try:
            out.append(adapter.settle(s))
        except Exception as e:  # noqa: BLE001
            scheduled = getattr(s, "scheduled_ns", None)
            out.append(failed_timing(f"client error reading the answer: {type(e).__name__}: {str(e)[:200]}",
                                     scheduled, getattr(s, "start_ns", None) or scheduled or clock()))
    return out


async def _open_loop(send: Send, offsets_s: Sequence[float], clock: Clock, progress: Progress | None,
                     origin: int | None = None, on_done: Done | None = None) -> tuple[list[object], int, int]:
    """Issue request i at origin + offsets_s[i] (origin: now + 1 ms unless given, e.g. shared by processes)."""
    n = len(offsets_s)
    results: list[object] = [None] * n
    finished = 0

    async def one(i: int, scheduled: int) -> None:
        nonlocal finished
        try:  # _guarded, inlined: one coroutine frame fewer to resume at every await of every request
            r = await send(i, scheduled)
        except Exception as e:  # noqa: BLE001 - a client bug must not take the other requests down
            r = client_error(e, scheduled, clock)
        results[i] = r
        finished += 1
        if on_done is not None:
            on_done(i, r)
        if progress is not None:
            progress(finished, n)

    tasks = []
    if origin is None:
        origin = clock() + 1_000_000  # 1 ms lead: the first request is not late by construction
    dues = [origin + int(off * 1e9) for off in offsets_s]
    timer = DueTimer.create(clock)  # exact wake-ups without spinning, where the platform has them
    try:
        i = 0
        while i < n:
            due = dues[i]
            if timer is not None:
                await timer.wait_until(due)
            else:
                delay = (due - clock()) / 1e9
                if delay > _SPIN_S:
                    await asyncio.sleep(delay)
                while clock() < due:  # a loop's timer may fire early (uvloop's are millisecond-grained): never issue early
                    await asyncio.sleep(0)
            now = clock()
            while i < n and dues[i] <= now:  # every arrival now due goes out in this turn of the loop
                tasks.append(asyncio.create_task(one(i, dues[i])))
                i += 1
            await asyncio.sleep(0)  # let them go out before waiting for the next
    finally:
        if timer is not None:
            timer.close()
    await asyncio.gather(*tasks)
    return [r for r in results if r is not None], origin, clock()


async def _closed_loop(send: Send, count: int, concurrency: int, clock: Clock,
                       progress: Progress | None, on_done: Done | None = None) -> tuple[list[object], int, int]:
    results: list[object] = []
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < count:
            i = next_i
            next_i += 1
            r = await _guarded(send, i, None, clock)
            results.append(r)
            if on_done is not None:
                on_done(i, r)
            if progress is not None:
                progress(len(results), count)

    start = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, start, clock()


def run_load(adapter: EndpointAdapter, prompts: Sequence[str], output_tokens: int, *, offsets_s: Sequence[float] | None = None,
             concurrency: int | None = None, offered_rps: float | None = None, clock: Clock = time.perf_counter_ns,
             progress: Progress | None = None, processes: int = 1) -> LoadResult:
    """Send len(prompts) requests (prompt i for request i), open-loop at offsets_s or closed-loop at concurrency.

    processes > 1 spreads the load over that many client processes: an open-loop schedule (each
    issues every processes-th arrival, from one shared start instant), or a closed loop (each runs
    its share of the workers over every processes-th request, all starting at one instant)."""
    if (offsets_s is None) == (concurrency is None):
        raise ValueError("give either offsets_s (open loop) or concurrency (closed loop)")
    if offsets_s is not None and len(offsets_s) != len(prompts):
        raise ValueError(f"{len(offsets_s)} arrival times for {len(prompts)} prompts")
    if processes > 1 and (offsets_s is not None or int(concurrency or 1) > 1):
        from hwbench.measure.endpoint_spread import run_spread

        return run_spread(adapter, prompts, output_tokens, offsets_s, processes, offered_rps=offered_rps, progress=progress,
                          concurrency=concurrency)

    box: dict[str, float] = {}

    async def main() -> tuple[list[object], int, int]:
        async with adapter:  # the pool (and the HTTP library's import) is set up before the window
            async def send(i: int, scheduled: int | None) -> object:
                return await adapter.send(prompts[i], output_tokens, clock, scheduled)

            box["cpu0"], box["wall0"] = time.process_time(), time.perf_counter()
            try:
                if offsets_s is not None:
                    return await _open_loop(send, offsets_s, clock, progress)
                return await _closed_loop(send, len(prompts), int(concurrency or 1), clock, progress)
            finally:
                box["cpu1"], box["wall1"] = time.process_time(), time.perf_counter()

    with gc_paused():
        sent, start, end = run_async(main)  # type: ignore[misc]
    cpu_pct = 100.0 * (box["cpu1"] - box["cpu0"]) / max(box["wall1"] - box["wall0"], 1e-9)
    timings = settle_all(adapter, sent, clock)  # outside the window: parsing is not the client's load
    lag = lag_ms_of(timings)
    return LoadResult(timings=timings, wall_s=(end - start) / 1e9, mode="open-loop" if offsets_s is not None else "closed-loop",
                      offered_rps=offered_rps, concurrency=concurrency, client_cpu_pct=cpu_pct, lag_ms=lag,
                      client_cpu_pct_per_process=[cpu_pct], lag_p99_ms_per_process=[_p99(lag)], event_loop=loop_factory()[1])


def lag_ms_of(timings: Sequence[TokenTiming]) -> np.ndarray:
    """Each open-loop request's scheduling lag, ms (requests the client never issued have none)."""
    return np.array([t.schedule_lag_ns / 1e6 for t in timings if t.schedule_lag_ns is not None
                     and not (t.error or "").startswith(WORKER_FAILED)], dtype=np.float64)


WORKER_FAILED = "client worker"  # the prefix of the reason given to requests a failed client process never reported


def _p99(values: np.ndarray) -> float | None:
    return float(np.percentile(values, 99)) if len(values) else None
