"""MLPerf LoadGen's early-stopping criterion: which tail-latency bound a run of n queries may claim.

LoadGen (loadgen/early_stopping.cc, MLPerf Inference rules, "Early stopping") treats each
query as a coin that lands "overlatency" (above the bound) with probability 1 - p when the
bound is the true p-quantile. Seeing at most t overlatency queries among h + t would then
have probability

    odds(h, t, p) = P(Binomial(h + t, 1 - p) <= t)  (= BetaRegularized(p, h, 1 + t)),

and a run may claim "the p-quantile is at most the bound" with confidence c once
odds(h, t, p) < 1 - c. `min_passing_queries(t)` is the smallest such h: a run with t
overlatency queries needs h + t queries in all. With none overlatency, odds = p^h, so
h = ceil(log(1 - c) / log(p)): 459 queries at p99 with 0.99 confidence.

A run's claimable bound is the smallest latency L such that the queries above L number a t
the run's size can afford (n >= min_passing_queries(t) + t): the (n - t)-th smallest latency
for the largest such t. Below 459 queries nothing can be claimed at p99 / 0.99.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.stats import binom

P99 = 0.99
CONFIDENCE = 0.99  # LoadGen's default early-stopping confidence


def overlatency_odds(h: int, t: int, p: float = P99) -> float:
    """P(at most t of h + t queries exceed the true p-quantile): the chance of a run this good by luck."""
    if h < 0 or t < 0:
        raise ValueError(f"h and t must be >= 0, got h={h}, t={t}")
    return float(binom.cdf(t, h + t, 1.0 - p))


@lru_cache(maxsize=4096)
def min_passing_queries(t: int, p: float = P99, confidence: float = CONFIDENCE) -> int:
    """The smallest h with overlatency_odds(h, t, p) < 1 - confidence (a run needs h + t queries)."""
    if not (0.0 < p < 1.0 and 0.0 < confidence < 1.0):
        raise ValueError(f"p and confidence must lie in (0, 1), got p={p}, confidence={confidence}")
    alpha = 1.0 - confidence
    lo = max(0, math.ceil(math.log(alpha) / math.log(p)) - 1)  # t = 0's exact answer, minus one: a lower bound
    hi = max(lo + 1, 2 * lo)
    while overlatency_odds(hi, t, p) >= alpha:  # bracket: the odds fall as h grows
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: odds(lo) >= alpha (or lo below every passing h), odds(hi) < alpha
        mid = (lo + hi) // 2
        if overlatency_odds(mid, t, p) < alpha:
            hi = mid
        else:
            lo = mid
    return hi if overlatency_odds(lo, t, p) >= alpha else lo


@lru_cache(maxsize=1024)
def max_overlatency(n: int, p: float = P99, confidence: float = CONFIDENCE) -> int | None:
    """The most overlatency queries a run of n queries can afford and still claim a bound; None: none can be."""
    if n < min_passing_queries(0, p, confidence):
        return None
    lo, hi = 0, max(1, int(n * (1.0 - p)) + 1)  # min_passing_queries(t) + t rises with t; t < n(1 - p) always
    while min_passing_queries(hi, p, confidence) + hi <= n:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: lo affordable, hi not
        mid = (lo + hi) // 2
        if min_passing_queries(mid, p, confidence) + mid <= n:
            lo = mid
        else:
            hi = mid
    return lo


def claimable_bound(latencies_ms: np.ndarray, unserved: int = 0, p: float = P99,
                    confidence: float = CONFIDENCE) -> tuple[float | None, int | None]:
    """(the p-quantile bound this run may claim, the overlatency count it allows); (None, None): none.

    `unserved` queries (never completed) count as above any bound."""
    n = len(latencies_ms) + unserved
    t = max_overlatency(n, p, confidence)
    if t is None or t < unserved:
        return None, None
    ordered = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    return float(ordered[n - t - 1]), t


def describe_bound(latencies_ms: np.ndarray, unserved: int = 0, p: float = P99, confidence: float = CONFIDENCE) -> str:
    """The record's p99_bound_claimed text: the bound, or why there is none."""
    n = len(latencies_ms) + unserved
    bound, t = claimable_bound(latencies_ms, unserved, p, confidence)
    label = f"p{100 * p:g}"
    if bound is None:
        need = min_passing_queries(0, p, confidence) + unserved
        why = f"{unserved} unserved" if unserved and n >= need - unserved else f"{n} queries"
        return f"none: {why}, early stopping needs at least {need} queries for a {label} bound at {confidence:g} confidence"
    return f"{label} <= {bound:.3f} ms (LoadGen early stopping, {confidence:g} confidence, {n} queries, {t} above)"
