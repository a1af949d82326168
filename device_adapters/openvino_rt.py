"""OpenVINO runtime adapter: the ONNX model compiled for CPU, or an Intel GPU/NPU it reports.

Precisions: fp32 pins INFERENCE_PRECISION_HINT to f32 (on AMX CPUs OpenVINO runs bf16
when left alone); bf16 and fp16 set the hint where the device lists the capability;
int8 is NNCF post-training quantization calibrated on generated inputs, cached by the
model's sha256, with the remaining ops at the device's default inference precision.
What applied is read back from the compiled model, never assumed.

Single-stream uses the LATENCY hint and the runtime's cheapest call: one InferRequest
whose input tensors are set once in prepare(), then `infer()` with no arguments
(measured here: `infer(dict)` costs about 44 us a call, tensors set once about 7 us).
Offline compiles again with the THROUGHPUT hint and drives n async requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.adapter import Adapter, AdapterOptions, Effective, Probe
from hwbench.adapter.kit import atomic_build, cache_root, cached, cpu_effective, outputs_in_batches, parse_device
from hwbench.errors import AdapterUnavailable, UnsupportedPoint, UsageError
from hwbench.host.isa import PrecisionSupport
from hwbench.models.spec import ModelSpec

INSTALL_HINT = "pip install 'hwbench[openvino]'"
CALIBRATION_SAMPLES = 64  # NNCF subset size; generated inputs, one row each
_CAPABILITY = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}
_HINT_NAME = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
_FROM_OV_TYPE = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


def _precision_name(ov_type: Any) -> str:
    """OpenVINO element type -> hwbench precision name ("f32" -> "fp32")."""
    name = ov_type.get_type_name() if hasattr(ov_type, "get_type_name") else str(ov_type)
    return _FROM_OV_TYPE.get(name, name)


class _AsyncRunner:
    """The offline queue over n InferRequests with tensors set once; completion callbacks feed it."""

    def __init__(self, requests: list[Any]) -> None:
        self.concurrency = len(requests)
        self._requests = requests
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._tags = [0] * len(requests)
        self._lock = threading.Lock()
        self._in_flight = 0
        for i, req in enumerate(requests):
            req.set_callback(self._finished, i)
            self._idle.put(i)

    def _finished(self, slot: int) -> None:
        self._done.put(self._tags[slot])
        self._idle.put(slot)

    def submit(self, tag: int) -> None:
        slot = self._idle.get()  # blocks only while every request is busy
        self._tags[slot] = tag
        with self._lock:
            self._in_flight += 1
        self._requests[slot].start_async()

    def wait(self) -> list[int]:
        with self._lock:
            if self._in_flight == 0:
                return []  # nothing submitted: waiting would block forever
        tags = [self._done.get()]
        while True:
            try:
                tags.append(self._done.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self._in_flight -= len(tags)
        return tags

    def drain(self) -> list[int]:
        tags: list[int] = []
        while True:
            with self._lock:
                if self._in_flight == 0:
                    return tags
            tags.extend(self.wait())

    def close(self) -> None:
        """Wait for requests still running, then drop them (OpenVINO frees them with the compile)."""
        for req in self._requests:
            try:
                req.wait()
            except Exception:  # noqa: BLE001 - closing must not raise
                pass
        self._requests = []


class OpenVinoAdapter(Adapter):
    """OpenVINO on the ONNX file: CPU by default, GPU/NPU when the runtime reports them."""

    name = "openvino"
    device_kind = "cpu"  # the default; "GPU[.N]" / "NPU[.N]" instances have placement.kind "gpu" / "npu"
    device_kinds = ("cpu", "gpu", "npu")
    precisions = ("fp32", "bf16", "fp16", "int8")
    scenarios = ("single-stream", "offline", "server")  # server: partial batches padded (Adapter.run_batch)
    description = "OpenVINO runtime (CPU, Intel GPU/NPU); int8 via NNCF post-training quantization"

    def __init__(self, options: AdapterOptions | None = None) -> None:
        super().__init__(options)
        self.device = self.options.device or "CPU"
        self._core: Any = None
        self._model: Any = None  # ov.Model, reshaped to the static batch
        self._compiled: Any = None
        self._request: Any = None
        self._bound: dict[str, np.ndarray] = {}
        self._spec: ModelSpec | None = None
        self._precision = ""
        self._batch_size = 0
        self._int8_cache = ""
        self._offline: dict[str, Any] = {}
        self._temp_dir: str | None = None

    # -- capability queries ----------------------------------------------------
    @classmethod
    def probe(cls) -> Probe:
        try:
            import openvino as ov
        except Exception as e:  # noqa: BLE001 - any import failure is a probe result
            return Probe.missing(f"openvino is not importable ({type(e).__name__}: {e})", INSTALL_HINT)
        versions = {"openvino": ov.__version__.split("-")[0]}
        try:
            import nncf

            versions["nncf"] = nncf.__version__
        except Exception:  # noqa: BLE001 - nncf only gates int8, reported by check()
            pass
        try:
            devices = tuple(ov.Core().available_devices)
        except Exception as e:  # noqa: BLE001
            return Probe.missing(f"openvino Core() failed: {type(e).__name__}: {e}", INSTALL_HINT)
        if not devices:
            return Probe.missing("openvino reports no devices", INSTALL_HINT)
        return Probe(available=True, devices=devices, versions=versions)

    def _ov_core(self) -> Any:
        if self._core is None:
            import openvino as ov

            self._core = ov.Core()
        return self._core

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        base = super().check(model, precision, batch_size, scenario)
        if base:
            return base
        core = self._ov_core()
        available = list(core.available_devices)
        root = self.device.split(".")[0]
        if self.device not in available and root not in {d.split(".")[0] for d in available}:
            return f"openvino device {self.device!r} not found (available: {', '.join(available)})"
        caps = list(core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))
        supported = core.get_property(self.device, "SUPPORTED_PROPERTIES")
        if precision in _CAPABILITY and _CAPABILITY[precision] not in caps:
            return f"openvino {self.device} lacks {precision} (capabilities: {', '.join(caps)})"
        if precision in _HINT_NAME and "INFERENCE_PRECISION_HINT" not in supported:
            return f"openvino {self.device} cannot be pinned to {precision}: no INFERENCE_PRECISION_HINT"
        if precision == "int8":
            try:
                import nncf  # noqa: F401
            except Exception as e:  # noqa: BLE001
                return f"int8 needs nncf ({type(e).__name__}: {e}); {INSTALL_HINT}"
        return None

    def precision_support(self, precision: str) -> PrecisionSupport:
        """From the device's OPTIMIZATION_CAPABILITIES, which OpenVINO derives from the ISA itself.

        Without the capability OpenVINO does not emulate: a bf16 or f16 hint silently compiles
        f32 (read back on a Zen 3 CPU with OpenVINO 2026.4: INFERENCE_PRECISION_HINT bf16 -> f32),
        so check() refuses such a point and effective() records the precision read back.
        int8 on the CPU adds the host ISA note (VNNI or not)."""
        cap = {"fp32": "FP32", **_CAPABILITY}.get(precision)
        try:
            caps = list(self._ov_core().get_property(self.device, "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # noqa: BLE001 - no device or no property: fall back to the ISA rule
            return super().precision_support(precision)
        on_cpu = self.device.split(".")[0] == "CPU"
        if cap is None:
            return super().precision_support(precision) if on_cpu else PrecisionSupport(None, f"openvino: no rule for {precision}")
        if cap not in caps:
            return PrecisionSupport(False, f"openvino {self.device} lists no {cap} capability ({', '.join(caps)}): "
                                           f"a {precision} hint runs f32")
        if on_cpu and precision == "int8":
            return super().precision_support(precision)
        return PrecisionSupport(True, f"{precision} native: openvino {self.device} lists {cap}")

    # -- compile ---------------------------------------------------------------
    def _config(self, hint: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if self._precision in _HINT_NAME:
            config["INFERENCE_PRECISION_HINT"] = _HINT_NAME[self._precision]
        if self.options.threads > 0:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        config.update(extra or {})
        return config

    def _quantized_path(self, spec: ModelSpec) -> Path:
        """NNCF-quantize the ONNX model once per (model, calibration, versions); return the IR path."""
        import nncf
        import openvino as ov

        from hwbench.models.workload import make_calibration_set

        model_type = "transformer" if spec.family == "transformer" else "default"
        key_src = json.dumps(
            [spec.sha256, ov.__version__, nncf.__version__, CALIBRATION_SAMPLES, model_type, sorted(spec.dims.items())]
        )
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        root = (cache_root(self.options) if self.options.cache_dir else Path(self._scratch_dir())) / "openvino-int8"
        final = root / f"{spec.name}-{key}"
        xml = final / "model.xml"
        if cached(final):  # size and hash checked: a damaged IR is quantized again
            self._int8_cache = "hit"
            return xml
        samples = make_calibration_set(spec, 1, CALIBRATION_SAMPLES)
        fp32 = self._ov_core().read_model(str(spec.onnx_path))
        # NNCF logs and draws progress bars on stdout; keep stdout clean for whoever owns it.
        nncf.set_log_level(logging.ERROR)
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                fp32,
                nncf.Dataset(samples),
                subset_size=len(samples),
                model_type=nncf.ModelType.TRANSFORMER if model_type == "transformer" else None,
            )
        # the IR folder (model.xml + model.bin) is published whole: a reader sees no half-written IR
        atomic_build(final, lambda staged: ov.save_model(quantized, str(staged / "model.xml"), compress_to_fp16=False))
        self._int8_cache = "miss"
        return xml

    def _scratch_dir(self) -> str:
        if self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="hwbench-ov-")
        return self._temp_dir

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        reason = self.check(model, precision, batch_size, "single-stream")
        if reason:
            raise UnsupportedPoint(reason)
        self._spec, self._precision, self._batch_size = model, precision, batch_size
        core = self._ov_core()
        source = self._quantized_path(model) if precision == "int8" else model.onnx_path
        ov_model = core.read_model(str(source))
        ov_model.reshape({i.name: list(i.with_batch(batch_size)) for i in model.inputs})
        self._model = ov_model
        self._compiled = core.compile_model(ov_model, self.device, self._config("LATENCY"))
        self._request = self._compiled.create_infer_request()
        self._bound = self._bind(self._request, inputs)
        self._request.infer()  # first inference: allocations happen here, inside cold start

    def _bind(self, request: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set each input tensor on `request` once, sharing memory with a kept numpy array."""
        import openvino as ov

        kept: dict[str, np.ndarray] = {}
        for spec_input in self._spec.inputs if self._spec else ():
            name = spec_input.name
            dtype = self._compiled.input(name).get_element_type().to_dtype()
            arr = np.ascontiguousarray(inputs[name], dtype=dtype)
            kept[name] = arr
            request.set_tensor(name, ov.Tensor(arr, shared_memory=True))  # by name: any compile of the model
        return kept

    # -- the system under test -------------------------------------------------
    def run(self) -> None:
        self._request.infer()

    def open_concurrent(self, concurrency: int) -> _AsyncRunner:
        """n async requests on a THROUGHPUT-hint compile; n = 0 takes the runtime's optimum."""
        if self._model is None:
            raise AdapterUnavailable("open_concurrent() before prepare()")
        extra: dict[str, Any] = {}
        n = concurrency or self.options.concurrency
        if n > 0:
            extra["PERFORMANCE_HINT_NUM_REQUESTS"] = n
        if "num_streams" in self.options.extra:
            extra["NUM_STREAMS"] = int(self.options.extra["num_streams"])
        compiled = self._ov_core().compile_model(self._model, self.device, self._config("THROUGHPUT", extra))
        optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        n = n if n > 0 else optimal
        requests = [compiled.create_infer_request() for _ in range(n)]
        keep = []
        for req in requests:
            keep.append(self._bind(req, self._bound))
        self._offline = {
            "compiled": compiled,
            "keep": keep,
            "settings": {
                "offline_concurrency": n,
                "offline_optimal_infer_requests": optimal,
                **{f"offline_{k}": v for k, v in self._read_back(compiled).items()},
            },
        }
        return _AsyncRunner(requests)

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs of the compiled (static-batch) model, run in slices of its batch size."""
        request = self._compiled.create_infer_request()

        def one_batch(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
            kept = self._bind(request, chunk)  # the tensors share these arrays' memory: keep them alive
            request.infer()
            del kept
            return [self._as_float(request.get_output_tensor(k).data) for k in range(len(self._compiled.outputs))]

        return outputs_in_batches(one_batch, inputs, self._batch_size)

    @staticmethod
    def _as_float(data: np.ndarray) -> np.ndarray:
        return np.array(data, dtype=np.float32 if data.dtype.kind in "fc" else data.dtype, copy=True)

    # -- what applied ----------------------------------------------------------
    @staticmethod
    def _read_back(compiled: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "EXECUTION_DEVICES"):
            try:
                value = compiled.get_property(key)
            except Exception:  # noqa: BLE001 - not every device exposes every property
                continue
            if isinstance(value, (list, tuple)):
                value = list(value)
            elif not isinstance(value, (int, float)):
                value = str(value)
            out[key.lower()] = value
        try:
            out["inference_precision_hint"] = _precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # noqa: BLE001
            out["inference_precision_hint"] = None
        return out

    def _placement_ran(self, execution_devices: Any) -> Any:
        """The device it compiled on, read back (EXECUTION_DEVICES, e.g. ['GPU.1']), else the selector's."""
        for name in execution_devices if isinstance(execution_devices, list) else []:
            try:
                return parse_device(str(name), self.device_kind)
            except UsageError:
                continue
        return self.placement

    def effective(self) -> Effective:
        """OpenVINO's read-back: the precision that applied and the device it compiled on
        (CPU: the host CPU; GPU/NPU: its FULL_DEVICE_NAME, index, one of the machine's)."""
        if self._compiled is None:
            raise RuntimeError("effective() before prepare()")
        import openvino as ov

        settings = self._read_back(self._compiled)
        hint = settings.get("inference_precision_hint")
        precision = "int8" if self._precision == "int8" else hint or self._precision
        placement = self._placement_ran(settings.get("execution_devices"))
        settings.update(
            {
                "static_shapes": {i.name: list(i.with_batch(self._batch_size)) for i in self._spec.inputs} if self._spec else {},
                "openvino_version": ov.__version__.split("-")[0],
            }
        )
        if self._precision == "int8":
            settings["quantization"] = f"nncf ptq, {CALIBRATION_SAMPLES} generated samples, other ops at {hint}"
            settings["int8_cache"] = self._int8_cache
        settings.update(self._offline.get("settings", {}))
        if placement.kind == "cpu":
            return cpu_effective(precision, settings)
        name = str(self._ov_core().get_property(self.device, "FULL_DEVICE_NAME"))
        return Effective(precision=precision, device_kind=placement.kind, device_name=name,
                         device_index=placement.index, accelerator=None, accelerators_used=1, settings=settings)

    def close(self) -> None:
        self._offline = {}
        self._request = self._compiled = self._model = None
        self._bound = {}
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
