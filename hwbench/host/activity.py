"""What else the host was doing while a trial was timed: hypervisor steal, other processes, governor.

A shared or virtual machine makes latencies noisy for reasons the benchmark cannot see
from inside its own loop. Two snapshots, one just before and one just after the timed
window, make that visible at no cost inside the loop:

- the aggregate ``cpu`` line of /proc/stat (user, nice, system, idle, iowait, irq,
  softirq, steal, in clock ticks summed over every CPU; guest time is already inside
  user and is not added again);
- this process's own CPU time, every thread included (utime + stime of /proc/self/stat,
  in the same ticks). The worker process is the one that measures, so "other" CPU time
  is everything busy that was not ours.

The window (end - begin) gives:

- ``cpu_steal_pct``: steal ticks as a % of all CPU ticks of the window (time the
  hypervisor ran someone else on our virtual CPUs);
- ``other_cpu_pct``: busy ticks (user + nice + system + irq + softirq) minus our own, as
  a % of all CPUs' ticks; clamped to [0, 100] since the two counters are sampled on
  ticks separately and can disagree by a tick or two.

Ticks are usually 10 ms (USER_HZ = 100), so a 2 s window on 2 CPUs holds about 400
ticks: a resolution of about 0.25 percentage points, coarser for shorter windows.
A missing or unreadable file, or a counter that went backwards, gives None, never an
exception. The frequency governor(s) and turbo state are read from sysfs where readable
(None otherwise: common in VMs and containers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")
NOISE_PREFIX = "noisy host:"


@dataclass(frozen=True)
class Snapshot:
    """Counters at one moment; None where they could not be read."""

    cpu: dict[str, int] | None  # CPU_FIELDS -> ticks, all CPUs summed
    own_ticks: int | None  # this process's utime + stime, all threads
    monotonic_s: float


@dataclass(frozen=True)
class ActivityWindow:
    """The host's activity between two snapshots."""

    window_s: float
    cpu_steal_pct: float | None
    other_cpu_pct: float | None
    own_cpu_pct: float | None  # this process, % of all CPUs' time
    total_ticks: int | None  # all CPUs' ticks in the window: the figures' resolution
    governor: str | None  # e.g. "performance", or "performance x1, powersave x1" when mixed
    turbo: str | None  # "on" / "off" / None when not readable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_proc_stat(text: str) -> dict[str, int] | None:
    """The aggregate 'cpu' line of /proc/stat as CPU_FIELDS -> ticks; None if absent or malformed.

    Kernels older than 2.6.11 lack steal: it is then taken as 0.
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:1 + len(CPU_FIELDS)]]
            except ValueError:
                return None
            if len(values) < 4 or any(v < 0 for v in values):
                return None
            values += [0] * (len(CPU_FIELDS) - len(values))
            return dict(zip(CPU_FIELDS, values))
    return None


def parse_self_stat(text: str) -> int | None:
    """utime + stime (fields 14 and 15) of a /proc/<pid>/stat line; None if malformed.

    The command name (field 2) may hold spaces and parentheses, so fields are counted
    from the last ')'.
    """
    _, sep, rest = text.rpartition(")")
    if not sep:
        return None
    fields = rest.split()  # fields[0] is field 3 (state)
    try:
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def read_governor(root: Path) -> str | None:
    """The scaling governor of every CPU that exposes one: one name, or each name with its count."""
    counts: dict[str, int] = {}
    for path in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")):
        name = (_read(path) or "").strip()
        if name:
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))


def read_turbo(root: Path) -> str | None:
    """'on' or 'off' from intel_pstate/no_turbo (1 = off) or cpufreq/boost (1 = on); None if neither."""
    cpu = root / "sys/devices/system/cpu"
    no_turbo = (_read(cpu / "intel_pstate/no_turbo") or "").strip()
    if no_turbo in ("0", "1"):
        return "off" if no_turbo == "1" else "on"
    boost = (_read(cpu / "cpufreq/boost") or "").strip()
    if boost in ("0", "1"):
        return "on" if boost == "1" else "off"
    return None


def _pct(part: int, whole: int) -> float:
    return min(100.0, max(0.0, 100.0 * part / whole))


def window(begin: Snapshot, end: Snapshot, governor: str | None = None, turbo: str | None = None) -> ActivityWindow:
    """end - begin as percentages of all CPUs' time; None where a counter is missing or went backwards."""
    steal = other = own = None
    total = None
    if begin.cpu is not None and end.cpu is not None:
        delta = {k: end.cpu[k] - begin.cpu[k] for k in CPU_FIELDS}
        total = sum(delta.values())
        if total > 0 and all(v >= 0 for v in delta.values()):
            steal = _pct(delta["steal"], total)
            busy = sum(delta[k] for k in BUSY_FIELDS)
            if begin.own_ticks is not None and end.own_ticks is not None and end.own_ticks >= begin.own_ticks:
                mine = end.own_ticks - begin.own_ticks
                own = _pct(mine, total)
                other = _pct(busy - mine, total)
        else:
            total = None
    return ActivityWindow(window_s=max(0.0, end.monotonic_s - begin.monotonic_s), cpu_steal_pct=steal,
                          other_cpu_pct=other, own_cpu_pct=own, total_ticks=total, governor=governor, turbo=turbo)


class ActivityProbe:
    """begin() before the timed loop, end() after it; files are read under `root` (tests pass a fake)."""

    def __init__(self, root: Path | str = "/", clock: Callable[[], float] = time.monotonic) -> None:
        self.root = Path(root)
        self.clock = clock
        self._begin: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        stat = _read(self.root / "proc/stat")
        own = _read(self.root / "proc/self/stat")
        return Snapshot(cpu=parse_proc_stat(stat) if stat is not None else None,
                        own_ticks=parse_self_stat(own) if own is not None else None,
                        monotonic_s=self.clock())

    def begin(self) -> None:
        self._begin = self.snapshot()

    def end(self) -> ActivityWindow | None:
        """The window since begin() (None if begin() was never called); sysfs is read here, after the loop."""
        if self._begin is None:
            return None
        last = self.snapshot()
        return window(self._begin, last, read_governor(self.root), read_turbo(self.root))


def activity_warnings(steal_pct: float | None, other_pct: float | None,
                      max_steal_pct: float, max_other_cpu_pct: float) -> list[str]:
    """Warnings (not invalidating) for material steal or a material share of CPUs used by others."""
    out = []
    if steal_pct is not None and steal_pct >= max_steal_pct:
        out.append(f"{NOISE_PREFIX} {steal_pct:.1f}% of CPU time stolen by the hypervisor during the window")
    if other_pct is not None and other_pct >= max_other_cpu_pct:
        out.append(f"{NOISE_PREFIX} other processes used {other_pct:.1f}% of the CPUs during the window")
    return out
