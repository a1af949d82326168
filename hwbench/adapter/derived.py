"""ONNX-side preparation that the NVIDIA adapters share (ort-cuda, ort-trt, tensorrt): part of the
adapter kit. Optimisation profiles over the swept batch sizes, and derived models made with
ONNX Runtime's own tools (an fp16 model, a symmetric QDQ int8 model calibrated on the trial's
generated inputs), each built once into the cache with hwbench.adapter.kit.atomic_build.

Facts relied on (ONNX Runtime documentation):
- onnxruntime.transformers.float16.convert_float_to_float16(model, keep_io_types=True) and
  onnxruntime.quantization.quantize_static(..., quant_format=QDQ) with symmetric int8
  activations and weights produces models TensorRT accepts (its quantization is symmetric).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.adapter.kit import atomic_build, cached
from hwbench.fsutil import publish
from hwbench.models.spec import ModelSpec

Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def profile_batches(batch_size: int, extra: Mapping[str, Any]) -> tuple[int, int, int]:
    """(min, opt, max) batch of the profile: 1, this trial's batch, the largest swept batch."""
    swept = [int(b) for b in extra.get("batch_sizes", ()) or ()]
    return 1, batch_size, max([batch_size, *swept])


def shape_profile(model: ModelSpec, batch_size: int, extra: Mapping[str, Any]) -> Profile:
    """Per input, (min, opt, max) shapes: non-batch dims fixed, batch over profile_batches()."""
    lo, opt, hi = profile_batches(batch_size, extra)
    return {i.name: (i.with_batch(lo), i.with_batch(opt), i.with_batch(hi)) for i in model.inputs}


def chunk_ranges(n: int, max_batch: int) -> list[tuple[int, int]]:
    """Split n items into consecutive [start, stop) chunks of at most max_batch."""
    return [(s, min(s + max_batch, n)) for s in range(0, n, max_batch)]


def _arrays_sha(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# -- derived models (ONNX Runtime tools, run on the CPU) --------------------------------------
def fp16_model(model: ModelSpec, cache_dir: Path) -> Path:
    """An fp16 copy of the model, float32 inputs and outputs kept (cached by model hash)."""
    out = cache_dir / "models" / f"{model.name}-{model.sha256[:16]}-fp16.onnx"
    if cached(out):
        return out
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(onnx.load(str(model.onnx_path)), keep_io_types=True)
    large = converted.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit: weights in a file beside it
    data = f"{out.name}.data"

    def build(staged: Path) -> None:
        onnx.save_model(converted, str(staged), save_as_external_data=large, location=data)
        if large:  # the weights go into place first: whoever sees the model sees its weights
            publish(staged.parent / data, out.parent / data)

    return atomic_build(out, build)


def qdq_model(model: ModelSpec, calibration: Mapping[str, np.ndarray], cache_dir: Path) -> Path:
    """A symmetric int8 QDQ model calibrated (MinMax) on `calibration` (cached by both hashes).

    No fp8 counterpart: ONNX Runtime calibrates float8 only with its Distribution method,
    which clipped activations badly when tried here (a small random CNN, 4 calibration
    images: max output error 9.9 on outputs up to 11, against 0.10 for int8 MinMax);
    fp8 therefore needs a model that is already FP8-QDQ (existing_qdq_kind()).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    out = cache_dir / "models" / f"{model.name}-{model.sha256[:16]}-qdq-int8-{_arrays_sha(calibration)}.onnx"
    if cached(out):
        return out

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([dict(calibration)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    def build(staged: Path) -> None:
        quantize_static(
            str(model.onnx_path), str(staged), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibration_providers=["CPUExecutionProvider"],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )

    return atomic_build(out, build, in_folder=True)  # the quantizer's scratch files stay in the private folder


def existing_qdq_kind(onnx_path: Path) -> str | None:
    """'int8' or 'fp8' when the model already holds QuantizeLinear nodes of that type, else None."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name: i.data_type for i in m.graph.initializer}
    fp8_types = {onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ}
    kinds = set()
    for node in m.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            dtype = inits.get(node.input[2])
            if dtype in fp8_types:
                kinds.add("fp8")
            elif dtype == onnx.TensorProto.INT8:
                kinds.add("int8")
    return "fp8" if "fp8" in kinds else ("int8" if kinds else None)
