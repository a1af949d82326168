"""The FIFO replay against closed-form queueing results (checked by simulation)."""

import numpy as np
import pytest

from hwbench.analyse.queueing import replay_fifo
from hwbench.measure.arrivals import ArrivalProcess


def test_md1_mean_wait_matches_pollaczek_khinchine():
    service, rho = 0.005, 0.7  # M/D/1: mean wait = rho / (2 mu (1 - rho)) = 5.83 ms at 5 ms service
    arrivals = ArrivalProcess(rho / service, seed=11).offsets_s(400_000)
    wait = replay_fifo(arrivals, np.full(len(arrivals), service)) - service
    assert wait.mean() * 1e3 == pytest.approx(rho / (2 * (1 / service) * (1 - rho)) * 1e3, rel=0.03)
    assert rho / (2 * (1 / service) * (1 - rho)) * 1e3 == pytest.approx(5.83, abs=0.01)


def test_mm2_wait_probability_matches_erlang_c():
    mu, servers, rho = 100.0, 2, 0.8  # M/M/2 at 80%: P(wait) = Erlang C = 2 rho^2 / (1 + rho) = 0.711
    lam = rho * servers * mu
    arrivals = ArrivalProcess(lam, seed=12).offsets_s(300_000)
    service = np.random.default_rng(13).exponential(1 / mu, len(arrivals))
    wait = replay_fifo(arrivals, service, servers=servers) - service
    assert (wait > 1e-12).mean() == pytest.approx(2 * rho**2 / (1 + rho), abs=0.01)
    assert wait.mean() == pytest.approx((2 * rho**2 / (1 + rho)) / (servers * mu - lam), rel=0.05)


def test_no_queue_when_arrivals_are_far_apart():
    arrivals = np.arange(10, dtype=float)
    assert np.allclose(replay_fifo(arrivals, np.full(10, 0.5)), 0.5)
    assert np.allclose(replay_fifo(arrivals, np.full(10, 0.5), servers=3), 0.5)


@pytest.mark.parametrize("bad", [dict(arrivals_s=np.array([1.0, 0.0]), service_s=np.ones(2)),
                                 dict(arrivals_s=np.zeros(2), service_s=np.ones(3)),
                                 dict(arrivals_s=np.zeros(2), service_s=np.ones(2), servers=0)])
def test_bad_input_is_refused(bad):
    with pytest.raises(ValueError):
        replay_fifo(**bad)
