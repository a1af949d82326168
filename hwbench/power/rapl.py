"""CPU energy from Linux powercap RAPL counters (method 'rapl'), and the counter arithmetic
shared with the other counter-based meters.

Facts relied on (Linux powercap sysfs ABI, intel-rapl driver):
- Each RAPL zone is a directory /sys/class/powercap/intel-rapl:N (a CPU package, `name`
  "package-N"; on some client machines also "psys", the whole platform) with sub-zones
  intel-rapl:N:M named "core", "uncore" or "dram".
- `energy_uj` is a cumulative energy counter in microjoules that wraps to 0 after
  `max_energy_range_uj`. Since Linux 5.10 `energy_uj` is readable by root only
  (a mitigation for CVE-2020-8694), so unprivileged reads raise PermissionError.
- The same interface is used on AMD processors that expose RAPL.

What is measured: the sum of every package zone plus every "dram" sub-zone. "core" and
"uncore" are parts of the package and "psys" contains it, so they are left out to avoid
counting energy twice. This is the whole machine's CPU energy, not just this process's.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwbench.power.base import EnergyReading, PeriodicSampler, PowerMeter, window_too_short

POWERCAP_ROOT = Path("/sys/class/powercap")
WRAP_GUARD_S = 10.0  # sample at least this often so that no counter wraps twice unseen


# -- counter arithmetic (pure) ----------------------------------------------------------------
def counter_delta(previous: int, current: int, max_range: int | None) -> int:
    """Increase of a cumulative counter between two reads, allowing for one wraparound.

    A counter that wraps at `max_range` restarts from 0, so a smaller second reading means
    it went round once: the delta is (max_range - previous) + current. With max_range None
    (a counter that never wraps, such as NVML's 64-bit millijoule counter) a decrease is an
    error, not a wrap.
    """
    if current >= previous:
        return current - previous
    if max_range is None or max_range <= 0:
        raise ValueError(f"counter went backwards ({previous} -> {current}) and has no wrap range")
    return (max_range - previous) + current


def energy_from_counter_samples(samples_uj: Sequence[int], max_range_uj: int | None) -> float:
    """Energy in joules from successive reads of one microjoule counter, first to last.

    Each consecutive pair may contain at most one wraparound, so the reads must be taken
    more often than the counter's wrap period (RaplMeter samples every WRAP_GUARD_S).
    """
    if len(samples_uj) < 2:
        return 0.0
    total_uj = sum(counter_delta(a, b, max_range_uj) for a, b in zip(samples_uj, samples_uj[1:]))
    return total_uj / 1e6


def counter_update_period_ms(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """How often a counter changes: the median time between reads at which its value changed.

    `times_s` and `values` are polls of the counter taken much faster than it updates.
    Returns None when fewer than two changes were seen (no basis for a period).
    """
    change_times = [t for t, prev, cur in zip(times_s[1:], values, values[1:]) if cur != prev]
    if len(change_times) < 2:
        return None
    gaps = [b - a for a, b in zip(change_times, change_times[1:])]
    return statistics.median(gaps) * 1000.0


def poll_update_period_ms(read: Callable[[], float], max_wait_s: float = 0.5, poll_s: float = 0.0005) -> float | None:
    """Measure a counter's update period by polling it (sleeping between polls, no busy loop)."""
    wait = threading.Event()
    times: list[float] = []
    values: list[float] = []
    deadline = time.perf_counter() + max_wait_s
    changes = 0
    while time.perf_counter() < deadline and changes < 6:
        times.append(time.perf_counter())
        values.append(read())
        if len(values) > 1 and values[-1] != values[-2]:
            changes += 1
        wait.wait(poll_s)
    return counter_update_period_ms(times, values)


# -- sysfs discovery ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RaplDomain:
    """One RAPL zone that hwbench counts."""

    name: str  # "package-0", "dram"...
    path: Path  # the zone directory
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def discover_domains(root: Path = POWERCAP_ROOT) -> list[RaplDomain]:
    """Package zones and their "dram" sub-zones under `root` (see the module docstring)."""
    domains = []
    for zone in sorted(root.glob("intel-rapl:*")):
        parts = zone.name.split(":")
        try:
            name = (zone / "name").read_text().strip()
            max_range = int((zone / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            continue
        top_level = len(parts) == 2
        if (top_level and name.startswith("package")) or (not top_level and name == "dram"):
            domains.append(RaplDomain(name=name, path=zone, max_range_uj=max_range))
    return domains


def rapl_problem(root: Path = POWERCAP_ROOT) -> str | None:
    """Why RAPL cannot be read here (missing, or a permission problem), or None when it can."""
    if not root.is_dir():
        return f"no {root} (kernel without powercap, or a VM that exposes no RAPL)"
    domains = discover_domains(root)
    if not domains:
        return f"no RAPL package zone under {root} (intel-rapl driver not loaded)"
    for d in domains:
        try:
            d.read_uj()
        except PermissionError:
            return (
                f"permission denied reading {d.path / 'energy_uj'}: since Linux 5.10 RAPL energy "
                "is root-only; run as root or grant read access to energy_uj"
            )
        except (OSError, ValueError) as e:
            return f"cannot read {d.path / 'energy_uj'}: {e}"
    return None


# -- the meter ----------------------------------------------------------------------------------
class RaplMeter(PowerMeter):
    """Package (+ DRAM) energy between begin() and end(), from RAPL counters."""

    method = "rapl"
    estimated = False

    @classmethod
    def problem(cls, index: int, tdp_w: float | None) -> str | None:
        return rapl_problem()

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> PowerMeter:
        return cls()

    def __init__(self, domains: Sequence[RaplDomain] | None = None, guard_s: float = WRAP_GUARD_S) -> None:
        self.domains = list(domains) if domains is not None else discover_domains()
        if not self.domains:
            raise ValueError("no RAPL domain to read")
        self._samples: list[list[int]] = []
        self._lock = threading.Lock()
        self._sampler = PeriodicSampler(self._sample, guard_s, "hwbench-rapl-guard")
        self._t0 = 0.0
        self._period_ms: float | None = None
        self._period_measured = False

    @property
    def period_ms(self) -> float | None:
        """Measured once by polling the first domain's counter."""
        if not self._period_measured:
            self._period_ms = poll_update_period_ms(self.domains[0].read_uj, max_wait_s=0.2)
            self._period_measured = True
        return self._period_ms

    def _sample(self) -> None:
        row = [d.read_uj() for d in self.domains]
        with self._lock:
            self._samples.append(row)

    def begin(self) -> None:
        _ = self.period_ms
        self._sampler.stop()
        self._samples = []
        self._t0 = time.perf_counter()
        self._sample()
        self._sampler.start()

    def end(self) -> EnergyReading | None:
        if not self._samples:
            return None
        self._sampler.stop()  # first, so that no guard sample lands after the closing one
        self._sample()
        duration = time.perf_counter() - self._t0
        with self._lock:
            columns = list(zip(*self._samples))
        energy = sum(
            energy_from_counter_samples(list(col), d.max_range_uj) for col, d in zip(columns, self.domains)
        )
        period = self.period_ms
        return EnergyReading(
            energy_j=energy,
            duration_s=duration,
            method=self.method,
            period_ms=period,
            estimated=False,
            note="RAPL " + "+".join(d.name for d in self.domains) + " (whole machine)",
            too_short=window_too_short(duration, period),
        )

    def close(self) -> None:
        self._sampler.stop()
