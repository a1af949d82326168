"""Statistics against numpy on known data, and the quantile intervals' coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import brentq

from hwbench.measure.settings import MeasureSettings
from hwbench.measure.stats import (
    min_samples_for_interval,
    p50_ci_rel_halfwidth,
    quantile_ci,
    quantile_ci_ranks,
    summarize,
    unresolved_percentiles,
)


def test_percentiles_mean_std_match_numpy() -> None:
    rng = np.random.default_rng(0)
    ns = rng.lognormal(mean=13, sigma=0.05, size=5000).astype(np.int64)
    s = summarize(ns, batch_size=4, wall_s=2.5, completed=len(ns), settings=MeasureSettings())
    ms = ns / 1e6
    for key, q in (("latency_p50_ms", 50), ("latency_p90_ms", 90), ("latency_p95_ms", 95),
                   ("latency_p99_ms", 99), ("latency_p999_ms", 99.9)):
        assert s[key] == pytest.approx(np.percentile(ms, q), rel=1e-12)
    assert s["latency_mean_ms"] == pytest.approx(ms.mean())
    assert s["latency_std_ms"] == pytest.approx(ms.std(ddof=1))
    assert s["latency_cv"] == pytest.approx(ms.std(ddof=1) / ms.mean())
    assert s["throughput_sps"] == pytest.approx(4 * 5000 / 2.5)
    assert s["n_samples"] == 5000
    assert s["valid"] is True and s["invalid_reasons"] == []
    assert s["unresolved_percentiles"] == []  # 5000 samples: even p99.9 has both bounds (from 3688)
    assert s["latency_p50_ci_low_ms"] < s["latency_p50_ms"] < s["latency_p50_ci_high_ms"]
    half = (s["latency_p50_ci_high_ms"] - s["latency_p50_ci_low_ms"]) / 2 / s["latency_p50_ms"]
    assert s["latency_p50_ci_rel_halfwidth"] == pytest.approx(half)
    # the profiler's partition-based check gives the same figure from the raw nanoseconds
    assert p50_ci_rel_halfwidth(ns) == pytest.approx(half, rel=1e-9)


def test_known_small_sample() -> None:
    ns = np.array([1, 2, 3, 4, 5], dtype=np.int64) * 1_000_000  # 1..5 ms
    s = summarize(ns, 1, 1.0, 5, MeasureSettings(min_duration_s=0.5))
    assert s["latency_p50_ms"] == 3.0
    assert s["latency_mean_ms"] == 3.0
    assert s["latency_p90_ms"] == pytest.approx(4.6)
    assert s["valid"] is False
    assert any("p99" in r and "368" in r for r in s["invalid_reasons"])
    # five samples cannot bound even the median at 95% (0.5^5 = 3% > 2.5%): both sides open
    assert s["latency_p50_ci_low_ms"] is None and s["latency_p50_ci_high_ms"] is None
    assert s["latency_p50_ci_rel_halfwidth"] is None
    assert s["unresolved_percentiles"] == ["p50", "p90", "p95", "p99", "p99.9"]


@pytest.mark.parametrize("n", [1, 5, 6, 37, 100, 367, 368, 1000, 3687, 3688])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99, 0.999])
def test_interval_is_scipys_quantile_test(n: int, q: float) -> None:
    x = np.sort(np.random.default_rng(n).gamma(4.0, 2.0, size=n))
    ci = st.quantile_test(x, q=np.median(x), p=q).confidence_interval(0.95)
    lo, hi = quantile_ci(x, q)
    assert (lo is None) == bool(np.isnan(ci.low)) and (hi is None) == bool(np.isnan(ci.high))
    assert lo is None or lo == ci.low
    assert hi is None or hi == ci.high


@pytest.mark.parametrize(("q", "expected"), [(0.5, 6), (0.9, 36), (0.95, 72), (0.99, 368), (0.999, 3688)])
def test_min_samples_for_interval(q: float, expected: int) -> None:
    # closed forms: upper bound once q^n <= 2.5%, lower once (1-q)^n < 2.5%
    assert min_samples_for_interval(q) == expected
    assert None in quantile_ci_ranks(expected - 1, q)
    assert None not in quantile_ci_ranks(expected, q)


def test_unresolved_percentiles_follow_n() -> None:
    assert unresolved_percentiles(100) == ["p99", "p99.9"]
    assert unresolved_percentiles(368) == ["p99.9"]
    assert unresolved_percentiles(3688) == []


def _mixture_quantile(q: float) -> float:
    """90% N(1, 0.05) + 10% N(2, 0.1): a fast path and a slow one (p50 in the first, p99 in the second)."""
    return brentq(lambda x: 0.9 * st.norm.cdf(x, 1, 0.05) + 0.1 * st.norm.cdf(x, 2, 0.1) - q, 0.0, 5.0)


def _draw(shape: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    if shape == "lognormal":
        return rng.lognormal(0.0, 0.3, size)
    slow = rng.random(size) < 0.1
    return np.where(slow, rng.normal(2.0, 0.1, size), rng.normal(1.0, 0.05, size))


def _truth(shape: str, q: float) -> float:
    return float(np.exp(0.3 * st.norm.ppf(q))) if shape == "lognormal" else _mixture_quantile(q)


@pytest.mark.parametrize("shape", ["lognormal", "bimodal"])
@pytest.mark.parametrize("n", [100, 1000])
def test_coverage_by_simulation(shape: str, n: int) -> None:
    """At least 94% of simulated 95% intervals hold the true p50 and p99; an open bound covers only its side."""
    reps = 3000
    rng = np.random.default_rng(1000 * n + len(shape))
    x = _draw(shape, rng, (reps, n))
    for q in (0.5, 0.99):
        truth = _truth(shape, q)
        lo, hi = quantile_ci_ranks(n, q)
        kth = [k for k in (lo, hi) if k is not None]
        part = np.partition(x, kth, axis=1)
        below = part[:, lo] <= truth if lo is not None else np.ones(reps, bool)
        above = part[:, hi] >= truth if hi is not None else np.ones(reps, bool)
        coverage = float(np.mean(below & above))
        assert coverage >= 0.94, (shape, n, q, coverage)
        if n == 100 and q == 0.99:
            assert hi is None and lo is not None  # 0.99^100 = 37% > 2.5%: the upper bound is open
            assert float(np.mean(below)) >= 0.94  # and the lower bound alone still holds


def test_open_p99_bound_is_none_not_the_maximum() -> None:
    ns = (np.random.default_rng(3).lognormal(0, 0.3, 100) * 1e6).astype(np.int64)
    s = summarize(ns, 1, 2.0, 100, MeasureSettings())
    assert s["latency_p99_ci_high_ms"] is None
    assert s["latency_p99_ci_low_ms"] is not None and s["latency_p99_ci_low_ms"] <= s["latency_p99_ms"]
    assert s["unresolved_percentiles"] == ["p99", "p99.9"]


def test_invalid_reasons() -> None:
    rng = np.random.default_rng(2)
    noisy = (rng.exponential(1.0, 500) * 1e6).astype(np.int64) + 1
    s = summarize(noisy, 1, 0.1, 500, MeasureSettings())
    reasons = " ".join(s["invalid_reasons"])
    assert s["valid"] is False
    assert "CV" in reasons and "below the minimum" in reasons
    capped = summarize(np.full(200, 100, np.int64), 1, 0.001, 200, MeasureSettings(), capped=True)
    assert capped["valid"] is True
    by_iters = summarize(np.full(200, 100, np.int64), 1, 0.001, 200, MeasureSettings(), stop_reason="iteration-cap")
    assert by_iters["valid"] is True and by_iters["stop_reason"] == "iteration-cap"


def test_time_cap_before_min_iters_is_kept_valid_with_its_unresolved_percentiles() -> None:
    ns = np.full(48, 100_000_000, np.int64) + np.arange(48)
    s = summarize(ns, 1, 4.8, 48, MeasureSettings(max_duration_s=4.8), capped=True, stop_reason="time-cap")
    assert s["valid"] is True and s["stop_reason"] == "time-cap" and s["n_samples"] == 48
    assert s["unresolved_percentiles"] == ["p95", "p99", "p99.9"]  # p95 needs 72, p99 368
    (warning,) = s["warnings"]
    assert "stopped by the 4.8 s time cap at 48 samples (< 100)" in warning and "p95, p99, p99.9 unresolved" in warning
    # the same 48 samples without the cap are a point that asked for too few: invalid, as before
    short = summarize(ns, 1, 4.8, 48, MeasureSettings(min_iters=48, min_duration_s=1.0), stop_reason="p50-interval-tight")
    assert short["valid"] is False and any("only 48 samples" in r for r in short["invalid_reasons"])


def test_time_cap_with_a_wide_p50_interval_is_invalid() -> None:
    rng = np.random.default_rng(7)
    ns = (rng.lognormal(np.log(5e8), 0.5, 19)).astype(np.int64)  # 19 noisy samples: p50 far from pinned
    s = summarize(ns, 1, 9.5, 19, MeasureSettings(max_duration_s=9.5), capped=True, stop_reason="time-cap")
    assert s["valid"] is False and s["warnings"] == [] and s["latency_p50_ci_rel_halfwidth"] > 0.05
    assert any("time cap at 19 samples" in r and "wider than +-5%" in r for r in s["invalid_reasons"])


def test_empty() -> None:
    s = summarize(np.array([], dtype=np.int64), 1, 0.0, 0, MeasureSettings())
    assert s["valid"] is False and s["invalid_reasons"] == ["no samples"]
    assert s["unresolved_percentiles"] == ["p50", "p90", "p95", "p99", "p99.9"]
