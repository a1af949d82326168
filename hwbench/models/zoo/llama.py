"""Built-in reference LLMs: Llama-architecture decoders with seeded random weights, built locally.

Like the other zoo models, nothing is downloaded: `transformers` builds a LlamaForCausalLM from
the config below under a fixed seed and saves it as a Hugging Face folder (config.json plus
model.safetensors) in hwbench's model cache, ``<cache>/llms/<name>-<key>/``. The key covers the
config, the seed and the torch and transformers versions. A folder is built under a temporary
name and renamed into place, so a concurrent reader sees a whole model or none.

Random weights give real speed, not real text: no tokenizer is shipped, prompts are seeded
random token ids, and generation is forced to the requested length (the record says so).
Listing (`hwbench models`) imports neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hwbench.errors import ModelError
from hwbench.fsutil import atomic_write_text, publish
from hwbench.models.llmspec import LlmSpec, folder_sha256, spec_from_folder

CACHE_FORMAT = 1  # bump when the folder layout or build recipe changes
META_FILE = "hwbench-llm.json"


@dataclass(frozen=True)
class LlamaShape:
    """The LlamaConfig fields hwbench sets; the rest are transformers' defaults."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab_size: int
    context_tokens: int
    tie_embeddings: bool = True
    rope_theta: float = 10000.0

    def param_count(self) -> int:
        """Parameters of LlamaForCausalLM with this shape (tests check it against the module)."""
        head_dim = self.hidden // self.heads
        attn = self.hidden * self.hidden * 2 + 2 * self.hidden * self.kv_heads * head_dim  # q, o; k, v
        mlp = 3 * self.hidden * self.intermediate
        per_layer = attn + mlp + 2 * self.hidden  # two RMSNorms
        embed = self.vocab_size * self.hidden
        head = 0 if self.tie_embeddings else embed
        return embed + self.layers * per_layer + self.hidden + head


@dataclass(frozen=True)
class LlmEntry:
    name: str
    shape: LlamaShape
    description: str
    seed: int = 0
    tiny: bool = False


LLMS: tuple[LlmEntry, ...] = (
    LlmEntry("llama-tiny", LlamaShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab_size=512,
                                      context_tokens=512),
             "a tiny Llama decoder for tests (random weights)", tiny=True),
    LlmEntry("llama-135m", LlamaShape(hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536, vocab_size=49152,
                                      context_tokens=2048),
             "SmolLM2-135M's shape (Llama decoder, GQA 9/3 heads), random weights"),
)
BY_NAME: dict[str, LlmEntry] = {e.name: e for e in LLMS}


def list_llms() -> list[dict[str, Any]]:
    """Static metadata of every built-in LLM; builds nothing, imports no torch."""
    return [{"name": e.name, "family": "llama", "task": "text-generation", "params": e.shape.param_count(),
             "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "prompt_tokens"], "kind": "token_ids"}],
             "outputs": ["logits"], "dims": {"context_tokens": e.shape.context_tokens}, "vocab_size": e.shape.vocab_size,
             "description": e.description, "tiny": e.tiny, "workload": "generate"} for e in LLMS]


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            raise ModelError(f"building the built-in LLM needs {pkg}: pip install 'hwbench[torch,llm]'") from None
    return out


def cache_key(entry: LlmEntry) -> str:
    doc = {"format": CACHE_FORMAT, "shape": asdict(entry.shape), "seed": entry.seed, "versions": _versions()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def import_transformers() -> Any:
    """`transformers`, importable for text models even beside a torchvision that does not load.

    optimum-intel depends on torchvision, and pip may pair the PyPI torchvision build with a
    torch+cpu wheel: `import torchvision` then raises (operator torchvision::nms does not exist)
    and transformers' Llama import fails with it, though text models never use torchvision.
    When torchvision does not import, transformers is told it is absent."""
    import transformers
    from transformers.utils import import_utils

    if import_utils.is_torchvision_available():
        try:
            import torchvision  # noqa: F401
        except Exception:  # noqa: BLE001 - any failure: treat torchvision as absent
            import_utils._torchvision_available = False
            if hasattr(import_utils.is_torchvision_available, "cache_clear"):
                import_utils.is_torchvision_available.cache_clear()
    return transformers


def hf_config(shape: LlamaShape) -> Any:
    """The transformers LlamaConfig of a shape."""
    LlamaConfig = import_transformers().LlamaConfig

    return LlamaConfig(vocab_size=shape.vocab_size, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                       num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, max_position_embeddings=shape.context_tokens,
                       tie_word_embeddings=shape.tie_embeddings, rope_theta=shape.rope_theta,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0, architectures=["LlamaForCausalLM"])


def _build(entry: LlmEntry, folder: Path) -> None:
    import torch

    LlamaForCausalLM = import_transformers().LlamaForCausalLM
    torch.manual_seed(entry.seed)
    model = LlamaForCausalLM(hf_config(entry.shape)).eval()
    model.save_pretrained(folder, safe_serialization=True)


def resolve_builtin(entry: LlmEntry, cache_dir: Path) -> LlmSpec:
    """The built-in's LlmSpec, building its folder on first use."""
    key = cache_key(entry)
    root = Path(cache_dir).expanduser().resolve() / "llms"
    folder = root / f"{entry.name}-{key[:16]}"
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            raise ValueError("stale")
    except (OSError, ValueError):
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            _build(entry, tmp)
            meta = {"key": key, "sha256": folder_sha256(tmp), "parameters": entry.shape.param_count(), "seed": entry.seed}
            atomic_write_text(tmp / META_FILE, json.dumps(meta))
            if folder.exists():  # a stale or partial entry of the same key prefix
                shutil.rmtree(folder, ignore_errors=True)
            try:
                publish(tmp, folder)
            except OSError:
                if not (folder / META_FILE).is_file():  # another process won the race: use its folder
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return spec_from_folder(folder, entry.name, builtin=True, random_weights=True, parameters=meta["parameters"],
                            sha256=meta["sha256"])


def resolve_llm(name_or_path: str, cache_dir: Path | None = None) -> LlmSpec:
    """A built-in LLM name, or a Hugging Face folder (config.json + *.safetensors); UsageError otherwise."""
    from hwbench.errors import UsageError
    from hwbench.models.build import cache_root

    text = str(name_or_path).strip()
    entry = BY_NAME.get(text.lower())
    if entry is not None:
        return resolve_builtin(entry, cache_root(cache_dir))
    path = Path(text).expanduser()
    if path.exists() or os.sep in text:
        return spec_from_folder(path)
    raise UsageError(f"unknown LLM {text!r} for --workload generate; built-ins: {', '.join(BY_NAME)}; "
                     "or give a Hugging Face model folder (config.json + *.safetensors)")
