"""Model lookup: built-in reference models (built, exported and cached here) and user ONNX files.

A built-in is built in torch from its config (hwbench.models.zoo) with seeded random weights,
exported once to ONNX with a dynamic batch axis, and cached under
``<cache_dir>/models/<name>-<key>/`` with its torch state_dict beside it. The key
covers the config, the seed, the torch version and the export settings, so a change to
any of them builds anew. A cache entry is written in a temporary folder and renamed into
place, so a concurrent reader sees a whole model or none.

Resolution of a name: a built-in name (case-insensitive) wins; anything else that ends
in .onnx, contains a path separator or exists is a file; otherwise the name is unknown.
Write ``./mlp`` to mean a file called ``mlp``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwbench.models import onnx_io
from hwbench.errors import ModelError, UnsupportedPoint
from hwbench.fsutil import content_digest, note_rebuilt
from hwbench.models.spec import InputSpec, ModelSpec
from hwbench.models.zoo import BATCH, BY_NAME, ENTRIES, ZooEntry, build_module

if TYPE_CHECKING:
    import torch

CACHE_ENV = "HWBENCH_CACHE"
CACHE_FORMAT = 1  # bump when the cache layout or export recipe changes
OPSET = 18
EXPORTER = "torchscript"  # falls back to "dynamo" where the TorchScript exporter fails
EXAMPLE_BATCH = 2  # torch.export specialises batch 1, so examples use 2
ONNX_FILE, WEIGHTS_FILE, META_FILE = "model.onnx", "weights.pt", "meta.json"
MAX_DIM = 1 << 20
_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
_STALE_TMP_S = 24 * 3600


def default_cache_dir() -> Path:
    """$HWBENCH_CACHE, else $XDG_CACHE_HOME/hwbench, else ~/.cache/hwbench."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "hwbench"
    return Path.home() / ".cache" / "hwbench"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The one cache root: `cache_dir` when given (``~`` expanded), else default_cache_dir().

    Models are built under it and adapters keep derived models and engines under it
    (hwbench.adapter.kit.cache_root reads an AdapterOptions' cache_dir through this)."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def _builtin_inputs(entry: ZooEntry, dims: dict[str, int]) -> tuple[InputSpec, ...]:
    def size(d: Any) -> int:
        return onnx_io.BATCH_PLACEHOLDER if d == BATCH else dims[d] if isinstance(d, str) else int(d)

    return tuple(
        InputSpec(name, dtype, tuple(size(d) for d in shape), onnx_io.classify(name, dtype))
        for name, dtype, shape in entry.config.inputs()
    )


def list_builtin() -> list[dict[str, Any]]:
    """Static metadata of every built-in model; builds and exports nothing, imports no torch."""
    out = []
    for e in ENTRIES:
        dims = {k: v.default for k, v in e.config.dynamic_dims().items()}
        out.append(
            {
                "name": e.name,
                "family": e.family,
                "task": e.task,
                "params": e.config.param_count(),
                "inputs": [
                    {"name": i.name, "dtype": i.dtype, "shape": [BATCH, *i.shape[1:]], "kind": i.kind}
                    for i in _builtin_inputs(e, dims)
                ],
                "outputs": [name for name, _ in e.config.outputs()],
                "dims": dims,
                "vocab_size": e.vocab_size,
                "description": e.description,
                "tiny": e.tiny,
            }
        )
    return out


def _check_dims(dims: dict[str, int] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in (dims or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIM:
            raise ModelError(f"dim {key!r} must be an integer from 1 to {MAX_DIM}, got {value!r}")
        out[str(key)] = value
    return out


def resolve(name_or_path: str, cache_dir: Path | None = None, dims: dict[str, int] | None = None) -> ModelSpec:
    """A ModelSpec for a built-in name or an .onnx path; built-ins are exported on first use.

    Every input's shape is resolved except axis 0 (the batch), which holds -1.
    ``dims`` sets non-batch dynamic dims by their ONNX symbol name (e.g. {"sequence": 64});
    for user files also "<input>:<axis>" keys and "vocab" (see hwbench.models.onnx_io).
    """
    checked = _check_dims(dims)
    text = str(name_or_path).strip()
    if not text:
        raise ModelError("empty model name")
    entry = BY_NAME.get(text.lower())
    if entry is not None:
        return _resolve_builtin(entry, cache_root(cache_dir), checked)
    from hwbench.models.zoo.llama import BY_NAME as LLMS

    if text.lower() in LLMS:
        raise ModelError(f"{text} is a generative LLM: profile it with --workload generate")
    path = Path(text).expanduser()
    if text.lower().endswith(".onnx") or "/" in text or os.sep in text or path.exists():
        return _resolve_file(path, checked)
    names = [e.name for e in ENTRIES]
    close = difflib.get_close_matches(text.lower(), names, n=3, cutoff=0.5)
    close += [n for n in names if text.lower() in n and n not in close]
    hint = f"did you mean {' or '.join(close[:3])}? " if close else ""
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise ModelError(f"unknown model {shown!r}; {hint}built-ins: {', '.join(names)}; or give a path to an .onnx file")


# -- user ONNX files -------------------------------------------------------------

_hash_memo: dict[tuple[tuple[str, int, int], ...], str] = {}


def _hash_cached(files: list[Path]) -> str:
    """sha256 of the files, remembered per (path, size, mtime) within this process."""
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _hash_memo:
        _hash_memo[stamp] = onnx_io.sha256_files(files)
    return _hash_memo[stamp]


def _resolve_file(path: Path, dims: dict[str, int]) -> ModelSpec:
    path = path.resolve() if path.exists() else path
    model = onnx_io.load_graph(path)
    files = [path, *onnx_io.external_files(model, path)]
    inputs, resolved = onnx_io.resolve_inputs(onnx_io.raw_inputs(model, path), dims, path)
    tokens = [i.name for i in inputs if i.kind == "token_ids"]
    vocab = dims.get(onnx_io.VOCAB_KEY)
    if vocab is None and tokens:
        vocab = onnx_io.infer_vocab(model, tokens) or onnx_io.VOCAB_DEFAULT
    name = path.name[: -len(".onnx")] if path.name.lower().endswith(".onnx") else path.name
    return ModelSpec(
        name=name,
        onnx_path=path,
        sha256=_hash_cached(files),
        inputs=inputs,
        outputs=tuple(o.name for o in model.graph.output),
        vocab_size=vocab,
        dims=resolved,
    )


# -- built-ins ---------------------------------------------------------------------


def _builtin_dims(entry: ZooEntry, dims: dict[str, int]) -> dict[str, int]:
    allowed = entry.config.dynamic_dims()
    out = {k: v.default for k, v in allowed.items()}
    for key, value in dims.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ModelError(f"{entry.name} has no dynamic dim {key!r} (its dynamic dims: {known})")
        if not allowed[key].min <= value <= allowed[key].max:
            raise ModelError(f"{entry.name} takes {key} from {allowed[key].min} to {allowed[key].max}, got {value}")
        out[key] = value
    return out


def _cache_key(entry: ZooEntry) -> str:
    """Content key of a built-in: config, seed, torch version and export settings."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        hint = "pip install 'hwbench[torch]'"
        raise ModelError(f"building the built-in model {entry.name} needs torch: {hint}") from None
    doc = {
        "format": CACHE_FORMAT,
        "arch": entry.config.arch,
        "config": asdict(entry.config),
        "seed": entry.seed,
        "torch": torch_version,
        "export": {"exporter": EXPORTER, "opset": OPSET, "example_batch": EXAMPLE_BATCH, "dynamic": "batch+config"},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _read_meta(folder: Path, key: str, check: bool = False) -> dict[str, Any] | None:
    """The entry's metadata when the folder holds a whole model for `key`, else None.

    With check=True the contents are verified too: the ONNX file's and the torch weights' SHA-256
    against those recorded at export (a damaged entry is rebuilt, once, with a note for the run).
    """
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta["key"] != key or (folder / ONNX_FILE).stat().st_size != meta["onnx_bytes"]:
            return None
        if not (folder / WEIGHTS_FILE).is_file():
            return None
        if check:
            problem = None
            if content_digest(folder / WEIGHTS_FILE) != (meta.get("weights_bytes"), meta.get("weights_sha256")):
                problem = "torch weights differ from those exported" if "weights_sha256" in meta else "no weights checksum"
            elif onnx_io.sha256_files([folder / ONNX_FILE]) != meta["sha256"]:
                problem = "model.onnx differs from the export"
            if problem:
                note_rebuilt(f"cached model {folder.name} failed its check ({problem}): rebuilt")
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resolve_builtin(entry: ZooEntry, cache_dir: Path, dims: dict[str, int]) -> ModelSpec:
    resolved = _builtin_dims(entry, dims)
    if not _SAFE_NAME.match(entry.name):  # names come from the zoo table; guard the path anyway
        raise ModelError(f"built-in name {entry.name!r} is not safe as a folder name")
    key = _cache_key(entry)
    root = cache_dir.expanduser().resolve() / "models"
    folder = root / f"{entry.name}-{key[:16]}"
    if folder.parent != root:
        raise ModelError(f"cache path for {entry.name!r} escapes {root}")
    meta = _read_meta(folder, key, check=True)
    if meta is None:
        meta = _build_into(entry, key, root, folder)
    return ModelSpec(
        name=entry.name,
        onnx_path=folder / ONNX_FILE,
        sha256=meta["sha256"],
        inputs=_builtin_inputs(entry, resolved),
        outputs=tuple(name for name, _ in entry.config.outputs()),
        family=entry.family,
        task=entry.task,
        builtin=True,
        vocab_size=entry.vocab_size,
        torch_weights=folder / WEIGHTS_FILE,
        dims=resolved,
    )


def _sweep_stale(root: Path) -> None:
    """Remove temporary folders left by crashed builds (older than a day)."""
    now = time.time()
    for tmp in root.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _build_into(entry: ZooEntry, key: str, root: Path, folder: Path) -> dict[str, Any]:
    """Build, export and hash the model in a temporary folder, then rename it into place."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    except OSError as e:
        raise ModelError(f"cannot write the model cache {root}: {e.strerror or e}") from e
    try:
        _sweep_stale(root)
        meta = _export_builtin(entry, key, tmp)
        if folder.exists():  # a broken entry (files missing or cut short): move it aside, then delete it
            trash = Path(tempfile.mkdtemp(prefix=f".tmp-broken-{entry.name}-", dir=root))
            try:
                os.replace(folder, trash / "old")
            except FileNotFoundError:
                pass  # another process moved it first
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            winner = _read_meta(folder, key)  # another process finished first: use its copy
            if winner is None:
                raise
            return winner
        return meta
    except OSError as e:
        raise ModelError(f"cannot write the model cache {root}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _example(entry: ZooEntry, onnx_path: Path) -> dict[str, Any]:
    """Example tensors for export: the workload at EXAMPLE_BATCH and the default dims."""
    import torch

    from hwbench.models.workload import make_inputs

    dims = {k: v.default for k, v in entry.config.dynamic_dims().items()}
    spec = ModelSpec(entry.name, onnx_path, "", _builtin_inputs(entry, dims), (), vocab_size=entry.vocab_size)
    return {k: torch.from_numpy(v) for k, v in make_inputs(spec, EXAMPLE_BATCH).items()}


def _export_builtin(entry: ZooEntry, key: str, folder: Path) -> dict[str, Any]:
    import torch

    start = time.perf_counter()
    module = build_module(entry)
    torch.save(module.state_dict(), folder / WEIGHTS_FILE)
    weights_bytes, weights_sha256 = content_digest(folder / WEIGHTS_FILE)
    onnx_path = folder / ONNX_FILE
    exporter = export_onnx(module, entry, _example(entry, onnx_path), onnx_path)
    meta = {
        "name": entry.name,
        "key": key,
        "sha256": onnx_io.sha256_files([onnx_path]),
        "onnx_bytes": onnx_path.stat().st_size,
        "weights_bytes": weights_bytes,
        "weights_sha256": weights_sha256,
        "exporter": exporter,
        "opset": OPSET,
        "torch": torch.__version__,
        "build_s": round(time.perf_counter() - start, 3),  # measured: build + export + hash
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def export_onnx(module: "torch.nn.Module", entry: ZooEntry, example: dict[str, "torch.Tensor"], path: Path) -> str:
    """Export `module` to one ONNX file with every input's and output's axis 0 dynamic.

    The TorchScript exporter is used: on this machine it exported ResNet-50 in 1.9 s and
    BERT-base in 6.5 s against 5.9 s and 13.0 s for the dynamo exporter (measured once,
    2-core Sapphire Rapids VM), needs no onnxscript and writes a single file. Where it
    fails (it is deprecated since torch 2.9) the dynamo exporter is tried. Returns the
    exporter used.
    """
    import warnings

    import torch

    module.eval()  # the outermost module: a wrapper left in training mode re-enables dropout
    if any(m.training for m in module.modules()):
        raise ModelError(f"{entry.name}: a submodule is still in training mode after eval()")
    cfg = entry.config
    names = [name for name, _, _ in cfg.inputs()]
    axes = {name: {i: d for i, d in enumerate(shape) if isinstance(d, str)} for name, _, shape in cfg.inputs()}
    axes.update({name: {i: d for i, d in enumerate(shape) if isinstance(d, str)} for name, shape in cfg.outputs()})
    out_names = [name for name, _ in cfg.outputs()]
    errors: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, tuple(example[n] for n in names), str(path), input_names=names, output_names=out_names,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
            )  # fmt: skip
            return "torchscript"
        except Exception as e:  # noqa: BLE001 - any exporter failure: try the other one
            errors.append(f"torchscript: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        try:
            from torch.export import Dim

            symbols = {BATCH: Dim(BATCH, min=1, max=MAX_DIM)}
            symbols.update({k: Dim(k, min=v.min, max=v.max) for k, v in cfg.dynamic_dims().items()})
            shapes = {n: {i: symbols[d] for i, d in ax.items()} for n, ax in axes.items() if n in names}
            program = torch.onnx.export(
                module, (), kwargs=example, dynamic_shapes=shapes, input_names=names, output_names=out_names,
                opset_version=OPSET, dynamo=True, external_data=False,
            )  # fmt: skip
            program.save(str(path), external_data=False)
            return "dynamo"
        except Exception as e:  # noqa: BLE001
            errors.append(f"dynamo: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise ModelError(f"exporting {entry.name} to ONNX failed ({'; '.join(errors)})")


def build_torch(spec: ModelSpec) -> "torch.nn.Module":
    """The built-in's torch module with the exact weights of its ONNX export, in eval mode."""
    entry = BY_NAME.get(spec.name)
    if not spec.builtin or entry is None:
        raise UnsupportedPoint(f"{spec.name} is an ONNX file with no torch source; torch runs built-in models only")
    if spec.torch_weights is None or not Path(spec.torch_weights).is_file():
        raise ModelError(f"torch weights of {spec.name} are missing: {spec.torch_weights}")
    import importlib

    import torch

    arch = importlib.import_module(f"hwbench.models.zoo.{entry.config.arch}")
    try:
        state = torch.load(spec.torch_weights, map_location="cpu", weights_only=True)
        with torch.device("meta"):
            module = arch.build(entry.config)  # shapes only: no time spent drawing weights
        module.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, OSError, EOFError) as e:
        raise ModelError(f"cannot load torch weights of {spec.name} from {spec.torch_weights}: {e}") from e
    return module.eval()


__all__ = ["build_torch", "cache_root", "default_cache_dir", "export_onnx", "list_builtin", "resolve"]
