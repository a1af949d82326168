"""The torch adapter on the real runtime and the tiny built-in models (no mocks).

Eager mode covers every precision quickly; torch.compile runs on one tiny model only
(compiling costs seconds per shape). CUDA tests skip with the probe's reason here.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'hwbench[torch]'")
ort = pytest.importorskip("onnxruntime", reason="the fp32 reference needs onnxruntime")

from device_adapters.pytorch import TorchAdapter  # noqa: E402
from hwbench.measure.accuracy import compare_outputs  # noqa: E402
from hwbench.adapter import AdapterOptions  # noqa: E402
from hwbench.errors import UnsupportedPoint  # noqa: E402
from hwbench.models.spec import ModelSpec  # noqa: E402
from hwbench.measure.settings import AccuracySettings  # noqa: E402
from hwbench.models.workload import make_inputs  # noqa: E402

# torch.compile's own imports raise this deprecation notice; it is torch's, not the adapter's
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

BATCH = 2
EAGER = AdapterOptions(extra={"compile_mode": "eager"})  # as the sweep file's [adapter_options.torch] passes it


def _reference(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(spec.onnx_path), providers=["CPUExecutionProvider"])
    return [np.asarray(o, dtype=np.float32) for o in session.run(None, inputs)]


def _run(adapter: TorchAdapter, spec: ModelSpec, precision: str, rows: int = 5) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    x = make_inputs(spec, rows, seed=3)
    try:
        adapter.prepare(spec, precision, BATCH, make_inputs(spec, BATCH))
        adapter.run()
        out = adapter.infer(x)
        eff = adapter.effective()
    finally:
        adapter.close()
    return out, _reference(spec, x), eff


def test_probe_reports_cpu_and_version() -> None:
    probe = TorchAdapter.probe()
    assert probe.available and probe.devices[0] == "cpu"
    assert probe.versions["torch"] == torch.__version__


def test_probe_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    probe = TorchAdapter.probe()
    assert not probe.available
    assert "torch" in probe.reason and probe.install_hint == "pip install 'hwbench[torch]'"


@pytest.mark.parametrize("model", ["mlp-tiny", "resnet-tiny", "bert-tiny"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "fp16", "tf32"])
def test_every_precision_runs_or_says_why(tiny_models: dict[str, ModelSpec], model: str, precision: str) -> None:
    spec = tiny_models[model]
    adapter = TorchAdapter(EAGER)
    reason = adapter.check(spec, precision, BATCH, "single-stream")
    if precision in ("fp16", "tf32"):
        assert reason is not None and "CUDA" in reason  # CPU-only here
    if precision == "int8" and spec.family == "cnn":
        assert reason is not None and "torchao" in reason
    if reason is not None:
        with pytest.raises(UnsupportedPoint):
            adapter.prepare(spec, precision, BATCH, make_inputs(spec, BATCH))
        return
    out, ref, eff = _run(adapter, spec, precision)
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert eff.precision == precision and eff.settings["mode"] == "eager"
    assert eff.settings["channels_last"] == (spec.family == "cnn")
    result = compare_outputs(ref, out, spec.task, AccuracySettings())
    if precision == "fp32":
        assert eff.settings["autocast_dtype"] is None and eff.settings["float32_matmul_precision"] == "highest"
        for o, r in zip(out, ref):
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)
    elif precision == "bf16":
        assert eff.settings["autocast_dtype"] == "bfloat16"
        assert result.ok, result.reasons
    else:
        assert eff.settings["quantization"].startswith("dynamic int8 Linear")
        assert result.ok, result.reasons


def test_user_onnx_file_is_unsupported(tiny_models: dict[str, ModelSpec]) -> None:
    user = dataclasses.replace(tiny_models["mlp-tiny"], builtin=False, torch_weights=None)
    reason = TorchAdapter(EAGER).check(user, "fp32", 1, "single-stream")
    assert reason is not None and "ONNX file" in reason


def test_compile_with_freezing_matches_reference(tiny_models: dict[str, ModelSpec]) -> None:
    spec = tiny_models["mlp-tiny"]
    out, ref, eff = _run(TorchAdapter(AdapterOptions()), spec, "fp32")  # compile is the default
    assert eff.settings["mode"] == "compile" and eff.settings["freezing"] and eff.settings["compile_dynamic"] is False
    for o, r in zip(out, ref):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)


def test_int8_runs_eager_even_when_compile_is_asked(tiny_models: dict[str, ModelSpec]) -> None:
    out, ref, eff = _run(TorchAdapter(AdapterOptions(extra={"compile_mode": "default"})), tiny_models["mlp-tiny"], "int8")
    assert eff.settings["mode"] == "eager" and "graph" in eff.settings["eager_reason"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet-tiny", "bert-tiny"])
def test_compile_bf16_within_drift(tiny_models: dict[str, ModelSpec], model: str) -> None:
    spec = tiny_models[model]
    out, ref, eff = _run(TorchAdapter(AdapterOptions(extra={"compile_mode": "default"})), spec, "bf16")
    assert eff.settings["mode"] == "compile"
    result = compare_outputs(ref, out, spec.task, AccuracySettings())
    assert result.ok, result.reasons


def test_channels_last_option_reaches_the_adapter(tiny_models: dict[str, ModelSpec]) -> None:
    """[adapter_options.torch] channels_last = false: the CNN runs in the default memory format, and says so."""
    spec = tiny_models["resnet-tiny"]
    _, _, on = _run(TorchAdapter(EAGER), spec, "fp32")
    _, _, off = _run(TorchAdapter(AdapterOptions(extra={"compile_mode": "eager", "channels_last": False})), spec, "fp32")
    assert on.settings["channels_last"] is True and off.settings["channels_last"] is False
    assert off.settings["mode"] == "eager" and off.settings["compile_mode"] is None


def test_sweep_file_adapter_options_reach_the_effective_settings(tiny_models: dict[str, ModelSpec], tmp_path) -> None:
    """Through the real path: a sweep file's [adapter_options.torch] -> SweepConfig -> run_trial -> record."""
    import json

    from hwbench.measure.sweepfile import parse_sweep
    from hwbench.measure.trial import Trial, TrialContext, run_trial

    cfg = parse_sweep({"adapters": ["torch"], "models": ["resnet-tiny"], "batch_sizes": [BATCH],
                       "adapter_options": {"torch": {"compile_mode": "eager", "channels_last": False}},
                       "accuracy": {"enabled": False}, "measure": {"min_duration_s": 0.05, "min_iters": 3,
                                                                   "warmup_s": 0.0, "max_duration_s": 1.0}})
    assert cfg.adapter_options == {"torch": {"compile_mode": "eager", "channels_last": False}}
    trial = Trial(model="resnet-tiny", adapter="torch", precision="fp32", batch_size=BATCH, scenario="single-stream")
    rec, _ = run_trial(trial, tiny_models["resnet-tiny"], TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h",
                                                                   cache_dir=str(tmp_path)))
    assert rec.status == "ok", rec.error
    settings = json.loads(rec.settings)
    assert settings["mode"] == "eager" and settings["channels_last"] is False


def test_offline_runner_completes_every_tag_once(tiny_models: dict[str, ModelSpec]) -> None:
    spec = tiny_models["bert-tiny"]
    adapter = TorchAdapter(EAGER)
    adapter.prepare(spec, "fp32", BATCH, make_inputs(spec, BATCH))
    runner = adapter.open_concurrent(2)
    try:
        assert runner.concurrency == 2 and adapter.effective().settings["offline_concurrency"] == 2
        done: list[int] = []
        next_tag = 0
        for _ in range(2):
            runner.submit(next_tag)
            next_tag += 1
        while next_tag < 30:
            finished = runner.wait()
            done += finished
            for _ in finished:
                if next_tag < 30:
                    runner.submit(next_tag)
                    next_tag += 1
        done += runner.drain()
        assert sorted(done) == list(range(30))
    finally:
        runner.close()
        adapter.close()


def test_broken_precision_fails_the_drift_check(tiny_models: dict[str, ModelSpec]) -> None:
    """A real run whose weights were corrupted must fail against the reference."""
    spec = tiny_models["resnet-tiny"]
    adapter = TorchAdapter(EAGER)
    adapter.prepare(spec, "fp32", BATCH, make_inputs(spec, BATCH))
    with torch.no_grad():
        for p in adapter._fn.parameters():  # garbage weights: what a broken conversion would give
            p.add_(torch.randn_like(p) * p.abs().mean())
    x = make_inputs(spec, 8, seed=11)
    try:
        out = adapter.infer(x)
    finally:
        adapter.close()
    result = compare_outputs(_reference(spec, x), out, spec.task, AccuracySettings())
    assert not result.ok and result.reasons


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_cuda_precisions(tiny_models: dict[str, ModelSpec], precision: str) -> None:
    spec = tiny_models["resnet-tiny"]
    adapter = TorchAdapter(AdapterOptions(device="cuda", extra={"compile_mode": "eager"}))
    reason = adapter.check(spec, precision, BATCH, "single-stream")
    if reason is not None:
        pytest.skip(reason)
    assert adapter.placement.kind == "cuda" and TorchAdapter.device_kind == "cpu"  # the instance's kind, the class default
    x = make_inputs(spec, 5, seed=3)
    try:
        adapter.prepare(spec, precision, BATCH, make_inputs(spec, BATCH))
        adapter.run()
        out = adapter.infer(x)
        eff = adapter.effective()
        peak = adapter.device_memory_peak_mb()
    finally:
        adapter.close()
    assert peak is not None and peak > 0
    assert eff.precision == precision and eff.accelerators_used == 1
    assert (eff.device_kind, eff.device_index) == ("cuda", 0) and eff.device_name.startswith("NVIDIA")
    assert eff.settings["tf32_matmul"] == (precision == "tf32")
    result = compare_outputs(_reference(spec, x), out, spec.task, AccuracySettings())
    assert result.ok, result.reasons
