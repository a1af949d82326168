"""Built-in reference models, their cache, and user ONNX files (hwbench.models, hwbench.models.onnx_io)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwbench.models import build as models, onnx_io
from hwbench.errors import ModelError, UnsupportedPoint
from hwbench.models.spec import ModelSpec
from hwbench.models.workload import make_inputs
from hwbench.models.zoo import BY_NAME

import onnx  # noqa: E402  (a dependency of hwbench: always installed)
from onnx import TensorProto, helper  # noqa: E402


def _ort_outputs(spec: ModelSpec, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(spec.onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _torch_outputs(spec: ModelSpec, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    torch = pytest.importorskip("torch")
    module = models.build_torch(spec)
    with torch.no_grad():
        out = module(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# -- listing -------------------------------------------------------------------------------


def test_list_builtin_names_fields_and_known_parameter_counts() -> None:
    listed = {m["name"]: m for m in models.list_builtin()}
    assert {"resnet50", "bert-base", "mlp", "resnet-tiny", "bert-tiny", "mlp-tiny"} <= set(listed)
    for m in listed.values():
        assert m["family"] in ("cnn", "transformer", "mlp") and m["task"] in ("classification", "encoder", "generic")
        assert m["params"] > 0 and isinstance(m["tiny"], bool) and m["description"]
        assert all(i["shape"][0] == "batch" and all(isinstance(d, int) for d in i["shape"][1:]) for i in m["inputs"])
    assert listed["resnet50"]["params"] == 25_557_032  # torchvision's ResNet-50
    assert listed["bert-base"]["params"] == 109_482_240  # BERT-base with pooler
    bert = listed["bert-base"]
    assert [(i["name"], i["dtype"], i["shape"]) for i in bert["inputs"]] == [
        (n, "int64", ["batch", 128]) for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert bert["vocab_size"] == 30522 and listed["resnet-tiny"]["tiny"] and not listed["resnet50"]["tiny"]
    json.dumps(listed)  # the CLI prints it as JSON


def test_listing_imports_no_torch() -> None:
    code = "import sys, hwbench.models as m; m.list_builtin(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_analytic_parameter_count_matches_torch_module(name: str) -> None:
    torch = pytest.importorskip("torch")
    import importlib

    entry = BY_NAME[name]
    with torch.device("meta"):  # shapes only, so full-size models cost nothing
        module = importlib.import_module(f"hwbench.models.zoo.{entry.config.arch}").build(entry.config)
    assert sum(p.numel() for p in module.parameters()) == entry.config.param_count()


# -- export, correctness, cache ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp-tiny", "resnet-tiny", "bert-tiny"])
def test_tiny_export_matches_torch_at_two_batch_sizes(tiny_models: dict[str, ModelSpec], name: str) -> None:
    spec = tiny_models[name]
    for batch in (1, 5):  # two sizes: the batch axis really is dynamic
        feed = make_inputs(spec, batch, seed=batch)
        got, want = _ort_outputs(spec, feed), _torch_outputs(spec, feed)
        assert len(got) == len(want) == len(spec.outputs)
        for g, w in zip(got, want):
            assert g.shape[0] == batch
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_exported_graph_declares_batch_axes_opset_and_one_file(tiny_models: dict[str, ModelSpec]) -> None:
    for spec in tiny_models.values():
        model = onnx.load(str(spec.onnx_path))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        for value in [*model.graph.input, *model.graph.output]:
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", value.name
        assert sorted(p.name for p in spec.onnx_path.parent.iterdir()) == ["meta.json", "model.onnx", "weights.pt"]
        assert spec.sha256 == hashlib.sha256(spec.onnx_path.read_bytes()).hexdigest()
        assert spec.builtin and spec.torch_weights == spec.onnx_path.parent / "weights.pt"
        assert ModelSpec.from_json(spec.to_json()) == spec


def test_bert_sequence_dim_is_dynamic_and_range_checked(tiny_models: dict[str, ModelSpec]) -> None:
    base = tiny_models["bert-tiny"]
    assert base.dims == {"sequence": 16} and base.inputs[0].shape == (-1, 16)
    short = models.resolve("bert-tiny", base.onnx_path.parents[2], dims={"sequence": 8})
    assert short.sha256 == base.sha256 and short.dims == {"sequence": 8}
    assert [i.kind for i in short.inputs] == ["token_ids", "mask", "token_types"]
    feed = make_inputs(short, 3)
    assert feed["input_ids"].shape == (3, 8)
    for g, w in zip(_ort_outputs(short, feed), _torch_outputs(short, feed)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    for bad in ({"sequence": 65}, {"sequence": 0}, {"sequence": 2.5}, {"image": 3}):
        with pytest.raises(ModelError) as err:
            models.resolve("bert-tiny", base.onnx_path.parents[2], dims=bad)  # type: ignore[arg-type]
        _one_line(err)


def test_cache_hit_is_fast_and_does_not_export(tiny_models: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tiny_models["resnet-tiny"].onnx_path.parents[2]

    def no_export(*args: object) -> None:
        raise AssertionError("exported on a cache hit")

    monkeypatch.setattr(models, "_export_builtin", no_export)
    start = time.perf_counter()
    again = models.resolve("ResNet-Tiny", cache)  # names are case-insensitive
    assert time.perf_counter() - start < 0.5
    assert again == tiny_models["resnet-tiny"]


def test_cache_key_covers_config_torch_version_and_export_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = BY_NAME["mlp-tiny"]
    key = models._cache_key(entry)
    assert models._cache_key(BY_NAME["mlp"]) != key
    monkeypatch.setattr(models, "OPSET", 19)
    assert models._cache_key(entry) != key
    monkeypatch.undo()
    real_version = models.metadata.version
    monkeypatch.setattr(models.metadata, "version", lambda pkg: "9.9.9" if pkg == "torch" else real_version(pkg))
    assert models._cache_key(entry) != key


def test_failed_export_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")

    def broken(*args: object) -> str:
        raise ModelError("exporting mlp-tiny to ONNX failed (test)")

    monkeypatch.setattr(models, "export_onnx", broken)
    with pytest.raises(ModelError):
        models.resolve("mlp-tiny", tmp_path)
    assert list((tmp_path / "models").iterdir()) == []  # no half model, no temp folder


def test_broken_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    first = models.resolve("mlp-tiny", tmp_path)
    first.onnx_path.write_bytes(first.onnx_path.read_bytes()[:100])  # cut short
    again = models.resolve("mlp-tiny", tmp_path)
    assert again.sha256 == first.sha256 and again.onnx_path.stat().st_size > 100
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.onnx_path.parent.name]


def test_losing_the_rename_race_uses_the_winners_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    winner = models.resolve("mlp-tiny", tmp_path / "other")
    real_export = models._export_builtin

    def export_then_lose(entry, key, folder):  # type: ignore[no-untyped-def]
        meta = real_export(entry, key, folder)
        import shutil

        shutil.copytree(winner.onnx_path.parent, tmp_path / "models" / winner.onnx_path.parent.name)
        return meta

    monkeypatch.setattr(models, "_export_builtin", export_then_lose)
    spec = models.resolve("mlp-tiny", tmp_path)
    assert spec.sha256 == winner.sha256
    assert [p.name for p in (tmp_path / "models").iterdir()] == [winner.onnx_path.parent.name]


def test_two_processes_building_at_once_agree(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    code = "import sys, hwbench.models as m; print(m.resolve('mlp-tiny', sys.argv[1]).sha256)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    shas = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and shas[0] == shas[1] and len(shas[0]) == 64
    assert len(list((tmp_path / "models").iterdir())) == 1


def test_dynamo_fallback_exports_a_working_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    real = torch.onnx.export

    def no_torchscript(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("dynamo") is False:
            raise RuntimeError("TorchScript exporter removed")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_torchscript)
    spec = models.resolve("mlp-tiny", tmp_path)
    assert json.loads((spec.onnx_path.parent / "meta.json").read_text())["exporter"] == "dynamo"
    for batch in (1, 4):
        feed = make_inputs(spec, batch)
        np.testing.assert_allclose(_ort_outputs(spec, feed)[0], _torch_outputs(spec, feed)[0], rtol=1e-4, atol=1e-5)


def test_build_torch_loads_weights_only(tiny_models: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    seen: list[object] = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("weights_only")) or real(*a, **k))
    module = models.build_torch(tiny_models["resnet-tiny"])
    assert seen == [True] and not module.training
    assert all(p.device.type == "cpu" for p in module.parameters())


def test_build_torch_refuses_user_onnx(tmp_path: Path) -> None:
    spec = models.resolve(str(_text_model(tmp_path / "text.onnx")))
    with pytest.raises(UnsupportedPoint) as err:
        models.build_torch(spec)
    assert "torch" in _one_line(err)


# -- user ONNX files ------------------------------------------------------------------------


def _save(graph: onnx.GraphProto, path: Path, **kwargs: object) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), **kwargs)  # type: ignore[arg-type]
    return path


def _text_model(path: Path, vocab: int = 50) -> Path:
    """input_ids/attention_mask/token_type_ids on ['batch', 'seq'] -> an embedding masked and shifted."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in names]
    emb = helper.make_tensor("emb", TensorProto.FLOAT, [vocab, 4], np.linspace(0, 1, vocab * 4, dtype=np.float32))
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["t"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["m", "t"], ["mt"]),
        helper.make_node("Unsqueeze", ["mt", "axes"], ["mt3"]),
        helper.make_node("Mul", ["e", "mt3"], ["out"]),
    ]
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 4])
    return _save(helper.make_graph(nodes, "text", ins, [out], [emb, axes]), path)


def _image_model(path: Path, batch: int | str = "N", **save_kwargs: object) -> Path:
    """A float NCHW input with unnamed spatial dims -> a per-channel scale and global average pool."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, None, None])
    w = onnx.numpy_helper.from_array(np.array([0.5, 1.0, 2.0], dtype=np.float32).reshape(1, 3, 1, 1), "w")
    nodes = [helper.make_node("Mul", ["image", "w"], ["s"]), helper.make_node("GlobalAveragePool", ["s"], ["y"])]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 1, 1])
    return _save(helper.make_graph(nodes, "image", [x], [y], [w]), path, **save_kwargs)


def test_user_text_model_defaults_overrides_and_inferred_vocab(tmp_path: Path) -> None:
    path = _text_model(tmp_path / "text.onnx", vocab=50)
    spec = models.resolve(str(path))
    assert spec.name == "text" and not spec.builtin and spec.torch_weights is None and spec.family == "custom"
    assert spec.dims == {"seq": onnx_io.SEQUENCE_DEFAULT} and spec.inputs[0].shape == (-1, 128)
    assert [i.kind for i in spec.inputs] == ["token_ids", "mask", "token_types"]
    assert spec.vocab_size == 50  # from the Gather on the embedding table
    assert spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    short = models.resolve(str(path), dims={"seq": 64, "vocab": 10})
    assert short.dims == {"seq": 64} and short.vocab_size == 10 and short.sha256 == spec.sha256
    feed = make_inputs(short, 2)
    assert feed["input_ids"].shape == (2, 64) and feed["input_ids"].max() < 10
    assert _ort_outputs(short, feed)[0].shape == (2, 64, 4)
    with pytest.raises(ModelError) as err:
        models.resolve(str(path), dims={"sequence": 64})
    assert "seq" in _one_line(err)


def test_user_image_model_unnamed_dims(tmp_path: Path) -> None:
    path = _image_model(tmp_path / "image.onnx")
    spec = models.resolve(str(path))
    assert spec.inputs[0].shape == (-1, 3, 224, 224) and spec.inputs[0].kind == "data" and spec.vocab_size is None
    small = models.resolve(str(path), dims={"image:2": 32, "image:3": 48})
    feed = make_inputs(small, 2)
    assert feed["image"].shape == (2, 3, 32, 48)
    expected = feed["image"].mean(axis=(2, 3)) * np.array([0.5, 1.0, 2.0], dtype=np.float32)
    np.testing.assert_allclose(_ort_outputs(small, feed)[0][:, :, 0, 0], expected, rtol=1e-5, atol=1e-6)


def test_external_data_is_hashed_with_the_model(tmp_path: Path) -> None:
    path = _image_model(
        tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="ext.weights", size_threshold=0
    )
    data = tmp_path / "ext.weights"
    assert data.is_file()
    spec = models.resolve(str(path))
    assert spec.sha256 == hashlib.sha256(path.read_bytes() + data.read_bytes()).hexdigest()
    assert _ort_outputs(spec, make_inputs(spec, 1))[0].shape == (1, 3, 1, 1)
    data.write_bytes(bytes(reversed(data.read_bytes())))
    assert models.resolve(str(path)).sha256 != spec.sha256
    data.unlink()
    with pytest.raises(ModelError) as err:
        models.resolve(str(path))
    assert "ext.weights" in _one_line(err)


def test_dim_defaults_by_name_and_layout() -> None:
    raws = [
        onnx_io.RawInput("ids", "int64", ("b", None)),  # unnamed axis of 2-D ints: a sequence
        onnx_io.RawInput("pos", "int32", ("b", "seq_len")),
        onnx_io.RawInput("img", "float32", ("b", "height", "width", 3)),  # NHWC by the fixed 3
        onnx_io.RawInput("nchw", "float32", ("b", None, None, None)),
        onnx_io.RawInput("boxes", "float32", ("b", "num_boxes", 4)),
        onnx_io.RawInput("hidden", "float16", ("b", "seq_len", "hidden_size")),
    ]
    specs, dims = onnx_io.resolve_inputs(raws, {}, Path("m.onnx"))
    shapes = {s.name: s.shape for s in specs}
    assert shapes == {
        "ids": (-1, 128), "pos": (-1, 128), "img": (-1, 224, 224, 3), "nchw": (-1, 3, 224, 224),
        "boxes": (-1, 1, 4), "hidden": (-1, 128, 1),
    }  # fmt: skip
    assert dims["seq_len"] == 128 and dims["ids:1"] == 128 and "b" not in dims
    specs, dims = onnx_io.resolve_inputs(raws, {"seq_len": 7, "ids:1": 9, "hidden_size": 16}, Path("m.onnx"))
    shapes = {s.name: s.shape for s in specs}
    assert shapes["pos"] == (-1, 7) and shapes["hidden"] == (-1, 7, 16) and shapes["ids"] == (-1, 9)
    assert [s.kind for s in specs] == ["token_ids", "token_ids", "data", "data", "data", "data"]


@pytest.mark.parametrize(
    ("name", "dtype", "kind"),
    [
        ("input_ids", "int64", "token_ids"), ("attention_mask", "int64", "mask"), ("token_type_ids", "int32", "token_types"),
        ("segment_ids", "int64", "token_types"), ("padding_mask", "bool", "mask"), ("x", "bool", "data"),
        ("pixel_values", "float16", "data"), ("Mask_Scale", "float32", "data"),
    ],
)  # fmt: skip
def test_classify(name: str, dtype: str, kind: str) -> None:
    assert onnx_io.classify(name, dtype) == kind


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"\x00\x01\x02garbage" * 10, "not a valid ONNX"),
        (b"hello, world\n", "not a valid ONNX"),
    ],
)
def test_bad_files_raise_one_line_model_errors(tmp_path: Path, content: bytes | None, expect: str) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        models.resolve(str(path))
    assert expect in _one_line(err) and "bad.onnx" in str(err.value)


def test_directory_and_fixed_batch_raise(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        models.resolve(str(tmp_path) + "/")
    assert "directory" in _one_line(err)
    with pytest.raises(ModelError) as err:
        models.resolve(str(_image_model(tmp_path / "fixed.onnx", batch=1)))
    assert "fixed batch" in _one_line(err)


@pytest.mark.parametrize(
    ("name", "hint"), [("resnet5", "resnet50"), ("bert", "bert-base"), ("bert_tiny", "bert-tiny"), ("xyzzy", "built-ins")]
)
def test_unknown_names_suggest_close_ones(tmp_path: Path, name: str, hint: str) -> None:
    with pytest.raises(ModelError) as err:
        models.resolve(name, tmp_path)
    assert hint in _one_line(err)


@pytest.mark.parametrize("name", ["../../evil", "../x.onnx", "resnet50/../../../x", "/etc/passwd", ".."])
def test_hostile_names_write_nothing(tmp_path: Path, name: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as err:
        models.resolve(name, cache)
    _one_line(err)
    assert not cache.exists()


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "c"))
    assert models.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HWBENCH_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert models.default_cache_dir() == Path.home() / ".cache" / "hwbench"


# -- full size (make test-slow) ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "bert-base", "mlp"])
def test_full_size_export_matches_torch(tmp_path: Path, name: str) -> None:
    start = time.perf_counter()
    spec = models.resolve(name, tmp_path)
    elapsed_s = time.perf_counter() - start
    size_mb = spec.onnx_path.stat().st_size / 1e6
    print(f"{name}: build+export+hash {elapsed_s:.1f} s (measured), model.onnx {size_mb:.1f} MB")
    for batch in (1, 2):
        feed = make_inputs(spec, batch)
        for g, w in zip(_ort_outputs(spec, feed), _torch_outputs(spec, feed)):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)
