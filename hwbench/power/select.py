"""Which power meter measures a device, in a documented order, and idle power.

Order tried for each device kind (the first that works wins):
    cuda    nvml-counter, nvml-sampled          (no GPU TDP estimate: no sourced GPU table)
    cpu     rapl, estimate-tdp                  (estimate only for a known CPU or --tdp-w)
    neuron  neuron
    other   none (NullMeter)
Whatever nothing can measure records power_method 'none', and select_meter() says why.

Meters plug in like adapters: BUILTIN names each method's "module:Class", and packages add
meters through the entry-point group ``hwbench.meters`` (a plugin names the device kinds it
measures in its class's `device_kinds` and is tried after the built-ins; it cannot shadow one).

Idle power is measured once before a sweep with the same meter; a trial's energy above
idle is its energy minus idle power x its duration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwbench.plugins import entry_points, load_class
from hwbench.power.base import EnergyReading, NullMeter, PowerMeter

ENTRY_POINT_GROUP = "hwbench.meters"

# name -> "module:Class", imported lazily, like the adapter registry. Each class answers
# problem(index, tdp_w) and open(index, tdp_w) (hwbench.power.base.PowerMeter).
BUILTIN: dict[str, str] = {
    "nvml-counter": "hwbench.power.nvml:NvmlCounterMeter",
    "nvml-sampled": "hwbench.power.nvml:NvmlSampledMeter",
    "rapl": "hwbench.power.rapl:RaplMeter",
    "estimate-tdp": "hwbench.power.estimate:EstimateTdpMeter",
    "neuron": "hwbench.power.neuron_monitor:NeuronMonitorMeter",
}

ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("nvml-counter", "nvml-sampled"),
    "cpu": ("rapl", "estimate-tdp"),
    "neuron": ("neuron",),
}


def _entry_points() -> Any:
    return entry_points(ENTRY_POINT_GROUP)


def registry() -> dict[str, str]:
    """Every meter name -> "module:Class": the built-ins, then entry points of group hwbench.meters.
    A plugin cannot shadow a built-in (its entry is skipped), so a method name always means one meter."""
    table = dict(BUILTIN)
    for ep in _entry_points():
        table.setdefault(ep.name, ep.value)
    return table


def meter_class(name: str) -> type[PowerMeter]:
    """Import a registered meter class (ValueError for an unknown name, TypeError for a non-meter)."""
    target = registry().get(name)
    if target is None:
        raise ValueError(f"unknown power method {name!r}")
    return load_class(target, PowerMeter, "PowerMeter")


def order(device_kind: str) -> tuple[str, ...]:
    """The methods tried for a device kind: the built-in ORDER, then plugins that name the kind."""
    plugins = []
    for name in registry():
        if name in BUILTIN:
            continue
        try:
            if device_kind in meter_class(name).device_kinds:
                plugins.append(name)
        except Exception:  # noqa: BLE001 - a broken plugin is not tried; select_meter() never raises
            continue
    return (*ORDER.get(device_kind, ()), *plugins)


def _candidate(method: str, index: int, tdp_w: float | None) -> tuple[Callable[[], str | None], Callable[[], PowerMeter]]:
    """(why it cannot run, how to build it) for one registered method; imports stay lazy."""
    cls = meter_class(method)
    return (lambda: cls.problem(index, tdp_w)), (lambda: cls.open(index, tdp_w))


def available_meters(device_kind: str, device_index: int = 0, tdp_w: float | None = None) -> list[tuple[str, str]]:
    """Every method tried for this device kind, in order, with why it is unavailable ("" if it is)."""
    rows = []
    for method in order(device_kind):
        try:
            problem, _ = _candidate(method, device_index, tdp_w)
            reason = problem() or ""
        except Exception as e:  # noqa: BLE001 - a probe must report, never raise
            reason = f"probe raised {type(e).__name__}: {e}"
        rows.append((method, reason))
    return rows


@dataclass
class MeterChoice:
    """The meter chosen for a device, and what was tried before it."""

    meter: PowerMeter
    method: str
    tried: list[tuple[str, str]] = field(default_factory=list)  # (method, why not) for those skipped

    @property
    def reason(self) -> str:
        """Why nothing better was used, in one line."""
        return "; ".join(f"{m}: {why}" for m, why in self.tried)


def select_meter(device_kind: str, device_index: int = 0, tdp_w: float | None = None) -> MeterChoice:
    """The first meter in ORDER that works here; a NullMeter with the reasons when none does."""
    tried: list[tuple[str, str]] = []
    methods = order(device_kind)
    for method in methods:
        try:
            problem, build = _candidate(method, device_index, tdp_w)
            reason = problem()
            if reason is None:
                return MeterChoice(meter=build(), method=method, tried=tried)
        except Exception as e:  # noqa: BLE001 - a failing meter falls through to the next one
            reason = f"{type(e).__name__}: {e}"
        tried.append((method, reason))
    if not methods:
        tried.append(("none", f"no power meter is known for device kind {device_kind!r}"))
    return MeterChoice(meter=NullMeter(), method="none", tried=tried)


def meter_for(device_kind: str, device_index: int = 0, tdp_w: float | None = None) -> PowerMeter:
    """The meter to use for a device (NullMeter when nothing can measure it)."""
    return select_meter(device_kind, device_index, tdp_w).meter


def measure_idle_power(meter: PowerMeter, seconds: float) -> EnergyReading | None:
    """Energy over `seconds` of doing nothing (the caller keeps the device idle); None if unmeasured."""
    if seconds <= 0 or isinstance(meter, NullMeter):
        return None
    meter.begin()
    threading.Event().wait(seconds)
    return meter.end()


def energy_above_idle_j(energy_j: float, duration_s: float, idle_power_w: float | None) -> float | None:
    """Energy minus what the device would have drawn idle over the same time (not clipped at 0)."""
    if idle_power_w is None:
        return None
    return energy_j - idle_power_w * duration_s


def energy_columns(reading: EnergyReading | None, inferences: int, idle: EnergyReading | None = None) -> dict[str, Any]:
    """The TrialRecord power columns for one window in which `inferences` items were processed.

    Idle power is used only when it was obtained by the same method as the reading, so that
    an estimate is never subtracted from a measurement (or the reverse).
    """
    cols: dict[str, Any] = {
        "energy_j_per_inference": None,
        "avg_power_w": None,
        "idle_power_w": None,
        "energy_above_idle_j_per_inference": None,
        "power_method": "none",
        "power_period_ms": None,
        "power_note": None,
    }
    if reading is None or inferences <= 0:
        return cols
    idle_w = idle.avg_power_w if idle is not None and idle.method == reading.method else None
    above = energy_above_idle_j(reading.energy_j, reading.duration_s, idle_w)
    cols.update(
        energy_j_per_inference=reading.energy_j / inferences,
        avg_power_w=reading.avg_power_w,
        idle_power_w=idle_w,
        energy_above_idle_j_per_inference=above / inferences if above is not None else None,
        power_method=reading.method,
        power_period_ms=reading.period_ms,
        power_note=reading.note or None,
    )
    return cols
