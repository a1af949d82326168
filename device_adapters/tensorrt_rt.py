"""NVIDIA TensorRT through its Python API ('tensorrt'): an engine built from the ONNX model,
cached on disk, run on a CUDA stream with inputs and outputs in device memory.

Facts relied on (TensorRT 10 Python API and its 10.x -> 11.x migration guide):
- Builder(logger).create_network(flags); OnnxParser(network, logger).parse_from_file(path)
  (resolves external data next to the file); parser.num_errors / get_error(i).
- create_builder_config(); set_flag / clear_flag(BuilderFlag.X); TF32 is ON by default, so
  strict fp32 clears it. FP16, BF16, INT8, FP8 flags exist in 10.x and were REMOVED in 11.x,
  where networks are always strongly typed (NetworkDefinitionCreationFlag.STRONGLY_TYPED):
  precision then comes from the ONNX model itself (an fp16 model, or Q/DQ nodes).
- Explicit quantization: a network with Q/DQ nodes builds with the Q/DQ semantics; with a
  strongly typed network no precision flag is needed. hwbench uses that for int8 (a QDQ model
  calibrated on the trial's generated inputs) and fp8 (only a model that is already FP8-QDQ).
- create_optimization_profile(); profile.set_shape(name, min, opt, max);
  config.add_optimization_profile(profile).
- Timing cache: config.create_timing_cache(bytes) / set_timing_cache(cache, ignore_mismatch);
  cache.serialize(). build_serialized_network(network, config) -> IHostMemory or None.
- Runtime(logger).deserialize_cuda_engine(bytes); engine.num_io_tensors, get_tensor_name(i),
  get_tensor_mode(name) (TensorIOMode.INPUT/OUTPUT), get_tensor_dtype(name), nptype(dtype);
  context = engine.create_execution_context(); context.set_input_shape(name, shape),
  get_tensor_shape(name), set_tensor_address(name, ptr), execute_async_v3(stream) -> bool.
- FP8 kernels need compute capability 8.9+ (Ada, Hopper); TF32 and BF16 need 8.0+ (Ampere).
- Device memory and the stream come from cuda-python's runtime bindings (cudaMalloc,
  cudaMemcpy, cudaStreamCreate, cudaStreamSynchronize; every call returns (error, ...)).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.adapter.derived import (
    Profile, chunk_ranges, existing_qdq_kind, fp16_model, qdq_model, shape_profile,
)
from hwbench.adapter import Adapter, AdapterOptions, Effective, Probe
from hwbench.adapter.kit import atomic_build, cache_root, cached, cuda_effective
from hwbench.errors import HwbenchError
from hwbench.fsutil import atomic_write_bytes
from hwbench.host.accelerators import nvidia_gpu, nvidia_gpus, nvidia_problem, process_gpu_memory_mb
from hwbench.models.spec import ModelSpec

INSTALL_HINT = "pip install 'hwbench[tensorrt]' (TensorRT 10+, cuda-python, nvidia-ml-py)"


# -- pure rules ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """How one precision is built: which model, which builder flags, strongly typed or not."""

    model_variant: str  # "onnx" (as given), "fp16-onnx", "qdq-int8", "qdq-fp8"
    set_flags: tuple[str, ...]
    clear_flags: tuple[str, ...]
    strongly_typed: bool
    effective: str  # precision_effective to record


def build_plan(precision: str, trt_major: int) -> BuildPlan:
    """Builder flags (by name) and model variant for a precision under TensorRT `trt_major`."""
    strong = trt_major >= 11
    if precision == "fp32":
        return BuildPlan("onnx", (), ("TF32",), strong, "fp32 (TF32 off)")
    if precision == "tf32":
        return BuildPlan("onnx", ("TF32",), (), strong, "tf32")
    if precision == "fp16":
        if strong:
            return BuildPlan("fp16-onnx", (), (), True, "fp16 (converted model, strongly typed)")
        return BuildPlan("onnx", ("FP16",), (), False, "fp16 (mixed, fp32/tf32 fallback)")
    if precision == "bf16":
        return BuildPlan("onnx", ("BF16",), (), False, "bf16 (mixed, fp32/tf32 fallback)")
    if precision == "int8":
        return BuildPlan("qdq-int8", (), (), True, "int8 (QDQ, strongly typed)")
    if precision == "fp8":
        return BuildPlan("qdq-fp8", (), (), True, "fp8 e4m3 (QDQ, strongly typed)")
    raise ValueError(f"unknown precision {precision!r}")


def precision_problem(precision: str, compute_capability: tuple[int, int] | None, trt_major: int) -> str | None:
    """Why this GPU or TensorRT version cannot run `precision`, or None."""
    need = {"tf32": (8, 0), "bf16": (8, 0), "fp8": (8, 9)}.get(precision)
    if need and compute_capability is not None and tuple(compute_capability) < need:
        cc = ".".join(map(str, compute_capability))
        return f"{precision} needs compute capability {need[0]}.{need[1]}+; this GPU is {cc}"
    if precision == "bf16" and trt_major >= 11:
        return "TensorRT 11 removed BuilderFlag.BF16; a bf16 ONNX model needs ModelOpt AutoCast, which hwbench lacks"
    return None


def engine_cache_key(
    model_sha256: str, trt_version: str, gpu_name: str, compute_capability: tuple[int, int],
    precision: str, profile: Profile, variant_sha: str = "",
) -> str:
    """A stable key for one engine: changes with any input that changes the engine."""
    payload = {
        "model": model_sha256, "variant": variant_sha, "tensorrt": trt_version, "gpu": gpu_name,
        "cc": list(compute_capability), "precision": precision,
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


# -- CUDA through cuda-python -------------------------------------------------------------------
def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _ok(result: Any) -> Any:
    """Unwrap a cuda-python (error, value...) tuple, raising on any error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise HwbenchError(f"CUDA runtime error {err}")
    return values[0] if len(values) == 1 else tuple(values)


class _Buffers:
    """Device copies of one set of inputs and room for the outputs they produce."""

    def __init__(self, trt: Any, engine: Any, context: Any, host_inputs: Mapping[str, np.ndarray]) -> None:
        self._cudart = cr = _cudart()
        self._ptrs: list[int] = []
        self.inputs: list[tuple[str, tuple[int, ...], int]] = []
        self.outputs: list[tuple[str, tuple[int, ...], Any, int]] = []
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            arr = np.ascontiguousarray(host_inputs[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
            ptr = self._alloc(arr.nbytes)
            _ok(cr.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, cr.cudaMemcpyKind.cudaMemcpyHostToDevice))
            self.inputs.append((name, arr.shape, ptr))
            context.set_input_shape(name, arr.shape)
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                continue
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self.outputs.append((name, shape, dtype, self._alloc(int(np.prod(shape)) * dtype.itemsize)))

    def _alloc(self, nbytes: int) -> int:
        ptr = int(_ok(self._cudart.cudaMalloc(max(nbytes, 1))))
        self._ptrs.append(ptr)
        return ptr

    def bind(self, context: Any) -> None:
        for name, shape, ptr in self.inputs:
            context.set_input_shape(name, shape)
            context.set_tensor_address(name, ptr)
        for name, _, _, ptr in self.outputs:
            context.set_tensor_address(name, ptr)

    def to_host(self) -> list[np.ndarray]:
        cr, out = self._cudart, []
        for _, shape, dtype, ptr in self.outputs:
            host = np.empty(shape, dtype=dtype)
            _ok(cr.cudaMemcpy(host.ctypes.data, ptr, host.nbytes, cr.cudaMemcpyKind.cudaMemcpyDeviceToHost))
            out.append(host.astype(np.float32))
        return out

    def free(self) -> None:
        for ptr in self._ptrs:
            self._cudart.cudaFree(ptr)
        self._ptrs = []


# -- the adapter --------------------------------------------------------------------------------
class TensorRtAdapter(Adapter):
    """A TensorRT engine per (model, precision, profile, GPU, TensorRT version), cached on disk."""

    name = "tensorrt"
    device_kind = "cuda"
    precisions = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
    description = "NVIDIA TensorRT engine from the ONNX model (TensorRT Python API + cuda-python)"

    def __init__(self, options: AdapterOptions | None = None) -> None:
        super().__init__(options)
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._buffers: _Buffers | None = None
        self._bound_is_trial = False
        self._max_batch = 1
        self._settings: dict[str, Any] = {}
        self._precision_effective = ""
        self._gpu_name = "unknown GPU"

    @classmethod
    def probe(cls) -> Probe:
        problems, versions = [], {}
        try:
            import tensorrt as trt

            versions["tensorrt"] = trt.__version__
        except Exception as e:  # noqa: BLE001 - ImportError, or OSError for a missing libnvonnxparser
            problems.append(f"tensorrt is not importable ({type(e).__name__}: {e})")
        try:
            _cudart()
        except ImportError as e:
            problems.append(f"cuda-python is not importable ({e})")
        gpu = nvidia_problem(0)
        if gpu:
            problems.append(gpu)
        if problems:
            return Probe(available=False, reason="; ".join(problems), install_hint=INSTALL_HINT, versions=versions)
        return Probe(available=True, devices=tuple(g.name for g in nvidia_gpus()), versions=versions)

    def _gpu(self) -> tuple[str, tuple[int, int] | None]:
        gpu = nvidia_gpu(self.placement.meter_index)
        if gpu is None:
            return "unknown GPU", None
        cc = gpu.compute_capability
        return gpu.name, tuple(int(x) for x in cc.split(".")) if cc else None  # type: ignore[return-value]

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        reason = super().check(model, precision, batch_size, scenario)
        if reason:
            return reason
        try:
            import tensorrt as trt

            major = int(trt.__version__.split(".")[0])
        except Exception:  # noqa: BLE001 - unavailability is the probe's to report, not check's
            return None
        reason = precision_problem(precision, self._gpu()[1], major)
        existing = existing_qdq_kind(model.onnx_path) if precision in ("int8", "fp8") else None
        if reason is None and precision == "fp8" and existing != "fp8":
            reason = "fp8 needs a model that is already FP8-QDQ (hwbench has no FP8 calibration it trusts)"
        variant = build_plan(precision, major).model_variant
        needs_ort = variant == "fp16-onnx" or (variant == "qdq-int8" and existing != "int8")
        if reason is None and needs_ort and importlib.util.find_spec("onnxruntime") is None:
            reason = f"{precision} derives its model with onnxruntime's tools; pip install onnxruntime (any build)"
        return reason

    def _onnx_for(self, model: ModelSpec, plan: BuildPlan, inputs: Mapping[str, np.ndarray]) -> Path:
        root = cache_root(self.options)
        if plan.model_variant == "fp16-onnx":
            return fp16_model(model, root)
        if plan.model_variant == "qdq-int8" and existing_qdq_kind(model.onnx_path) != "int8":
            return qdq_model(model, inputs, root)
        return model.onnx_path

    def _build(self, trt: Any, logger: Any, onnx_path: Path, plan: BuildPlan, profile: Profile, timing: Path) -> bytes:
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
            raise HwbenchError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        for flag in plan.set_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        for flag in plan.clear_flags:
            config.clear_flag(getattr(trt.BuilderFlag, flag))
        opt = builder.create_optimization_profile()
        for name, (lo, mid, hi) in profile.items():
            opt.set_shape(name, lo, mid, hi)
        config.add_optimization_profile(opt)
        cache = config.create_timing_cache(timing.read_bytes() if timing.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise HwbenchError("TensorRT engine build failed (see the TensorRT log on stderr)")
        atomic_write_bytes(timing, bytes(memoryview(config.get_timing_cache().serialize())))
        return bytes(memoryview(serialized))

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        import tensorrt as trt

        cr = _cudart()
        _ok(cr.cudaSetDevice(self.placement.meter_index))
        gpu_name, cc = self._gpu()
        plan = build_plan(precision, int(trt.__version__.split(".")[0]))
        profile = shape_profile(model, batch_size, self.options.extra)
        self._max_batch = max(s[2][0] for s in profile.values())
        onnx_path = self._onnx_for(model, plan, inputs)
        variant = hashlib.sha256(onnx_path.name.encode()).hexdigest()[:16]
        key = engine_cache_key(model.sha256, trt.__version__, gpu_name, cc or (0, 0), precision, profile, variant)
        engines = cache_root(self.options) / "tensorrt"
        engines.mkdir(parents=True, exist_ok=True)
        engine_path = engines / f"{model.name}-{precision}-{key}.engine"
        logger = trt.Logger(trt.Logger.WARNING)
        hit = cached(engine_path)  # size and hash checked: a damaged engine is built again
        if not hit:
            timing = engines / f"timing-{trt.__version__}-{'.'.join(map(str, cc or (0, 0)))}.cache"
            data = self._build(trt, logger, onnx_path, plan, profile, timing)
            atomic_build(engine_path, lambda staged: staged.write_bytes(data))
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise HwbenchError(f"TensorRT could not load {engine_path.name} (built by another TensorRT?)")
        self._context = self._engine.create_execution_context()
        self._stream = _ok(cr.cudaStreamCreate())
        self._buffers = _Buffers(trt, self._engine, self._context, inputs)
        self._buffers.bind(self._context)
        self._bound_is_trial = True
        self.run()  # first execution: lazy initialisation belongs to the cold start
        self._precision_effective, self._gpu_name = plan.effective, gpu_name
        self._settings = {
            "tensorrt_version": trt.__version__,
            "compute_capability": ".".join(map(str, cc)) if cc else None, "engine_cache_hit": hit,
            "engine_cache_key": key, "strongly_typed": plan.strongly_typed, "builder_flags_set": list(plan.set_flags),
            "builder_flags_cleared": list(plan.clear_flags), "model_file": onnx_path.name,
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
        }

    def run(self) -> None:
        assert self._context is not None and self._buffers is not None, "prepare() first"
        if not self._bound_is_trial:
            self._buffers.bind(self._context)
            self._bound_is_trial = True
        if not self._context.execute_async_v3(int(self._stream)):
            raise HwbenchError("TensorRT execute_async_v3 failed")
        _ok(_cudart().cudaStreamSynchronize(self._stream))

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for any batch size: chunks of at most the profile's max batch, untimed."""
        import tensorrt as trt

        n = len(next(iter(inputs.values())))
        parts: list[list[np.ndarray]] = []
        for start, stop in chunk_ranges(n, self._max_batch):
            bufs = _Buffers(trt, self._engine, self._context, {k: v[start:stop] for k, v in inputs.items()})
            try:
                bufs.bind(self._context)
                self._bound_is_trial = False
                if not self._context.execute_async_v3(int(self._stream)):
                    raise HwbenchError("TensorRT execute_async_v3 failed")
                _ok(_cudart().cudaStreamSynchronize(self._stream))
                parts.append(bufs.to_host())
            finally:
                bufs.free()
        return [np.concatenate(outs, axis=0) for outs in zip(*parts)]

    def effective(self) -> Effective:
        """The GPU the placement names ran it alone (NVML's name, the catalog's, one GPU used)."""
        name = None if self._gpu_name == "unknown GPU" else self._gpu_name
        return cuda_effective(self._precision_effective, self.placement.meter_index, self._settings, device_name=name)

    def device_memory_peak_mb(self) -> float | None:
        """GPU memory NVML attributes to this worker (engine, buffers and CUDA context)."""
        return process_gpu_memory_mb(os.getpid(), self.placement.meter_index)

    def close(self) -> None:
        if self._buffers is not None:
            self._buffers.free()
            self._buffers = None
        if self._stream is not None:
            _cudart().cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = None
        self._engine = None
