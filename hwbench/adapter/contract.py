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
    a.run_batch(n)                  # server scenario only: one dynamic batch of n <= batch_size requests
    a.infer(inputs) -> outputs      # for the accuracy check, outside timing
    a.effective() -> Effective      # typed: the precision and the device that ran, the settings that applied
    a.device_memory_peak_mb()       # accelerators; CPU memory is the worker's RSS
    a.close()

Server scenario (hwbench.measure.server): the adapter is prepared at the dynamic batcher's max
batch, and run_batch(n) runs a batch of n requests (1 <= n <= that size). `partial_batch` says
how a partial batch runs, and is recorded in the settings: "padded" (the default run_batch: the
whole prepared batch, as a static engine pads one; a partial batch costs a full one) or "exact"
(an adapter whose runtime takes any batch size overrides run_batch to run only n rows).

Device kind: the class attribute `device_kind` is an adapter's default kind (what `hwbench
devices` lists, and the kind of an adapter that runs on one kind only); `device_kinds` lists
the kinds a device selector may pick. An INSTANCE's kind and index are `a.placement`
(from Adapter.placement_for(options.device), parsed by hwbench.adapter.kit.parse_device): the
trial's power meter and the runner's idle power use it, so `--device cuda:1` is metered on GPU 1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from hwbench.host.isa import PrecisionSupport, host_support
from hwbench.models.spec import ModelSpec

if TYPE_CHECKING:  # numpy only for type hints: `hwbench --help` must not load it
    import numpy as np

    from hwbench.adapter.kit import Placement


PARTIAL_BATCH = ("padded", "exact")  # Adapter.partial_batch: a partial batch padded to the prepared size, or run as is
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
    # "server": requests arrive open loop, with idle gaps between them, beside an issuer thread that must
    # wake on time; a runtime whose worker threads spin-wait when idle should let them sleep instead
    scenario: str = ""


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

    def close(self) -> None:
        """Stop the runner's threads or requests; the profiler's caller calls it once, always."""


class Adapter(ABC):
    """Base class of every device adapter. Subclasses live in device_adapters/."""

    name: ClassVar[str] = ""
    device_kind: ClassVar[str] = "cpu"  # the default kind, one of DEVICE_KINDS (an instance's is self.placement.kind)
    device_kinds: ClassVar[tuple[str, ...]] = ()  # kinds a device selector may pick; () = device_kind only
    precisions: ClassVar[tuple[str, ...]] = ()
    scenarios: ClassVar[tuple[str, ...]] = ("single-stream",)
    description: ClassVar[str] = ""
    partial_batch: ClassVar[str] = "padded"  # server scenario: how run_batch(n < prepared) runs, see PARTIAL_BATCH

    def __init__(self, options: AdapterOptions | None = None) -> None:
        self.options = options or AdapterOptions()

    # -- where it runs ---------------------------------------------------------
    @classmethod
    def placement_for(cls, selector: str) -> "Placement":
        """(kind, index) an instance with this device selector runs on; UsageError when the
        selector names a kind this adapter cannot run on. An adapter that runs on the host CPU
        only (or on nothing) ignores the selector: a sweep's --device is another adapter's."""
        from hwbench.adapter.kit import Placement, parse_device
        from hwbench.errors import UsageError

        kinds = cls.device_kinds or (cls.device_kind,)
        if kinds == (cls.device_kind,) and cls.device_kind in ("cpu", "none"):
            return Placement(cls.device_kind, None)
        placement = parse_device(selector, cls.device_kind)
        if placement.kind not in kinds:
            raise UsageError(f"{cls.name} runs on {', '.join(kinds)}; device {selector!r} is {placement.kind}")
        return placement

    @property
    def placement(self) -> "Placement":
        """This instance's (kind, index), from its options' device selector."""
        return type(self).placement_for(self.options.device)

    # -- capability queries (no side effects) ---------------------------------
    @classmethod
    @abstractmethod
    def probe(cls) -> Probe:
        """Can this adapter run here? Must not raise; import vendor libraries lazily inside."""

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        """Return why this point cannot run (-> status=unsupported), or None when it can."""
        from hwbench.errors import UsageError

        try:
            self.placement
        except UsageError as e:
            return str(e)
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
        kind = self.placement.kind
        if kind == "cpu":
            return host_support(precision)
        return PrecisionSupport(None, f"{precision} on {kind}: native or emulated not known to hwbench")

    # -- the system under test -------------------------------------------------
    @abstractmethod
    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        """Compile/load the model and bind `inputs` so that run() needs no arguments."""

    @abstractmethod
    def run(self) -> None:
        """Run one batch on the bound inputs; return only when the device has finished."""

    def run_batch(self, n: int) -> None:
        """Server scenario: one dynamic batch of n requests on the bound inputs (1 <= n <= the
        prepared batch size); returns when done. The default runs the whole prepared batch
        (partial_batch = "padded"); adapters that run exactly n rows override it and set
        partial_batch = "exact"."""
        self.run()

    def open_concurrent(self, concurrency: int) -> ConcurrentRunner:
        """The offline scenario's queue; adapters that list 'offline' in scenarios override this."""
        raise NotImplementedError(f"{self.name} has no offline scenario")

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for given inputs, as numpy float arrays, for the accuracy check (untimed)."""

    def effective(self) -> Effective:
        """What actually ran, after prepare(): the precision, the device (kind, name, index, the
        catalog's accelerator name, how many of the instance's accelerators) and the settings.

        There is no default: a wrong guess (the host CPU for a GPU run) mislabels and misprices
        every record, so an adapter that does not say raises here and its trials record the error.
        hwbench.adapter.kit builds the common cases: cpu_effective, cuda_effective, neuron_effective."""
        raise NotImplementedError(f"{self.name or type(self).__name__} does not implement effective() -> Effective")

    def device_memory_peak_mb(self) -> float | None:
        """Peak accelerator memory of this trial, when the device reports it."""
        return None

    def close(self) -> None:
        """Release the runtime's resources."""
