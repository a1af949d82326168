"""What the core knows of a generative (decoder-only) LLM: a Hugging Face model folder.

Built-in reference LLMs (random weights, built locally with transformers) and a user's own
folder (config.json plus safetensors weights) both resolve to an LlmSpec. Adapters receive it
and never look models up; what they export or compile from the folder they cache themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hwbench.errors import UsageError


@dataclass(frozen=True)
class LlmSpec:
    """A decoder-only LLM ready to profile."""

    name: str
    path: Path  # the Hugging Face folder: config.json, *.safetensors, optionally a tokenizer
    sha256: str  # of config.json and the weight files, in a stable order
    architecture: str  # config "architectures"[0], e.g. "LlamaForCausalLM"
    vocab_size: int
    context_tokens: int  # max_position_embeddings: prompt + output must fit
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    parameters: int | None = None  # counted when built; None when unknown
    has_tokenizer: bool = False  # False: prompts are random token ids (the record says so)
    builtin: bool = False
    random_weights: bool = False  # True for the built-ins: real speed, not real text

    def kv_cache_bytes(self, batch_size: int, tokens: int, bytes_per_value: int) -> int:
        """Keys and values of every layer for batch_size sequences of `tokens`: the KV cache's size."""
        return 2 * self.layers * self.kv_heads * self.head_dim * tokens * batch_size * bytes_per_value

    def to_json(self) -> str:
        """A JSON form for passing to worker processes (no pickle anywhere)."""
        d = asdict(self)
        d["path"] = str(self.path)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "LlmSpec":
        d = json.loads(text)
        d["path"] = Path(d["path"])
        return cls(**d)


def folder_sha256(path: Path) -> str:
    """A hash of config.json and every *.safetensors file under `path`, in name order."""
    h = hashlib.sha256()
    files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def spec_from_folder(path: Path, name: str | None = None, *, builtin: bool = False,
                     random_weights: bool = False, parameters: int | None = None,
                     sha256: str | None = None) -> LlmSpec:
    """Read a Hugging Face folder's config into an LlmSpec; UsageError when it is not one.
    `sha256`: the folder's hash when the caller already knows it (a built-in's cache entry)."""
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise UsageError(f"{path}: not a model folder (a Hugging Face folder holds config.json and *.safetensors)")
    if not config_file.is_file():
        raise UsageError(f"{path}: no config.json in the model folder")
    if not any(path.glob("*.safetensors")):
        raise UsageError(f"{path}: no *.safetensors weights in the model folder")
    try:
        cfg = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{config_file}: not readable JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{config_file}: expected a JSON object")
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        spec = LlmSpec(
            name=name or path.name, path=path.resolve(), sha256=sha256 or folder_sha256(path),
            architecture=str((cfg.get("architectures") or ["unknown"])[0]),
            vocab_size=int(cfg["vocab_size"]), context_tokens=int(cfg["max_position_embeddings"]),
            layers=int(cfg["num_hidden_layers"]), hidden=hidden, heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads), parameters=parameters,
            has_tokenizer=(path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file(),
            builtin=builtin, random_weights=random_weights,
        )
    except KeyError as e:
        raise UsageError(f"{config_file}: missing {e.args[0]!r}: not a decoder-only LLM config hwbench can read") from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"{config_file}: a malformed value ({e})") from None
    return spec
