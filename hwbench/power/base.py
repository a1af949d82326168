"""The power-meter contract. The profiler opens a window around the timed loop;
the adapter never measures itself.

A meter's reading says its method and whether it is an estimate; estimates are
never averaged together with measurements (hwbench.analyse keeps them apart).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one window."""

    energy_j: float
    duration_s: float
    method: str  # one of hwbench.results.schema.POWER_METHODS
    period_ms: float | None  # the meter's update period
    estimated: bool
    note: str = ""  # e.g. "TDP 350 W (table: Xeon Platinum 8488C) x utilisation 0.97"
    too_short: bool = False  # window shorter than ~10 update periods

    @property
    def avg_power_w(self) -> float | None:
        return self.energy_j / self.duration_s if self.duration_s > 0 else None


def window_too_short(duration_s: float, period_ms: float | None) -> bool:
    """A window shorter than ten update periods says little about energy."""
    return period_ms is not None and duration_s < 10 * period_ms / 1000.0


class PeriodicSampler:
    """Calls `sample()` every `period_s` in a background thread until stopped (Event.wait: no busy loop).

    Used by meters that must read a counter often (RAPL wraparound guard) or sample power (NVML).
    """

    def __init__(self, sample: Callable[[], None], period_s: float, name: str) -> None:
        self._sample = sample
        self._period_s = period_s
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self.stop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            self._sample()

    def stop(self) -> None:
        """Stop and join: no sample lands after this returns."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class PowerMeter(ABC):
    """Measures energy between begin() and end()."""

    method: str = "none"
    # Plugin meters (entry-point group hwbench.meters, see hwbench.power.select) name the device
    # kinds they are tried for, after the built-ins; built-ins are placed by select.ORDER.
    device_kinds: tuple[str, ...] = ()

    @classmethod
    def problem(cls, index: int, tdp_w: float | None) -> str | None:
        """Why this meter cannot measure device `index` here, or None when it can (must not raise)."""
        return None

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> "PowerMeter":
        """A meter for device `index` (called only after problem() said None)."""
        return cls()
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
