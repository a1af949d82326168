"""Native or emulated per ISA: the pure rule on other machines' flags, the sweep's default skip,
and the real CPU runtimes' answers on this host (read, never assumed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwbench.host import fingerprint, isa
from hwbench.host.isa import PrecisionSupport, cpu_support
from hwbench.models.spec import ModelSpec

# /proc/cpuinfo "flags" / "Features" lines, cut to the relevant part plus some noise.
SAPPHIRE_RAPIDS = frozenset(
    "fpu sse4_2 avx f16c avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 "
    "avx512_fp16 amx_tile amx_bf16 amx_int8 avx512_vbmi".split()
)
ZEN3 = frozenset("fpu sse4_1 sse4_2 avx f16c sse4a avx2 fma bmi2 sha_ni".split())
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"}
SIERRA_FOREST = ZEN3 - {"sse4a"} | {"avx_vnni", "avx_vnni_int8", "avx_ne_convert"}
GRAVITON3 = frozenset(
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
    "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp "
    "svei8mm svebf16 i8mm bf16 dgh rng".split()
)
GRAVITON2 = frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                      "lrcpc dcpop asimddp ssbs".split())
CORTEX_A72 = frozenset("fp asimd evtstrm crc32 cpuid".split())

EXPECTED = [  # (flags, machine, precision, native, words in the note)
    (SAPPHIRE_RAPIDS, "x86_64", "fp32", True, ""),
    (SAPPHIRE_RAPIDS, "x86_64", "bf16", True, "amx_bf16"),
    (SAPPHIRE_RAPIDS, "x86_64", "fp16", True, "avx512_fp16"),
    (SAPPHIRE_RAPIDS, "x86_64", "int8", True, "amx_int8"),
    (ZEN3, "x86_64", "fp32", True, ""),
    (ZEN3, "x86_64", "bf16", False, "no avx512_bf16, amx_bf16 or avx_ne_convert"),
    (ZEN3, "x86_64", "fp16", False, "no avx512_fp16 or amx_fp16"),
    (ZEN3, "x86_64", "int8", True, "without VNNI: AVX2 u8s8 kernels, slower and can saturate"),
    (ZEN4, "x86_64", "bf16", True, "avx512_bf16"),
    (ZEN4, "x86_64", "fp16", False, "no avx512_fp16"),
    (ZEN4, "x86_64", "int8", True, "avx512_vnni"),
    (SIERRA_FOREST, "x86_64", "bf16", True, "avx_ne_convert"),
    (SIERRA_FOREST, "x86_64", "fp16", False, "no avx512_fp16"),
    (SIERRA_FOREST, "x86_64", "int8", True, "avx_vnni"),
    (GRAVITON3, "aarch64", "fp32", True, ""),
    (GRAVITON3, "aarch64", "bf16", True, "bf16"),
    (GRAVITON3, "aarch64", "fp16", True, "asimdhp"),
    (GRAVITON3, "aarch64", "int8", True, "i8mm"),
    (GRAVITON2, "aarch64", "bf16", False, "no bf16 hwcap"),
    (GRAVITON2, "aarch64", "fp16", True, "asimdhp"),
    (GRAVITON2, "aarch64", "int8", True, "asimddp"),
    (CORTEX_A72, "aarch64", "fp16", False, "no asimdhp"),
    (CORTEX_A72, "aarch64", "int8", True, "without dot-product"),
    (ZEN3, "x86_64", "tf32", False, "no CPU arithmetic"),
    (GRAVITON3, "aarch64", "fp8", False, "no CPU arithmetic"),
]


@pytest.mark.parametrize(("flags", "machine", "precision", "native", "words"), EXPECTED)
def test_rule_on_known_machines(flags: frozenset[str], machine: str, precision: str, native: bool, words: str) -> None:
    support = cpu_support(precision, flags, machine)
    assert support.native is native, support
    assert words in support.note


def test_int8_caveat_only_without_dot_products() -> None:
    assert cpu_support("int8", ZEN3, "x86_64").label == "native (no VNNI)"
    assert cpu_support("int8", SAPPHIRE_RAPIDS, "x86_64").label == "native"
    assert cpu_support("int8", CORTEX_A72, "aarch64").label == "native (no dot product)"
    assert cpu_support("bf16", ZEN3, "x86_64").label == "emulated"


def test_unknown_machine_or_unreadable_flags_is_unknown_not_emulated() -> None:
    for p in isa.CPU_PRECISIONS:
        assert cpu_support(p, SAPPHIRE_RAPIDS, "riscv64").native is None
        assert cpu_support(p, GRAVITON3, "").native is None
    assert cpu_support("fp32", None, "arm64").native is True  # macOS: no /proc/cpuinfo, fp32 still native
    for p in ("bf16", "fp16", "int8"):
        support = cpu_support(p, None, "arm64")
        assert support.native is None and support.label == "unknown" and "not readable" in support.note
    assert cpu_support("int4", ZEN3, "x86_64").native is None


def test_flags_of_another_architecture_imply_nothing_native() -> None:
    """Arm hwcaps on an x86 machine (or the reverse) must not make a format native."""
    assert cpu_support("bf16", GRAVITON3, "x86_64").native is False
    assert cpu_support("fp16", SAPPHIRE_RAPIDS, "aarch64").native is False


def test_fingerprint_reads_the_new_flags_from_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("avx_ne_convert", "amx_fp16", "avx_vnni_int8", "fphp", "asimdhp", "asimddp"):
        assert name in fingerprint.ISA_FLAGS
    monkeypatch.setattr(fingerprint, "_cpuinfo", lambda: {"Features": " ".join(sorted(GRAVITON3))})
    assert fingerprint.cpu_flags_known()
    assert set(fingerprint.cpu_flags()) == {"asimd", "sve", "bf16", "i8mm", "fphp", "asimdhp", "asimddp"}
    monkeypatch.setattr(isa, "host_machine", lambda: "aarch64")
    assert isa.host_support("fp16").native is True
    monkeypatch.setattr(fingerprint, "_cpuinfo", lambda: {})
    assert not fingerprint.cpu_flags_known() and isa.host_flags() is None
    assert isa.host_support("bf16").native is None


# -- the sweep: skipped by default, run when allowed ------------------------------------------


@pytest.fixture()
def cpu_null(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The null adapter posing as a CPU adapter, so the host ISA rule applies; records prepare() calls."""
    from device_adapters.null import NullAdapter

    calls: list[str] = []
    original = NullAdapter.prepare

    def prepare(self: NullAdapter, model: ModelSpec, precision: str, batch_size: int, inputs: dict) -> None:
        calls.append(precision)
        original(self, model, precision, batch_size, inputs)

    monkeypatch.setattr(NullAdapter, "device_kind", "cpu")
    monkeypatch.setattr(NullAdapter, "prepare", prepare)
    return calls


def _run(spec: ModelSpec, precision: str, allow: bool, tmp_path) -> object:
    from hwbench.measure.settings import MeasureSettings, SweepConfig
    from hwbench.measure.trial import Trial, TrialContext, run_trial

    cfg = SweepConfig(models=(spec.name,), measure=MeasureSettings.quick(), idle_power_s=0, allow_emulated=allow)
    ctx = TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h", cache_dir=str(tmp_path))
    rec, _ = run_trial(Trial(spec.name, "null", precision, 1), spec, ctx)
    return rec


def test_emulated_point_is_unsupported_by_default_and_runs_when_allowed(
    monkeypatch: pytest.MonkeyPatch, cpu_null: list[str], tiny_models: dict[str, ModelSpec], tmp_path
) -> None:
    from hwbench.cli.profile import render_summary

    monkeypatch.setattr(isa, "host_flags", lambda: ZEN3)
    monkeypatch.setattr(isa, "host_machine", lambda: "x86_64")
    spec = tiny_models["mlp-tiny"]

    skipped = _run(spec, "bf16", False, tmp_path)
    assert skipped.status == "unsupported" and not cpu_null  # decided before prepare(): no time spent
    assert "bf16 is emulated on this CPU (no avx512_bf16, amx_bf16 or avx_ne_convert)" in skipped.error
    assert "--allow-emulated" in skipped.error and skipped.precision_native is False

    ran = _run(spec, "bf16", True, tmp_path)
    assert ran.status == "ok" and cpu_null == ["bf16"]
    assert ran.precision_native is False and "avx512_bf16" in ran.precision_note
    assert any("not representative" in w for w in ran.warnings)

    fp32 = _run(spec, "fp32", False, tmp_path)
    assert fp32.status == "ok" and fp32.precision_native is True and fp32.precision_note
    assert not any("not representative" in w for w in fp32.warnings)

    table = render_summary([dataclasses.asdict(ran), dataclasses.asdict(fp32)])[0]
    cells = list(table.columns[1].cells)  # one model: adapter, prec., ...
    assert cells == ["bf16 (emul.)", "fp32"]


def test_native_point_runs_without_the_flag(
    monkeypatch: pytest.MonkeyPatch, cpu_null: list[str], tiny_models: dict[str, ModelSpec], tmp_path
) -> None:
    monkeypatch.setattr(isa, "host_flags", lambda: SAPPHIRE_RAPIDS)
    monkeypatch.setattr(isa, "host_machine", lambda: "x86_64")
    rec = _run(tiny_models["mlp-tiny"], "bf16", False, tmp_path)
    assert rec.status == "ok" and rec.precision_native is True and "amx_bf16" in rec.precision_note
    assert not rec.warnings or not any("not representative" in w for w in rec.warnings)


def test_the_null_adapter_itself_is_unknown_and_never_skipped(tiny_models: dict[str, ModelSpec], tmp_path) -> None:
    rec = _run(tiny_models["mlp-tiny"], "bf16", False, tmp_path)
    assert rec.status == "ok" and rec.precision_native is None


def test_setting_from_flag_and_sweep_file() -> None:
    from hwbench.cli.profile import build_config
    from hwbench.measure.settings import SweepConfig
    from hwbench.measure.sweepfile import SweepFileError, config_doc, parse_sweep

    flags = dict(model="mlp-tiny", adapter=None, precision=None, batch=None, scenario=None, dim=[], quick=False,
                 duration=None, min_iters=None, no_accuracy=False)
    assert build_config(SweepConfig(), **flags).allow_emulated is False
    assert build_config(SweepConfig(), **flags, allow_emulated=True).allow_emulated is True
    cfg = parse_sweep({"allow_emulated": True})
    assert cfg.allow_emulated is True
    assert build_config(cfg, **flags, allow_emulated=False).allow_emulated is True  # the file's value stays
    assert parse_sweep(config_doc(cfg)).allow_emulated is True
    assert SweepConfig.from_dict(cfg.to_dict()).allow_emulated is True
    with pytest.raises(SweepFileError, match="allow_emulated: expected true or false"):
        parse_sweep({"allow_emulated": "yes"})


def test_devices_shows_the_host_verdict_per_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from hwbench.cli import app

    monkeypatch.setattr(isa, "host_flags", lambda: ZEN3)
    monkeypatch.setattr(isa, "host_machine", lambda: "x86_64")
    res = CliRunner().invoke(app, ["devices", "--json"])
    assert res.exit_code == 0, res.output
    verdicts = json.loads(res.stdout)["cpu_precisions"]
    assert {p: v["native"] for p, v in verdicts.items()} == {"fp32": True, "bf16": False, "fp16": False, "int8": True}
    assert verdicts["int8"]["label"] == "native (no VNNI)" and "avx512_bf16" in verdicts["bf16"]["note"]
    res = CliRunner().invoke(app, ["devices"], env={"COLUMNS": "200"})
    assert "fp32 native, bf16 emulated, fp16 emulated, int8 native (no VNNI)" in res.stdout


# -- the real CPU runtimes on this host's ISA (read, then asserted) ---------------------------


def _live() -> tuple[frozenset[str] | None, str]:
    return isa.host_flags(), isa.host_machine().lower()


def test_ort_cpu_fp16_upcast_on_x86_is_what_onnxruntime_does(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from device_adapters.ort_cpu import OrtCpuAdapter

    flags, machine = _live()
    support = OrtCpuAdapter().precision_support("fp16")
    if machine in ("aarch64", "arm64"):
        assert support.native is (None if flags is None else "asimdhp" in flags)
        pytest.skip("the upcast check below is for x86, where MLAS has no fp16 kernels")
    if machine not in ("x86_64", "amd64"):
        pytest.skip(f"no ONNX Runtime fp16 rule for {machine}")
    assert support.native is False and "upcast" in support.note
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "W")
    m = numpy_helper.from_array(rng.standard_normal((8 * 6 * 6, 5)).astype(np.float32), "M")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "S")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "S"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w, m, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp16 = convert_float_to_float16(model, keep_io_types=True)
    assert any(i.data_type == TensorProto.FLOAT16 for i in fp16.graph.initializer)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(fp16.SerializeToString(), so, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    weights = [i.data_type for i in optimized.graph.initializer if i.name not in ("S",)]
    assert weights and TensorProto.FLOAT16 not in weights  # the fp16 weights were converted back to fp32


def test_openvino_answer_follows_its_capabilities(tiny_models: dict[str, ModelSpec]) -> None:
    pytest.importorskip("openvino")
    import openvino as ov

    from device_adapters.openvino_rt import OpenVinoAdapter

    if not OpenVinoAdapter.probe().available:
        pytest.skip(OpenVinoAdapter.probe().reason)
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    adapter = OpenVinoAdapter()
    assert adapter.precision_support("fp32").native is True
    for precision, cap in (("bf16", "BF16"), ("fp16", "FP16")):
        support = adapter.precision_support(precision)
        assert support.native is (cap in caps), (caps, support)
        if cap not in caps:  # OpenVINO would silently run f32: check() must refuse the point
            assert "lacks" in (adapter.check(tiny_models["mlp-tiny"], precision, 1, "single-stream") or "")
    int8 = adapter.precision_support("int8")
    assert int8.native is ("INT8" in caps)
    flags, machine = _live()
    if int8.native and flags is not None and machine in ("x86_64", "amd64"):
        vnni = {"amx_int8", "avx512_vnni", "avx_vnni", "avx_vnni_int8"} & flags
        assert ("without VNNI" in int8.note) is not bool(vnni)


def test_openvino_bf16_hint_without_the_capability_compiles_f32() -> None:
    """What check() guards against: no error, no emulation, just f32 (read back from the compiled model)."""
    pytest.importorskip("openvino")
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU lists BF16: the hint applies")
    x = ops.parameter([1, 8], np.float32, name="x")
    model = ov.Model([ops.matmul(x, ops.constant(np.ones((8, 4), np.float32)), False, False)], [x])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


def test_torch_cpu_answer_uses_cpuinfo_and_torch_cpuid() -> None:
    pytest.importorskip("torch")
    from device_adapters.pytorch import TorchAdapter, torch_cpu_flags

    flags, machine = _live()
    cpuid = torch_cpu_flags()
    if flags is not None and machine in ("x86_64", "amd64") and cpuid:
        for name in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"):  # both sources see these
            assert (name in flags) is (name in cpuid), name
    merged = (flags or frozenset()) | cpuid if flags is not None or cpuid else None
    for p in ("fp32", "bf16", "int8"):
        assert TorchAdapter().precision_support(p) == cpu_support(p, merged, machine)


@pytest.mark.parametrize(("precision", "major", "minor", "native"), [
    ("fp32", 7, 0, True), ("fp16", 7, 0, True), ("fp16", 5, 2, False), ("bf16", 7, 5, False), ("bf16", 8, 0, True),
    ("tf32", 7, 5, False), ("tf32", 8, 6, True), ("fp8", 8, 6, False), ("fp8", 8, 9, True), ("fp8", 9, 0, True),
    ("int8", 8, 0, None),
])
def test_cuda_rule_by_compute_capability(precision: str, major: int, minor: int, native: bool | None) -> None:
    from device_adapters.pytorch import cuda_support

    support = cuda_support(precision, major, minor)
    assert isinstance(support, PrecisionSupport) and support.native is native
    assert f"sm{major}{minor}" in support.note
