"""The environment fingerprint saved with every run, so runs from many machines merge safely."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from hwbench import __version__

ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "bf16", "i8mm",
    "avx_ne_convert", "amx_fp16", "avx_vnni_int8", "fphp", "asimdhp", "asimddp",  # hwbench.host.isa's rule
)
LIBRARIES = (
    "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "torch", "tensorrt",
    "torch-neuronx", "pyarrow", "pandas", "nvidia-ml-py",
)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor block is enough
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or platform.processor() or platform.machine()


def cpu_identity() -> Any:
    """This host's CPU vendor and microarchitecture family (hwbench.host.cpu.CpuIdentity)."""
    from hwbench.host.cpu import identify_cpu
    from hwbench.host.instance import read_dmi

    return identify_cpu(_cpuinfo(), read_dmi().sys_vendor)


def cpu_flags() -> list[str]:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in ISA_FLAGS if f in flags]


def cpu_flags_known() -> bool:
    """Whether this OS shows the CPU's flags at all (Linux /proc/cpuinfo); elsewhere cpu_flags() is empty."""
    info = _cpuinfo()
    return bool(info.get("flags") or info.get("Features"))


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # lazy: about 25 ms of start-up

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_revision() -> str | None:
    here = Path(__file__).resolve().parents[2]  # the checkout: hwbench/host/ -> repo root
    if not (here / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def accelerators() -> list[dict[str, Any]]:
    """GPUs (NVML) and Neuron devices (neuron-ls), when there are any."""
    from hwbench.host import accelerators as gpu_info

    try:
        return list(gpu_info.list_accelerators())
    except Exception:  # noqa: BLE001 - a broken driver must not break the fingerprint
        return []


def host_fingerprint(with_accelerators: bool = True) -> dict[str, Any]:
    """Everything about this machine that could change a measurement."""
    import psutil

    mem = psutil.virtual_memory().total
    cpu = cpu_identity()
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_vendor": cpu.vendor,  # "AMD", "Intel", "AWS"; None when the table does not know the numbers
        "cpu_family": cpu.family,  # "Zen 3", "Sapphire Rapids", "Graviton3"
        "cpu_id": cpu.cpuid,  # the raw numbers: "AuthenticAMD family 25 model 1"
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(mem / 2**30, 2),
        "os": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "hwbench_version": __version__,
        "git_revision": git_revision(),
        "libraries": library_versions(),
        "accelerators": accelerators() if with_accelerators else [],
        "env": {k: v for k, v in os.environ.items() if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE")},
    }
