"""The adapter contract: the system under test, after MLPerf LoadGen's SUT.

An adapter compiles or loads one model for one device and precision, binds the
inputs it is given, and runs one batch when asked. It never keeps time: the
profiler does (hwbench.measure.profiler). One adapter instance serves one trial, in a
worker process of its own (hwbench.measure.worker), so vendor libraries never share a
process with another adapter's.

Lifecycle, driven by the worker:
    probe()                         class-level: can it run here, and if not why
    a = Adapter(options)
    a.check(model, precision, batch, scenario) -> reason or None (None: supported)
    a.precision_support(precision) -> PrecisionSupport   # native, emulated or unknown here
    a.prepare(model, precision, batch_size, inputs)   # compile/load + bind inputs; cold start
    a.run()                         # one batch on the bound inputs, returns when done
    a.open_concurrent(n)            # offline scenario only: a ConcurrentRunner
    a.infer(inputs) -> outputs      # for the accuracy check, outside timing
    a.effective() -> dict           # precision_effective and the settings that applied
    a.device_memory_peak_mb()       # accelerators; CPU memory is the worker's RSS
    a.close()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from hwbench.host.isa import PrecisionSupport, host_support
from hwbench.models.spec import ModelSpec

if TYPE_CHECKING:  # numpy only for type hints: `hwbench --help` must not load it
    import numpy as np


DEVICE_KINDS = ("cpu", "cuda", "gpu", "npu", "neuron", "none")  # what picks the power meter and the price share


@dataclass(frozen=True)
class Effective:
    """What actually ran a trial, as the adapter reports it after prepare(): typed, never loose keys.

    The runner records the device from it, the power meter opens on (device_kind, device_index),
    and the analyser charges accelerators_used / the instance's accelerator count of its price.
    """

    precision: str  # the precision that ran (record: precision_effective)
    device_kind: str  # one of DEVICE_KINDS: "gpu" is an OpenVINO GPU, "cuda" an NVIDIA device
    device_name: str  # e.g. "AMD EPYC", "NVIDIA H100 80GB HBM3", "Intel(R) Arc(TM) A770 Graphics"
    device_index: int | None = None  # index among the devices of its kind (cuda:1 -> 1); None: the host CPU
    accelerator: str | None = None  # the price catalog's accelerator name ("H100", "A100-40GB", "Inferentia2"); None on a CPU
    accelerators_used: int | None = None  # k of the instance's accelerators this trial held (None on a CPU)
    settings: dict[str, Any] = field(default_factory=dict)  # effective runtime settings worth recording

    def __post_init__(self) -> None:
        if self.device_kind not in DEVICE_KINDS:
            raise ValueError(f"device_kind must be one of {', '.join(DEVICE_KINDS)}, got {self.device_kind!r}")
        if not self.precision or not self.device_name:
            raise ValueError("Effective needs the precision that ran and the device's name")
        if self.accelerators_used is not None and self.accelerators_used < 1:
            raise ValueError(f"accelerators_used must be at least 1, got {self.accelerators_used}")


@dataclass(frozen=True)
class Probe:
    """Whether an adapter can run on this machine, and precisely why not."""

    available: bool
    reason: str = ""  # empty when available
    install_hint: str = ""  # e.g. "pip install 'hwbench[openvino]'"
    devices: tuple[str, ...] = ()  # device names the runtime reports, e.g. ("CPU",) or ("NVIDIA H100",)
    versions: dict[str, str] = field(default_factory=dict)  # library -> version

    @classmethod
    def missing(cls, reason: str, hint: str = "") -> "Probe":
        return cls(available=False, reason=reason, install_hint=hint)


@dataclass(frozen=True)
class AdapterOptions:
    """Per-run adapter settings from the CLI or sweep file (requested, not effective)."""

    device: str = ""  # adapter-specific device selector ("" = adapter default), e.g. "GPU.0", "cuda:1"
    threads: int = 0  # 0 = adapter/runtime default
    concurrency: int = 0  # offline scenario: 0 = adapter picks (tuned), n = fixed
    cache_dir: str = ""  # where compiled artefacts (quantized models, engines) are cached
    extra: dict[str, Any] = field(default_factory=dict)  # the sweep file's [adapter_options.NAME] for this adapter


class ConcurrentRunner(Protocol):
    """The offline scenario's request queue. The profiler stamps times; the runner only queues.

    submit(tag) starts one batch and returns without waiting (blocking only while no
    request slot is idle); wait() blocks until at least one submitted batch has
    finished and returns the finished tags. drain() waits for all.
    """

    concurrency: int

    def submit(self, tag: int) -> None: ...

    def wait(self) -> list[int]: ...

    def drain(self) -> list[int]: ...


class Adapter(ABC):
    """Base class of every device adapter. Subclasses live in device_adapters/."""

    name: ClassVar[str] = ""
    device_kind: ClassVar[str] = "cpu"  # "cpu" | "cuda" | "neuron" | "npu" | "none": picks the power meter
    precisions: ClassVar[tuple[str, ...]] = ()
    scenarios: ClassVar[tuple[str, ...]] = ("single-stream",)
    description: ClassVar[str] = ""

    def __init__(self, options: AdapterOptions | None = None) -> None:
        self.options = options or AdapterOptions()

    # -- capability queries (no side effects) ---------------------------------
    @classmethod
    @abstractmethod
    def probe(cls) -> Probe:
        """Can this adapter run here? Must not raise; import vendor libraries lazily inside."""

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        """Return why this point cannot run (-> status=unsupported), or None when it can."""
        if precision not in self.precisions:
            return f"{self.name} does not support {precision} (supports {', '.join(self.precisions)})"
        if scenario not in self.scenarios:
            return f"{self.name} does not support the {scenario} scenario"
        return None

    def precision_support(self, precision: str) -> PrecisionSupport:
        """Whether this device runs `precision` natively, or emulates/upcasts it (no side effects).

        The base answer is the host ISA rule (hwbench.host.isa) for CPU adapters and "unknown" for
        other devices; adapters whose runtime knows better override it.
        """
        if self.device_kind == "cpu":
            return host_support(precision)
        return PrecisionSupport(None, f"{precision} on {self.device_kind}: native or emulated not known to hwbench")

    # -- the system under test -------------------------------------------------
    @abstractmethod
    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        """Compile/load the model and bind `inputs` so that run() needs no arguments."""

    @abstractmethod
    def run(self) -> None:
        """Run one batch on the bound inputs; return only when the device has finished."""

    def open_concurrent(self, concurrency: int) -> ConcurrentRunner:
        """The offline scenario's queue; adapters that list 'offline' in scenarios override this."""
        raise NotImplementedError(f"{self.name} has no offline scenario")

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for given inputs, as numpy float arrays, for the accuracy check (untimed)."""

    def effective(self) -> dict[str, Any]:
        """What actually applied: at least 'precision_effective', plus settings worth recording."""
        return {}

    def device_memory_peak_mb(self) -> float | None:
        """Peak accelerator memory of this trial, when the device reports it."""
        return None

    def close(self) -> None:
        """Release the runtime's resources."""
