"""Statistics against numpy on known data, and the exact bootstrap against resampling."""

from __future__ import annotations

import numpy as np
import pytest

from hwbench.settings import MeasureSettings
from hwbench.stats import bootstrap_quantile_ci, summarize


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


def test_known_small_sample() -> None:
    ns = np.array([1, 2, 3, 4, 5], dtype=np.int64) * 1_000_000  # 1..5 ms
    s = summarize(ns, 1, 1.0, 5, MeasureSettings(min_duration_s=0.5))
    assert s["latency_p50_ms"] == 3.0
    assert s["latency_mean_ms"] == 3.0
    assert s["latency_p90_ms"] == pytest.approx(4.6)
    assert s["valid"] is False
    assert any("p99" in r for r in s["invalid_reasons"])


@pytest.mark.parametrize("q", [0.5, 0.99])
def test_exact_bootstrap_matches_resampling(q: float) -> None:
    rng = np.random.default_rng(1)
    x = np.sort(rng.gamma(4.0, 2.0, size=400))
    lo, hi = bootstrap_quantile_ci(x, q)
    k = int(np.ceil(q * len(x)))
    boot = np.sort(rng.choice(x, size=(4000, len(x)), replace=True), axis=1)[:, k - 1]
    mlo, mhi = np.quantile(boot, [0.025, 0.975])
    # the exact interval's ends are sample points; resampling agrees within a couple of ranks
    rank = lambda v: np.searchsorted(x, v)  # noqa: E731
    assert abs(rank(lo) - rank(mlo)) <= 3
    assert abs(rank(hi) - rank(mhi)) <= 3
    assert lo <= np.quantile(x, q) <= hi


def test_invalid_reasons() -> None:
    rng = np.random.default_rng(2)
    noisy = (rng.exponential(1.0, 500) * 1e6).astype(np.int64) + 1
    s = summarize(noisy, 1, 0.1, 500, MeasureSettings())
    reasons = " ".join(s["invalid_reasons"])
    assert s["valid"] is False
    assert "CV" in reasons and "below the minimum" in reasons
    capped = summarize(np.full(200, 100, np.int64), 1, 0.001, 200, MeasureSettings(), capped=True)
    assert capped["valid"] is True


def test_empty() -> None:
    s = summarize(np.array([], dtype=np.int64), 1, 0.0, 0, MeasureSettings())
    assert s["valid"] is False and s["invalid_reasons"] == ["no samples"]
