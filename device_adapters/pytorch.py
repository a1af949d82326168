"""PyTorch adapter: hwbench's built-in models in eager mode or torch.compile, on CPU or CUDA.

It needs the model's PyTorch source, so it runs the built-in models only (user ONNX
files are for ort-cpu and openvino). Default: torch.compile (inductor, freezing on),
static shapes, compiled in prepare() so that compile time counts as cold start.
Measured here on CPU: compile beats eager only with freezing, and takes 9-32 s per
input shape; sweep file [adapter_options.torch] compile_mode = "eager" gives eager.

Precisions: fp32 (TF32 and reduced-precision fp32 matmuls switched off), bf16 (autocast,
CPU and CUDA), fp16 and tf32 (CUDA only), int8 on CPU by dynamic quantization of the
Linear layers (transformers and MLPs), run eager since every quantized Linear breaks a
compiled graph; PyTorch 2.13's static int8 for CNNs has moved to torchao, which this
adapter does not use. CNNs run channels_last.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np

from hwbench.adapter import Adapter, AdapterOptions, Effective, Probe
from hwbench.adapter.kit import cpu_effective, cuda_effective, outputs_in_batches
from hwbench.errors import AdapterUnavailable, UnsupportedPoint, UsageError
from hwbench.host.isa import PrecisionSupport, cpu_support, host_flags, host_machine
from hwbench.models.spec import ModelSpec

INSTALL_HINT = "pip install 'hwbench[torch]'"
COMPILE_OPTIONS: dict[str, Any] = {"freezing": True}  # set in torch._inductor.config before compiling
_AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}
_CUDA_ONLY = ("fp16", "tf32")


def _cuda_reason(device: str) -> str | None:
    """Why `device` ("cuda" / "cuda:N") cannot be used here, or None."""
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU build)"
        return f"torch {torch.__version__} ({build}) sees no CUDA device"
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return f"{device} requested but torch sees {torch.cuda.device_count()} CUDA device(s)"
    return None


def _inductor_freezing() -> bool:
    """Read back inductor's freezing flag (what applied, not what was asked)."""
    import torch._inductor.config as inductor_config

    return bool(inductor_config.freezing)


def _flatten(out: Any, names: tuple[str, ...]) -> list[Any]:
    """A module's output (tensor, tuple, list or dict) as a flat list in ModelSpec.outputs order."""
    if isinstance(out, dict):
        keys = [n for n in names if n in out] or list(out)
        return [t for k in keys for t in _flatten(out[k], names)]
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _flatten(item, names)]
    return [out]


# torch._C._cpu._get_cpu_capability() names (read from CPUID by pytorch/cpuinfo) -> /proc/cpuinfo names
_TORCH_CPU_FLAGS = {"avx512_f": "avx512f", "avx512_bw": "avx512bw", "avx512_vl": "avx512vl", "fma3": "fma"}


def torch_cpu_flags() -> set[str]:
    """The ISA flags torch reads from CPUID, as cpuinfo names: they include avx_ne_convert, amx_fp16
    and avx_vnni_int8, which many Linux kernels do not show in /proc/cpuinfo. Empty if unavailable."""
    try:
        import torch

        caps = torch._C._cpu._get_cpu_capability()
    except Exception:  # noqa: BLE001 - a private API: absent in other torch versions
        return set()
    return {_TORCH_CPU_FLAGS.get(k, k) for k, v in caps.items() if v is True}


def cuda_support(precision: str, major: int, minor: int) -> PrecisionSupport:
    """Native or not on a CUDA GPU of compute capability major.minor (NVIDIA's tensor-core generations)."""
    sm = f"sm{major}{minor}"
    if precision == "fp32":
        return PrecisionSupport(True, f"fp32 native on {sm}")
    need = {"fp16": (5, 3), "bf16": (8, 0), "tf32": (8, 0), "fp8": (8, 9)}.get(precision)
    if need is None:
        return PrecisionSupport(None, f"{precision} on {sm}: not known to hwbench")
    if (major, minor) >= need:
        return PrecisionSupport(True, f"{precision} native on {sm}")
    return PrecisionSupport(False, f"{precision} needs sm{need[0]}{need[1]}+; {sm} emulates or upcasts it")


class TorchAdapter(Adapter):
    """PyTorch eager or torch.compile on the built-in models' own modules."""

    name = "torch"
    device_kind = "cpu"  # the default; an instance on "cuda[:N]" has placement.kind "cuda" (picks the power meter)
    device_kinds = ("cpu", "cuda")
    precisions = ("fp32", "tf32", "bf16", "fp16", "int8")
    scenarios = ("single-stream", "offline", "server")  # server: partial batches padded (Adapter.run_batch)
    description = "PyTorch eager / torch.compile (inductor, freezing) on CPU or CUDA"

    def __init__(self, options: AdapterOptions | None = None) -> None:
        super().__init__(options)
        try:
            placement = self.placement
        except UsageError:  # check() reports it as the point's reason
            placement = None
        self.on_cuda = placement is not None and placement.kind == "cuda"
        self.device = f"cuda:{placement.index}" if self.on_cuda and placement else (self.options.device or "cpu")
        self.use_compile = self.options.extra.get("compile_mode", "default") != "eager"
        self._spec: ModelSpec | None = None
        self._precision = ""
        self._batch_size = 0
        self._fn: Any = None  # the module, compiled or not
        self._bound: dict[str, Any] = {}
        self._channels_last = False
        self._quantization: str | None = None
        self._eager_reason: str | None = None
        self._restore_inductor: dict[str, Any] = {}  # inductor config values to put back on close()
        self._offline: dict[str, Any] = {}

    # -- capability queries ----------------------------------------------------
    @classmethod
    def probe(cls) -> Probe:
        try:
            import torch
        except Exception as e:  # noqa: BLE001 - any import failure is a probe result
            return Probe.missing(f"torch is not importable ({type(e).__name__}: {e})", INSTALL_HINT)
        devices = ["cpu"]
        try:
            if torch.cuda.is_available():
                devices += [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - a broken driver leaves the CPU usable
            pass
        return Probe(available=True, devices=tuple(devices), versions={"torch": torch.__version__})

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        base = super().check(model, precision, batch_size, scenario)
        if base:
            return base
        if not model.builtin or model.torch_weights is None:
            return (
                f"torch needs the model's PyTorch source; {model.name} is an ONNX file "
                "(use ort-cpu or openvino for it)"
            )
        import torch

        if self.on_cuda:
            reason = _cuda_reason(self.device)
            if reason:
                return reason
            major, minor = torch.cuda.get_device_capability(torch.device(self.device))
            if precision == "int8":
                return "PyTorch has no general int8 inference path on CUDA (use tensorrt)"
            if precision == "tf32" and major < 8:
                return f"tf32 needs an Ampere or newer GPU (compute capability {major}.{minor})"
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                return f"bf16 is not supported on this GPU (compute capability {major}.{minor})"
            return None
        if self.device != "cpu":
            return f"torch device {self.device!r} is not supported (use cpu, cuda or cuda:N)"
        if precision in _CUDA_ONLY:
            return f"{precision} is CUDA-only in the torch adapter (no fast {precision} path on CPU)"
        if precision == "int8" and model.family not in ("transformer", "mlp"):
            return (
                f"torch int8 on CPU covers Linear layers only (dynamic quantization); a {model.family} "
                "needs static quantization, which PyTorch 2.13 moved to torchao (not used here)"
            )
        return None

    def precision_support(self, precision: str) -> PrecisionSupport:
        """CPU: the ISA rule on cpuinfo's flags plus torch's own CPUID reading. CUDA: compute capability."""
        if not self.on_cuda:
            flags = host_flags()
            cpuid = torch_cpu_flags()
            return cpu_support(precision, (flags or set()) | cpuid if flags is not None or cpuid else None,
                               host_machine())
        import torch

        if _cuda_reason(self.device):
            return super().precision_support(precision)
        return cuda_support(precision, *torch.cuda.get_device_capability(torch.device(self.device)))

    # -- prepare ---------------------------------------------------------------
    def _to_tensor(self, arr: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
        if self._channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _autocast(self) -> Any:
        import torch

        if self._precision in _AUTOCAST:
            dtype = getattr(torch, _AUTOCAST[self._precision])
            return torch.autocast(device_type="cuda" if self.on_cuda else "cpu", dtype=dtype)
        return contextlib.nullcontext()

    def _quantize(self, module: Any) -> Any:
        import torch

        if not any(isinstance(m, torch.nn.Linear) for m in module.modules()):
            raise UnsupportedPoint(f"torch int8: {self._spec.name if self._spec else 'model'} has no Linear layers")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
            from torch.ao.quantization import quantize_dynamic

            quantized = quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
        self._quantization = "dynamic int8 Linear (weights per tensor, activations per batch), other ops fp32"
        return quantized

    def _compile(self, module: Any) -> Any:
        """torch.compile with static shapes and inductor freezing; options.extra["compile_mode"] picks a
        mode (e.g. "reduce-overhead" for CUDA graphs, "max-autotune").

        Freezing is set in inductor's global config (this worker process runs one trial): measured
        here, passing it as torch.compile(options={"freezing": True}) compiles without its effect
        (ResNet-50 bf16 b1: 30 ms against 13 ms with the global setting).
        """
        import torch
        import torch._inductor.config as inductor_config

        for key, value in COMPILE_OPTIONS.items():
            self._restore_inductor.setdefault(key, getattr(inductor_config, key))
            setattr(inductor_config, key, value)
        mode = self.options.extra.get("compile_mode", "default")
        return torch.compile(module, dynamic=False, mode=None if mode == "default" else str(mode))

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        reason = self.check(model, precision, batch_size, "single-stream")
        if reason:
            raise UnsupportedPoint(reason)
        import torch

        from hwbench.models import build_torch

        self._spec, self._precision, self._batch_size = model, precision, batch_size
        if self.options.threads > 0:
            torch.set_num_threads(self.options.threads)
        if self.on_cuda:
            torch.cuda.set_device(torch.device(self.device))
            torch.cuda.reset_peak_memory_stats()
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")

        module = build_torch(model).eval()
        if precision == "int8":
            module = self._quantize(module)
            if self.use_compile:  # each quantized Linear is a graph break: compiling buys nothing
                self.use_compile = False
                self._eager_reason = "dynamic-quantized Linear layers break torch.compile graphs"
        module = module.to(self.device)
        self._channels_last = model.family == "cnn" and bool(self.options.extra.get("channels_last", True))
        if self._channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._fn = self._compile(module) if self.use_compile else module
        self._bound = {i.name: self._to_tensor(inputs[i.name]) for i in model.inputs}
        for _ in range(2):  # torch.compile compiles on the first call: part of the cold start
            self.run()

    # -- the system under test -------------------------------------------------
    def _call(self, bound: dict[str, Any]) -> Any:
        import torch

        with torch.inference_mode(), self._autocast():
            return self._fn(**bound)

    def run(self) -> None:
        self._call(self._bound)
        if self.on_cuda:
            import torch

            torch.cuda.synchronize()

    def open_concurrent(self, concurrency: int) -> Any:
        """n threads, each with its own inputs (and CUDA stream); default 1 on CPU, 2 on CUDA."""
        import torch

        from hwbench.adapter.concurrency import ThreadedRunner

        if self._fn is None:
            raise AdapterUnavailable("open_concurrent() before prepare()")
        n = concurrency or self.options.concurrency or (2 if self.on_cuda else 1)
        slots = [{k: v.clone() for k, v in self._bound.items()} for _ in range(n)]
        streams = [torch.cuda.Stream() for _ in range(n)] if self.on_cuda else []
        if self.on_cuda:
            torch.cuda.synchronize()  # the clones above must be done before other streams read them

        def run_slot(slot: int) -> None:
            if self.on_cuda:
                with torch.cuda.stream(streams[slot]):
                    self._call(slots[slot])
                streams[slot].synchronize()
            else:
                self._call(slots[slot])

        self._offline = {"offline_concurrency": n, "offline_cuda_streams": len(streams)}
        return ThreadedRunner(run_slot, n)

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs at the prepared batch size (a compiled module would recompile for another)."""
        names = self._spec.outputs if self._spec else ()

        def one_batch(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
            out = self._call({k: self._to_tensor(v) for k, v in chunk.items()})
            return [t.detach().float().cpu().numpy() for t in _flatten(out, names)]

        ordered = {i.name: inputs[i.name] for i in self._spec.inputs} if self._spec else inputs
        return outputs_in_batches(one_batch, ordered, self._batch_size)

    # -- what applied ----------------------------------------------------------
    def effective(self) -> Effective:
        if self._fn is None:
            raise RuntimeError("effective() before prepare()")
        import torch

        eff: dict[str, Any] = {
            "mode": "compile" if self.use_compile else "eager",
            "eager_reason": self._eager_reason,
            "compile_backend": "inductor" if self.use_compile else None,
            "compile_mode": str(self.options.extra.get("compile_mode") or "default") if self.use_compile else None,
            "compile_options": {f"inductor.{k}": v for k, v in COMPILE_OPTIONS.items()} if self.use_compile else None,
            "compile_dynamic": False if self.use_compile else None,
            "freezing": bool(self.use_compile and _inductor_freezing()),
            "channels_last": self._channels_last,
            "autocast_dtype": _AUTOCAST.get(self._precision),
            "threads": torch.get_num_threads(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "quantization": self._quantization,
            "torch_version": torch.__version__,
        }
        eff.update(self._offline)
        if self.on_cuda:
            dev = torch.device(self.device)
            eff["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
            eff["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
            return cuda_effective(self._precision, self.placement.meter_index, eff,
                                  device_name=torch.cuda.get_device_name(dev))
        eff["cpu_native_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return cpu_effective(self._precision, eff)

    def device_memory_peak_mb(self) -> float | None:
        if not self.on_cuda or self._fn is None:
            return None
        import torch

        return torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20

    def close(self) -> None:
        self._fn = None
        self._bound = {}
        self._offline = {}
        try:
            import torch

            torch._dynamo.reset()
            if self._restore_inductor:
                import torch._inductor.config as inductor_config

                for key, value in self._restore_inductor.items():
                    setattr(inductor_config, key, value)
                self._restore_inductor = {}
            if self.on_cuda:
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
