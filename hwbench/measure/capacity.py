"""Capacity at a p99 SLO: the highest offered rate whose measured p99 meets the SLO, by search.

The p99 of an open-loop queue rises with the offered rate, slowly and then without bound near
saturation, so "meets the SLO" is (up to noise) monotone in the rate. The search brackets first
(doubling or halving from a first guess until one rate meets the SLO and another fails), then
narrows the bracket until hi / lo <= 1 + rel_tol or the budget of rate points is spent. Each
narrowing step interpolates log p99 linearly in the rate between the bracket's ends (p99 grows
about exponentially in the rate below saturation), kept to the bracket's middle 60% so it never
does worse than a bisection by much; without both p99s it bisects geometrically.

Going down stops early when a failing rate's own service time (the median of its batches of one) is
above the SLO: then more than half of all requests exceed it at any rate, queueing only adds. The capacity is the bracket's low end: a rate that was measured to meet the SLO, never an
interpolated one. Every rate tried is kept (the rate-latency curve).

The search's points are short (capped at the server settings' max_duration_s) so that it takes
minutes; at low rates a short point holds too few queries to be valid. As LoadGen's
FindPeakPerformance mode ends its search with one full performance run at the rate found,
confirm_capacity re-measures the found rate with a full-length schedule and keeps it only when
that point is valid and meets the SLO, stepping down a few times when it does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RatePoint:
    """One measured rate: did it meet the SLO (valid, nothing lost, p99 within it), and its p99."""

    rate_rps: float
    meets: bool
    p99_ms: float | None = None
    service_floor_ms: float | None = None  # batches of one's median service: above the SLO, no rate can meet it
    valid: bool = True  # the point met every validity rule (duration, queries, nothing lost, the issuer on time)
    why_invalid: str = ""  # the point is too short or holds too few queries (not a failure of the rate itself)


@dataclass
class Capacity:
    """The search's outcome: every point in the order tried, and the bracket."""

    slo_p99_ms: float
    points: list[RatePoint] = field(default_factory=list)
    lo_rps: float | None = None  # the highest rate measured to meet the SLO
    hi_rps: float | None = None  # the lowest rate above it measured to fail (None: none failed)
    note: str = ""  # why the search stopped short, when it did
    rel_tol: float = 0.1

    @property
    def capacity_rps(self) -> float | None:
        return self.lo_rps

    @property
    def converged(self) -> bool:
        return self.lo_rps is not None and self.hi_rps is not None and self.hi_rps / self.lo_rps <= 1.0 + self.rel_tol


def bracket_of(points: list[RatePoint]) -> tuple[float | None, float | None]:
    """(highest rate that met, lowest failing rate above it) of any set of measured points."""
    met = [p.rate_rps for p in points if p.meets]
    lo = max(met) if met else None
    failed = [p.rate_rps for p in points if not p.meets and (lo is None or p.rate_rps > lo)]
    return lo, (min(failed) if failed else None)


def _next_rate(lo: RatePoint, hi: RatePoint, slo_ms: float) -> float:
    """Where to measure next inside (lo, hi): the log-p99 interpolation at the SLO, kept to the middle 60%."""
    a, b = lo.rate_rps, hi.rate_rps
    guess = math.sqrt(a * b)
    if lo.p99_ms and hi.p99_ms and lo.p99_ms > 0 and hi.p99_ms > lo.p99_ms and math.isfinite(hi.p99_ms):
        y0, y1 = math.log(lo.p99_ms), math.log(hi.p99_ms)
        guess = a + (math.log(slo_ms) - y0) / (y1 - y0) * (b - a)
    return min(max(guess, a + 0.2 * (b - a)), a + 0.8 * (b - a))


def search_capacity(measure: Callable[[float], RatePoint], slo_p99_ms: float, start_rps: float, max_rates: int = 8,
                    rel_tol: float = 0.1, max_rate_rps: float = 1e6, min_rate_rps: float = 1e-3) -> Capacity:
    """Search for the highest rate meeting `slo_p99_ms`, measuring at most `max_rates` rates."""
    if max_rates < 1:
        raise ValueError(f"max_rates must be at least 1, got {max_rates}")
    out = Capacity(slo_p99_ms, rel_tol=rel_tol)
    rate = min(max(start_rps, min_rate_rps), max_rate_rps)

    def take(r: float) -> RatePoint:
        point = measure(r)
        out.points.append(point)
        return point

    first = take(rate)
    lo = first if first.meets else None
    hi = None if first.meets else first
    while len(out.points) < max_rates and (lo is None or hi is None):  # bracket
        if lo is None:
            rate = hi.rate_rps / 2.0
            if hi.service_floor_ms is not None and hi.service_floor_ms > slo_p99_ms:
                out.note = (f"the batch-1 service time alone (median {hi.service_floor_ms:.4g} ms at {hi.rate_rps:.4g} req/s) "
                            f"exceeds the {slo_p99_ms:g} ms SLO: no lower rate can meet it")
                break
            if rate < min_rate_rps:
                out.note = f"no rate down to {hi.rate_rps:.4g} req/s met the SLO"
                break
            point = take(rate)
            lo, hi = (point, hi) if point.meets else (None, point)
        else:
            rate = lo.rate_rps * 2.0
            if rate > max_rate_rps:
                out.note = f"every rate up to {lo.rate_rps:g} req/s met the SLO"
                break
            point = take(rate)
            lo, hi = (point, None) if point.meets else (lo, point)
    while len(out.points) < max_rates and lo is not None and hi is not None and hi.rate_rps / lo.rate_rps > 1.0 + rel_tol:
        point = take(_next_rate(lo, hi, slo_p99_ms))
        lo, hi = (point, hi) if point.meets else (lo, point)
    out.lo_rps, out.hi_rps = bracket_of(out.points)  # noise may make the curve non-monotone: read all points
    if not out.note:
        if out.lo_rps is None:
            out.note = f"no rate tried met the SLO (budget of {max_rates} rates spent)"
        elif out.hi_rps is None:
            out.note = f"every rate tried met the SLO (budget of {max_rates} rates spent)"
        elif out.hi_rps / out.lo_rps > 1.0 + rel_tol:
            out.note = f"budget of {max_rates} rates spent before the bracket narrowed to {rel_tol:.0%}"
    return out


@dataclass(frozen=True)
class Confirmation:
    """What confirm_capacity concluded: the confirmed capacity (None: none), the bracket's new high end, why."""

    lo_rps: float | None
    hi_rps: float | None
    note: str
    rates_rps: tuple[float, ...] = ()  # the full-length points measured, in order


def confirm_capacity(measure_full: Callable[[float], RatePoint], lo_rps: float, hi_rps: float | None,
                     tries: int = 3, step: float = 0.85) -> Confirmation:
    """Re-measure the search's capacity `lo_rps` with full-length points; keep the first rate, from it
    downward by `step`, whose point is valid and meets the SLO.

    A full-length point that fails (its p99 over the SLO, requests lost, the issuer late) lowers the
    bracket's high end to its rate and the next try steps down. One too short or with too few
    queries (`why_invalid`: the rate is too low for the queries wanted within the cap) ends the
    confirmation: a lower rate would not cure it."""
    if tries < 1:
        raise ValueError(f"tries must be at least 1, got {tries}")
    if not 0.0 < step < 1.0:
        raise ValueError(f"step must be above 0 and below 1, got {step}")
    rate, hi, tried = lo_rps, hi_rps, []
    for _ in range(tries):
        point = measure_full(rate)
        tried.append(rate)
        if point.meets and point.valid:
            return Confirmation(rate, hi, f"capacity confirmed by a full-length point at {rate:.4g} req/s", tuple(tried))
        if point.why_invalid or point.meets:  # too short or too few queries: a lower rate would not cure it
            why = point.why_invalid or "invalid"
            return Confirmation(None, hi, f"the full-length point at {rate:.4g} req/s is invalid ({why}): no capacity "
                                          f"confirmed (the short search's {lo_rps:.4g} req/s is unconfirmed)", tuple(tried))
        hi = rate if hi is None or rate < hi else hi
        rate *= step
    return Confirmation(None, hi, f"no full-length point from {lo_rps:.4g} down to {tried[-1]:.4g} req/s met the SLO: "
                                  f"no capacity confirmed (the short search's {lo_rps:.4g} req/s did not hold)", tuple(tried))
