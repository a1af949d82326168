"""The modelled capacity at a p99 SLO, against M/D/1's closed-form waiting-time distribution and M/M/c."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwbench.errors import UsageError
from hwbench.analyse.capacity import (
    DEFAULT_MAX_UTILISATION,
    REPLAY_MODEL,
    _fifo_sojourn,
    _lindley_sojourn,
    _unit_path,
    allen_cunneen_capacity_rps,
    allen_cunneen_p99_s,
    erlang_c,
    modelled_capacity_rps,
    modelled_p99_s,
    service_sketch_s,
)
from hwbench.analyse.queueing import replay_fifo


def md1_wait_cdf(t: float, rho: float) -> float:
    """P(W <= t) in M/D/1 with unit service (Erlang 1909): (1 - rho) sum_k<=t [rho (k - t)]^k / k! e^{-rho (k - t)}."""
    return (1 - rho) * sum((rho * (k - t)) ** k / math.factorial(k) * math.exp(-rho * (k - t))
                           for k in range(int(math.floor(t)) + 1))


def md1_capacity_rps(service_s: float, slo_s: float) -> float:
    """The rate at which the M/D/1 sojourn p99 (wait p99 + service) equals the SLO, by bisection on the closed form."""
    w = slo_s / service_s - 1.0
    lo, hi = 1e-9, 1 - 1e-9
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(w, mid) >= 0.99 else (lo, mid)
    return lo / service_s


def test_the_closed_form_itself() -> None:
    assert md1_wait_cdf(0.0, 0.7) == pytest.approx(0.3)  # P(no wait) = 1 - rho
    # its mean, integrated numerically, is Pollaczek-Khinchine's rho / (2 (1 - rho)) (5.83 ms at 5 ms, rho 0.7)
    t = np.linspace(0, 20, 4001)  # the alternating sum loses precision beyond ~25 service times
    mean = np.trapezoid(1 - np.array([md1_wait_cdf(x, 0.7) for x in t]), t)
    assert mean * 5.0 == pytest.approx(5.83, abs=0.02)


@pytest.mark.parametrize("slo_ms", [12.0, 20.0, 30.0, 60.0])
def test_deterministic_5ms_service_matches_md1(slo_ms: float) -> None:
    exact = md1_capacity_rps(0.005, slo_ms / 1e3)
    got, note = modelled_capacity_rps(np.array([0.005]), slo_ms, max_utilisation=0.99)
    assert got == pytest.approx(exact, rel=0.04)
    assert REPLAY_MODEL in note and "1 server" in note
    # the modelled p99 just under the capacity meets the SLO and just over it does not
    assert modelled_p99_s(np.array([0.005]), got * 0.98) <= slo_ms / 1e3 < modelled_p99_s(np.array([0.005]), got * 1.05)


def test_the_cap_binds_under_a_loose_slo_and_is_never_full() -> None:
    got, note = modelled_capacity_rps(np.array([0.005]), 10_000.0)
    assert got == pytest.approx(DEFAULT_MAX_UTILISATION / 0.005) and "capped at 90% utilisation" in note
    got, _ = modelled_capacity_rps(np.array([0.005]), 10_000.0, servers=3, max_utilisation=0.5)
    assert got == pytest.approx(0.5 * 3 / 0.005)
    for bad in (1.0, 0.0, -0.1, 2.0):
        with pytest.raises(UsageError, match="below 1"):
            modelled_capacity_rps(np.array([0.005]), 100.0, max_utilisation=bad)


def test_no_capacity_when_the_service_alone_misses_the_slo() -> None:
    got, note = modelled_capacity_rps(np.array([0.005]), 4.0)
    assert got == 0.0 and "misses the SLO" in note
    with pytest.raises(UsageError):
        modelled_capacity_rps(np.array([]), 10.0)
    with pytest.raises(UsageError):
        modelled_capacity_rps(np.array([0.005, -1.0]), 10.0)


def test_the_fast_replays_equal_the_fifo_replay() -> None:
    arrivals, _ = _unit_path(20_000, 3)
    service = np.random.default_rng(4).lognormal(np.log(0.01), 0.5, len(arrivals))
    for rate in (20.0, 80.0, 95.0):
        assert np.allclose(_lindley_sojourn(arrivals / rate, service), replay_fifo(arrivals / rate, service), atol=1e-9)
        assert np.allclose(_fifo_sojourn(arrivals / rate, service, 3), replay_fifo(arrivals / rate, service, servers=3))


def test_more_servers_and_more_variable_service_change_capacity_the_right_way() -> None:
    rng = np.random.default_rng(5)
    steady = np.full(500, 0.010)
    variable = rng.exponential(0.010, 500)
    one, _ = modelled_capacity_rps(steady, 40.0)
    assert modelled_capacity_rps(variable, 40.0)[0] < one  # variance queues
    assert modelled_capacity_rps(steady, 40.0, servers=2)[0] > 2 * one * 0.99  # pooling beats two separate queues


def test_sketch_keeps_the_distribution() -> None:
    samples = np.random.default_rng(6).gamma(4.0, 0.0025, 20_000)
    sketch = service_sketch_s(samples)
    assert len(sketch) == 200
    assert sketch.mean() == pytest.approx(samples.mean(), rel=0.01)
    full, _ = modelled_capacity_rps(samples, 50.0)
    assert modelled_capacity_rps(sketch, 50.0)[0] == pytest.approx(full, rel=0.05)


def test_allen_cunneen_cross_check() -> None:
    assert erlang_c(2, 1.6) == pytest.approx(2 * 0.8**2 / 1.8)  # M/M/2 at 80%
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    # M/M/1: the sojourn is exponential with rate mu - lambda; the approximation (wait tail + service p99) bounds it
    service = np.random.default_rng(7).exponential(0.01, 200_000)
    mu = 1 / service.mean()
    for rho in (0.5, 0.8):
        exact = math.log(100) / (mu - rho * mu)
        approx = allen_cunneen_p99_s(service, rho * mu)
        assert exact * 0.95 <= approx <= exact * 1.6
    capacity, note = allen_cunneen_capacity_rps(service, 200.0)
    assert 0 < capacity <= DEFAULT_MAX_UTILISATION * mu and "Allen-Cunneen" in note
    replayed, _ = modelled_capacity_rps(service[:5000], 200.0)
    assert capacity == pytest.approx(replayed, rel=0.35)  # two models of one queue, roughly agreeing
