"""neuron: compiler arguments per precision, static-batch planning, cache keys, the probe;
the real trace skips with the probe's reason off Inferentia/Trainium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_adapters.neuron import NeuronAdapter, compile_cache_key, compiler_args, pad_rows, static_batches
from hwbench.adapter import AdapterOptions
from hwbench.models.spec import InputSpec, ModelSpec


def test_fp32_turns_the_default_bf16_matmul_cast_off() -> None:
    assert compiler_args("fp32") == ["--auto-cast", "none"]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "tf32"])
def test_reduced_precisions_auto_cast_everything(precision: str) -> None:
    assert compiler_args(precision) == ["--auto-cast", "all", "--auto-cast-type", precision]


def test_int8_has_no_compiler_setting() -> None:
    with pytest.raises(ValueError):
        compiler_args("int8")
    assert "int8" not in NeuronAdapter.precisions


def test_static_batches_pad_the_last_run() -> None:
    assert static_batches(10, 4) == [(0, 4, 0), (4, 8, 0), (8, 10, 2)]
    assert static_batches(3, 8) == [(0, 3, 5)]
    assert static_batches(8, 8) == [(0, 8, 0)]


def test_pad_rows_repeats_the_last_row() -> None:
    a = np.arange(6).reshape(3, 2)
    padded = pad_rows(a, 2)
    assert padded.shape == (5, 2) and (padded[3:] == a[-1]).all()
    assert pad_rows(a, 0) is a


def test_compile_cache_key_changes_with_batch_and_precision() -> None:
    shapes = {"pixel_values": [8, 3, 224, 224]}
    base = compile_cache_key("ab" * 32, "bf16", 8, "2.9.0", shapes)
    assert base == compile_cache_key("ab" * 32, "bf16", 8, "2.9.0", shapes)
    others = {
        compile_cache_key("ab" * 32, "fp32", 8, "2.9.0", shapes),
        compile_cache_key("ab" * 32, "bf16", 1, "2.9.0", shapes),
        compile_cache_key("ab" * 32, "bf16", 8, "2.10.0", shapes),
    }
    assert base not in others and len(others) == 3


def test_user_onnx_files_are_unsupported(tmp_path: Path) -> None:
    spec = ModelSpec("mine", tmp_path / "m.onnx", "0" * 64, (InputSpec("x", "float32", (1, 4)),), ("y",), builtin=False)
    reason = NeuronAdapter(AdapterOptions()).check(spec, "bf16", 1, "single-stream")
    assert reason and "built-in" in reason
    builtin = ModelSpec("resnet50", tmp_path / "m.onnx", "0" * 64, spec.inputs, ("y",), builtin=True)
    assert NeuronAdapter(AdapterOptions()).check(builtin, "bf16", 1, "single-stream") is None


def test_probe_names_library_and_device() -> None:
    probe = NeuronAdapter.probe()
    if probe.available:
        pytest.skip("torch-neuronx and a Neuron device are present")
    assert "hwbench[neuron]" in probe.install_hint
    try:
        import torch_neuronx  # noqa: F401
    except Exception:  # noqa: BLE001
        assert "torch-neuronx is not importable" in probe.reason
    if not list(Path("/dev").glob("neuron[0-9]*")):
        assert "/dev/neuron" in probe.reason
    assert (NeuronAdapter.name, NeuronAdapter.device_kind) == ("neuron", "neuron")


@pytest.mark.slow
def test_trace_and_run_on_a_neuron_device(tmp_path: Path) -> None:
    probe = NeuronAdapter.probe()
    if not probe.available:
        pytest.skip(probe.reason)
    from hwbench.models import resolve
    from hwbench.models.workload import make_inputs

    spec = resolve("resnet50")
    inputs = make_inputs(spec, 1)
    adapter = NeuronAdapter(AdapterOptions(cache_dir=str(tmp_path)))
    try:
        adapter.prepare(spec, "bf16", 1, inputs)
        adapter.run()
        outs = adapter.infer(make_inputs(spec, 3))
        assert outs[0].shape[0] == 3 and np.isfinite(outs[0]).all()
        assert adapter.effective().settings["neuroncores_used"] == 1
    finally:
        adapter.close()
