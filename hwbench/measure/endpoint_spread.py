"""One open-loop schedule spread over several client processes, when one process cannot keep it.

A single asyncio process is CPU-bound at some request rate (on this project's 2-core host,
about two thousand streamed requests/s). Above that it issues requests late, and the lag
rule (hwbench.measure.endpoint_load) rightly voids the run. Spreading the load keeps the one
seeded schedule: process k of N issues arrivals k, k+N, k+2N, ... at exactly the offsets the
single process would use, all from one start instant. The stamps are comparable across
processes because perf_counter is CLOCK_MONOTONIC on Linux, one clock for the whole machine.

    parent                              worker k (spawned)
    start N workers  ------------->     open its connection pool, send "ready"
    origin = now + lead  ---------->    issue its arrivals at origin + offset, on time
    (its log file)  <--------------     each finished request, appended as it ends
    merge by arrival index  <-------    "done": its CPU seconds, its end stamp

Each worker appends every request to a log file the moment it ends (hwbench.measure.result_log),
unparsed; the parent settles them all once the window is over. A worker that raises, or dies
without reporting (killed, crashed), costs only the requests it had not finished: each becomes a
failed-request record naming the worker and the reason, never a crash of the run; the ones it
finished are read back from its log. Lag and CPU are kept per process and pooled.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from hwbench.adapter.endpoint import EndpointAdapter
from hwbench.adapter.tokens import TokenTiming
from hwbench.measure.endpoint_load import (WORKER_FAILED, LoadResult, Progress, _closed_loop, _open_loop, _p99, failed_timing,
                                           gc_paused, lag_ms_of, loop_factory, run_async, settle_all)
from hwbench.measure.result_log import ResultLog, read_log

START_LEAD_NS = 20_000_000  # between the origin being sent and the first arrival: the workers must all have it
READY_TIMEOUT_S = 60.0  # a worker that cannot start (import, connect pool) within this is failed
# The automatic choice: one client process per this many offered requests/s. Measured (quiet 2-core
# host, 2026-12-01, benchmarks/http_client.py, the fake server on the same host): at 2,000 streamed
# requests/s one process used about 80% of a core, lag p99 1.65 and 5.15 ms in two runs; two processes
# 103-113% of a core in all, 4.77 and 4.41 ms. One process holds that rate at the edge of the 5 ms bar;
# with the server on the host (server_local) the second CPU is the server's anyway.
RPS_PER_PROCESS = 2000.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def server_is_local(url: str) -> bool:
    """Does the endpoint run on this host (a loopback address), so that it competes with the client for CPU?"""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def auto_processes(rate_rps: float | None, cpus: int | None = None, server_local: bool = False) -> int:
    """How many client processes an open loop at rate_rps gets by default: one per RPS_PER_PROCESS
    requests/s, at most one per CPU this process may use (one fewer when the server runs on this
    host too: it needs a CPU of its own), and 1 for a closed loop."""
    if not rate_rps or rate_rps <= 0:
        return 1
    import math

    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
    if server_local:
        cpus = int(cpus) - 1
    return max(1, min(int(cpus), math.ceil(rate_rps / RPS_PER_PROCESS)))


def shares(count: int, processes: int) -> list[list[int]]:
    """The arrival indices each process issues: every processes-th one, process k from index k."""
    return [list(range(k, count, processes)) for k in range(processes)]


def _worker(conn: Any, adapter: EndpointAdapter, prompts: list[str], offsets_s: list[float] | None, output_tokens: int,
            log_path: str, concurrency: int = 0) -> None:
    """In a client process: open the pool, say ready, wait for the origin, keep the schedule, log each
    finished request the moment it ends (so a later death cannot lose it), report."""
    clock = time.perf_counter_ns
    box: dict[str, float] = {}
    log = ResultLog(log_path)

    async def main() -> tuple[list[object], int, int]:
        async with adapter:
            conn.send(("ready",))
            if not conn.poll(READY_TIMEOUT_S * 2):
                raise RuntimeError("no start instant from the parent")
            origin = int(conn.recv())
            box["cpu0"], box["wall0"] = time.process_time(), time.perf_counter()

            async def send(i: int, scheduled: int | None) -> object:
                return await adapter.send(prompts[i], output_tokens, clock, scheduled)

            if offsets_s is not None:
                return await _open_loop(send, offsets_s, clock, None, origin=origin, on_done=log.append)
            await asyncio.sleep(max(0.0, (origin - clock()) / 1e9))  # every process's workers start together
            return await _closed_loop(send, len(prompts), concurrency, clock, None, on_done=log.append)

    try:
        with gc_paused():
            sent, _, end = run_async(main)  # type: ignore[misc]
        cpu_s = time.process_time() - box["cpu0"]
        wall_s = time.perf_counter() - box["wall0"]
        conn.send(("done", len(sent), end, cpu_s, wall_s))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which records it per request
        try:
            conn.send(("error", f"{type(e).__name__}: {str(e)[:200]}"))
        except (OSError, ValueError):
            pass
    finally:
        log.close()
        conn.close()


def _receive(conn: Any, proc: Any, timeout_s: float | None) -> tuple[Any, ...]:
    """The worker's next message, or ("error", why) when it died, hung or broke the pipe."""
    try:
        if timeout_s is not None and not conn.poll(timeout_s):
            return ("error", f"did not report within {timeout_s:g} s")
        return tuple(conn.recv())
    except (EOFError, OSError):
        proc.join(5)
        return ("error", f"exited (code {proc.exitcode}) without reporting")


def _spread(adapter: EndpointAdapter, prompts: Sequence[str], output_tokens: int, offsets_s: Sequence[float] | None,
            processes: int, parts: list[list[int]], log_dir: str, concurrency: int) -> tuple[list[TokenTiming], int, list[int], list[float],
                                                                          list[float | None], float]:
    """Start the workers, give them one origin, wait for them, then settle what each logged."""
    n = len(prompts)
    ctx = mp.get_context("spawn")  # safe beside threads (a fake server, a progress bar); costs ~0.5 s a worker
    workers = []
    logs = [os.path.join(log_dir, f"worker-{k}.log") for k in range(processes)]
    for k, idx in enumerate(parts):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_worker, name=f"hwbench-client-{k}", daemon=True,
                           args=(child_end, adapter, [prompts[i] for i in idx],
                                 None if offsets_s is None else [float(offsets_s[i]) for i in idx], output_tokens,
                                 logs[k], concurrency // processes + (k < concurrency % processes)))
        proc.start()
        child_end.close()
        workers.append((proc, parent_end))
    failed: dict[int, str] = {}
    for k, (proc, conn) in enumerate(workers):
        msg = _receive(conn, proc, READY_TIMEOUT_S)
        if msg[0] != "ready":
            failed[k] = f"{WORKER_FAILED} {k} of {processes} failed before its first request: {msg[-1]}"
    origin = time.perf_counter_ns() + START_LEAD_NS
    for k, (proc, conn) in enumerate(workers):
        if k not in failed:
            try:
                conn.send(origin)
            except OSError as e:
                failed[k] = f"{WORKER_FAILED} {k} of {processes} failed before its first request: {e}"
    reports = []
    for k, (proc, conn) in enumerate(workers):
        reports.append(("error", "") if k in failed else _receive(conn, proc, None))
        conn.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    # the window is over: read every worker's log (whatever a dead one finished is there) and settle it
    results: list[TokenTiming | None] = [None] * n
    ends, cpu_pct, lag_p99, cpu_s_total = [origin], [], [], 0.0
    for k, msg in enumerate(reports):
        logged = read_log(logs[k])
        mine = settle_all(adapter, [sent for _, sent in logged])
        for (j, _), t in zip(logged, mine):
            results[parts[k][j]] = t
        if msg[0] == "done":
            _, _, end, cpu_s, wall_s = msg
            ends.append(int(end))
            cpu_s_total += float(cpu_s)
            cpu_pct.append(100.0 * float(cpu_s) / max(float(wall_s), 1e-9))
        else:
            failed.setdefault(k, f"{WORKER_FAILED} {k} of {processes} failed: {msg[-1]}")
            cpu_pct.append(float("nan"))
            ends.extend(t.token_ns[-1] if t.token_ns else t.start_ns for t in mine)
        lag_p99.append(_p99(lag_ms_of(mine)))
    for k, idx in enumerate(parts):
        why = failed.get(k, f"{WORKER_FAILED} {k} of {processes} reported done without logging it")
        for i in idx:
            if results[i] is None:  # unfinished when its process failed: the only requests a failure costs
                due = origin + int(float(offsets_s[i]) * 1e9) if offsets_s is not None else None
                results[i] = failed_timing(why, due, due or origin)
    return results, origin, ends, cpu_pct, lag_p99, cpu_s_total  # type: ignore[return-value]


def run_spread(adapter: EndpointAdapter, prompts: Sequence[str], output_tokens: int, offsets_s: Sequence[float] | None,
               processes: int, *, offered_rps: float | None = None, progress: Progress | None = None,
               concurrency: int | None = None) -> LoadResult:
    """run_load's open loop (offsets_s) or closed loop (offsets_s None, concurrency workers in all) over
    `processes` spawned client processes (the adapter is pickled to each)."""
    n = len(prompts)
    conc = int(concurrency or 0)
    processes = max(1, min(int(processes), n, conc if offsets_s is None else n))
    parts = shares(n, processes)
    log_dir = tempfile.mkdtemp(prefix="hwbench-client-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    try:
        results, origin, ends, cpu_pct, lag_p99, cpu_s_total = _spread(adapter, prompts, output_tokens, offsets_s,
                                                                       processes, parts, log_dir, conc)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    timings = [t for t in results if t is not None]
    wall_s = (max(ends) - origin) / 1e9
    if progress is not None:
        progress(n, n)
    pooled = 100.0 * cpu_s_total / max(wall_s, 1e-9)
    return LoadResult(timings=timings, wall_s=wall_s, mode="open-loop" if offsets_s is not None else "closed-loop",
                      offered_rps=offered_rps, concurrency=None if offsets_s is not None else conc,
                      client_cpu_pct=pooled, lag_ms=lag_ms_of(timings), processes=processes,
                      client_cpu_pct_per_process=cpu_pct, lag_p99_ms_per_process=lag_p99, event_loop=loop_factory()[1])
