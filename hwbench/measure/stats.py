"""Latency statistics and validity, after pyperf and MLPerf LoadGen.

Percentiles use numpy's default (linear interpolation). Confidence intervals for
quantiles are distribution-free: for a continuous latency distribution the number
of samples at or below the true q-quantile is Binomial(n, q), so the order
statistics whose ranks bracket the middle 95% of that binomial cover the true
quantile at least 95% of the time, whatever the shape (the interval that
scipy.stats.quantile_test(...).confidence_interval() gives; tests/test_stats.py
and benchmarks/ci_coverage.py measure the coverage by simulation). No resampling,
so the same data always give the same interval.

A bound needs a rank inside the sample: the upper bound of p99 needs P(all n
samples below the p99) = 0.99^n <= 2.5%, i.e. n >= 368. Below that the bound is
OPEN (None in the record, never the maximum), and the percentile is listed in
`unresolved_percentiles`. min_samples_for_interval() gives that n for any quantile
(LoadGen's early-stopping idea: how many samples before a p99 bound can be claimed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binom

from hwbench.measure.settings import MeasureSettings

CONFIDENCE = 0.95  # two-sided, for every interval hwbench reports

PERCENTILES: dict[str, float] = {
    "latency_p50_ms": 50.0,
    "latency_p90_ms": 90.0,
    "latency_p95_ms": 95.0,
    "latency_p99_ms": 99.0,
    "latency_p999_ms": 99.9,
}
# the names unresolved_percentiles uses, in the order of PERCENTILES
PERCENTILE_LABELS: dict[str, str] = {
    "latency_p50_ms": "p50", "latency_p90_ms": "p90", "latency_p95_ms": "p95",
    "latency_p99_ms": "p99", "latency_p999_ms": "p99.9",
}


def quantile_ci_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """0-based ranks, in a sorted sample of n, of the two-sided interval's bounds for the q-quantile.

    With B ~ Binomial(n, q): the lower bound is x[ppf(alpha) - 1], the upper x[isf(alpha)]
    (alpha = (1 - confidence) / 2), so that P(lower <= true quantile <= upper) >= confidence.
    A rank outside the sample is None: that side of the interval is open.
    """
    if n <= 0:
        return (None, None)
    alpha = (1.0 - confidence) / 2.0
    lo = int(binom.ppf(alpha, n, q)) - 1
    hi = int(binom.isf(alpha, n, q))
    return (lo if lo >= 0 else None, hi if hi < n else None)


def min_samples_for_interval(q: float, confidence: float = CONFIDENCE) -> int:
    """The smallest n at which the q-quantile's two-sided interval has both bounds (p99: 368)."""
    alpha = (1.0 - confidence) / 2.0
    # upper bound closes once q^n <= alpha, lower once (1-q)^n < alpha; then step to the exact n
    n = max(1, math.ceil(max(math.log(alpha) / math.log(q), math.log(alpha) / math.log(1.0 - q))))

    def closed(m: int) -> bool:
        lo, hi = quantile_ci_ranks(m, q, confidence)
        return lo is not None and hi is not None

    while n > 1 and closed(n - 1):
        n -= 1
    while not closed(n):
        n += 1
    return n


def quantile_ci(sorted_values: np.ndarray, q: float, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The distribution-free interval for the q-quantile (0 < q < 1) of a sorted sample; None where open."""
    lo, hi = quantile_ci_ranks(len(sorted_values), q, confidence)
    return (None if lo is None else float(sorted_values[lo]), None if hi is None else float(sorted_values[hi]))


def p50_ci_rel_halfwidth(values: np.ndarray, confidence: float = CONFIDENCE) -> float | None:
    """(high - low) / 2 / median of the p50 interval of an UNSORTED sample; None when a bound is open.

    Uses np.partition (linear time, leaves `values` untouched): cheap enough for the
    profiler's stopping rule. The median is numpy's (the mean of the two middle values).
    """
    n = len(values)
    lo, hi = quantile_ci_ranks(n, 0.5, confidence)
    if lo is None or hi is None:
        return None
    mid_lo, mid_hi = (n - 1) // 2, n // 2
    part = np.partition(values, sorted({lo, mid_lo, mid_hi, hi}))
    median = (float(part[mid_lo]) + float(part[mid_hi])) / 2.0
    if median <= 0:
        return None
    return (float(part[hi]) - float(part[lo])) / 2.0 / median


def unresolved_percentiles(n: int, confidence: float = CONFIDENCE) -> list[str]:
    """The reported percentiles whose two-sided interval has an open bound at n samples."""
    out = []
    for key, pct in PERCENTILES.items():
        lo, hi = quantile_ci_ranks(n, pct / 100.0, confidence)
        if lo is None or hi is None:
            out.append(PERCENTILE_LABELS[key])
    return out


# A point cut by the time cap before min_iters is kept valid (flagged, with its unresolved
# percentiles) only while its p50 is still pinned: a closed 95% interval within +-5%.
CAPPED_MAX_P50_REL_HALFWIDTH = 0.05
CAP_WARNING_PREFIX = "time cap: "  # warnings about the samples start so (hwbench.measure.repeats recomputes them on the pool)


def summarize(
    samples_ns: np.ndarray,
    batch_size: int,
    wall_s: float,
    completed: int,
    settings: MeasureSettings,
    capped: bool = False,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """Statistics of one trial's raw latencies, in record column names, plus validity.

    `completed` batches finished in `wall_s` seconds of the timed window. `stop_reason`
    (hwbench.measure.profiler.STOP_REASONS) says why the loop stopped: "iteration-cap" (a
    trivially fast call) excuses a window shorter than the minimum duration, and
    "time-cap" before min_iters keeps the point valid with a warning and its unresolved
    percentiles (invalid when its p50 interval is open or wider than +-5%). Without a stop_reason,
    `capped` (the loop stopped at a cap) excuses the short window, as before.
    """
    n = int(len(samples_ns))
    out: dict[str, Any] = {"n_samples": n, "duration_s": float(wall_s), "stop_reason": stop_reason,
                           "unresolved_percentiles": unresolved_percentiles(n), "latency_p50_ci_rel_halfwidth": None}
    reasons: list[str] = []
    if n == 0:
        out.update({"valid": False, "invalid_reasons": ["no samples"]})
        return out
    ms = np.sort(np.asarray(samples_ns, dtype=np.float64)) / 1e6
    values = np.percentile(ms, list(PERCENTILES.values()))
    out.update({name: float(v) for name, v in zip(PERCENTILES, values)})
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if n > 1 else 0.0
    cv = std / mean if mean > 0 else math.nan
    out.update({"latency_mean_ms": mean, "latency_std_ms": std, "latency_cv": cv})
    lo, hi = quantile_ci(ms, 0.50)
    out.update({"latency_p50_ci_low_ms": lo, "latency_p50_ci_high_ms": hi})
    p50 = out["latency_p50_ms"]
    if lo is not None and hi is not None and p50 > 0:
        out["latency_p50_ci_rel_halfwidth"] = (hi - lo) / 2.0 / p50
    lo, hi = quantile_ci(ms, 0.99)
    out.update({"latency_p99_ci_low_ms": lo, "latency_p99_ci_high_ms": hi})
    out["throughput_sps"] = batch_size * completed / wall_s if wall_s > 0 else None

    warnings: list[str] = []
    if stop_reason == "time-cap" and n < settings.min_iters:
        # The cap bounds a slow point's cost: it is kept for what it resolves (p50, throughput),
        # with its unresolved percentiles listed, while its p50 interval stays tight enough.
        cap = f"stopped by the {settings.max_duration_s:g} s time cap at {n} samples (< {settings.min_iters})"
        rel = out["latency_p50_ci_rel_halfwidth"]
        if rel is None or rel > CAPPED_MAX_P50_REL_HALFWIDTH:
            width = "open" if rel is None else f"+-{rel:.1%}"
            reasons.append(f"{cap}: its p50 interval ({width}) is wider than +-{CAPPED_MAX_P50_REL_HALFWIDTH:.0%}")
        else:
            unresolved = ", ".join(out["unresolved_percentiles"]) or "nothing"
            warnings.append(f"{CAP_WARNING_PREFIX}{cap}: {unresolved} unresolved; --max-duration-s buys more samples")
    elif n < settings.min_samples_for_p99:
        reasons.append(f"only {n} samples (< {settings.min_samples_for_p99}): p99 is about the maximum "
                       f"(its two-sided 95% interval needs {min_samples_for_interval(0.99)} samples)")
    median = float(np.median(ms))
    robust_cv = 1.4826 * float(np.median(np.abs(ms - median))) / median if median > 0 else math.nan
    out["latency_robust_cv"] = robust_cv
    # CV (std/mean) is what users know, but one preempted call in 10^5 dominates it on a
    # microsecond workload. With many samples, a tight median spread (MAD) keeps the point
    # valid: its tail is still in p99/p99.9 for everyone to see.
    outliers_only = n >= 1000 and math.isfinite(robust_cv) and robust_cv <= settings.max_cv
    if math.isfinite(cv) and cv > settings.max_cv and not outliers_only:
        reasons.append(f"unstable: CV {cv:.1%} above {settings.max_cv:.0%}")
    excused = stop_reason == "iteration-cap" if stop_reason is not None else capped
    if wall_s < settings.min_duration_s and not excused:
        reasons.append(f"timed window {wall_s:.2f} s below the minimum {settings.min_duration_s:g} s")
    out["valid"] = not reasons
    out["invalid_reasons"] = reasons
    out["warnings"] = warnings
    return out
