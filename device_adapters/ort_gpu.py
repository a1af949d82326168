"""ONNX Runtime on NVIDIA GPUs: the CUDA execution provider ('ort-cuda') and the TensorRT
execution provider ('ort-trt') of onnxruntime-gpu, with inputs and outputs bound on the device.

The ONNX-side preparation it shares with the 'tensorrt' adapter (optimisation profiles over
the swept batch sizes, an fp16 model, a symmetric QDQ int8 model calibrated on the trial's
generated inputs) lives in the adapter kit, hwbench.adapter.derived.

Facts relied on (ONNX Runtime documentation):
- InferenceSession(path, sess_options, providers=[(name, {option: value}), ...]); when a
  provider cannot start, ORT falls back to the next one, so get_providers() is checked.
- CUDA EP options: device_id, cudnn_conv_algo_search ("EXHAUSTIVE"|"HEURISTIC"|"DEFAULT"),
  use_tf32 ("0"|"1"). TensorRT EP options: device_id, trt_fp16_enable, trt_int8_enable,
  trt_engine_cache_enable, trt_engine_cache_path, trt_timing_cache_enable,
  trt_timing_cache_path, trt_profile_{min,opt,max}_shapes ("name:1x3x224x224,...").
- TensorRT enables TF32 by default and the TensorRT EP has no option to turn it off.
  NVIDIA_TF32_OVERRIDE=0 in the environment turns TF32 off in NVIDIA's math libraries
  (cuBLAS, cuDNN); hwbench sets it for fp32 (worker processes are per trial, so it does not
  leak), but whether TensorRT's own kernels honour it is not verified, and ort-trt's fp32
  says so in precision_effective.
- IO binding: OrtValue.ortvalue_from_numpy(arr, "cuda", id) copies an input to the device
  once; bind_output(name, "cuda", id) keeps outputs there; run_with_iobinding runs and, by
  default, synchronises the provider's stream before returning; synchronize_outputs() waits
  for the output copies.
- onnxruntime.transformers.float16.convert_float_to_float16(model, keep_io_types=True) and
  onnxruntime.quantization.quantize_static(..., quant_format=QDQ) with symmetric int8
  activations and weights produces models TensorRT accepts (its quantization is symmetric).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hwbench.adapter import Adapter, AdapterOptions, Effective, Probe
from hwbench.adapter.derived import (  # noqa: F401 - re-exported: ort_gpu.fp16_model etc.
    Profile, chunk_ranges, existing_qdq_kind, fp16_model, profile_batches, qdq_model, shape_profile,
)
from hwbench.adapter.kit import cache_root, cuda_effective
from hwbench.errors import AdapterUnavailable, HwbenchError
from hwbench.host.accelerators import nvidia_gpus, nvidia_problem, process_gpu_memory_mb
from hwbench.models.spec import ModelSpec

INSTALL_HINT = "pip install 'hwbench[ort-gpu]' (uninstall the CPU onnxruntime wheel first)"


# -- pure helpers -----------------------------------------------------------------------------
def trt_shapes_option(profile: Profile, which: int) -> str:
    """The TensorRT EP's shape string for one of min (0), opt (1), max (2)."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profile.items())


def cuda_provider_options(precision: str, device_id: int) -> dict[str, str]:
    """CUDA EP options: exhaustive cuDNN search (timed once in prepare), TF32 only for 'tf32'."""
    return {
        "device_id": str(device_id),
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "use_tf32": "1" if precision == "tf32" else "0",
    }


def trt_provider_options(precision: str, device_id: int, profile: Profile, cache_dir: Path) -> dict[str, str]:
    """TensorRT EP options with engine and timing caches under cache_dir (one per precision)."""
    return {
        "device_id": str(device_id),
        "trt_fp16_enable": "1" if precision == "fp16" else "0",
        "trt_int8_enable": "1" if precision == "int8" else "0",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": trt_shapes_option(profile, 0),
        "trt_profile_opt_shapes": trt_shapes_option(profile, 1),
        "trt_profile_max_shapes": trt_shapes_option(profile, 2),
    }


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def ort_numpy_dtype(ort_type: str) -> Any:
    """numpy dtype of an ORT type string such as 'tensor(int64)'."""
    if ort_type not in _ORT_TYPES:
        raise HwbenchError(f"input type {ort_type} is not supported")
    return _ORT_TYPES[ort_type]


# -- IO binding ---------------------------------------------------------------------------------
class BoundSession:
    """A session whose inputs were copied to the device once and whose outputs stay there."""

    def __init__(self, session: Any, inputs: Mapping[str, np.ndarray], device_type: str = "cuda", device_id: int = 0) -> None:
        import onnxruntime as ort

        self.session = session
        self.binding = session.io_binding()
        self._values = []  # keep the device copies alive
        types = {i.name: ort_numpy_dtype(i.type) for i in session.get_inputs()}
        for name, arr in inputs.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr, dtype=types[name]), device_type, device_id)
            self._values.append(value)
            self.binding.bind_ortvalue_input(name, value)
        for out in session.get_outputs():
            self.binding.bind_output(out.name, device_type, device_id)

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def outputs(self) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.binding.copy_outputs_to_cpu()]


# -- adapters -----------------------------------------------------------------------------------
def provider_problem(provider: str) -> tuple[str | None, dict[str, str]]:
    """(why this onnxruntime cannot use `provider`, versions) without touching the GPU."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        return f"onnxruntime is not importable ({e})", {}
    versions = {"onnxruntime": ort.__version__}
    if provider not in ort.get_available_providers():
        build = ", ".join(ort.get_available_providers())
        return f"this onnxruntime build ({ort.__version__}: {build}) lacks {provider}; the CPU wheel is installed", versions
    return None, versions


def tensorrt_library_problem() -> str | None:
    """Why the TensorRT EP would find no TensorRT libraries, or None."""
    import ctypes

    for lib in ("libnvinfer.so.10", "libnvinfer.so.11"):
        try:
            ctypes.CDLL(lib)
            return None
        except OSError:
            pass
    try:
        import tensorrt  # noqa: F401 - the wheel's import loads its bundled libraries
        return None
    except ImportError as e:
        return f"TensorRT libraries not found (libnvinfer.so.10/11; `import tensorrt`: {e})"


class _OrtGpuAdapter(Adapter):
    device_kind = "cuda"  # only: a selector "", "cuda[:N]" or "N" picks the GPU (hwbench.adapter.kit.parse_device)
    provider: ClassVar[str] = ""
    install_hint: ClassVar[str] = INSTALL_HINT
    io_device: ClassVar[str] = "cuda"  # where IO binding keeps inputs and outputs

    def __init__(self, options: AdapterOptions | None = None) -> None:
        super().__init__(options)
        self._bound: BoundSession | None = None
        self._session: Any = None
        self._settings: dict[str, Any] = {}
        self._device_id = 0
        self._precision_effective = ""

    @classmethod
    def _extra_problems(cls) -> list[str]:
        return []

    @classmethod
    def probe(cls) -> Probe:
        problem, versions = provider_problem(cls.provider)
        problems = [p for p in (problem, nvidia_problem(0), *cls._extra_problems()) if p]
        if problems:
            return Probe(available=False, reason="; ".join(problems), install_hint=cls.install_hint, versions=versions)
        return Probe(available=True, devices=tuple(g.name for g in nvidia_gpus()), versions=versions)

    def _providers(self, precision: str, model: ModelSpec, batch_size: int, device_id: int) -> list[Any]:
        raise NotImplementedError

    def _model_path(self, model: ModelSpec, precision: str, inputs: Mapping[str, np.ndarray]) -> Path:
        return model.onnx_path

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        device_id = self.placement.meter_index
        if precision == "fp32":
            os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
        path = self._model_path(model, precision, inputs)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = self._providers(precision, model, batch_size, device_id)
        self._session = ort.InferenceSession(str(path), so, providers=providers)
        if self.provider not in self._session.get_providers():
            raise AdapterUnavailable(
                f"onnxruntime fell back to {self._session.get_providers()}: {self.provider} did not start "
                "(missing CUDA, cuDNN or TensorRT libraries?)"
            )
        self._bound = BoundSession(self._session, inputs, self.io_device, device_id if self.io_device == "cuda" else 0)
        self._bound.run()  # first run: kernel selection / engine build, part of the cold start
        self._device_id = device_id
        self._precision_effective = self._effective_precision(precision)
        self._settings = {
            "provider": self.provider,
            "provider_options": dict(providers[0][1]),
            "model_file": path.name,
            "device_id": device_id,
            "nvidia_tf32_override": os.environ.get("NVIDIA_TF32_OVERRIDE"),
        }

    def _effective_precision(self, precision: str) -> str:
        return "fp32 (TF32 off: NVIDIA_TF32_OVERRIDE=0)" if precision == "fp32" else precision

    def run(self) -> None:
        assert self._bound is not None, "prepare() first"
        self._bound.run()

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert self._session is not None, "prepare() first"
        types = {i.name: ort_numpy_dtype(i.type) for i in self._session.get_inputs()}
        feeds = {k: np.ascontiguousarray(v, dtype=types[k]) for k, v in inputs.items()}
        return [np.asarray(o, dtype=np.float32) for o in self._session.run(None, feeds)]

    def effective(self) -> Effective:
        """GPU device_id ran it alone: its NVML name, catalog name, one of the instance's GPUs."""
        return cuda_effective(self._precision_effective, self._device_id, self._settings)

    def device_memory_peak_mb(self) -> float | None:
        """GPU memory NVML attributes to this worker process (ORT's arena only grows: ~peak)."""
        return process_gpu_memory_mb(os.getpid(), self.placement.meter_index)

    def close(self) -> None:
        self._bound = None
        self._session = None


class OrtCudaAdapter(_OrtGpuAdapter):
    """ONNX Runtime's CUDA execution provider; fp16 runs a converted fp16 model."""

    name = "ort-cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "tf32", "fp16")
    description = "ONNX Runtime CUDA EP (onnxruntime-gpu), IO binding on the device"

    def _providers(self, precision: str, model: ModelSpec, batch_size: int, device_id: int) -> list[Any]:
        return [(self.provider, cuda_provider_options(precision, device_id)), "CPUExecutionProvider"]

    def _model_path(self, model: ModelSpec, precision: str, inputs: Mapping[str, np.ndarray]) -> Path:
        return fp16_model(model, cache_root(self.options)) if precision == "fp16" else model.onnx_path


class OrtTensorRtAdapter(_OrtGpuAdapter):
    """ONNX Runtime's TensorRT execution provider (CUDA EP for what TensorRT does not take)."""

    name = "ort-trt"
    provider = "TensorrtExecutionProvider"
    precisions = ("fp32", "fp16", "int8")
    description = "ONNX Runtime TensorRT EP (onnxruntime-gpu + TensorRT), engine cache, IO binding"

    install_hint: ClassVar[str] = (
        "pip install 'hwbench[ort-gpu,tensorrt]' (uninstall the CPU onnxruntime wheel first; "
        "TensorRT's libnvinfer must be on LD_LIBRARY_PATH)"
    )

    @classmethod
    def _extra_problems(cls) -> list[str]:
        problem = tensorrt_library_problem()
        return [problem] if problem else []

    def _providers(self, precision: str, model: ModelSpec, batch_size: int, device_id: int) -> list[Any]:
        profile = shape_profile(model, batch_size, self.options.extra)
        cache = cache_root(self.options) / "ort-trt" / precision
        cache.mkdir(parents=True, exist_ok=True)
        return [
            (self.provider, trt_provider_options(precision, device_id, profile, cache)),
            (OrtCudaAdapter.provider, cuda_provider_options(precision, device_id)),
            "CPUExecutionProvider",
        ]

    def _model_path(self, model: ModelSpec, precision: str, inputs: Mapping[str, np.ndarray]) -> Path:
        if precision == "int8":
            existing = existing_qdq_kind(model.onnx_path)
            return model.onnx_path if existing == "int8" else qdq_model(model, inputs, cache_root(self.options))
        return model.onnx_path

    def _effective_precision(self, precision: str) -> str:
        labels = {
            "int8": "int8 (QDQ, calibrated on generated inputs)",
            "fp16": "fp16 (TensorRT mixed, fp32 fallback)",
            "fp32": "fp32 (NVIDIA_TF32_OVERRIDE=0 set; TensorRT may still pick TF32 kernels)",
        }
        return labels.get(precision) or super()._effective_precision(precision)
