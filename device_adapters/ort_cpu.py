"""ONNX Runtime, CPU execution provider.

fp32 runs the exported model as is. int8 quantizes it with onnxruntime.quantization:
static QDQ calibrated on generated inputs for CNNs (and other non-transformer models),
dynamic quantization for transformers, whose activations vary too much per input for
static ranges from random data. fp16 converts the graph with ONNX Runtime's own
float16 converter, keeping fp32 inputs and outputs. Quantized and converted models
are cached by the source model's sha256 and the quantization recipe. Inputs are bound
once (IO binding), so the timed call is only `run_with_iobinding`.

int8 on x86 CPUs without VNNI. ONNX Runtime's quantization guide ("When and why do I need
to try U8U8?", onnxruntime.ai/docs/performance/model-optimizations/quantization.html):
on x86-64 with AVX2 and AVX-512 its U8S8 kernels use VPMADDUBSW, which adds two u8 x s8
products into a saturating int16, so a result can be clamped; there is "no such issue" on
x64 with VNNI or on ARM. It names two remedies: reduce_range (7-bit weights, "designed for
the U8S8 format on AVX2 and AVX512 (non-VNNI) machines", "not needed on machines supporting
VNNI") and U8U8. Its session option "session.x64quantprecision"
(onnxruntime_session_options_config_keys.h) makes the CPU provider use its slower U8U8
matrix multiplications on such CPUs instead. hwbench reads the host's flags
(hwbench.host.isa.int8_dot_saturates): on x86 without avx512_vnni, avx_vnni or amx_int8 it keeps
the 8-bit model and sets that option (INT8_REMEDY), and says so in effective().

Why that remedy, measured here (AMD EPYC Zen 3, AVX2 only, onnxruntime 1.32, 2026-12, a busy
2-core host; accuracy against fp32 with hwbench.measure.accuracy, speed as medians of interleaved
batch-1 single-thread runs, so ratios only; 64, 32 and 8 rows compared): mlp-tiny static QDQ
mean_rel_err 0.11 unremedied (fails the 0.10 threshold), 0.054 with the option (equal to the fake-quant QDQ graph), 0.058
with reduce_range; ResNet-50 (random weights) 0.021 / 0.016 (equal to fake-quant) / 0.028, and
reduce_range's 7-bit weights failed the top-1 check (0.66 < 0.90); BERT-base dynamic 0.032 /
0.033 / 0.052. Speed against fp32: ResNet-50 0.54x unremedied, 0.79x with the option, 0.61x
with reduce_range; BERT-base 0.55x / 0.64x / 0.50x. The option costs speed, not accuracy,
and leaves the int8 model the same file on every host.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.adapter import Adapter, ConcurrentRunner, Effective, Probe
from hwbench.adapter.concurrency import ThreadedRunner
from hwbench.adapter.kit import atomic_build, cache_root, cpu_effective
from hwbench.errors import HwbenchError, UnsupportedPoint
from hwbench.host.isa import INT8_DOT_FLAGS, int8_dot_saturates
from hwbench.models.spec import ModelSpec

INSTALL_HINT = "pip install 'hwbench[ort]'"

# -- int8 recipe: which quantization, and what guards against int16 saturation ---------------
VNNI_FLAGS = INT8_DOT_FLAGS  # /proc/cpuinfo names of int8 dot products into int32 (hwbench.host.isa)
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
X64_PRECISION_KEY = "session.x64quantprecision"  # ONNX Runtime: "1" = U8U8 kernels on non-VNNI x86
INT8_REMEDIES = ("x64quantprecision", "reduce_range", "none")
INT8_REMEDY = "x64quantprecision"  # what hwbench applies on a saturating host (see the module docstring)
# onnxruntime_session_options_config_keys.h: "0" lets idle intra-op threads sleep instead of spin-waiting.
# The server scenario sets it: measured here (AMD EPYC Zen 3, 2 vCPUs, ResNet-50 int8 b1 at 2 req/s, 80
# Poisson arrivals, quiet host, 2026-12-01) the spinning threads held both vCPUs between requests and the
# issuer woke late (scheduling lag p99 2.84 ms spinning, 0.74 ms not), at no cost in service time
# (p50 50.8 ms spinning, 50.2 ms not).
ALLOW_SPINNING_KEY = "session.intra_op.allow_spinning"


def _config_entry(so: Any, key: str, default: str) -> str:
    """A session config entry as the session holds it; `default` (ONNX Runtime's own) where it was never set."""
    try:
        return str(so.get_session_config_entry(key))
    except RuntimeError:  # "SessionOptions does not have configuration with key"
        return default


@dataclass(frozen=True)
class Int8Recipe:
    """How a model is quantized for ort-cpu and how its session runs the int8 kernels."""

    method: str  # "static-qdq" (U8S8 QDQ, per-channel weights) or "dynamic"
    reduce_range: bool  # 7-bit weights
    x64_precision: bool  # session.x64quantprecision=1: U8U8 kernels instead of saturating U8S8
    kernels: str  # a short note for effective()

    def cache_tag(self) -> str:
        """What makes the quantized file differ: two recipes with equal tags share one file."""
        return f"{self.method}|reduce_range={int(self.reduce_range)}"

    def session_config(self) -> dict[str, str]:
        return {X64_PRECISION_KEY: "1"} if self.x64_precision else {}


def int8_recipe(family: str, saturates: bool, remedy: str | None = None) -> Int8Recipe:
    """The recipe for a model family on a host whose U8S8 kernels saturate (or not).

    `remedy` (default INT8_REMEDY) applies only where `saturates`; "none" keeps the
    saturating kernels (for tests that show the damage)."""
    method = "dynamic" if family == "transformer" else "static-qdq"
    remedy = INT8_REMEDY if remedy is None else remedy
    if remedy not in INT8_REMEDIES:
        raise HwbenchError(f"unknown int8 remedy {remedy!r}; choose from {', '.join(INT8_REMEDIES)}")
    if not saturates:
        return Int8Recipe(method, False, False, "u8s8; VNNI/AMX-INT8 or not x86: no int16 saturation")
    if remedy == "x64quantprecision":
        return Int8Recipe(method, False, True,
                          "u8u8 (session.x64quantprecision=1): x86 without VNNI, whose u8s8 kernels saturate int16")
    if remedy == "reduce_range":
        return Int8Recipe(method, True, False,
                          "u8s8 with 7-bit weights (reduce_range): x86 without VNNI, pairs cannot reach int16 limits")
    return Int8Recipe(method, False, False, "u8s8 via VPMADDUBSW: x86 without VNNI, int16 pair sums may saturate")


def quantize_int8(model: ModelSpec, out: Path, recipe: Int8Recipe) -> None:
    """Write `model` quantized by `recipe` to `out` (static QDQ calibrated on generated inputs, or dynamic)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if recipe.method == "dynamic":
        quantize_dynamic(str(model.onnx_path), str(out), weight_type=QuantType.QInt8, reduce_range=recipe.reduce_range)
        return
    from hwbench.models.workload import make_calibration_set

    batches = make_calibration_set(model, batch_size=1, n=16)
    quantize_static(
        str(model.onnx_path),
        str(out),
        _Calibration(batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=recipe.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


class _Calibration:
    """onnxruntime.quantization.CalibrationDataReader over generated inputs."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by the calibrators we call
        pass


class OrtCpuAdapter(Adapter):
    """ONNX Runtime on the CPU execution provider."""

    name = "ort-cpu"
    device_kind = "cpu"
    precisions = ("fp32", "fp16", "int8")
    scenarios = ("single-stream", "offline", "server")
    description = "ONNX Runtime, CPU execution provider"
    partial_batch = "exact"  # the exported models' batch axis is dynamic: run_batch(n) binds the first n rows

    @classmethod
    def probe(cls) -> Probe:
        try:
            import onnxruntime as ort
        except Exception as e:  # noqa: BLE001 - any import failure is the probe's answer
            return Probe.missing(f"onnxruntime is not importable ({type(e).__name__}: {e})", INSTALL_HINT)
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return Probe.missing("this onnxruntime build has no CPUExecutionProvider", INSTALL_HINT)
        return Probe(available=True, devices=("CPU",), versions={"onnxruntime": ort.__version__})

    # -- model preparation ------------------------------------------------------
    def _int8_method(self, model: ModelSpec) -> str:
        return self._int8_recipe(model).method

    def _int8_recipe(self, model: ModelSpec) -> Int8Recipe:
        return int8_recipe(model.family, int8_dot_saturates())

    def _variant_path(self, model: ModelSpec, precision: str) -> Path:
        if precision == "fp32":
            return model.onnx_path
        try:
            ort_version = version("onnxruntime")
        except PackageNotFoundError:  # pragma: no cover
            ort_version = "?"
        method = self._int8_recipe(model).cache_tag() if precision == "int8" else "fp16-keepio"
        key = hashlib.sha256(f"{model.sha256}|{method}|{ort_version}".encode()).hexdigest()[:20]
        target = cache_root(self.options) / "ort-cpu" / f"{precision}-{key}.onnx"
        # in a private folder as working directory: ONNX Runtime's quantizer writes augmented
        # models and calibration files into the working directory
        if precision == "int8":
            return atomic_build(target, lambda out: self._quantize(model, out), in_folder=True)
        return atomic_build(target, lambda out: self._to_fp16(model, out), in_folder=True)

    def _quantize(self, model: ModelSpec, out: Path) -> None:
        quantize_int8(model, out, self._int8_recipe(model))

    def _to_fp16(self, model: ModelSpec, out: Path) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = onnx.load(str(model.onnx_path))
        converted = convert_float_to_float16(proto, keep_io_types=True)
        onnx.save(converted, str(out))

    def _session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.options.threads > 0:
            so.intra_op_num_threads = self.options.threads
        so.log_severity_level = 3
        if self.options.scenario == "server":
            so.add_session_config_entry(ALLOW_SPINNING_KEY, "0")
        if getattr(self, "_precision", None) == "int8":
            for key, value in self._int8_recipe(self._model).session_config().items():
                so.add_session_config_entry(key, value)
        return so

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        path = self._variant_path(model, precision)
        self._precision = precision
        self._path = path
        self._model = model
        so = self._session_options()
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:
            if precision != "fp32" and "NOT_IMPLEMENTED" in str(e):
                raise UnsupportedPoint(f"ONNX Runtime CPU has no {precision} kernel for an op: {e}") from e
            raise
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._inputs = inputs
        self._binding = self._bind(self._session, inputs)
        self._session.run_with_iobinding(self._binding)  # fail here, not inside the timed loop

    def _bind(self, session: Any, inputs: dict[str, np.ndarray]) -> Any:
        binding = session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        for name in self._output_names:
            binding.bind_output(name)
        return binding

    def run(self) -> None:
        self._session.run_with_iobinding(self._binding)

    def run_batch(self, n: int) -> None:
        """n requests: an IO binding over the first n rows of the bound inputs, made on first use
        (the server scenario's warm-up runs every size once, so none is made while timed)."""
        bindings = self.__dict__.setdefault("_partial", {})
        binding = bindings.get(n)
        if binding is None:
            binding = bindings[n] = self._bind(self._session, {k: v[:n] for k, v in self._inputs.items()})
        self._session.run_with_iobinding(binding)

    def open_concurrent(self, concurrency: int) -> ConcurrentRunner:
        """Concurrent requests on one session: ONNX Runtime's `run` is thread-safe and releases
        the GIL. Each slot has its own IO binding over its own copy of the inputs. Unless threads
        were set, the cores are split between the requests (n requests x all cores each would
        oversubscribe the CPU), in a session of its own."""
        import onnxruntime as ort

        n = concurrency or 2
        session = self._session
        if self.options.threads <= 0 and n > 1:
            so = self._session_options()
            so.intra_op_num_threads = max(1, (os.cpu_count() or 1) // n)
            session = ort.InferenceSession(str(self._path), sess_options=so, providers=["CPUExecutionProvider"])
        self._offline = {"offline_concurrency": n,
                         "offline_intra_op_num_threads": session.get_session_options().intra_op_num_threads}
        bindings = [self._bind(session, {k: v.copy() for k, v in self._inputs.items()}) for _ in range(n)]
        return ThreadedRunner(lambda slot: session.run_with_iobinding(bindings[slot]), n)

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        outs = self._session.run(self._output_names, inputs)
        return [np.asarray(o, dtype=np.float32) for o in outs]

    def effective(self) -> Effective:
        so = self._session.get_session_options()
        settings: dict[str, Any] = {
            "execution_provider": self._session.get_providers()[0],
            "intra_op_num_threads": so.intra_op_num_threads,  # 0 = ONNX Runtime's default (physical cores)
            "graph_optimization_level": str(so.graph_optimization_level),
            "execution_mode": str(so.execution_mode),
            "io_binding": True,
            "onnxruntime": version("onnxruntime"),
            "intra_op_allow_spinning": _config_entry(so, ALLOW_SPINNING_KEY, "1") != "0",  # read back from the session
        }
        if self._precision == "int8":
            recipe = self._int8_recipe(self._model)
            settings["quantization"] = recipe.method
            settings["reduce_range"] = recipe.reduce_range
            settings["int8_kernels"] = recipe.kernels
            settings["session_config"] = recipe.session_config()
        settings.update(getattr(self, "_offline", {}))
        if self._precision == "fp16":
            settings["conversion"] = "onnxruntime.transformers.float16, fp32 inputs/outputs kept"
        return cpu_effective(self._precision, settings)

    def close(self) -> None:
        self._session = None
        self._binding = None
        self._partial = {}

    def precision_support(self, precision: str) -> "PrecisionSupport":  # noqa: F821 - imported below
        """fp16: ONNX Runtime has CPU fp16 kernels only where MLAS has fp16 acceleration (Arm64 with
        fp16 arithmetic). Elsewhere its InsertCastTransformer casts every fp16 node to fp32: checked
        here (ORT 1.32, Zen 3) by saving the optimized graph of an fp16 Conv/MatMul model, whose
        initializers were all fp32 again. Other precisions: the host ISA rule."""
        from hwbench.host.isa import PrecisionSupport, host_flags, host_machine

        if precision != "fp16":
            return super().precision_support(precision)
        machine, flags = host_machine().lower(), host_flags()
        arm = machine in ("aarch64", "arm64")
        if not arm and machine not in ("x86_64", "amd64") or arm and flags is None:
            return super().precision_support(precision)
        if arm and "asimdhp" in (flags or ()):
            return PrecisionSupport(True, "fp16 native in ONNX Runtime's MLAS fp16 kernels (asimdhp); "
                                          "ops without an fp16 kernel are upcast")
        return PrecisionSupport(False, "fp16 is upcast to fp32 by ONNX Runtime's CPU EP here (MLAS has fp16 kernels "
                                       "only on Arm64 with asimdhp): Casts inserted, the graph runs in fp32")
