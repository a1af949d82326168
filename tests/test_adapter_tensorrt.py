"""tensorrt: precision -> builder flags, capability rules, engine cache keys, profiles; the
engine build and run skip with the probe's reason where there is no GPU or TensorRT."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from device_adapters.tensorrt_rt import TensorRtAdapter, build_plan, engine_cache_key, precision_problem
from hwbench.adapter import AdapterOptions
from hwbench.models.spec import InputSpec, ModelSpec

PROFILE = {"input": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}


def key(**overrides: object) -> str:
    args: dict = dict(model_sha256="ab" * 32, trt_version="10.9.0", gpu_name="NVIDIA H100 80GB HBM3",
                      compute_capability=(9, 0), precision="fp16", profile=PROFILE, variant_sha="")
    args.update(overrides)
    return engine_cache_key(**args)  # type: ignore[arg-type]


# -- precision -> builder flags ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("precision", "flags_set", "flags_cleared", "strong", "variant"),
    [
        ("fp32", (), ("TF32",), False, "onnx"),  # TF32 is on by default: strict fp32 clears it
        ("tf32", ("TF32",), (), False, "onnx"),
        ("fp16", ("FP16",), (), False, "onnx"),
        ("bf16", ("BF16",), (), False, "onnx"),
        ("int8", (), (), True, "qdq-int8"),  # explicit quantization, strongly typed
        ("fp8", (), (), True, "qdq-fp8"),
    ],
)
def test_tensorrt_10_plans(precision: str, flags_set: tuple, flags_cleared: tuple, strong: bool, variant: str) -> None:
    plan = build_plan(precision, 10)
    assert (plan.set_flags, plan.clear_flags, plan.strongly_typed, plan.model_variant) == (
        flags_set, flags_cleared, strong, variant
    )
    assert plan.effective.startswith(precision)


def test_tensorrt_11_is_always_strongly_typed_and_fp16_uses_a_converted_model() -> None:
    for precision in ("fp32", "tf32", "fp16", "int8", "fp8"):
        assert build_plan(precision, 11).strongly_typed
    plan = build_plan("fp16", 11)
    assert plan.model_variant == "fp16-onnx" and "FP16" not in plan.set_flags


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError):
        build_plan("int4", 10)


@pytest.mark.parametrize(
    ("precision", "cc", "major", "ok"),
    [
        ("fp8", (9, 0), 10, True),  # Hopper
        ("fp8", (8, 9), 10, True),  # Ada
        ("fp8", (8, 6), 10, False),  # Ampere consumer: no FP8
        ("fp8", (8, 0), 10, False),  # A100
        ("bf16", (8, 0), 10, True),
        ("bf16", (7, 5), 10, False),  # T4
        ("tf32", (7, 5), 10, False),
        ("fp16", (7, 5), 10, True),
        ("int8", (7, 5), 10, True),
        ("bf16", (9, 0), 11, False),  # BuilderFlag.BF16 removed in TensorRT 11
    ],
)
def test_capability_rules(precision: str, cc: tuple[int, int], major: int, ok: bool) -> None:
    reason = precision_problem(precision, cc, major)
    assert (reason is None) == ok
    if not ok and major == 10:
        assert ".".join(map(str, cc)) in (reason or "")


def test_cache_key_is_stable_and_sensitive_to_every_input() -> None:
    base = key()
    assert base == key() and len(base) == 32
    changed = [
        key(model_sha256="cd" * 32), key(trt_version="10.10.0"), key(gpu_name="NVIDIA L4"),
        key(compute_capability=(8, 9)), key(precision="int8"), key(variant_sha="qdq"),
        key(profile={"input": ((1, 3, 224, 224), (1, 3, 224, 224), (32, 3, 224, 224))}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_cache_key_ignores_profile_dict_order() -> None:
    a = {"x": ((1, 2), (2, 2), (4, 2)), "y": ((1, 3), (2, 3), (4, 3))}
    b = {"y": a["y"], "x": a["x"]}
    assert key(profile=a) == key(profile=b)


# -- probe and hardware ------------------------------------------------------------------------
def test_probe_names_what_is_missing() -> None:
    probe = TensorRtAdapter.probe()
    if probe.available:
        pytest.skip("TensorRT and a GPU are present")
    assert "hwbench[tensorrt]" in probe.install_hint
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        assert "tensorrt is not importable" in probe.reason
    assert TensorRtAdapter.name == "tensorrt" and TensorRtAdapter.device_kind == "cuda"


def test_check_refuses_unknown_precisions_without_tensorrt(tmp_path: Path) -> None:
    spec = ModelSpec("m", tmp_path / "m.onnx", "0" * 64, (InputSpec("x", "float32", (1, 4)),), ("y",))
    assert "int4" in (TensorRtAdapter(AdapterOptions()).check(spec, "int4", 1, "single-stream") or "")


def test_check_applies_gpu_and_model_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check() with a stand-in `tensorrt` module (only __version__) and a faked T4 / H100."""
    import importlib.util
    import sys
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.9.0"))
    spec = _mlp(tmp_path / "mlp.onnx")
    adapter = TensorRtAdapter(AdapterOptions())
    monkeypatch.setattr(TensorRtAdapter, "_gpu", lambda self: ("Tesla T4", (7, 5)))
    assert "7.5" in (adapter.check(spec, "bf16", 1, "single-stream") or "")
    assert adapter.check(spec, "fp16", 1, "single-stream") is None
    monkeypatch.setattr(TensorRtAdapter, "_gpu", lambda self: ("NVIDIA H100 80GB HBM3", (9, 0)))
    assert "FP8-QDQ" in (adapter.check(spec, "fp8", 1, "single-stream") or "")  # a plain fp32 model
    assert adapter.check(spec, "int8", 1, "single-stream") is None
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    assert "onnxruntime" in (adapter.check(spec, "int8", 1, "single-stream") or "")


def _mlp(path: Path) -> ModelSpec:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return ModelSpec("mlp", path, hashlib.sha256(path.read_bytes()).hexdigest(), (InputSpec("x", "float32", (1, 16)),), ("y",))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_runs_and_is_cached(precision: str, tmp_path: Path) -> None:
    probe = TensorRtAdapter.probe()
    if not probe.available:
        pytest.skip(probe.reason)
    spec = _mlp(tmp_path / "mlp.onnx")
    x = {"x": np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)}
    expected = np.maximum(x["x"] @ numpy_helper.to_array(onnx.load(str(spec.onnx_path)).graph.initializer[0]), 0)
    options = AdapterOptions(cache_dir=str(tmp_path), extra={"batch_sizes": [1, 4]})
    for attempt in range(2):
        adapter = TensorRtAdapter(options)
        try:
            adapter.prepare(spec, precision, 4, x)
            adapter.run()
            assert adapter.effective().settings["engine_cache_hit"] == (attempt == 1)
            (out,) = adapter.infer({"x": np.concatenate([x["x"]] * 3)})  # 12 rows: chunks of the max batch 4
            np.testing.assert_allclose(out, np.concatenate([expected] * 3), rtol=2e-2, atol=2e-2)
        finally:
            adapter.close()
