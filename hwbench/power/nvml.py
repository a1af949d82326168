"""GPU energy through NVML: the total-energy counter ('nvml-counter') or sampled power
integrated over time ('nvml-sampled').

Facts relied on (NVML reference, as exposed by nvidia-ml-py's `pynvml`):
- nvmlDeviceGetTotalEnergyConsumption: energy in millijoules since the driver was last
  reloaded, on Volta and newer GPUs; NVMLError_NotSupported elsewhere. It does not wrap
  in practice (64-bit), so a decrease is treated as an error.
- nvmlDeviceGetPowerUsage: board power in milliwatts. On Ampere (except GA100, compute
  capability 8.0) and newer it is averaged over one second; on GA100 and older GPUs it is
  instantaneous. A one-second average blurs windows shorter than about ten seconds, so the
  sampled meter reports a 1000 ms period on those GPUs.
- NVML indexes GPUs in PCI order; CUDA's index can differ (CUDA_VISIBLE_DEVICES,
  CUDA_DEVICE_ORDER), see nvml_selector().

Both meters measure the whole GPU board, whatever else runs on it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from hwbench.host.accelerators import nvml_problem
from hwbench.power.base import EnergyReading, PeriodicSampler, PowerMeter, window_too_short
from hwbench.power.rapl import counter_delta, poll_update_period_ms

SAMPLE_PERIOD_S = 0.1  # nvml-sampled: one power reading every 100 ms


# -- pure helpers -------------------------------------------------------------------------------
def trapezoid_energy_j(times_s: Sequence[float], watts: Sequence[float]) -> float:
    """Energy in joules of a power trace: the trapezoid rule over (time, watts) samples."""
    if len(times_s) != len(watts):
        raise ValueError("times and watts differ in length")
    return sum((t1 - t0) * (w0 + w1) / 2.0 for t0, t1, w0, w1 in zip(times_s, times_s[1:], watts, watts[1:]))


def power_average_window_ms(compute_capability: tuple[int, int] | None) -> float | None:
    """The averaging window of nvmlDeviceGetPowerUsage: 1000 ms on Ampere-except-GA100 and newer."""
    if compute_capability is None:
        return None
    return 1000.0 if tuple(compute_capability) >= (8, 6) else None


def nvml_selector(cuda_index: int, visible_devices: str | None) -> int | str:
    """Which NVML device a CUDA device index means: an NVML index, or a GPU UUID.

    CUDA_VISIBLE_DEVICES renumbers devices: with "2,3", CUDA device 0 is NVML device 2.
    Entries may be UUIDs ("GPU-..."), returned as such for nvmlDeviceGetHandleByUUID.
    Assumes CUDA orders devices like NVML (PCI order, as with CUDA_DEVICE_ORDER=PCI_BUS_ID).
    """
    if not visible_devices:
        return cuda_index
    entries = [e.strip() for e in visible_devices.split(",") if e.strip()]
    if cuda_index >= len(entries):
        raise ValueError(f"CUDA device {cuda_index} is not in CUDA_VISIBLE_DEVICES={visible_devices!r}")
    entry = entries[cuda_index]
    return int(entry) if entry.isdigit() else entry


# -- NVML access ----------------------------------------------------------------------------------
class _NvmlDevice:
    """An initialised NVML handle for one GPU; close() shuts NVML down again."""

    def __init__(self, cuda_index: int = 0) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        selector = nvml_selector(cuda_index, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if isinstance(selector, int):
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(selector)
        else:
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(selector)
        name = pynvml.nvmlDeviceGetName(self.handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            self.compute_capability: tuple[int, int] | None = tuple(
                pynvml.nvmlDeviceGetCudaComputeCapability(self.handle)
            )  # type: ignore[assignment]
        except Exception:  # noqa: BLE001
            self.compute_capability = None
        self.selector = selector

    def energy_mj(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _call_problem(method: str, fn: Any) -> str | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return f"{method} is not supported on this GPU ({type(e).__name__}: {e})"
    return None


def _device_problem(cuda_index: int, method: str, read: Any) -> str | None:
    """Why NVML cannot give `method` for GPU `cuda_index` (read(dev) is tried once), or None."""
    problem = nvml_problem(0)
    if problem:
        return problem
    try:
        dev = _NvmlDevice(cuda_index)
    except Exception as e:  # noqa: BLE001
        return f"NVML cannot open CUDA device {cuda_index}: {type(e).__name__}: {e}"
    try:
        return _call_problem(method, lambda: read(dev))
    finally:
        dev.close()


def counter_problem(cuda_index: int = 0) -> str | None:
    """Why 'nvml-counter' cannot measure GPU `cuda_index`, or None when it can."""
    return _device_problem(cuda_index, "nvmlDeviceGetTotalEnergyConsumption (Volta and newer)", lambda d: d.energy_mj())


def sampled_problem(cuda_index: int = 0) -> str | None:
    """Why 'nvml-sampled' cannot measure GPU `cuda_index`, or None when it can."""
    return _device_problem(cuda_index, "nvmlDeviceGetPowerUsage", lambda d: d.power_w())


# -- meters ---------------------------------------------------------------------------------------
class NvmlCounterMeter(PowerMeter):
    """Energy from the GPU's total-energy counter: the difference of two reads."""

    method = "nvml-counter"
    estimated = False

    @classmethod
    def problem(cls, index: int, tdp_w: float | None) -> str | None:
        return counter_problem(index)

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> PowerMeter:
        return cls(index)

    def __init__(self, cuda_index: int = 0) -> None:
        self._dev = _NvmlDevice(cuda_index)
        self._e0 = 0
        self._t0 = 0.0
        self._started = False
        self._period_ms: float | None = None
        self._period_measured = False

    @property
    def period_ms(self) -> float | None:
        """The counter's update period, measured once by polling it."""
        if not self._period_measured:
            self._period_ms = poll_update_period_ms(self._dev.energy_mj, max_wait_s=1.0, poll_s=0.001)
            self._period_measured = True
        return self._period_ms

    def begin(self) -> None:
        _ = self.period_ms
        self._t0 = time.perf_counter()
        self._e0 = self._dev.energy_mj()
        self._started = True

    def end(self) -> EnergyReading | None:
        if not self._started:
            return None
        e1 = self._dev.energy_mj()
        duration = time.perf_counter() - self._t0
        self._started = False
        period = self.period_ms
        return EnergyReading(
            energy_j=counter_delta(self._e0, e1, None) / 1000.0,
            duration_s=duration,
            method=self.method,
            period_ms=period,
            estimated=False,
            note=f"NVML total-energy counter, {self._dev.name} (whole board)",
            too_short=window_too_short(duration, period),
        )

    def close(self) -> None:
        self._dev.close()


class NvmlSampledMeter(PowerMeter):
    """Energy from board power sampled in a background thread and integrated (trapezoid rule)."""

    method = "nvml-sampled"
    estimated = False

    @classmethod
    def problem(cls, index: int, tdp_w: float | None) -> str | None:
        return sampled_problem(index)

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> PowerMeter:
        return cls(index)

    def __init__(self, cuda_index: int = 0, sample_period_s: float = SAMPLE_PERIOD_S) -> None:
        self._dev = _NvmlDevice(cuda_index)
        self._sample_period_s = sample_period_s
        self._times: list[float] = []
        self._watts: list[float] = []
        self._lock = threading.Lock()
        self._sampler = PeriodicSampler(self._sample, sample_period_s, "hwbench-nvml-sampler")

    @property
    def period_ms(self) -> float | None:
        """The coarser of our sampling period and NVML's own averaging window."""
        window = power_average_window_ms(self._dev.compute_capability)
        return max(self._sample_period_s * 1000.0, window or 0.0)

    def _sample(self) -> None:
        w = self._dev.power_w()
        with self._lock:
            self._times.append(time.perf_counter())
            self._watts.append(w)

    def begin(self) -> None:
        self._sampler.stop()
        with self._lock:
            self._times, self._watts = [], []
        self._sample()
        self._sampler.start()

    def end(self) -> EnergyReading | None:
        if not self._sampler.running:
            return None
        self._sampler.stop()
        self._sample()
        with self._lock:
            times, watts = list(self._times), list(self._watts)
        duration = times[-1] - times[0]
        period = self.period_ms
        window = power_average_window_ms(self._dev.compute_capability)
        averaged = f"; NVML averages power over {window:.0f} ms" if window else ""
        return EnergyReading(
            energy_j=trapezoid_energy_j(times, watts),
            duration_s=duration,
            method=self.method,
            period_ms=period,
            estimated=False,
            note=f"NVML power sampled every {self._sample_period_s * 1000:.0f} ms, {self._dev.name}{averaged}",
            too_short=window_too_short(duration, period),
        )

    def close(self) -> None:
        self._sampler.stop()
        self._dev.close()
