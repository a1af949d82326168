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

All of it runs on one asyncio loop in this process; the client's own CPU use is measured too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hwbench.adapter.endpoint import Clock, EndpointAdapter
from hwbench.adapter.tokens import TokenTiming

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
            return (f"client scheduling lag p99 {p99:.2f} ms exceeds {bound:.2f} ms: the load generator fell "
                    f"behind its schedule (client CPU {self.client_cpu_pct:.0f}% of a core)")
        return None


async def _open_loop(send: Callable[[int, int | None], Awaitable[TokenTiming]], offsets_s: Sequence[float],
                     clock: Clock, progress: Progress | None) -> tuple[list[TokenTiming], int, int]:
    n = len(offsets_s)
    results: list[TokenTiming | None] = [None] * n
    finished = 0

    async def one(i: int, scheduled: int) -> None:
        nonlocal finished
        results[i] = await send(i, scheduled)
        finished += 1
        if progress is not None:
            progress(finished, n)

    tasks = []
    origin = clock() + 1_000_000  # 1 ms lead: the first request is not late by construction
    for i, off in enumerate(offsets_s):
        due = origin + int(off * 1e9)
        delay = (due - clock()) / 1e9
        if delay > _SPIN_S:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
        if delay <= 0:
            await asyncio.sleep(0)  # let the late ones go out before issuing more
    await asyncio.gather(*tasks)
    return [r for r in results if r is not None], origin, clock()


async def _closed_loop(send: Callable[[int, int | None], Awaitable[TokenTiming]], count: int, concurrency: int,
                       clock: Clock, progress: Progress | None) -> tuple[list[TokenTiming], int, int]:
    results: list[TokenTiming] = []
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < count:
            i = next_i
            next_i += 1
            results.append(await send(i, None))
            if progress is not None:
                progress(len(results), count)

    start = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, start, clock()


def run_load(adapter: EndpointAdapter, prompts: Sequence[str], output_tokens: int, *, offsets_s: Sequence[float] | None = None,
             concurrency: int | None = None, offered_rps: float | None = None, clock: Clock = time.perf_counter_ns,
             progress: Progress | None = None) -> LoadResult:
    """Send len(prompts) requests (prompt i for request i), open-loop at offsets_s or closed-loop at concurrency."""
    if (offsets_s is None) == (concurrency is None):
        raise ValueError("give either offsets_s (open loop) or concurrency (closed loop)")
    if offsets_s is not None and len(offsets_s) != len(prompts):
        raise ValueError(f"{len(offsets_s)} arrival times for {len(prompts)} prompts")

    async def main() -> tuple[list[TokenTiming], int, int]:
        async with adapter:
            async def send(i: int, scheduled: int | None) -> TokenTiming:
                return await adapter.request(prompts[i], output_tokens, clock, scheduled)

            if offsets_s is not None:
                return await _open_loop(send, offsets_s, clock, progress)
            return await _closed_loop(send, len(prompts), int(concurrency or 1), clock, progress)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    timings, start, end = asyncio.run(main())
    cpu_pct = 100.0 * (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    lag = np.array([t.schedule_lag_ns / 1e6 for t in timings if t.schedule_lag_ns is not None], dtype=np.float64)
    return LoadResult(timings=timings, wall_s=(end - start) / 1e9, mode="open-loop" if offsets_s is not None else "closed-loop",
                      offered_rps=offered_rps, concurrency=concurrency, client_cpu_pct=cpu_pct, lag_ms=lag)
