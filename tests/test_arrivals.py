"""The open-loop arrival process: rate, dispersion and seeding (checked by simulation)."""

import numpy as np
import pytest

from hwbench.errors import UsageError
from hwbench.measure.arrivals import ArrivalProcess
from hwbench.adapter.tokens import TokenTiming


def test_poisson_rate_and_dispersion():
    gaps = ArrivalProcess(200.0, seed=1).gaps_s(200_000)
    assert gaps.mean() == pytest.approx(1 / 200.0, rel=0.01)
    assert (gaps.std() / gaps.mean()) ** 2 == pytest.approx(1.0, rel=0.03)  # exponential: CV^2 = 1
    counts = np.bincount(np.floor(np.cumsum(gaps)).astype(int))[:-1]  # arrivals per 1 s window
    assert counts.var() / counts.mean() == pytest.approx(1.0, rel=0.15)  # Poisson counts: variance = mean


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_keeps_the_rate_and_sets_the_cv(burstiness):
    gaps = ArrivalProcess(50.0, burstiness=burstiness, seed=2).gaps_s(200_000)
    assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.02)
    assert (gaps.std() / gaps.mean()) ** 2 == pytest.approx(1 / burstiness, rel=0.05)


def test_seeded_and_distinct():
    a = ArrivalProcess(10.0, seed=3).offsets_s(100)
    assert np.array_equal(a, ArrivalProcess(10.0, seed=3).offsets_s(100))
    assert not np.array_equal(a, ArrivalProcess(10.0, seed=4).offsets_s(100))
    assert np.all(np.diff(a) > 0)


def test_offsets_for_duration_and_minimum_count():
    p = ArrivalProcess(100.0, seed=5)
    within = p.offsets_for(10.0)
    assert within[-1] <= 10.0 and 900 < len(within) < 1100
    longer = p.offsets_for(1.0, min_count=459)  # LoadGen's minimum for a p99 claim
    assert len(longer) == 459 and longer[-1] > 1.0


@pytest.mark.parametrize("kwargs", [{"rate_rps": 0}, {"rate_rps": float("nan")}, {"rate_rps": float("inf")},
                                    {"rate_rps": 1.0, "burstiness": 0}, {"rate_rps": 1.0, "burstiness": float("nan")}])
def test_bad_processes_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        ArrivalProcess(**kwargs)


def test_token_timing_follows_vllm_definitions():
    t = TokenTiming(start_ns=1_000, token_ns=(11_000, 13_000, 17_000), prompt_tokens=8, scheduled_ns=500)
    assert t.ttft_ns == 10_500  # from the scheduled arrival: queueing counts
    assert t.e2e_ns == 16_500
    assert t.tpot_ns == pytest.approx((16_500 - 10_500) / 2)
    assert list(t.itl_ns()) == [2_000, 4_000]
    assert t.schedule_lag_ns == 500
    one = TokenTiming(start_ns=0, token_ns=(5,), prompt_tokens=1)
    assert one.tpot_ns is None and one.ttft_ns == 5 and one.schedule_lag_ns is None
