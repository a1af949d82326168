"""ort-cuda / ort-trt: provider options, profiles, derived models and IO binding.

IO binding and the derived models (fp16, QDQ int8) run for real on ONNX Runtime's CPU
provider here; the GPU runs skip with the probe's reason where there is no GPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from device_adapters import ort_gpu
from device_adapters.ort_gpu import OrtCudaAdapter, OrtTensorRtAdapter
from hwbench.adapter import AdapterOptions
from hwbench.adapter.kit import Placement
from hwbench.errors import UsageError
from hwbench.models.spec import InputSpec, ModelSpec

ort = pytest.importorskip("onnxruntime")


def tiny_cnn(path: Path) -> ModelSpec:
    """Conv-ReLU-pool-matmul with a dynamic batch: small enough to quantize in a blink."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "fw"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fw"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], init,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return ModelSpec(
        name="tiny", onnx_path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        inputs=(InputSpec("input", "float32", (1, 3, 16, 16)),), outputs=("logits",), family="cnn",
    )


@pytest.fixture
def tiny(tmp_path: Path) -> ModelSpec:
    return tiny_cnn(tmp_path / "tiny.onnx")


@pytest.fixture
def images() -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)}


def reference(model: ModelSpec, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


# -- pure helpers -------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "index"), [("", 0), ("cuda", 0), ("cuda:1", 1), ("2", 2), ("CUDA:3", 3)])
def test_cuda_index(text: str, index: int) -> None:
    assert OrtCudaAdapter.placement_for(text) == Placement("cuda", index)
    assert OrtCudaAdapter(AdapterOptions(device=text)).placement.index == index


def test_cuda_index_rejects_other_devices() -> None:
    with pytest.raises(UsageError, match="runs on cuda"):
        OrtCudaAdapter.placement_for("GPU.0")
    reason = OrtCudaAdapter(AdapterOptions(device="GPU.0")).check(ModelSpec("m", Path("m.onnx"), "0" * 64, (), ()),
                                                                 "fp32", 1, "single-stream")
    assert reason and "runs on cuda" in reason


def test_profile_covers_the_sweep_with_this_batch_as_optimum(tiny: ModelSpec) -> None:
    assert ort_gpu.profile_batches(8, {"batch_sizes": [1, 8, 32]}) == (1, 8, 32)
    assert ort_gpu.profile_batches(8, {}) == (1, 8, 8)
    profile = ort_gpu.shape_profile(tiny, 8, {"batch_sizes": [1, 8, 32]})
    assert profile == {"input": ((1, 3, 16, 16), (8, 3, 16, 16), (32, 3, 16, 16))}
    assert ort_gpu.trt_shapes_option(profile, 2) == "input:32x3x16x16"


def test_trt_shapes_option_lists_every_input() -> None:
    profile = {"input_ids": ((1, 128), (8, 128), (8, 128)), "attention_mask": ((1, 128), (8, 128), (8, 128))}
    assert ort_gpu.trt_shapes_option(profile, 0) == "input_ids:1x128,attention_mask:1x128"


def test_chunks_never_exceed_the_profile_max() -> None:
    assert ort_gpu.chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert ort_gpu.chunk_ranges(3, 8) == [(0, 3)]


def test_cuda_options_turn_tf32_on_only_for_tf32() -> None:
    assert ort_gpu.cuda_provider_options("fp32", 1) == {
        "device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0",
    }
    assert ort_gpu.cuda_provider_options("tf32", 0)["use_tf32"] == "1"


def test_trt_options_enable_precision_and_caches(tiny: ModelSpec, tmp_path: Path) -> None:
    profile = ort_gpu.shape_profile(tiny, 8, {})
    opts = ort_gpu.trt_provider_options("int8", 0, profile, tmp_path)
    assert opts["trt_int8_enable"] == "1" and opts["trt_fp16_enable"] == "0"
    assert opts["trt_engine_cache_enable"] == "1" and opts["trt_engine_cache_path"] == str(tmp_path)
    assert opts["trt_profile_opt_shapes"] == "input:8x3x16x16"
    assert ort_gpu.trt_provider_options("fp16", 0, profile, tmp_path)["trt_fp16_enable"] == "1"


def test_ort_types_map_to_numpy() -> None:
    assert ort_gpu.ort_numpy_dtype("tensor(int64)") is np.int64
    with pytest.raises(Exception, match="not supported"):
        ort_gpu.ort_numpy_dtype("tensor(string)")


# -- real runs on ONNX Runtime's CPU provider ------------------------------------------------------
def test_bound_session_matches_a_plain_run(tiny: ModelSpec, images: dict[str, np.ndarray]) -> None:
    session = ort.InferenceSession(str(tiny.onnx_path), providers=["CPUExecutionProvider"])
    bound = ort_gpu.BoundSession(session, {"input": images["input"].astype(np.float64)}, "cpu", 0)
    bound.run()
    bound.run()
    (out,) = bound.outputs()
    np.testing.assert_allclose(out, reference(tiny, images), rtol=1e-5, atol=1e-5)  # input cast to float32


def _cpu_run(path: Path, feeds: dict[str, np.ndarray], level: "ort.GraphOptimizationLevel",
             config: dict[str, str] | None = None) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_qdq_int8_model_is_symmetric_and_close(tiny: ModelSpec, images: dict[str, np.ndarray], tmp_path: Path) -> None:
    """The QDQ model's own numerics, which is what TensorRT computes (int8 products summed exactly in
    int32, i.e. quantize-dequantize in float). With graph optimizations off, ONNX Runtime's CPU provider
    runs every QuantizeLinear/DequantizeLinear node and a float Conv/MatMul, and fuses nothing into an
    int8 kernel, so this holds on any CPU (the fused kernels are the next test's subject)."""
    path = ort_gpu.qdq_model(tiny, images, tmp_path)
    assert ort_gpu.existing_qdq_kind(path) == "int8" and ort_gpu.existing_qdq_kind(tiny.onnx_path) is None
    m = onnx.load(str(path))
    zero_points = [numpy_helper.to_array(i) for i in m.graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(np.all(z == 0) for z in zero_points)  # TensorRT needs symmetric
    ref = reference(tiny, images)
    got = _cpu_run(path, images, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    err = float(np.abs(got - ref).max())
    assert 0 < err < 0.05 * np.abs(ref).max()  # quantized (not a pass-through), and close
    assert ort_gpu.qdq_model(tiny, images, tmp_path) == path  # cached by model and calibration hash


def test_fused_cpu_int8_kernels_compute_the_qdq_numerics(tiny: ModelSpec, images: dict[str, np.ndarray],
                                                         tmp_path: Path) -> None:
    """ONNX Runtime's fused int8 CPU kernels (graph optimizations on) agree with the QDQ graph where
    they do not saturate. Its quantization guide says its U8S8 kernels on x86 without VNNI use
    VPMADDUBSW, whose int16 pair sums can saturate; symmetric int8 activations, run there as
    u8 = s8 + 128, hit that hard (measured on an AVX2-only EPYC: max error 7.1 on logits up to 11).
    So on such a CPU (read from its flags) this runs with session.x64quantprecision=1, ONNX Runtime's
    U8U8 kernels, which is ort-cpu's remedy; elsewhere it runs as is."""
    from device_adapters.ort_cpu import X64_PRECISION_KEY, int8_dot_saturates

    config = {X64_PRECISION_KEY: "1"} if int8_dot_saturates() else {}
    path = ort_gpu.qdq_model(tiny, images, tmp_path)
    ref = reference(tiny, images)
    fake_quant = _cpu_run(path, images, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    fused = _cpu_run(path, images, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, config)
    scale = float(np.abs(ref).max())
    assert np.abs(fused - ref).max() < 0.05 * scale, f"host flags {config or 'VNNI/AMX or not x86'}"
    assert np.abs(fused - fake_quant).max() <= 0.02 * scale  # a rounding step of the int8 output or two


def test_fp16_model_keeps_float32_io(tiny: ModelSpec, images: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = ort_gpu.fp16_model(tiny, tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    ref = reference(tiny, images)
    assert np.abs(session.run(None, images)[0] - ref).max() < 0.01 * np.abs(ref).max()


class _CpuStandIn(OrtCudaAdapter):
    """ort-cuda's own prepare/run/infer path, on the CPU provider (no GPU here)."""

    provider = "CPUExecutionProvider"
    io_device = "cpu"

    def _providers(self, precision: str, model: ModelSpec, batch_size: int, device_id: int) -> list:
        return [(self.provider, {})]


def test_adapter_path_runs_with_io_binding(tiny: ModelSpec, images: dict[str, np.ndarray], tmp_path: Path) -> None:
    adapter = _CpuStandIn(AdapterOptions(cache_dir=str(tmp_path)))
    try:
        adapter.prepare(tiny, "fp16", 4, images)
        adapter.run()
        (out,) = adapter.infer({"input": images["input"][:3]})
        ref = reference(tiny, images)[:3]
        assert np.abs(out - ref).max() < 0.01 * np.abs(ref).max()
        eff = adapter.effective()
        assert eff.precision == "fp16" and eff.settings["model_file"].endswith("-fp16.onnx")
    finally:
        adapter.close()


def test_a_silent_fallback_to_another_provider_is_an_error(
    tiny: ModelSpec, images: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)  # fp32 sets it; restored after the test
    class _Fallback(_CpuStandIn):
        provider = "CUDAExecutionProvider"  # asked for, but only the CPU provider is given

        def _providers(self, precision: str, model: ModelSpec, batch_size: int, device_id: int) -> list:
            return ["CPUExecutionProvider"]

    with pytest.raises(Exception, match="fell back"):
        _Fallback(AdapterOptions()).prepare(tiny, "fp32", 4, images)


# -- probes and hardware ---------------------------------------------------------------------------
def test_cpu_onnxruntime_build_is_named_as_the_missing_piece() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    for cls in (OrtCudaAdapter, OrtTensorRtAdapter):
        probe = cls.probe()
        assert not probe.available
        assert f"lacks {cls.provider}" in probe.reason and "hwbench[ort-gpu" in probe.install_hint
        assert probe.versions["onnxruntime"] == ort.__version__


def test_names_kinds_and_unsupported_precisions(tiny: ModelSpec) -> None:
    assert (OrtCudaAdapter.name, OrtTensorRtAdapter.name) == ("ort-cuda", "ort-trt")
    assert OrtCudaAdapter.device_kind == OrtTensorRtAdapter.device_kind == "cuda"
    assert OrtTensorRtAdapter.precisions == ("fp32", "fp16", "int8")
    assert "int8" in (OrtCudaAdapter(AdapterOptions()).check(tiny, "int8", 1, "single-stream") or "")
    assert OrtTensorRtAdapter(AdapterOptions()).check(tiny, "int8", 1, "single-stream") is None


@pytest.mark.gpu
@pytest.mark.parametrize("cls", [OrtCudaAdapter, OrtTensorRtAdapter])
def test_gpu_run_matches_the_cpu_reference(cls: type, tiny: ModelSpec, images: dict[str, np.ndarray], tmp_path: Path) -> None:
    probe = cls.probe()
    if not probe.available:
        pytest.skip(probe.reason)
    adapter = cls(AdapterOptions(cache_dir=str(tmp_path)))
    try:
        adapter.prepare(tiny, "fp32", 4, images)
        adapter.run()
        (out,) = adapter.infer(images)
        np.testing.assert_allclose(out, reference(tiny, images), rtol=1e-3, atol=1e-3)
        assert adapter.effective().settings["provider"] == cls.provider
    finally:
        adapter.close()
