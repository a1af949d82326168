"""The power-meter contract. The profiler opens a window around the timed loop;
the adapter never measures itself.

A meter's reading says its method and whether it is an estimate; estimates are
never averaged together with measurements (hwbench.analysis keeps them apart).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one window."""

    energy_j: float
    duration_s: float
    method: str  # one of hwbench.schema.POWER_METHODS
    period_ms: float | None  # the meter's update period
    estimated: bool
    note: str = ""  # e.g. "TDP 350 W (table: Xeon Platinum 8488C) x utilisation 0.97"
    too_short: bool = False  # window shorter than ~10 update periods

    @property
    def avg_power_w(self) -> float | None:
        return self.energy_j / self.duration_s if self.duration_s > 0 else None


class PowerMeter(ABC):
    """Measures energy between begin() and end()."""

    method: str = "none"
    estimated: bool = False

    @property
    def period_ms(self) -> float | None:
        """How often the underlying counter or sample updates."""
        return None

    def min_window_s(self) -> float:
        """The shortest window worth reporting: about ten update periods."""
        return 10 * (self.period_ms or 0.0) / 1000.0

    @abstractmethod
    def begin(self) -> None:
        """Open a window."""

    @abstractmethod
    def end(self) -> EnergyReading | None:
        """Close the window and return its energy, or None when nothing could be read."""

    def close(self) -> None:
        """Release handles or background threads."""


class NullMeter(PowerMeter):
    """No meter: records power_method='none'."""

    method = "none"

    def begin(self) -> None:
        pass

    def end(self) -> EnergyReading | None:
        return None
