"""The adapter kit: what device adapters share, beside the contract they implement.

Adapters build on this module (and hwbench.adapter.derived for ONNX-side model variants),
never on each other and never on the measurement layer:

- parse_device(): the one reader of a device selector ("", "cpu", "cuda:1", "GPU.1", "NPU",
  a bare "1") -> Placement(kind, index). Adapter.placement_for() uses it; so do the trial's
  power meter and the runner's idle power, so a trial is metered on the device it ran on.
- cache_root(): the one cache folder (``~`` expanded), shared with hwbench.models.
- atomic_build(): build a cached artefact (file or folder) in a private temporary folder and
  publish it whole (hwbench.fsutil.publish); a concurrent builder's copy wins a lost race. A cached
  artefact is verified (size and hash, hwbench.fsutil.checksum_problem) before use and rebuilt once
  when it fails, with a note for the record's warnings; cached() is that check for a caller's shortcut.
- outputs_in_batches(): outputs of a static-batch artefact for any number of rows.
- cpu_effective(), cuda_effective(), neuron_effective(): typed device identity (Effective) for
  the host CPU, an NVIDIA GPU (NVML name -> catalog name) and NeuronCores (-> chips).
- NullBase: the do-nothing system under test that the null and faulty test adapters share.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwbench.adapter.contract import Adapter, AdapterOptions, ConcurrentRunner, Effective, Probe
from hwbench.errors import UsageError
from hwbench.fsutil import checksum_path, checksum_problem, note_rebuilt, publish, write_checksum
from hwbench.models.spec import ModelSpec
from hwbench.precision import ALL

if TYPE_CHECKING:
    import numpy as np

    from hwbench.host.accelerators import AcceleratorInfo


# -- device selectors -----------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where an adapter instance runs: a kind of DEVICE_KINDS and an index among that kind's devices
    (None for the host CPU and for 'none'). Picks the power meter and labels the record."""

    kind: str
    index: int | None = None

    @property
    def label(self) -> str:
        """'cpu', 'none', 'cuda:1', 'gpu:0': a key for idle power in the run manifest."""
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def meter_index(self) -> int:
        """The index a power meter opens: the device's, 0 for the host CPU (meters ignore it there)."""
        return self.index or 0


# Selector prefixes (case-insensitive) -> kind. "GPU"/"NPU" are OpenVINO's device names, "cuda"
# torch's and CUDA's; "neuron" a Neuron device.
SELECTOR_KINDS = {"cpu": "cpu", "cuda": "cuda", "gpu": "gpu", "npu": "npu", "neuron": "neuron"}
_SELECTOR = re.compile(r"([A-Za-z]+)(?:[:.](\d+))?")


def parse_device(selector: str, default_kind: str) -> Placement:
    """The one device-selector parser: '' -> the default kind's first device (None on a CPU),
    'cpu' -> the host CPU, 'cuda' / 'cuda:1' / 'GPU.1' / 'NPU' -> that kind and index (0 when
    none), a bare '1' -> device 1 of the default kind. UsageError for anything else."""
    text = (selector or "").strip()
    if not text:
        return Placement(default_kind, None if default_kind in ("cpu", "none") else 0)
    if text.isdigit():
        if default_kind in ("cpu", "none"):
            raise UsageError(f"device {text!r}: a bare index needs an accelerator kind (e.g. cuda:{text})")
        return Placement(default_kind, int(text))
    m = _SELECTOR.fullmatch(text)
    kind = SELECTOR_KINDS.get(m.group(1).lower()) if m else None
    if m is None or kind is None:
        raise UsageError(f"cannot read a device from {selector!r}: use cpu, cuda[:N], GPU[.N], NPU[.N], neuron[:N] or N")
    if kind == "cpu":
        return Placement("cpu", None)
    return Placement(kind, int(m.group(2)) if m.group(2) else 0)


# -- cache and atomic build -----------------------------------------------------------------
def cache_root(options: AdapterOptions) -> Path:
    """Where derived models and engines are kept: options.cache_dir (``~`` expanded), else hwbench's cache."""
    from hwbench.models.build import cache_root as root

    return root(options.cache_dir)


def atomic_build(target: Path, build: Callable[[Path], None], in_folder: bool = False) -> Path:
    """`target` if it exists; else build(staged) into a private temporary folder beside it and
    publish the result atomically, so a reader never sees half an artefact.

    `staged` has target's name; it may be a file or a folder. in_folder=True runs the build with
    the temporary folder as working directory (ONNX Runtime's quantizer writes scratch files
    there). When another process published first, its copy is kept (they are identical).
    """
    target = Path(target)
    if target.exists():
        problem = checksum_problem(target)
        if problem is None:
            return target
        note_rebuilt(f"cached {target.name} failed its check ({problem}): rebuilt")
        _discard(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    cwd = os.getcwd() if in_folder else None
    try:
        if cwd is not None:
            os.chdir(tmp)
        staged = tmp / target.name
        build(staged)
        try:
            publish(staged, target)
        except OSError:
            if not target.exists():
                raise  # not a lost race
        else:
            write_checksum(target)
    finally:
        if cwd is not None:
            os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def cached(target: Path) -> bool:
    """True when `target` is in the cache and passes its size and hash check (atomic_build rebuilds it if not)."""
    return Path(target).exists() and checksum_problem(Path(target)) is None


def _discard(target: Path) -> None:
    """Remove a cached artefact that failed its check (another process may have removed it first)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
    checksum_path(target).unlink(missing_ok=True)


# -- static batches -------------------------------------------------------------------------
def outputs_in_batches(
    infer_batch: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
    inputs: dict[str, np.ndarray],
    batch_size: int,
) -> list[np.ndarray]:
    """Run `infer_batch` on slices of exactly `batch_size` rows and stitch the outputs, so the
    accuracy check runs the very static-batch artefact that was timed.

    The last slice is padded by repeating its final row, and the padding is cut from
    the outputs. Every output must keep the batch on axis 0.
    """
    import numpy as np

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows = {int(a.shape[0]) for a in inputs.values()}
    if len(rows) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(rows)}")
    n = rows.pop()
    if n == 0:
        raise ValueError("no rows to infer")
    parts: list[list[np.ndarray]] = []
    for start in range(0, n, batch_size):
        take = min(batch_size, n - start)
        chunk: dict[str, np.ndarray] = {}
        for name, arr in inputs.items():
            piece = arr[start : start + take]
            if take < batch_size:
                piece = np.concatenate([piece, np.repeat(piece[-1:], batch_size - take, axis=0)], axis=0)
            chunk[name] = piece
        parts.append([np.asarray(o)[:take] for o in infer_batch(chunk)])
    return [np.concatenate(col, axis=0) for col in zip(*parts)]


# -- typed identity -------------------------------------------------------------------------
def cpu_effective(precision: str, settings: dict[str, Any] | None = None) -> Effective:
    """The host CPU ran it: named as the fingerprint names it; no accelerator share."""
    from hwbench.host.fingerprint import cpu_model

    return Effective(precision=precision, device_kind="cpu", device_name=cpu_model(), settings=dict(settings or {}))


def cuda_effective(precision: str, index: int, settings: dict[str, Any] | None = None,
                   device_name: str | None = None) -> Effective:
    """NVIDIA GPU `index` (CUDA's numbering) ran it, alone: one of the instance's GPUs.

    The name is the runtime's when given (torch.cuda.get_device_name), else NVML's; the
    catalog name comes from hwbench.host.accelerators.catalog_accelerator."""
    from hwbench.host.accelerators import catalog_accelerator, nvidia_gpu

    if not device_name:
        gpu = nvidia_gpu(index)
        device_name = gpu.name if gpu is not None else f"CUDA device {index}"
    return Effective(precision=precision, device_kind="cuda", device_name=device_name, device_index=index,
                     accelerator=catalog_accelerator(device_name), accelerators_used=1, settings=dict(settings or {}))


# NeuronCore-v2 per chip on Inferentia2 and Trainium1 (AWS Neuron docs, "Inferentia2 Architecture":
# two NeuronCores per Inferentia2 device; inf2.48xlarge: 12 devices, 24 cores). Used only when
# neuron-ls does not report nc_count.
NEURONCORES_PER_CHIP = 2


def neuron_chips_used(cores_used: int, cores_per_chip: int | None) -> int:
    """Chips (Neuron devices) a trial held: the price catalog counts chips, not cores. A trial on
    k cores of chips with c cores each holds ceil(k / c) chips (its cores are packed onto as few
    chips as possible: the Neuron runtime hands out consecutive cores)."""
    if cores_used < 1:
        raise ValueError(f"cores_used must be at least 1, got {cores_used}")
    per = cores_per_chip if cores_per_chip and cores_per_chip > 0 else NEURONCORES_PER_CHIP
    return math.ceil(cores_used / per)


def neuron_effective(precision: str, cores_used: int, devices: Iterable[AcceleratorInfo], index: int = 0,
                     settings: dict[str, Any] | None = None) -> Effective:
    """`cores_used` NeuronCores starting on Neuron device `index` ran it; charged as whole chips."""
    from hwbench.host.accelerators import catalog_accelerator

    devices = list(devices)
    device = next((d for d in devices if d.index == index), devices[0] if devices else None)
    name = device.name if device is not None else "AWS Neuron device"
    chips = neuron_chips_used(cores_used, device.cores if device is not None else None)
    extra = {"neuroncores_used": cores_used, "neuron_chips_used": chips,
             "neuroncores_present": sum(d.cores or 0 for d in devices) or None, "neuron_devices": len(devices)}
    return Effective(precision=precision, device_kind="neuron", device_name=name, device_index=index,
                     accelerator=catalog_accelerator(name), accelerators_used=chips,
                     settings={**(settings or {}), **extra})


# -- the do-nothing system under test -------------------------------------------------------
class NullBase(Adapter):
    """Runs nothing: a trial measures the profiler's own overhead. The null adapter and the
    fault-injecting test adapter both build on it (adapters never import each other)."""

    device_kind = "none"
    precisions = ALL
    scenarios = ("single-stream", "offline", "server")
    partial_batch = "exact"  # nothing runs, whatever the batch

    @classmethod
    def probe(cls) -> Probe:
        return Probe(available=True, devices=("none",))

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        self._precision = precision
        self._inputs = inputs

    def run(self) -> None:
        pass

    def run_batch(self, n: int) -> None:
        self.run()

    def open_concurrent(self, concurrency: int) -> ConcurrentRunner:
        from hwbench.adapter.concurrency import ThreadedRunner

        return ThreadedRunner(lambda slot: self.run(), max(1, concurrency or 2))

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        import numpy as np

        return [np.asarray(v, dtype=np.float32) for v in inputs.values()]

    def effective(self) -> Effective:
        return Effective(precision=self._precision, device_kind="none", device_name="none")
