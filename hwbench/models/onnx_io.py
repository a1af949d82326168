"""Reading a user's ONNX file: validation, content hash, inputs, dynamic dims and vocab size.

Only the graph is parsed (external weights are hashed, never loaded), so even a large
model resolves in about the time it takes to hash it. Every failure is a one-line
ModelError naming the file.

Non-batch dynamic dims get a default unless the caller's ``dims`` sets them:
  * ``dims["<input>:<axis>"]``, then ``dims["<symbol>"]`` (the dim_param in the ONNX);
  * a symbol named like a sequence (seq, length, len, token): SEQUENCE_DEFAULT (128);
  * a symbol named like an image side (height, width, h, w, image, img): IMAGE_DEFAULT (224);
  * by position: axis 1 of a 2-D integer input is a sequence (128); the spatial axes of a
    4-D float input are image sides (224, NCHW unless axis 3 is a fixed 1 or 3: NHWC);
  * anything else: OTHER_DEFAULT (1).
Integer inputs are classified by name (see :func:`classify`). The vocab for token ids is
``dims["vocab"]``, else the smallest embedding table (a Gather on an initializer) that a
token input indexes, else VOCAB_DEFAULT (1000).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hwbench.errors import ModelError
from hwbench.models.spec import InputSpec

if TYPE_CHECKING:
    import onnx

SEQUENCE_DEFAULT = 128
IMAGE_DEFAULT = 224
OTHER_DEFAULT = 1
VOCAB_DEFAULT = 1000
VOCAB_KEY = "vocab"  # the dims key that sets the token-id range
BATCH_PLACEHOLDER = -1  # InputSpec.shape[0]: the batch is chosen per trial

FEEDABLE_DTYPES = frozenset(
    {"float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}
)
_SEQUENCE_NAME = re.compile(r"seq|length|len|token", re.IGNORECASE)
_IMAGE_NAME = re.compile(r"height|width|^h$|^w$|image|img", re.IGNORECASE)
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class RawInput:
    """A graph input as the file declares it: each axis an int, a symbol name, or None (unknown)."""

    name: str
    dtype: str
    dims: tuple[int | str | None, ...]


def classify(name: str, dtype: str) -> str:
    """InputSpec.kind from an input's name and dtype: 'mask', 'token_types', 'token_ids' or 'data'."""
    lowered = name.lower()
    if dtype == "bool":
        return "mask" if "mask" in lowered else "data"
    if not dtype.startswith(("int", "uint")):
        return "data"
    if "mask" in lowered:
        return "mask"
    if "token_type" in lowered or "segment" in lowered:
        return "token_types"
    return "token_ids"


def sha256_files(paths: Sequence[Path]) -> str:
    """One digest over the files' bytes in the order given (callers pass a stable order)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def load_graph(path: Path) -> "onnx.ModelProto":
    """Parse an .onnx file without its external weights, or raise a one-line ModelError."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"model path is a directory, not an .onnx file: {path}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise ModelError(f"model file is empty: {path}")
        model = onnx.load(str(path), load_external_data=False)
    except ModelError:
        raise
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"not a valid ONNX model: {path} (it does not parse as ONNX protobuf)") from e
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}") from e
    if model.ir_version < 3 or not model.opset_import or not model.graph.output:
        raise ModelError(f"not a valid ONNX model: {path} (no graph, outputs or opset)")
    return model


def _tensors(graph: "onnx.GraphProto") -> Iterator["onnx.TensorProto"]:
    """Every tensor that may hold external data: initializers and attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def external_files(model: "onnx.ModelProto", model_path: Path) -> list[Path]:
    """The external data files the model references, sorted by location, each checked to exist.

    A location that leaves the model's folder is refused, as ONNX Runtime itself does.
    """
    import onnx

    base = model_path.parent.resolve()
    locations: set[str] = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            if "location" not in entries:
                raise ModelError(f"tensor {tensor.name!r} in {model_path} has external data with no location")
            locations.add(entries["location"])
    files: list[Path] = []
    for location in sorted(locations):
        target = (base / location).resolve()
        if not target.is_relative_to(base):
            raise ModelError(f"external data {location!r} of {model_path} lies outside the model's folder")
        if not target.is_file():
            raise ModelError(f"external data file {location!r} of {model_path} is missing")
        files.append(target)
    return files


def raw_inputs(model: "onnx.ModelProto", model_path: Path) -> list[RawInput]:
    """The graph's real inputs (initializers listed as inputs by old exporters are skipped)."""
    import onnx

    initializers = {t.name for t in model.graph.initializer}
    out: list[RawInput] = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.type.WhichOneof("value") != "tensor_type":
            raise ModelError(f"input {value.name!r} of {model_path} is not a tensor; hwbench feeds tensors only")
        tensor_type = value.type.tensor_type
        try:
            dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        except (KeyError, ValueError, TypeError):
            dtype = f"onnx-type-{tensor_type.elem_type}"
        if dtype not in FEEDABLE_DTYPES:
            raise ModelError(f"input {value.name!r} of {model_path} has dtype {dtype}, which hwbench cannot feed")
        if not tensor_type.HasField("shape"):
            raise ModelError(f"input {value.name!r} of {model_path} declares no shape")
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
            for d in tensor_type.shape.dim
        )
        out.append(RawInput(value.name, dtype, dims))
    if not out:
        raise ModelError(f"{model_path} has no inputs to feed")
    return out


def infer_vocab(model: "onnx.ModelProto", token_inputs: Sequence[str]) -> int | None:
    """The smallest embedding table a token input indexes directly (or through a Cast), if any."""
    rows = {t.name: t.dims[0] for t in model.graph.initializer if len(t.dims) >= 1}
    sources = {name: name for name in token_inputs}
    for node in model.graph.node:  # one hop through Cast, as exporters insert before Gather
        if node.op_type == "Cast" and node.input and node.input[0] in token_inputs:
            sources[node.output[0]] = node.input[0]
    found: list[int] = []
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in sources:
            if node.input[0] in rows and rows[node.input[0]] > 0:
                found.append(int(rows[node.input[0]]))
    return min(found) if found else None


def _positional_default(raw: RawInput, axis: int) -> int:
    """A default for an axis from the input's layout alone (see the module docstring)."""
    rank = len(raw.dims)
    if raw.dtype.startswith(("int", "uint")) and rank == 2 and axis == 1:
        return SEQUENCE_DEFAULT
    if raw.dtype.startswith("float") and rank == 4:
        channels_last = raw.dims[3] in (1, 3) and raw.dims[1] not in (1, 3)
        spatial = (1, 2) if channels_last else (2, 3)
        if axis in spatial:
            return IMAGE_DEFAULT
        return 3 if axis in (1, 3) else OTHER_DEFAULT
    return OTHER_DEFAULT


def _named_default(symbol: str) -> int | None:
    if _SEQUENCE_NAME.search(symbol):
        return SEQUENCE_DEFAULT
    if _IMAGE_NAME.search(symbol):
        return IMAGE_DEFAULT
    return None


def resolve_inputs(
    raws: Sequence[RawInput], dims: dict[str, int], model_path: Path
) -> tuple[tuple[InputSpec, ...], dict[str, int]]:
    """InputSpecs with every non-batch axis fixed, and the dynamic dims as resolved.

    Raises ModelError for an input whose batch axis (axis 0) is fixed or missing, and for
    keys of ``dims`` that name no dynamic axis of this model.
    """
    resolved: dict[str, int] = {}
    used: set[str] = set()
    specs: list[InputSpec] = []
    for raw in raws:
        if not raw.dims:
            raise ModelError(f"input {raw.name!r} of {model_path} is a scalar; hwbench needs a batch axis (axis 0)")
        if isinstance(raw.dims[0], int):
            raise ModelError(
                f"input {raw.name!r} of {model_path} has a fixed batch of {raw.dims[0]} on axis 0; "
                "re-export it with a dynamic batch axis"
            )
        shape = [BATCH_PLACEHOLDER]
        for axis, dim in enumerate(raw.dims[1:], start=1):
            if isinstance(dim, int):
                shape.append(dim)
                continue
            key = f"{raw.name}:{axis}"
            if key in dims or dim is None:
                label, value = key, dims.get(key) or _positional_default(raw, axis)
            else:  # a symbol: one value wherever it appears
                label = dim
                value = dims.get(dim) or resolved.get(dim) or _named_default(dim) or _positional_default(raw, axis)
            if label in dims:
                used.add(label)
            resolved[label] = value
            shape.append(value)
        specs.append(InputSpec(raw.name, raw.dtype, tuple(shape), classify(raw.name, raw.dtype)))
    unknown = sorted(set(dims) - used - {VOCAB_KEY})
    if unknown:
        known = ", ".join(sorted(resolved)) or "none"
        raise ModelError(f"{model_path} has no dynamic dim {', '.join(unknown)} (its dynamic dims: {known})")
    return tuple(specs), resolved
