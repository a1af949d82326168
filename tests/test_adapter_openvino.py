"""The openvino adapter on the real runtime and the tiny built-in models (no mocks)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed: pip install 'hwbench[openvino]'")
ort = pytest.importorskip("onnxruntime", reason="the fp32 reference needs onnxruntime")

from device_adapters.openvino_rt import OpenVinoAdapter  # noqa: E402
from hwbench.measure.accuracy import compare_outputs  # noqa: E402
from hwbench.adapter import AdapterOptions  # noqa: E402
from hwbench.errors import UnsupportedPoint  # noqa: E402
from hwbench.models.spec import ModelSpec  # noqa: E402
from hwbench.measure.settings import AccuracySettings  # noqa: E402
from hwbench.models.workload import make_inputs  # noqa: E402

BATCH = 2


def _reference(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(spec.onnx_path), providers=["CPUExecutionProvider"])
    return [np.asarray(o, dtype=np.float32) for o in session.run(None, inputs)]


def _adapter(tmp_path_factory: pytest.TempPathFactory, **kw: object) -> OpenVinoAdapter:
    cache = tmp_path_factory.getbasetemp() / "ov-int8-cache"
    return OpenVinoAdapter(AdapterOptions(cache_dir=str(cache), **kw))  # type: ignore[arg-type]


def test_probe_reports_cpu_and_versions() -> None:
    probe = OpenVinoAdapter.probe()
    assert probe.available, probe.reason
    assert "CPU" in probe.devices
    assert probe.versions["openvino"][0].isdigit()


def test_probe_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    probe = OpenVinoAdapter.probe()
    assert not probe.available
    assert "openvino" in probe.reason and probe.install_hint == "pip install 'hwbench[openvino]'"


@pytest.mark.parametrize("model", ["mlp-tiny", "resnet-tiny", "bert-tiny"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "int8"])
def test_every_precision_runs_or_says_why(
    tiny_models: dict[str, ModelSpec], tmp_path_factory: pytest.TempPathFactory, model: str, precision: str
) -> None:
    spec = tiny_models[model]
    adapter = _adapter(tmp_path_factory)
    reason = adapter.check(spec, precision, BATCH, "single-stream")
    if reason is not None:
        assert precision in reason or "openvino" in reason
        with pytest.raises(UnsupportedPoint):
            adapter.prepare(spec, precision, BATCH, make_inputs(spec, BATCH))
        return
    try:
        adapter.prepare(spec, precision, BATCH, make_inputs(spec, BATCH))
        adapter.run()
        x = make_inputs(spec, 5, seed=3)  # 5 rows: two full slices and a padded one
        out = adapter.infer(x)
        eff = adapter.effective()
    finally:
        adapter.close()
    ref = _reference(spec, x)
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert eff.precision == precision
    assert eff.settings["performance_hint"] == "LATENCY"
    assert eff.settings["static_shapes"] == spec.input_shapes(BATCH)
    result = compare_outputs(ref, out, spec.task, AccuracySettings())
    if precision == "fp32":
        assert eff.settings["inference_precision_hint"] == "fp32"  # the f32 hint was set and applied
        for o, r in zip(out, ref):
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)
    elif precision in ("bf16", "fp16"):
        assert eff.settings["inference_precision_hint"] == precision
        assert result.ok, result.reasons  # rounding drift on a tiny model stays inside the defaults
    else:
        assert eff.settings["quantization"].startswith("nncf")
        assert result.cosine is not None and result.cosine > 0.9  # quantized, not garbage


def test_int8_is_cached_by_model_hash(tiny_models: dict[str, ModelSpec], tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = tiny_models["mlp-tiny"]
    states = []
    for _ in range(2):
        adapter = _adapter(tmp_path_factory)
        if adapter.check(spec, "int8", BATCH, "single-stream"):
            pytest.skip("int8 unsupported on this CPU")
        adapter.prepare(spec, "int8", BATCH, make_inputs(spec, BATCH))
        states.append(adapter.effective().settings["int8_cache"])
        adapter.close()
    assert states[-1] == "hit"


def test_missing_device_is_unsupported(tiny_models: dict[str, ModelSpec]) -> None:
    available = OpenVinoAdapter.probe().devices
    device = next(d for d in ("NPU", "GPU", "FPGA") if d not in {x.split(".")[0] for x in available})
    reason = OpenVinoAdapter(AdapterOptions(device=device)).check(tiny_models["mlp-tiny"], "fp32", 1, "single-stream")
    assert reason is not None and device in reason


@pytest.mark.parametrize("concurrency", [0, 3])
def test_offline_runner_completes_every_tag_once(tiny_models: dict[str, ModelSpec], concurrency: int) -> None:
    spec = tiny_models["resnet-tiny"]
    adapter = OpenVinoAdapter()
    adapter.prepare(spec, "fp32", BATCH, make_inputs(spec, BATCH))
    runner = adapter.open_concurrent(concurrency)
    try:
        eff = adapter.effective()
        assert runner.concurrency == eff.settings["offline_concurrency"]
        if concurrency == 0:
            assert runner.concurrency == eff.settings["offline_optimal_infer_requests"] >= 1
        else:
            assert runner.concurrency == concurrency
        assert eff.settings["offline_performance_hint"] == "THROUGHPUT"
        assert runner.wait() == []  # nothing in flight: returns at once instead of hanging
        total, done, next_tag = 40, [], 0
        for _ in range(runner.concurrency):
            runner.submit(next_tag)
            next_tag += 1
        while next_tag < total:
            finished = runner.wait()
            assert finished
            done += finished
            for _ in finished:
                if next_tag < total:
                    runner.submit(next_tag)
                    next_tag += 1
        done += runner.drain()
        assert sorted(done) == list(range(total))
    finally:
        adapter.close()


@pytest.mark.parametrize("streams", [1, 2])
def test_num_streams_option_reaches_the_offline_compile(tiny_models: dict[str, ModelSpec], streams: int) -> None:
    """[adapter_options.openvino] num_streams (AdapterOptions.extra) sets NUM_STREAMS, read back from the runtime."""
    spec = tiny_models["mlp-tiny"]
    adapter = OpenVinoAdapter(AdapterOptions(extra={"num_streams": streams}))
    adapter.prepare(spec, "fp32", BATCH, make_inputs(spec, BATCH))
    try:
        adapter.open_concurrent(0)
        assert adapter.effective().settings["offline_num_streams"] == streams
    finally:
        adapter.close()


def test_broken_precision_fails_the_drift_check(tiny_models: dict[str, ModelSpec]) -> None:
    """Outputs for the wrong inputs (a real run, not a fake) must not pass for the right ones."""
    spec = tiny_models["resnet-tiny"]
    adapter = OpenVinoAdapter()
    adapter.prepare(spec, "fp32", BATCH, make_inputs(spec, BATCH))
    x = make_inputs(spec, 8, seed=11)
    wrong = {k: v[::-1].copy() for k, v in x.items()}  # rows reversed: every row is another image
    try:
        out = adapter.infer(wrong)
    finally:
        adapter.close()
    result = compare_outputs(_reference(spec, x), out, spec.task, AccuracySettings())
    assert not result.ok and result.reasons
