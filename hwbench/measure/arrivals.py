"""Request arrival schedules for open-loop load: seeded Poisson, or gamma for bursty traffic.

An open-loop load generator issues request i at `start + offsets_s[i]` whatever the system
under test is doing, so a slow system cannot slow its own arrivals and hide its queue
(coordinated omission). The gaps between arrivals are independent draws:

- burstiness 1.0: exponential gaps, a Poisson process (MLPerf LoadGen's Server scenario);
- burstiness b: gamma gaps with shape b and scale 1 / (rate * b), so the mean gap stays
  1 / rate and the squared coefficient of variation of a gap is 1 / b: below 1 is burstier
  than Poisson, above 1 smoother (the `--burstiness` of vLLM's `bench serve`).

The same (rate, burstiness, seed) always gives the same schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwbench.errors import UsageError

MAX_RATE_RPS = 1e6  # far above anything one client issues; a larger value is a typo
MIN_BURSTINESS, MAX_BURSTINESS = 0.01, 100.0


@dataclass(frozen=True)
class ArrivalProcess:
    """Independent gaps between requests, with mean 1 / rate_rps."""

    rate_rps: float
    burstiness: float = 1.0  # gamma shape: 1 = Poisson
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_rps) and 0 < self.rate_rps <= MAX_RATE_RPS):
            raise UsageError(f"request rate must be a finite number of requests/s in (0, {MAX_RATE_RPS:g}], got {self.rate_rps!r}")
        if not (math.isfinite(self.burstiness) and MIN_BURSTINESS <= self.burstiness <= MAX_BURSTINESS):
            raise UsageError(f"burstiness must be in [{MIN_BURSTINESS:g}, {MAX_BURSTINESS:g}] (1 = Poisson), got {self.burstiness!r}")

    @property
    def gap_cv2(self) -> float:
        """The squared coefficient of variation of one gap: 1 / burstiness."""
        return 1.0 / self.burstiness

    def gaps_s(self, n: int) -> np.ndarray:
        """n gaps in seconds (float64), from this process's seed."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(self.seed)
        if self.burstiness == 1.0:
            return rng.exponential(1.0 / self.rate_rps, size=n)
        return rng.gamma(self.burstiness, 1.0 / (self.rate_rps * self.burstiness), size=n)

    def offsets_s(self, n: int) -> np.ndarray:
        """Arrival times of n requests, seconds after the start: the first arrives after one gap."""
        return np.cumsum(self.gaps_s(n))

    def offsets_for(self, duration_s: float, min_count: int = 0) -> np.ndarray:
        """Every arrival within duration_s, and at least min_count of them (the schedule runs on
        past duration_s when min_count needs it: LoadGen's minimum query count)."""
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise UsageError(f"duration must be a finite number of seconds >= 0, got {duration_s!r}")
        expected = self.rate_rps * duration_s
        n = max(int(min_count), int(expected + 6.0 * math.sqrt(max(expected, 1.0) * max(self.gap_cv2, 1.0)) + 16))
        offsets = self.offsets_s(n)
        while offsets[-1] < duration_s:  # a rare long tail: draw more from the same stream
            n *= 2
            offsets = self.offsets_s(n)
        keep = max(int(min_count), int(np.searchsorted(offsets, duration_s, side="right")))
        return offsets[:keep]
