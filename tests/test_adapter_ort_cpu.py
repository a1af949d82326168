"""The ort-cpu adapter on the real runtime and the tiny built-in models (no mocks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'hwbench[ort]'")

from device_adapters.ort_cpu import OrtCpuAdapter  # noqa: E402
from hwbench.measure.accuracy import compare_outputs  # noqa: E402
from hwbench.adapter import AdapterOptions  # noqa: E402
from hwbench.adapter.concurrency import ThreadedRunner  # noqa: E402
from hwbench.models.spec import ModelSpec  # noqa: E402
from hwbench.measure.settings import AccuracySettings  # noqa: E402
from hwbench.models.workload import make_inputs  # noqa: E402


def _reference(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(spec.onnx_path), providers=["CPUExecutionProvider"])
    return [np.asarray(o, dtype=np.float32) for o in session.run(None, inputs)]


def test_probe() -> None:
    p = OrtCpuAdapter.probe()
    assert p.available and p.devices == ("CPU",) and p.versions["onnxruntime"] == ort.__version__


def test_bf16_is_refused_with_a_reason(tiny_models: dict[str, ModelSpec]) -> None:
    reason = OrtCpuAdapter().check(tiny_models["mlp-tiny"], "bf16", 1, "single-stream")
    assert reason and "bf16" in reason


@pytest.mark.parametrize("name", ["mlp-tiny", "resnet-tiny", "bert-tiny"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_precision_runs_and_stays_close(tiny_models: dict[str, ModelSpec], tmp_path: Path,
                                               name: str, precision: str) -> None:
    spec = tiny_models[name]
    inputs = make_inputs(spec, 3, seed=0)
    adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path), threads=1))
    cwd_before = set(os.listdir("."))
    adapter.prepare(spec, precision, 3, inputs)
    assert set(os.listdir(".")) == cwd_before, "quantization must leave nothing in the working directory"
    adapter.run()
    eff = adapter.effective()
    assert eff.precision == precision
    assert eff.settings["intra_op_num_threads"] == 1 and "ORT_ENABLE_ALL" in eff.settings["graph_optimization_level"]
    if precision == "int8":
        assert eff.settings["quantization"] == ("dynamic" if spec.family == "transformer" else "static-qdq")
    out = adapter.infer(inputs)
    ref = _reference(spec, inputs)
    assert [o.shape for o in out] == [r.shape for r in ref]
    if precision == "fp32":
        for o, r in zip(out, ref):
            np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)
    else:
        result = compare_outputs(ref, out, spec.task, AccuracySettings())
        assert result.cosine is not None and result.cosine > 0.9, result
    adapter.close()


def test_int8_model_is_cached_by_hash(tiny_models: dict[str, ModelSpec], tmp_path: Path) -> None:
    spec = tiny_models["resnet-tiny"]
    inputs = make_inputs(spec, 1)
    first = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path)))
    first.prepare(spec, "int8", 1, inputs)
    cached = list((tmp_path / "ort-cpu").glob("int8-*.onnx"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    second = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path)))
    second.prepare(spec, "int8", 4, make_inputs(spec, 4))
    assert cached[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not [p for p in (tmp_path / "ort-cpu").iterdir() if p.name.startswith(".hwbench-ort-")]


def test_offline_runner_completes_each_tag_once(tiny_models: dict[str, ModelSpec], tmp_path: Path) -> None:
    spec = tiny_models["mlp-tiny"]
    adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path)))
    adapter.prepare(spec, "fp32", 2, make_inputs(spec, 2))
    runner = adapter.open_concurrent(3)
    assert isinstance(runner, ThreadedRunner) and runner.concurrency == 3
    for tag in range(3):
        runner.submit(tag)
    done = runner.wait()
    for tag in range(3, 10):
        runner.submit(tag)
    done += runner.drain()
    runner.close()
    assert sorted(done) == list(range(10))


def test_offline_splits_the_cores_between_requests(tiny_models: dict[str, ModelSpec], tmp_path: Path) -> None:
    spec = tiny_models["mlp-tiny"]
    adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path)))
    adapter.prepare(spec, "fp32", 1, make_inputs(spec, 1))
    runner = adapter.open_concurrent(2)
    runner.submit(0)
    assert runner.drain() == [0]
    runner.close()
    eff = adapter.effective()
    assert eff.settings["offline_concurrency"] == 2
    assert eff.settings["offline_intra_op_num_threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_the_server_scenario_lets_idle_intra_op_threads_sleep(tiny_models: dict[str, ModelSpec], tmp_path: Path) -> None:
    """Spinning intra-op threads held both vCPUs between open-loop requests and made the issuer late."""
    spec = tiny_models["mlp-tiny"]
    effective = {}
    for scenario in ("", "server"):
        adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp_path), threads=1, scenario=scenario))
        adapter.prepare(spec, "fp32", 2, make_inputs(spec, 2, seed=0))
        adapter.run_batch(1)
        effective[scenario] = adapter.effective().settings["intra_op_allow_spinning"]
        adapter.close()
    assert effective == {"": True, "server": False}
