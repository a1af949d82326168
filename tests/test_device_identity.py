"""Device identity end to end, from what REAL adapters' effective() returns (never hand-built rows):
an ort-cuda trial on `cuda:3` of a p4d.24xlarge (8x A100-40GB) is metered on GPU 3, labelled as the
A100 and charged 1/8 of the instance; OpenVINO on GPU.1 is labelled gpu/index 1; NeuronCores are
charged as the chips that hold them; and the one device-selector parser."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hwbench.adapter import AdapterOptions, Effective
from hwbench.adapter.kit import Placement, neuron_chips_used, neuron_effective, parse_device
from hwbench.errors import UsageError
from hwbench.host import accelerators
from hwbench.host.accelerators import AcceleratorInfo, catalog_accelerator
from hwbench.models.spec import InputSpec, ModelSpec
from hwbench.power.base import NullMeter

A100 = "NVIDIA A100-SXM4-40GB"


def _tiny_onnx(path: Path) -> ModelSpec:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return ModelSpec(name="tiny", onnx_path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                     inputs=(InputSpec("x", "float32", (1, 8)),), outputs=("y",), family="mlp")


# -- the selector parser ----------------------------------------------------------------------
@pytest.mark.parametrize(("selector", "default", "expected"), [
    ("", "cpu", Placement("cpu", None)), ("", "cuda", Placement("cuda", 0)), ("cpu", "cuda", Placement("cpu", None)),
    ("cuda", "cpu", Placement("cuda", 0)), ("cuda:1", "cpu", Placement("cuda", 1)), ("CUDA:3", "cuda", Placement("cuda", 3)),
    ("GPU", "cpu", Placement("gpu", 0)), ("GPU.1", "cpu", Placement("gpu", 1)), ("NPU", "cpu", Placement("npu", 0)),
    ("1", "cuda", Placement("cuda", 1)), ("neuron:2", "neuron", Placement("neuron", 2)),
])
def test_one_parser_reads_every_selector(selector: str, default: str, expected: Placement) -> None:
    assert parse_device(selector, default) == expected


@pytest.mark.parametrize("selector", ["tpu:0", "cuda:x", "1", "GPU.1.2"])
def test_the_parser_refuses_what_it_cannot_read(selector: str) -> None:
    with pytest.raises(UsageError):
        parse_device(selector, "cpu")


def test_catalog_names_for_reported_device_names() -> None:
    assert catalog_accelerator(A100) == "A100-40GB"
    assert catalog_accelerator("NVIDIA A100 80GB PCIe") == "A100-80GB"
    assert catalog_accelerator("NVIDIA H100 80GB HBM3") == "H100"
    assert catalog_accelerator("Tesla T4") == "T4" and catalog_accelerator("NVIDIA L40S") == "L40S"
    assert catalog_accelerator("NVIDIA L4") == "L4" and catalog_accelerator("NVIDIA L40") == "L40"
    assert catalog_accelerator("AWS Inferentia2") == "Inferentia2"
    assert catalog_accelerator("Intel(R) Arc(TM) A770 Graphics") is None


# -- ort-cuda on cuda:3 of a p4d.24xlarge -----------------------------------------------------
@pytest.fixture
def p4d_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML as a p4d.24xlarge reports it: eight A100-SXM4-40GB."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = [AcceleratorInfo("cuda", i, A100, 40960.0, compute_capability="8.0") for i in range(8)]
    monkeypatch.setattr(accelerators, "nvidia_gpus", lambda: gpus)


def _cpu_stand_in() -> type:
    """ort-cuda's own prepare/run/effective path, on the CPU provider (no GPU here)."""
    pytest.importorskip("onnxruntime")
    from device_adapters.ort_gpu import OrtCudaAdapter

    class CpuStandIn(OrtCudaAdapter):
        provider = "CPUExecutionProvider"
        io_device = "cpu"

        def _providers(self, precision: str, model: ModelSpec, batch_size: int, device_id: int) -> list:
            return [(self.provider, {})]

    return CpuStandIn


def test_ort_cuda_on_gpu_3_is_metered_labelled_and_priced_as_one_of_eight(
    p4d_gpus: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwbench.adapter import registry
    from hwbench.analyse.matrix import build_matrix
    from hwbench.catalog.prices import load_builtin
    from hwbench.measure.settings import MeasureSettings, SweepConfig
    from hwbench.measure.trial import Trial, TrialContext, run_trial
    from hwbench.power import select

    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "")  # fp32 sets it; restored after the test
    stand_in = _cpu_stand_in()
    monkeypatch.setattr(registry, "load", lambda name: stand_in)
    opened: list[tuple[str, int]] = []

    def spy(kind: str, index: int = 0, tdp_w: float | None = None) -> NullMeter:
        opened.append((kind, index))
        return NullMeter()

    monkeypatch.setattr(select, "meter_for", spy)
    spec = _tiny_onnx(tmp_path / "tiny.onnx")
    cfg = SweepConfig(models=(spec.name,), adapters=("ort-cuda",), device="cuda:3", measure=MeasureSettings.quick(),
                      idle_power_s=0, instance_type="p4d.24xlarge")
    ctx = TrialContext(run_id="r", config=cfg, cpu_model="AMD EPYC", hostname="h", cache_dir=str(tmp_path))
    rec, _ = run_trial(Trial(spec.name, "ort-cuda", "fp32", 4), spec, ctx)

    assert rec.status == "ok", rec.error
    assert opened == [("cuda", 3)]  # the meter opens on the GPU the trial ran on, not GPU 0
    assert (rec.device, rec.accelerator, rec.accelerators_used) == (A100, "A100-40GB", 1)
    assert rec.precision_effective.startswith("fp32")
    settings = __import__("json").loads(rec.settings)
    assert (settings["device_kind"], settings["device_index"], settings["device_id"]) == ("cuda", 3, 3)
    assert "precision_effective" not in settings and "device_name" not in settings  # typed fields, not loose keys

    # validity depends on this busy host's timing, not on identity: price the record as measured
    rec.valid, rec.invalid_reasons = True, []
    catalog = load_builtin()
    point = build_matrix(pd.DataFrame([rec.to_row()]), catalog).points.iloc[0]
    whole = catalog.get("p4d.24xlarge").on_demand_usd_per_hour
    assert point.price_share == "1/8"
    assert point.price_usd_per_hour == pytest.approx(whole / 8)
    assert point.cost_usd_per_1m == pytest.approx(whole / 8 / (rec.throughput_sps * 3600) * 1e6)


def test_the_runner_meters_idle_power_on_the_placement(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Idle power is measured per device the adapters run on: torch on cuda:1 gets GPU 1's."""
    from hwbench.measure.runner import SweepRunner
    from hwbench.measure.settings import SweepConfig
    from hwbench.power import select

    opened: list[tuple[str, int]] = []

    def spy(kind: str, index: int = 0, tdp_w: float | None = None) -> NullMeter:
        opened.append((kind, index))
        return NullMeter()

    monkeypatch.setattr(select, "meter_for", spy)
    runner = SweepRunner.__new__(SweepRunner)
    runner.config = SweepConfig(models=("m",), device="cuda:1", idle_power_s=0.01)
    idle = runner._idle_power(["torch", "ort-cpu"])
    assert sorted(opened) == [("cpu", 0), ("cuda", 1)] and set(idle) == {"cpu", "cuda:1"}


# -- OpenVINO on GPU.1 --------------------------------------------------------------------------
class _FakeCompiled:
    """A CPU compile that reports the device it was asked for, as OpenVINO's read-back would."""

    def __init__(self, real: Any, device: str) -> None:
        self._real, self._device = real, device

    def get_property(self, key: str) -> Any:
        return [self._device] if key == "EXECUTION_DEVICES" else self._real.get_property(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _FakeCore:
    """OpenVINO's Core with two Intel GPUs listed beside the CPU; compiles really run on the CPU."""

    def __init__(self) -> None:
        import openvino as ov

        self._real = ov.Core()
        self.available_devices = ["CPU", "GPU.0", "GPU.1"]

    def get_property(self, device: str, key: str) -> Any:
        if key == "FULL_DEVICE_NAME" and device.startswith("GPU"):
            return "Intel(R) Arc(TM) A770 Graphics (dGPU)"
        return self._real.get_property("CPU", key)

    def read_model(self, path: str) -> Any:
        return self._real.read_model(path)

    def compile_model(self, model: Any, device: str, config: dict[str, Any]) -> _FakeCompiled:
        return _FakeCompiled(self._real.compile_model(model, "CPU", config), device)


def test_openvino_on_gpu_1_is_labelled_gpu_index_1(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from device_adapters.openvino_rt import OpenVinoAdapter

    spec = _tiny_onnx(tmp_path / "tiny.onnx")
    adapter = OpenVinoAdapter(AdapterOptions(device="GPU.1", cache_dir=str(tmp_path)))
    adapter._core = _FakeCore()
    assert adapter.placement == Placement("gpu", 1) and OpenVinoAdapter.device_kind == "cpu"
    try:
        adapter.prepare(spec, "fp32", 2, {"x": np.ones((2, 8), dtype=np.float32)})
        eff = adapter.effective()
    finally:
        adapter.close()
    assert isinstance(eff, Effective)
    assert (eff.device_kind, eff.device_index, eff.accelerators_used) == ("gpu", 1, 1)
    assert eff.device_name.startswith("Intel(R) Arc(TM)") and eff.accelerator is None
    assert adapter.precision_support("fp32").native is True  # per instance: the GPU's capabilities, not the host ISA


def test_openvino_on_the_cpu_names_the_host_cpu(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from device_adapters.openvino_rt import OpenVinoAdapter
    from hwbench.host.fingerprint import cpu_model

    spec = _tiny_onnx(tmp_path / "tiny.onnx")
    adapter = OpenVinoAdapter(AdapterOptions(cache_dir=str(tmp_path)))
    try:
        adapter.prepare(spec, "fp32", 2, {"x": np.ones((2, 8), dtype=np.float32)})
        eff = adapter.effective()
    finally:
        adapter.close()
    assert (eff.device_kind, eff.device_index, eff.device_name, eff.accelerators_used) == ("cpu", None, cpu_model(), None)


# -- Neuron: cores -> chips ---------------------------------------------------------------------
def test_neuron_cores_are_charged_as_the_chips_that_hold_them() -> None:
    assert neuron_chips_used(1, 2) == 1 and neuron_chips_used(2, 2) == 1 and neuron_chips_used(3, 2) == 2
    assert neuron_chips_used(1, None) == 1  # nc_count unknown: Inferentia2's two cores per chip
    inf2_48 = [AcceleratorInfo("neuron", i, "AWS Inferentia2", 32768.0, cores=2) for i in range(12)]
    eff = neuron_effective("bf16", 1, inf2_48)
    assert (eff.device_kind, eff.accelerator, eff.accelerators_used) == ("neuron", "Inferentia2", 1)
    assert eff.settings["neuroncores_present"] == 24 and eff.settings["neuron_chips_used"] == 1


def test_the_neuron_adapter_reports_one_chip_of_an_inf2_48xlarge(monkeypatch: pytest.MonkeyPatch) -> None:
    """NeuronAdapter.effective() after a prepare (its state set as prepare leaves it; no device here)."""
    from device_adapters import neuron
    from hwbench.analyse.matrix import build_matrix
    from hwbench.catalog.prices import load_builtin
    from hwbench.results.schema import TrialRecord
    from hwbench.measure.trial import apply_effective

    adapter = neuron.NeuronAdapter(AdapterOptions())
    adapter._devices = [AcceleratorInfo("neuron", i, "AWS Inferentia2", 32768.0, cores=2) for i in range(12)]
    adapter._precision_effective, adapter._settings = "bf16", {"static_batch": 1}
    eff = adapter.effective()
    rec = TrialRecord(run_id="r", trial_id="t", model="m", model_sha256="a" * 64, adapter="neuron", device="AMD EPYC",
                      precision="bf16", batch_size=1, valid=True, status="ok", throughput_sps=100.0,
                      latency_p50_ms=1.0, latency_p99_ms=2.0, instance_type="inf2.48xlarge", host="h",
                      started_at="2026-01-01T00:00:00Z", input_shapes="{}")
    apply_effective(rec, eff)
    assert (rec.device, rec.accelerator, rec.accelerators_used) == ("AWS Inferentia2", "Inferentia2", 1)
    point = build_matrix(pd.DataFrame([rec.to_row()]), load_builtin()).points.iloc[0]
    assert point.price_share == "1/12"


# -- the offline runner is always closed --------------------------------------------------------
def test_the_trial_closes_the_offline_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hwbench.adapter.concurrency import ThreadedRunner
    from hwbench.measure.settings import MeasureSettings, SweepConfig
    from hwbench.measure.trial import Trial, TrialContext, run_trial

    closed: list[int] = []
    original = ThreadedRunner.close

    def close(self: ThreadedRunner) -> None:
        closed.append(self.concurrency)
        original(self)

    monkeypatch.setattr(ThreadedRunner, "close", close)
    spec = _tiny_onnx(tmp_path / "tiny.onnx")
    cfg = SweepConfig(models=(spec.name,), measure=MeasureSettings.quick(), idle_power_s=0, concurrency=2)
    ctx = TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h", cache_dir=str(tmp_path))
    rec, _ = run_trial(Trial(spec.name, "null", "fp32", 1, "offline"), spec, ctx)
    assert rec.status == "ok", rec.error
    assert closed == [2] and rec.device == "cpu"  # the null adapter keeps the record's host device
