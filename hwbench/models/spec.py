"""What the core knows of a model: its ONNX file, hash, inputs and family.

Built-in reference models and user ONNX files both resolve to a ModelSpec
(see hwbench.models). Adapters receive a ModelSpec and never look models up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class InputSpec:
    """One model input with every dimension resolved except the batch (axis 0)."""

    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: tuple[int, ...]  # full shape with the batch axis first; shape[0] is ignored
    kind: str = "data"  # "data" | "token_ids" | "mask" | "token_types"

    def with_batch(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, *self.shape[1:])


@dataclass(frozen=True)
class ModelSpec:
    """A model ready to profile: an ONNX file with a dynamic batch axis and known inputs."""

    name: str
    onnx_path: Path
    sha256: str  # of the ONNX file and its external data, in a stable order
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    family: str = "custom"  # "cnn" | "transformer" | "mlp" | "custom"
    task: str = "generic"  # "classification" | "encoder" | "generic"
    builtin: bool = False
    vocab_size: int | None = None  # for token-id inputs
    torch_weights: Path | None = None  # state_dict (load with weights_only=True), built-ins only
    dims: dict[str, int] = field(default_factory=dict)  # resolved non-batch dynamic dims

    def input_shapes(self, batch_size: int) -> dict[str, list[int]]:
        return {i.name: list(i.with_batch(batch_size)) for i in self.inputs}

    def to_json(self) -> str:
        """A JSON form for passing to worker processes (no pickle anywhere)."""
        d = asdict(self)
        d["onnx_path"] = str(self.onnx_path)
        d["torch_weights"] = str(self.torch_weights) if self.torch_weights else None
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        d = json.loads(text)
        d["onnx_path"] = Path(d["onnx_path"])
        d["torch_weights"] = Path(d["torch_weights"]) if d.get("torch_weights") else None
        d["inputs"] = tuple(
            InputSpec(name=i["name"], dtype=i["dtype"], shape=tuple(i["shape"]), kind=i["kind"])
            for i in d["inputs"]
        )
        d["outputs"] = tuple(d["outputs"])
        return cls(**d)
