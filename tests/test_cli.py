"""The CLI end to end with CliRunner and the real entry point: devices, models, profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwbench.cli import app
from hwbench.results.store import load_latencies, load_records, read_manifest

runner = CliRunner()


def hwbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwbench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_devices_json_lists_every_adapter() -> None:
    res = runner.invoke(app, ["devices", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["host"]["cpu_model"]
    by_name = {a["name"]: a for a in data["adapters"]}
    assert by_name["ort-cpu"]["available"] is True
    assert by_name["null"]["available"] is True
    for name in ("tensorrt", "ort-cuda", "ort-trt", "neuron"):
        if not by_name[name]["available"]:
            assert by_name[name]["reason"], name


def test_models_json() -> None:
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    names = {m["name"] for m in json.loads(res.stdout)}
    assert {"resnet50", "bert-base", "mlp", "mlp-tiny"} <= names


def test_profile_end_to_end(tmp_path: Path) -> None:
    res = hwbench("profile", "mlp-tiny", "--adapter", "ort-cpu,null", "--batch", "1,2", "--precision", "fp32,bf16",
                  "--quick", "--out", str(tmp_path), "--instance", "c7i.large", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    run_dir = Path(out["run_dir"])
    df = load_records([run_dir])
    assert len(df) == 8  # 2 adapters x 2 precisions x 2 batch sizes
    ok = df[(df.adapter == "ort-cpu") & (df.precision == "fp32")]
    assert (ok.status == "ok").all() and (ok.latency_p50_ms > 0).all() and (ok.n_samples >= 20).all()
    assert (ok.throughput_sps > 0).all() and (ok.cold_start_s > 0).all() and (ok.peak_rss_mb > 0).all()
    assert ok.precision_effective.tolist() == ["fp32", "fp32"]
    bf16 = df[(df.adapter == "ort-cpu") & (df.precision == "bf16")]
    assert (bf16.status == "unsupported").all() and bf16.error.str.contains("bf16").all()
    assert (df.instance_type == "c7i.large").all()
    lat = load_latencies([run_dir])
    n = ok.set_index("trial_id").n_samples
    for tid, count in n.items():
        assert (lat.trial_id == tid).sum() == count
    m = read_manifest(run_dir)
    assert m["host"]["cpu_model"] and m["models"]["mlp-tiny"]["sha256"] == ok.model_sha256.iloc[0]
    assert m["requested"]["batch_sizes"] == [1, 2]
    assert not list((run_dir / "records").glob("*.parquet")), "fragments are compacted at the end"


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "mlp-tiny", "--adapter", "nope"], "unknown adapter 'nope'"),
        (["profile", "mlp-tiny", "--precision", "fp64"], "unknown precision fp64"),
        (["profile", "mlp-tiny", "--batch", "0"], "batch size must be positive"),
        (["profile", "mlp-tiny", "--batch", "-4"], "batch size must be positive"),
        (["profile", "/nonexistent/model.onnx", "--adapter", "null"], "model"),
        (["profile", "mlp-tiny", "--adapter", "null", "--out", "/proc/hwbench-out"], "cannot write to output folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    res = hwbench(*args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwbench: error:"), res.stderr
    assert message in lines[0]
    assert "Traceback" not in res.stderr


def test_debug_variable_shows_traceback() -> None:
    res = hwbench("profile", "mlp-tiny", "--batch", "0", env={"HWBENCH_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr
