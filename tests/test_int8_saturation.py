"""int8 on x86 CPUs without VNNI: the accuracy check catches a saturating int8, and ort-cpu avoids it.

ONNX Runtime's quantization guide: on x86-64 with AVX2/AVX-512 and no VNNI its U8S8 kernels use
VPMADDUBSW, which multiplies u8 x s8 byte pairs and adds each adjacent pair into a saturating
int16 (VPMADDWD then sums the int16s exactly into int32). A pair reaches 2 x 255 x 127 = 64770
against an int16 limit of 32767. The emulation below does exactly that on mlp-tiny's own weights,
so it runs on any host; the real-runtime tests read the host's ISA and skip, with the reason,
where its kernels do not saturate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'hwbench[ort]'")
import onnx  # noqa: E402  (a dependency of hwbench: always installed)

from onnx import numpy_helper  # noqa: E402

from device_adapters import ort_cpu  # noqa: E402
from device_adapters.ort_cpu import OrtCpuAdapter, int8_dot_saturates, int8_recipe, quantize_int8  # noqa: E402
from hwbench.measure.accuracy import compare_outputs  # noqa: E402
from hwbench.adapter import AdapterOptions  # noqa: E402
from hwbench.errors import HwbenchError  # noqa: E402
from hwbench.host.fingerprint import cpu_flags  # noqa: E402
from hwbench.models.spec import ModelSpec  # noqa: E402
from hwbench.measure.settings import AccuracySettings  # noqa: E402
from hwbench.models.workload import make_calibration_set, make_inputs  # noqa: E402

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
ROWS = AccuracySettings().min_items  # as many rows as a trial's accuracy check compares


# -- the emulation ---------------------------------------------------------------------------------
def u8s8_dot(a_u8: np.ndarray, w_s8: np.ndarray, saturate: bool) -> tuple[np.ndarray, int]:
    """(rows, K) u8 x (K, N) s8 -> (rows, N) int32 as VPMADDUBSW + VPMADDWD compute it: products of
    adjacent K pairs added (and, if `saturate`, clamped) to int16, then summed exactly.
    Also returns how many pair sums lay outside int16."""
    a = a_u8.astype(np.int64)
    w = w_s8.astype(np.int64)
    if a.shape[1] % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 1), (0, 0)))
    pairs = a[:, 0::2, None] * w[None, 0::2, :] + a[:, 1::2, None] * w[None, 1::2, :]
    clipped = int(np.count_nonzero((pairs < INT16_MIN) | (pairs > INT16_MAX)))
    if saturate:
        pairs = np.clip(pairs, INT16_MIN, INT16_MAX)
    return pairs.sum(axis=1), clipped


def _gemm_layers(spec: ModelSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight as (K, N), bias) of each Gemm of mlp-tiny (Gemm, Relu, Gemm, Relu, Gemm)."""
    m = onnx.load(str(spec.onnx_path))
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in m.graph.initializer}
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert [n.op_type for n in m.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    return [(inits[n.input[1]].T, inits[n.input[2]]) for n in gemms]  # torch Linear: transB=1


def _float_net(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs and each layer's input."""
    seen = []
    for i, (w, b) in enumerate(layers):
        seen.append(x)
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x, seen


def _int8_net(layers: list[tuple[np.ndarray, np.ndarray]], ranges: list[tuple[float, float]], x: np.ndarray, *,
              symmetric: bool, weight_qmax: int, saturate: bool) -> tuple[np.ndarray, int]:
    """The network with int8 matmuls: activations per tensor from calibration ranges (u8 asymmetric as
    ort-cpu quantizes them, or s8 symmetric shifted to u8 by 128 as ONNX Runtime runs S8S8 on x86),
    weights per output channel, symmetric, in [-weight_qmax, weight_qmax] (127; 64 with reduce_range)."""
    clipped = 0
    for i, ((w, b), (lo, hi)) in enumerate(zip(layers, ranges)):
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if symmetric:
            a_scale, a_zero = max(-lo, hi) / 127, 128
        else:
            a_scale = (hi - lo) / 255
            a_zero = int(round(-lo / a_scale))
        w_scale = np.abs(w).max(axis=0) / weight_qmax
        w_q = np.clip(np.round(w / w_scale), -weight_qmax, weight_qmax)
        a_q = np.clip(np.round(x / a_scale) + a_zero, 0, 255)
        acc, n = u8s8_dot(a_q, w_q, saturate)
        clipped += n
        x = a_scale * w_scale * (acc - a_zero * w_q.sum(axis=0)) + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x, clipped


def test_the_pair_sum_saturates_only_past_int16() -> None:
    a = np.array([[255, 255, 1, 2]], dtype=np.uint8)
    w = np.array([[127], [127], [3], [4]], dtype=np.int8)
    exact, n_exact = u8s8_dot(a, w, saturate=False)
    sat, n_sat = u8s8_dot(a, w, saturate=True)
    assert exact.tolist() == [[2 * 255 * 127 + 1 * 3 + 2 * 4]]
    assert sat.tolist() == [[INT16_MAX + 11]] and n_exact == n_sat == 1
    small = np.array([[255, 255]], dtype=np.uint8), np.array([[64], [63]], dtype=np.int8)  # 7-bit weights
    assert u8s8_dot(*small, saturate=True) == (u8s8_dot(*small, saturate=False)[0], 0)


@pytest.mark.parametrize("symmetric", [False, True], ids=["u8s8-asymmetric-activations", "s8s8-as-u8-plus-128"])
def test_accuracy_check_fails_a_saturating_int8_and_passes_the_exact_one(
        tiny_models: dict[str, ModelSpec], symmetric: bool) -> None:
    """mlp-tiny with int8 matmuls, emulated on any host. Its first layer takes zero-mean features,
    so the u8 activations sit around their zero point 128 and pairs with large weights overflow.
    Measured here (32 rows): mean_rel_err 0.11 / cosine 0.992 saturating (symmetric: 0.22 / 0.968),
    0.042 / 0.997 exact, 0.048 / 0.997 with 7-bit weights, against thresholds 0.10 / 0.99. The
    asymmetric case fails by mean_rel_err alone: cosine barely notices a few clamped pairs."""
    spec = tiny_models["mlp-tiny"]
    layers = _gemm_layers(spec)
    calibration = np.concatenate([b["features"] for b in make_calibration_set(spec, batch_size=1, n=16)])
    _, seen = _float_net(layers, calibration.astype(np.float64))
    ranges = [(float(s.min()), float(s.max())) for s in seen]
    x = make_inputs(spec, ROWS, seed=1234)["features"].astype(np.float64)
    ref, _ = _float_net(layers, x)
    settings = AccuracySettings()

    saturated, clipped = _int8_net(layers, ranges, x, symmetric=symmetric, weight_qmax=127, saturate=True)
    exact, _ = _int8_net(layers, ranges, x, symmetric=symmetric, weight_qmax=127, saturate=False)
    seven_bit, clipped_7 = _int8_net(layers, ranges, x, symmetric=symmetric, weight_qmax=64, saturate=True)

    assert clipped > 0  # the emulated layer really saturates
    bad = compare_outputs([ref], [saturated], spec.task, settings)
    assert not bad.ok and bad.reasons, bad
    good = compare_outputs([ref], [exact], spec.task, settings)
    assert good.ok, good
    assert clipped_7 == 0  # reduce_range: 2 x 255 x 64 = 32640 fits int16
    assert compare_outputs([ref], [seven_bit], spec.task, settings).ok


# -- reading the ISA, and the recipe ---------------------------------------------------------------
@pytest.mark.parametrize(("machine", "flags", "saturates"), [
    ("x86_64", ["avx2", "fma"], True),  # AVX2 only (this kind of EPYC Zen 3)
    ("x86_64", ["avx2", "avx512f", "avx512bw"], True),  # AVX-512 without VNNI (Skylake-SP)
    ("x86_64", ["avx2", "avx512f", "avx512_vnni"], False),  # Cascade Lake and later, Zen 4
    ("x86_64", ["avx2", "avx_vnni"], False),  # Alder Lake
    ("AMD64", ["avx2", "amx_tile", "amx_int8", "avx512_vnni"], False),  # Sapphire Rapids
    ("aarch64", ["asimd"], False),  # the guide: no such issue on ARM
])
def test_saturation_is_read_from_the_isa(machine: str, flags: list[str], saturates: bool) -> None:
    assert int8_dot_saturates(machine, flags) is saturates


def test_this_host_answer_follows_its_flags() -> None:
    import platform

    expected = platform.machine().lower() in ort_cpu.X86_MACHINES and not set(cpu_flags()) & set(ort_cpu.VNNI_FLAGS)
    assert int8_dot_saturates() is expected


def test_recipes_and_what_they_change() -> None:
    plain = int8_recipe("cnn", saturates=False)
    assert (plain.method, plain.reduce_range, plain.session_config()) == ("static-qdq", False, {})
    fixed = int8_recipe("cnn", saturates=True)  # the default remedy
    assert fixed.session_config() == {"session.x64quantprecision": "1"} and not fixed.reduce_range
    assert fixed.cache_tag() == plain.cache_tag()  # same 8-bit model file, other kernels
    seven = int8_recipe("transformer", saturates=True, remedy="reduce_range")
    assert (seven.method, seven.reduce_range, seven.session_config()) == ("dynamic", True, {})
    assert seven.cache_tag() != int8_recipe("transformer", saturates=False).cache_tag()
    assert "saturate" in int8_recipe("cnn", saturates=True, remedy="none").kernels
    with pytest.raises(HwbenchError, match="remedy"):
        int8_recipe("cnn", saturates=True, remedy="u9")


def _config_entry(session: "ort.InferenceSession", key: str) -> str | None:
    try:
        return session.get_session_options().get_session_config_entry(key)
    except RuntimeError:  # onnxruntime raises for a key that was never set
        return None


def test_a_model_quantized_one_way_is_never_reused_for_the_other(
        tiny_models: dict[str, ModelSpec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tiny_models["mlp-tiny"]
    inputs = make_inputs(spec, 2)
    monkeypatch.setattr(ort_cpu, "int8_dot_saturates", lambda: True)  # as on a CPU without VNNI
    effective = {}
    for remedy in ("x64quantprecision", "reduce_range", "none"):
        monkeypatch.setattr(ort_cpu, "INT8_REMEDY", remedy)
        adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path), threads=1))
        adapter.prepare(spec, "int8", 2, inputs)
        effective[remedy] = adapter.effective()
        assert _config_entry(adapter._session, "session.x64quantprecision") == (
            "1" if remedy == "x64quantprecision" else None)
        adapter.close()
    assert len(list((tmp_path / "ort-cpu").glob("int8-*.onnx"))) == 2  # 8-bit (shared) and 7-bit weights
    assert effective["reduce_range"].settings["reduce_range"] is True and effective["none"].settings["reduce_range"] is False
    assert effective["x64quantprecision"].settings["session_config"] == {"session.x64quantprecision": "1"}
    assert "u8u8" in effective["x64quantprecision"].settings["int8_kernels"]


# -- the real runtime --------------------------------------------------------------------------------
def _session(path: Path, config: dict[str, str]) -> "ort.InferenceSession":
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    for key, value in config.items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_ort_cpu_int8_passes_the_accuracy_check_on_this_host(tiny_models: dict[str, ModelSpec], tmp_path: Path) -> None:
    """Whatever the ISA: the adapter as shipped (remedy applied where the host needs it)."""
    spec = tiny_models["mlp-tiny"]
    inputs = make_inputs(spec, ROWS, seed=1234)
    ref = [np.asarray(o) for o in _session(spec.onnx_path, {}).run(None, inputs)]
    adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path), threads=1))
    adapter.prepare(spec, "int8", ROWS, inputs)
    result = compare_outputs(ref, adapter.infer(inputs), spec.task, AccuracySettings())
    eff = adapter.effective()
    adapter.close()
    assert result.ok, (result, eff.settings["int8_kernels"])
    assert eff.settings["session_config"] == ({"session.x64quantprecision": "1"} if int8_dot_saturates() else {})


def test_without_the_remedy_the_real_kernels_saturate_and_the_check_says_so(
        tiny_models: dict[str, ModelSpec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an x86 CPU without VNNI: mlp-tiny quantized and run as before (U8S8, 8-bit weights, fused
    kernels) fails the accuracy check; either documented remedy passes it. Measured on an AVX2-only
    EPYC, onnxruntime 1.32: mean_rel_err 0.122, cosine 0.989 unremedied; 0.059 with
    session.x64quantprecision (equal to the unfused QDQ graph); 0.064 with reduce_range."""
    if not int8_dot_saturates():
        flags = ", ".join(f for f in cpu_flags() if f in ort_cpu.VNNI_FLAGS) or "not x86"
        pytest.skip(f"this CPU's int8 dot products do not saturate ({flags}): nothing to show")
    spec = tiny_models["mlp-tiny"]
    inputs = make_inputs(spec, ROWS, seed=1234)
    ref = [np.asarray(o) for o in _session(spec.onnx_path, {}).run(None, inputs)]
    settings = AccuracySettings()
    monkeypatch.chdir(tmp_path)  # the quantizer writes its calibration files into the working directory
    results = {}
    for remedy in ("none", "x64quantprecision", "reduce_range"):
        recipe = int8_recipe(spec.family, saturates=True, remedy=remedy)
        path = tmp_path / f"{remedy}.onnx"
        quantize_int8(spec, path, recipe)
        results[remedy] = compare_outputs(ref, _session(path, recipe.session_config()).run(None, inputs),
                                          spec.task, settings)
    assert not results["none"].ok and results["none"].reasons, results["none"]
    assert results["x64quantprecision"].ok, results["x64quantprecision"]
    assert results["reduce_range"].ok, results["reduce_range"]
