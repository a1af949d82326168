"""Latency statistics and validity, after pyperf and MLPerf LoadGen.

Percentiles use numpy's default (linear interpolation). Confidence intervals for
p50 and p99 are 95% percentile-bootstrap intervals computed exactly: the
bootstrap distribution of an order statistic of a sorted sample is binomial
(P(X*_(k) <= x_(j)) = P(Binomial(n, j/n) >= k)), so no resampling is needed and
the interval is the same on every run. tests/test_stats.py checks it against a
resampling bootstrap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binom

from hwbench.settings import MeasureSettings

PERCENTILES: dict[str, float] = {
    "latency_p50_ms": 50.0,
    "latency_p90_ms": 90.0,
    "latency_p95_ms": 95.0,
    "latency_p99_ms": 99.0,
    "latency_p999_ms": 99.9,
}


def bootstrap_quantile_ci(sorted_values: np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact percentile-bootstrap interval for the q-quantile (0 < q < 1) of a sorted sample."""
    n = len(sorted_values)
    if n == 0:
        return (math.nan, math.nan)
    if n == 1:
        return (float(sorted_values[0]), float(sorted_values[0]))
    k = max(1, math.ceil(q * n))  # the order statistic that estimates the quantile (1-based)
    j = np.arange(1, n + 1)
    # cdf[j-1] = P(bootstrap k-th order statistic <= x_(j)) = P(Bin(n, j/n) >= k)
    cdf = binom.sf(k - 1, n, j / n)
    alpha = (1.0 - confidence) / 2.0
    lo = int(np.searchsorted(cdf, alpha, side="left"))
    hi = int(np.searchsorted(cdf, 1.0 - alpha, side="left"))
    return (float(sorted_values[min(lo, n - 1)]), float(sorted_values[min(hi, n - 1)]))


def summarize(
    samples_ns: np.ndarray,
    batch_size: int,
    wall_s: float,
    completed: int,
    settings: MeasureSettings,
    capped: bool = False,
) -> dict[str, Any]:
    """Statistics of one trial's raw latencies, in record column names, plus validity.

    `completed` batches finished in `wall_s` seconds of the timed window; `capped`
    says the loop stopped at max_iters (a trivially fast call), which excuses a
    window shorter than the minimum duration.
    """
    n = int(len(samples_ns))
    out: dict[str, Any] = {"n_samples": n, "duration_s": float(wall_s)}
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
    lo, hi = bootstrap_quantile_ci(ms, 0.50)
    out.update({"latency_p50_ci_low_ms": lo, "latency_p50_ci_high_ms": hi})
    lo, hi = bootstrap_quantile_ci(ms, 0.99)
    out.update({"latency_p99_ci_low_ms": lo, "latency_p99_ci_high_ms": hi})
    out["throughput_sps"] = batch_size * completed / wall_s if wall_s > 0 else None

    if n < settings.min_samples_for_p99:
        reasons.append(f"only {n} samples (< {settings.min_samples_for_p99}): p99 is about the maximum")
    median = float(np.median(ms))
    robust_cv = 1.4826 * float(np.median(np.abs(ms - median))) / median if median > 0 else math.nan
    out["latency_robust_cv"] = robust_cv
    # CV (std/mean) is what users know, but one preempted call in 10^5 dominates it on a
    # microsecond workload. With many samples, a tight median spread (MAD) keeps the point
    # valid: its tail is still in p99/p99.9 for everyone to see.
    outliers_only = n >= 1000 and math.isfinite(robust_cv) and robust_cv <= settings.max_cv
    if math.isfinite(cv) and cv > settings.max_cv and not outliers_only:
        reasons.append(f"unstable: CV {cv:.1%} above {settings.max_cv:.0%}")
    if wall_s < settings.min_duration_s and not capped:
        reasons.append(f"timed window {wall_s:.2f} s below the minimum {settings.min_duration_s:g} s")
    out["valid"] = not reasons
    out["invalid_reasons"] = reasons
    return out
