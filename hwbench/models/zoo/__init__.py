"""The built-in reference models: their configs and static metadata, without torch.

Listing the zoo (``hwbench models``) must be instant, so this module holds only
plain dataclasses: the architecture, input and output names, dynamic dims and an
analytic parameter count. The torch modules live in one file per architecture
(resnet.py, bert.py, mlp.py) and are imported only by :func:`build_module`.
tests/test_models.py checks each analytic count against the torch module's.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Union

if TYPE_CHECKING:
    import torch

BATCH = "batch"  # the name of axis 0 of every built-in input and output


@dataclass(frozen=True)
class DynamicDim:
    """A non-batch axis exported as dynamic: its default and the range the model accepts."""

    default: int
    min: int
    max: int


@dataclass(frozen=True)
class ResNetConfig:
    """A bottleneck ResNet (v1.5: stride on the 3x3 conv) on square RGB images."""

    arch: ClassVar[str] = "resnet"
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    base_width: int = 64
    num_classes: int = 1000
    image_size: int = 224
    expansion: int = 4

    def inputs(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        return [("pixel_values", "float32", (BATCH, 3, self.image_size, self.image_size))]

    def outputs(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [("logits", (BATCH, self.num_classes))]

    def dynamic_dims(self) -> dict[str, DynamicDim]:
        return {}

    def param_count(self) -> int:
        w = self.base_width
        total = 3 * w * 7 * 7 + 2 * w  # stem conv (no bias) + its batch norm
        in_ch = w
        for stage, n_blocks in enumerate(self.blocks):
            mid = w * 2**stage
            out = mid * self.expansion
            for i in range(n_blocks):
                total += in_ch * mid + 2 * mid  # 1x1 reduce + bn
                total += mid * mid * 9 + 2 * mid  # 3x3 + bn
                total += mid * out + 2 * out  # 1x1 expand + bn
                if i == 0 and (stage > 0 or in_ch != out):
                    total += in_ch * out + 2 * out  # projection shortcut + bn
                in_ch = out
        return total + in_ch * self.num_classes + self.num_classes


@dataclass(frozen=True)
class BertConfig:
    """A BERT encoder (post-LayerNorm, exact GELU) with a tanh pooler on the first token."""

    arch: ClassVar[str] = "bert"
    vocab_size: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    sequence: int = 128  # default sequence length; the exported axis is dynamic up to max_positions
    layer_norm_eps: float = 1e-12

    def inputs(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        shape = (BATCH, "sequence")
        return [("input_ids", "int64", shape), ("attention_mask", "int64", shape), ("token_type_ids", "int64", shape)]

    def outputs(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [("last_hidden_state", (BATCH, "sequence", self.hidden)), ("pooler_output", (BATCH, self.hidden))]

    def dynamic_dims(self) -> dict[str, DynamicDim]:
        # torch.export specialises sizes 0 and 1, so the dynamic range starts at 2.
        return {"sequence": DynamicDim(self.sequence, 2, self.max_positions)}

    def param_count(self) -> int:
        h, i = self.hidden, self.intermediate
        embeddings = (self.vocab_size + self.max_positions + self.type_vocab_size) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
        return embeddings + self.layers * layer + h * h + h


@dataclass(frozen=True)
class MlpConfig:
    """Linear + ReLU layers on a flat feature vector, then a linear head."""

    arch: ClassVar[str] = "mlp"
    in_features: int = 512
    hidden: tuple[int, ...] = (2048, 2048, 1024)
    num_outputs: int = 1000

    def inputs(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        return [("features", "float32", (BATCH, self.in_features))]

    def outputs(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [("logits", (BATCH, self.num_outputs))]

    def dynamic_dims(self) -> dict[str, DynamicDim]:
        return {}

    def param_count(self) -> int:
        widths = (self.in_features, *self.hidden, self.num_outputs)
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


ModelConfig = Union[ResNetConfig, BertConfig, MlpConfig]


@dataclass(frozen=True)
class ZooEntry:
    """One built-in model: a config, a weight seed and what to tell users about it."""

    name: str
    family: str  # "cnn" | "transformer" | "mlp"
    task: str  # "classification" | "encoder" | "generic"
    description: str
    config: ModelConfig
    tiny: bool = False
    seed: int = 0

    @property
    def vocab_size(self) -> int | None:
        return getattr(self.config, "vocab_size", None)


ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry("resnet50", "cnn", "classification", "ResNet-50 v1.5, 224x224 RGB, 1000 classes", ResNetConfig()),
    ZooEntry(
        "bert-base",
        "transformer",
        "encoder",
        "BERT-base encoder: 12 layers, hidden 768, vocab 30522, sequence 128 (dynamic, up to 512)",
        BertConfig(),
    ),
    ZooEntry("mlp", "mlp", "generic", "MLP 512 -> 2048 -> 2048 -> 1024 -> 1000 with ReLU", MlpConfig()),
    ZooEntry(
        "resnet-tiny",
        "cnn",
        "classification",
        "Tiny bottleneck ResNet for tests: 4 blocks, width 8, 32x32 input, 10 classes",
        ResNetConfig(blocks=(1, 1, 1, 1), base_width=8, num_classes=10, image_size=32),
        tiny=True,
    ),
    ZooEntry(
        "bert-tiny",
        "transformer",
        "encoder",
        "Tiny BERT encoder for tests: 2 layers, hidden 32, vocab 1000, sequence 16 (dynamic, up to 64)",
        BertConfig(vocab_size=1000, hidden=32, layers=2, heads=2, intermediate=64, max_positions=64, sequence=16),
        tiny=True,
    ),
    ZooEntry(
        "mlp-tiny",
        "mlp",
        "generic",
        "Tiny MLP for tests: 16 -> 32 -> 32 -> 4",
        MlpConfig(in_features=16, hidden=(32, 32), num_outputs=4),
        tiny=True,
    ),
)

BY_NAME: dict[str, ZooEntry] = {e.name: e for e in ENTRIES}


def build_module(entry: ZooEntry) -> "torch.nn.Module":
    """The entry's torch module with its seeded random weights, in eval mode.

    The global torch RNG is left as it was, so building a model never changes
    what other code draws.
    """
    import torch

    arch = importlib.import_module(f"hwbench.models.zoo.{entry.config.arch}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed)
        module = arch.build(entry.config)
    return module.eval()
