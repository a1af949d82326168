"""Modelled capacity at a p99 SLO: the highest rate a queue of measured service times sustains.

Without a measured server run, the capacity of one instance is MODELLED: Poisson arrivals
at a trial rate are replayed through c FIFO servers (hwbench.analyse.queueing.replay_fifo's
recursion, here vectorised for one server and on Python floats for several; tested equal) whose service times are resampled from the measured ones, and the rate is bisected for the
highest whose replayed p99 (wait + service) meets the SLO. The rate is capped at
`max_utilisation` x the service rate (c / mean service time): a queue at 100% utilisation
grows without bound, and a model that is right on average is wrong in the tail near it.

Every bisection step replays the SAME sample path (one seeded draw of unit-rate arrival
gaps and resampling indices, scaled to the rate), so the p99 is monotone in the rate and
the search is exact for that path and repeatable. The result is a model, never a
measurement: callers label it `modelled: <model name>`.

An M/G/c cross-check (Allen-Cunneen) is given too: the mean wait is Erlang C's, scaled by
(ca^2 + cs^2) / 2, and the wait's tail is taken as exponential beyond the probability of
waiting. It is a closed form, cheap, and cruder than the replay.
"""

from __future__ import annotations

import heapq
import math
from functools import lru_cache

import numpy as np

from hwbench.errors import UsageError

DEFAULT_MAX_UTILISATION = 0.9  # never 1.0: a full queue has no bounded p99
REPLAY_MODEL = "FIFO replay of the measured service times, Poisson arrivals"
ALLEN_CUNNEEN_MODEL = "M/G/c Allen-Cunneen, exponential wait tail"
N_REQUESTS_ONE_SERVER = 50_000  # the one-server replay is vectorised; several servers loop in Python
N_REQUESTS_SERVERS = 20_000
WARM_UP = 1_000  # the replay starts empty: the first requests see no queue and are not counted
BISECTION_STEPS = 40
SKETCH_SIZE = 200


def service_sketch_s(samples_s: np.ndarray, size: int = SKETCH_SIZE) -> np.ndarray:
    """`size` quantiles at the mid-points of equal-probability bins: a compact stand-in for the samples.

    Resampling the sketch uniformly is resampling the distribution with each bin's mass 1/size;
    the frontier export carries it so that a scheduler replays what the CLI replays.
    """
    x = np.asarray(samples_s, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return x
    return np.quantile(x, (np.arange(size) + 0.5) / size)


@lru_cache(maxsize=8)
def _unit_path(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times of a unit-rate Poisson process and uniform resampling draws, read-only."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0, n))
    picks = rng.random(n)
    arrivals.setflags(write=False)
    picks.setflags(write=False)
    return arrivals, picks


def _lindley_sojourn(arrivals: np.ndarray, service: np.ndarray) -> np.ndarray:
    """One FIFO server's wait + service per request, vectorised.

    With C_i the running sum of S[j-1] - A[j] (service minus gap), Lindley's recursion solves
    to W_i = C_i - min(0, min_{k<=i} C_k); it equals replay_fifo(servers=1) to rounding.
    """
    steps = np.empty(len(arrivals))
    steps[0] = 0.0
    steps[1:] = service[:-1] - np.diff(arrivals)
    c = np.cumsum(steps)
    wait = c - np.minimum(np.minimum.accumulate(c), 0.0)
    return wait + service


def _fifo_sojourn(arrivals: np.ndarray, service: np.ndarray, servers: int) -> np.ndarray:
    """c FIFO servers' wait + service per request: replay_fifo's loop on Python floats (several times faster)."""
    free = [float("-inf")] * servers
    out = []
    for a, s in zip(arrivals.tolist(), service.tolist()):
        start = a if a > free[0] else free[0]
        heapq.heapreplace(free, start + s)
        out.append(start + s - a)
    return np.asarray(out)


def _check(service_s: np.ndarray, servers: int) -> np.ndarray:
    s = np.asarray(service_s, dtype=np.float64).ravel()
    if len(s) == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise UsageError("service times must be a non-empty array of finite times above 0 s")
    if int(servers) != servers or servers < 1:
        raise UsageError(f"servers must be a whole number >= 1, got {servers}")
    return s


def modelled_p99_s(service_s: np.ndarray, rate_rps: float, *, servers: int = 1, seed: int = 0) -> float:
    """The replayed p99 latency (seconds, wait + service) of Poisson arrivals at `rate_rps`."""
    s = _check(service_s, servers)
    if not (math.isfinite(rate_rps) and rate_rps > 0):
        raise UsageError(f"rate must be a finite number of requests/s above 0, got {rate_rps}")
    return _p99_at(s, rate_rps, servers, seed)


def _p99_at(service: np.ndarray, rate_rps: float, servers: int, seed: int) -> float:
    n = N_REQUESTS_ONE_SERVER if servers == 1 else N_REQUESTS_SERVERS
    unit_arrivals, picks = _unit_path(n, seed)
    drawn = service[np.minimum((picks * len(service)).astype(np.int64), len(service) - 1)]
    arrivals = unit_arrivals / rate_rps
    sojourn = _lindley_sojourn(arrivals, drawn) if servers == 1 else _fifo_sojourn(arrivals, drawn, servers)
    return float(np.quantile(sojourn[WARM_UP:], 0.99))


def _check_limits(slo_p99_ms: float, max_utilisation: float) -> None:
    if not (math.isfinite(slo_p99_ms) and slo_p99_ms > 0):
        raise UsageError(f"p99 SLO must be a finite latency above 0 ms, got {slo_p99_ms}")
    if not (0 < max_utilisation < 1):
        raise UsageError(f"the utilisation limit must be above 0 and below 1 (a full queue has no p99), got {max_utilisation}")


def modelled_capacity_rps(service_s: np.ndarray, slo_p99_ms: float, *, servers: int = 1,
                          max_utilisation: float = DEFAULT_MAX_UTILISATION, seed: int = 0) -> tuple[float, str]:
    """The highest per-instance rate (requests/s) whose replayed p99 meets the SLO, and a note naming the model.

    0.0 when even an unloaded request's p99 (the service p99) misses the SLO; at most
    `max_utilisation` x servers / mean service time, and the note says when that cap binds.
    """
    s = _check(service_s, servers)
    _check_limits(slo_p99_ms, max_utilisation)
    slo_s = slo_p99_ms / 1e3
    cap = max_utilisation * servers / float(s.mean())
    what = (f"{REPLAY_MODEL}, {servers} server{'s' if servers > 1 else ''}, {len(s)} service times, "
            f"seed {seed}")
    floor = float(np.quantile(s, 0.99))
    if floor > slo_s:
        return 0.0, f"{what}: the service p99 alone ({floor * 1e3:.3g} ms) misses the SLO"
    if _p99_at(s, cap, servers, seed) <= slo_s:
        return cap, f"{what}: capped at {max_utilisation:.0%} utilisation"
    lo, hi = 0.0, cap  # p99(lo) <= SLO < p99(hi), lo = 0 standing for "no load"
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        if _p99_at(s, mid, servers, seed) <= slo_s:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-3 * hi:
            break
    return lo, f"{what}: p99 meets the SLO up to {lo / cap * max_utilisation:.0%} utilisation"


# --- the M/G/c cross-check ------------------------------------------------------------------

def erlang_c(servers: int, offered_erlangs: float) -> float:
    """Erlang C: the probability that an arrival waits in M/M/c with offered load a = lambda / mu < c."""
    c, a = servers, offered_erlangs
    if a >= c:
        return 1.0
    term, total = 1.0, 1.0  # a^k / k!, summed from k = 0 to c - 1
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c * c / (c - a)  # a^c / c! x c / (c - a)
    return last / (total + last)


def allen_cunneen_p99_s(service_s: np.ndarray, rate_rps: float, *, servers: int = 1, arrival_scv: float = 1.0) -> float:
    """Approximate p99 latency: an exponential wait tail with Allen-Cunneen's mean, plus the service p99."""
    s = _check(service_s, servers)
    mean = float(s.mean())
    scv = float(s.var() / mean**2)
    a = rate_rps * mean
    if a >= servers:
        return math.inf
    p_wait = erlang_c(servers, a)
    mean_wait = p_wait / (servers / mean - rate_rps) * (arrival_scv + scv) / 2
    # P(W > t) = p_wait exp(-t p_wait / mean_wait): the conditional wait is exponential with the mean's scale
    wait_p99 = 0.0 if p_wait <= 0.01 else mean_wait / p_wait * math.log(p_wait / 0.01)
    return wait_p99 + float(np.quantile(s, 0.99))


def allen_cunneen_capacity_rps(service_s: np.ndarray, slo_p99_ms: float, *, servers: int = 1,
                               max_utilisation: float = DEFAULT_MAX_UTILISATION) -> tuple[float, str]:
    """The cross-check's capacity: the highest rate whose approximate p99 meets the SLO, same cap."""
    s = _check(service_s, servers)
    _check_limits(slo_p99_ms, max_utilisation)
    slo_s = slo_p99_ms / 1e3
    cap = max_utilisation * servers / float(s.mean())
    if allen_cunneen_p99_s(s, cap * 1e-9, servers=servers) > slo_s:
        return 0.0, f"{ALLEN_CUNNEEN_MODEL}: the service p99 alone misses the SLO"
    if allen_cunneen_p99_s(s, cap, servers=servers) <= slo_s:
        return cap, f"{ALLEN_CUNNEEN_MODEL}: capped at {max_utilisation:.0%} utilisation"
    lo, hi = 0.0, cap
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if allen_cunneen_p99_s(s, mid, servers=servers) <= slo_s else (lo, mid)
    return lo, ALLEN_CUNNEEN_MODEL
