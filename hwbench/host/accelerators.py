"""Which accelerators this machine has: NVIDIA GPUs through NVML, AWS Neuron devices through neuron-ls.

Used by `hwbench devices`, by the accelerator adapters' probes (to say precisely what is
missing: the driver, NVML, or a visible GPU) and by the power meters. Every function here
answers "nothing" on a machine without accelerators; none of them raises for absence.

Facts relied on:
- NVML (nvidia-ml-py, module `pynvml`): nvmlInit/nvmlShutdown, nvmlDeviceGetCount,
  nvmlDeviceGetHandleByIndex, nvmlDeviceGetName, nvmlDeviceGetMemoryInfo (bytes),
  nvmlSystemGetDriverVersion, nvmlDeviceGetCudaComputeCapability, nvmlDeviceGetUUID,
  nvmlDeviceGetComputeRunningProcesses (usedGpuMemory in bytes).
- The CUDA driver library is `libcuda.so.1` on Linux; without it no CUDA runtime can start.
- `neuron-ls --json-output` prints a JSON array with one object per Neuron device carrying
  `neuron_device` (index), `nc_count` (NeuronCores) and `memory_size` (bytes).
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

NEURON_TOOLS_DIR = "/opt/aws/neuron/bin"  # where the Neuron DLAMI installs neuron-ls/neuron-monitor


@dataclass(frozen=True)
class AcceleratorInfo:
    """One accelerator device as its vendor tool reports it."""

    kind: str  # "cuda" | "neuron"
    index: int
    name: str
    memory_mb: float | None
    driver: str | None = None
    compute_capability: str | None = None  # "9.0" for an H100
    cores: int | None = None  # NeuronCores per Neuron device
    uuid: str | None = None


def _text(value: Any) -> str:
    """NVML returns bytes in old bindings and str in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


# -- NVIDIA ---------------------------------------------------------------------------------
def cuda_driver_problem() -> str | None:
    """Why the CUDA driver library cannot be loaded here, or None when it can."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return f"no NVIDIA driver: libcuda.so.1 cannot be loaded ({e})"
    return None


def nvml_problem(device_index: int = 0) -> str | None:
    """Why NVML cannot see GPU `device_index`, or None when it can."""
    try:
        import pynvml
    except ImportError as e:
        return f"nvidia-ml-py is not importable ({e})"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
        return f"NVML cannot start: {type(e).__name__}: {e}"
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        if count == 0:
            return "NVML reports no GPU"
        if device_index >= count:
            return f"NVML sees {count} GPU(s); index {device_index} does not exist"
        return None
    except Exception as e:  # noqa: BLE001
        return f"NVML query failed: {type(e).__name__}: {e}"
    finally:
        _nvml_shutdown(pynvml)


def nvidia_problem(device_index: int = 0) -> str | None:
    """Everything that stops CUDA work on GPU `device_index`, joined; None when nothing does."""
    problems = [p for p in (cuda_driver_problem(), nvml_problem(device_index)) if p]
    return "; ".join(problems) or None


def _nvml_shutdown(pynvml: Any) -> None:
    try:
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - shutting down a library that failed to start
        pass


def nvidia_gpus() -> list[AcceleratorInfo]:
    """NVIDIA GPUs visible to NVML, in NVML's (PCI) order; [] without a driver."""
    if nvml_problem(0) is not None:
        return []
    import pynvml

    pynvml.nvmlInit()
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                cc: str | None = f"{major}.{minor}"
            except Exception:  # noqa: BLE001 - very old drivers
                cc = None
            gpus.append(
                AcceleratorInfo(
                    kind="cuda",
                    index=i,
                    name=_text(pynvml.nvmlDeviceGetName(h)),
                    memory_mb=float(mem.total) / 2**20,
                    driver=driver,
                    compute_capability=cc,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
                )
            )
        return gpus
    finally:
        _nvml_shutdown(pynvml)


def process_gpu_memory_mb(pid: int, device_index: int = 0) -> float | None:
    """GPU memory NVML attributes to process `pid` on GPU `device_index` (None when unknown)."""
    if nvml_problem(device_index) is not None:
        return None
    import pynvml

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            used = getattr(proc, "usedGpuMemory", None)
            if proc.pid == pid and used is not None:
                return float(used) / 2**20
        return None
    except Exception:  # noqa: BLE001 - permission or unsupported query: unknown, not zero
        return None
    finally:
        _nvml_shutdown(pynvml)


# The price catalog's accelerator names (hwbench/data/prices.toml) for the names vendors report.
# Tried in order, first match wins; each key is a lower-case substring of the reported name,
# e.g. NVML "NVIDIA A100-SXM4-40GB" / "NVIDIA A100 80GB PCIe", "Tesla T4", "NVIDIA H100 80GB HBM3",
# and the Neuron driver's sysfs name ("AWS Inferentia2" as _neuron_device_name() writes it).
CATALOG_NAMES: tuple[tuple[str, str], ...] = (
    ("a100-sxm4-40gb", "A100-40GB"), ("a100-pcie-40gb", "A100-40GB"), ("a100 40gb", "A100-40GB"),
    ("a100-sxm4-80gb", "A100-80GB"), ("a100 80gb", "A100-80GB"), ("a100-80gb", "A100-80GB"),
    ("h200", "H200"), ("h100", "H100"), ("l40s", "L40S"), ("l40", "L40"), ("a10g", "A10G"), ("l4", "L4"), ("t4", "T4"),
    ("inferentia2", "Inferentia2"), ("trainium2", "Trainium2"), ("trainium", "Trainium"),
)


def catalog_accelerator(device_name: str) -> str | None:
    """The price catalog's name for a reported device name, or None when hwbench does not know it."""
    text = device_name.lower()
    return next((catalog for key, catalog in CATALOG_NAMES if key in text), None)


def cuda_visible_nvml_index(cuda_index: int, visible: str | None = None) -> int:
    """The NVML index of CUDA device `cuda_index` under CUDA_VISIBLE_DEVICES (plain indices only;
    anything else, or no variable, maps an index to itself)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if entries and all(e.isdigit() for e in entries) and cuda_index < len(entries):
        return int(entries[cuda_index])
    return cuda_index


def nvidia_gpu(cuda_index: int) -> AcceleratorInfo | None:
    """The NVIDIA GPU that CUDA calls `cuda_index` (NVML's view), or None when NVML cannot see it."""
    index = cuda_visible_nvml_index(cuda_index)
    return next((g for g in nvidia_gpus() if g.index == index), None)


# -- AWS Neuron -----------------------------------------------------------------------------
def neuron_tool(name: str) -> str | None:
    """Path of a Neuron CLI tool: on PATH, or in the DLAMI's tool directory."""
    found = shutil.which(name)
    if found:
        return found
    candidate = os.path.join(NEURON_TOOLS_DIR, name)
    return candidate if os.access(candidate, os.X_OK) else None


def neuron_device_nodes() -> list[str]:
    """The /dev/neuron* device nodes the Neuron driver creates, one per device."""
    return sorted(glob.glob("/dev/neuron[0-9]*"))


def neuron_problem() -> str | None:
    """Why no Neuron device can be used here, or None when one can."""
    if not neuron_device_nodes():
        return "no /dev/neuron* device (not an Inferentia/Trainium host, or the Neuron driver is not loaded)"
    return None


def parse_neuron_ls(text: str) -> list[AcceleratorInfo]:
    """Devices from `neuron-ls --json-output` output (a JSON array, one object per device)."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("neuron-ls --json-output did not print a JSON array")
    devices = []
    for entry in data:
        memory = entry.get("memory_size")
        devices.append(
            AcceleratorInfo(
                kind="neuron",
                index=int(entry["neuron_device"]),
                name=_neuron_device_name(int(entry["neuron_device"])),
                memory_mb=float(memory) / 2**20 if memory is not None else None,
                cores=int(entry["nc_count"]) if entry.get("nc_count") is not None else None,
            )
        )
    return devices


def _neuron_device_name(index: int) -> str:
    """The device name the Neuron driver publishes in sysfs, or a generic label."""
    path = f"/sys/devices/virtual/neuron_device/neuron{index}/info/architecture/device_name"
    try:
        with open(path, encoding="utf-8") as f:
            name = f.read().strip()
        return f"AWS {name}" if name else "AWS Neuron device"
    except OSError:
        return "AWS Neuron device"


def neuron_devices(timeout_s: float = 20.0) -> list[AcceleratorInfo]:
    """Neuron devices from neuron-ls; [] when there is no device or no tool."""
    tool = neuron_tool("neuron-ls")
    if tool is None or neuron_problem() is not None:
        return []
    try:
        out = subprocess.run(
            [tool, "--json-output"], capture_output=True, text=True, timeout=timeout_s, check=True
        ).stdout
        return parse_neuron_ls(out)
    except (subprocess.SubprocessError, OSError, ValueError, KeyError):
        return []


# -- both -----------------------------------------------------------------------------------
def list_accelerators() -> list[AcceleratorInfo]:
    """Every accelerator found here (NVIDIA GPUs, then Neuron devices); [] on a CPU-only machine."""
    return nvidia_gpus() + neuron_devices()


def summarize(accelerators: list[AcceleratorInfo]) -> list[dict[str, Any]]:
    """One row per distinct (kind, name): count, memory per device, driver, compute capability."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for a in accelerators:
        row = rows.setdefault(
            (a.kind, a.name),
            {
                "kind": a.kind,
                "name": a.name,
                "count": 0,
                "memory_mb": a.memory_mb,
                "driver": a.driver,
                "compute_capability": a.compute_capability,
                "cores_per_device": a.cores,
            },
        )
        row["count"] += 1
    return list(rows.values())
