"""Exit codes through the real entry point (`python -m hwbench` in a subprocess, never the typer app).

The app alone hides what main() does with a code: a `typer.Exit(1)` that main() dropped still
read as exit 1 under CliRunner. README "Exit codes" lists the table these tests hold to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_analysis import record, write_run


def hwbench(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT", "HWBENCH_TEST_ADAPTERS")}
    base.update(HWBENCH_CACHE=str(cwd / "cache"), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "hwbench", *args], cwd=cwd, env=base, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A baseline and a candidate 15% slower on every trial (raw latencies scaled too)."""
    root = tmp_path_factory.mktemp("runs")
    recs = lambda run, scale: [record(run, i, batch_size=b, latency_p50_ms=10.0 * b * scale,  # noqa: E731
                                      latency_p99_ms=11.0 * b * scale) for i, b in enumerate((1, 8))]
    return (write_run(root, "base", recs("base", 1.0), seed=1),
            write_run(root, "slow", recs("slow", 1.15), samples_scale=1.15, seed=2))


def test_compare_exits_1_on_a_significant_regression_above_the_gate(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, slow = runs
    proc = hwbench(tmp_path, "compare", str(base), str(slow), "--fail-above-pct", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL: 2 significant regression(s)" in proc.stdout


def test_compare_exits_0_below_the_gate_and_when_nothing_regressed(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, slow = runs
    above = hwbench(tmp_path, "compare", str(base), str(slow), "--fail-above-pct", "30")
    assert above.returncode == 0, above.stdout + above.stderr
    assert "pass: no significant regression above 30%" in above.stdout
    same = hwbench(tmp_path, "compare", str(base), str(base), "--fail-above-pct", "0")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "pass" in same.stdout


def test_compare_old_flag_spelling_still_gates(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, slow = runs
    proc = hwbench(tmp_path, "compare", str(base), str(slow), "--fail-above", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--fail-above is deprecated; use --fail-above-pct" in proc.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_compare_refuses_a_gate_that_is_not_a_finite_percentage(value: str, runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, slow = runs
    proc = hwbench(tmp_path, "compare", str(base), str(slow), "--fail-above-pct", value)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("hwbench: error: --fail-above-pct must be a finite percentage"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_error_from_the_parser_exits_2(tmp_path: Path) -> None:
    proc = hwbench(tmp_path, "compare", "--no-such-flag")
    assert proc.returncode == 2, proc.stderr


@pytest.fixture(scope="module")
def add_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-Add ONNX model with a dynamic batch axis (no torch needed)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    path = tmp_path_factory.mktemp("model") / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)
    return path


def _profile(tmp: Path, model: Path, batches: str, fault: str) -> subprocess.CompletedProcess[str]:
    return hwbench(tmp, "profile", str(model), "--adapter", "faulty", "--precision", "fp32", "--batch", batches,
                   "--quick", "--no-accuracy", "--timeout-s", "60", "--out", str(tmp / "out"),
                   HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT=fault)


def test_profile_exits_3_when_every_trial_failed(tmp_path: Path, add_model: Path) -> None:
    proc = _profile(tmp_path, add_model, "1,2", "raise")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hwbench: error:")]
    assert errors == [f"hwbench: error: all 2 trial(s) failed: 2 ended in error, none measured; "
                      f"results: {next((tmp_path / 'out').iterdir())}"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_profile_exits_3_when_some_trials_failed_and_others_were_measured(tmp_path: Path, add_model: Path) -> None:
    proc = _profile(tmp_path, add_model, "1,2", "raise@2")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hwbench: error:")]
    assert errors == [f"hwbench: error: 1 of 2 trial(s) ended in error, 1 measured; "
                      f"results: {next((tmp_path / 'out').iterdir())}"], proc.stderr


def test_profile_exits_0_when_every_trial_was_measured_or_is_unsupported(tmp_path: Path, add_model: Path) -> None:
    proc = _profile(tmp_path, add_model, "1,2", "")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hwbench: error:" not in proc.stderr


def test_compare_refuses_an_alpha_outside_0_1(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, slow = runs
    for value in ("nan", "0", "1"):
        proc = hwbench(tmp_path, "compare", str(base), str(slow), "--alpha", value)
        assert proc.returncode == 2 and proc.stderr.startswith("hwbench: error: --alpha must be above 0"), proc.stderr


def test_profile_killed_by_sigterm_exits_143_and_leaves_a_run_that_loads(tmp_path: Path, add_model: Path) -> None:
    """SIGTERM stops the sweep as Ctrl-C does: one message with the resume command, exit 143 (128 + 15)."""
    import signal
    import time

    from hwbench.results.store import read_manifest

    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT")}
    env.update(HWBENCH_CACHE=str(tmp_path / "cache"), HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT="hang")
    out = tmp_path / "out"
    cli = subprocess.Popen([sys.executable, "-m", "hwbench", "profile", str(add_model), "--adapter", "faulty",
                            "--precision", "fp32", "--batch", "1", "--quick", "--no-accuracy", "--timeout-s", "120",
                            "--out", str(out)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("*/manifest.json")) and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.1)
        assert list(out.glob("*/manifest.json")), "the sweep never started"
        time.sleep(1.0)  # the hanging worker is running
        cli.send_signal(signal.SIGTERM)
        cli.wait(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    stderr = cli.stderr.read() if cli.stderr else ""
    assert cli.returncode == 143, stderr
    run_dir = next(out.iterdir())
    assert "terminated (SIGTERM): completed trials are saved. Resume with:" in stderr, stderr
    assert f"hwbench profile --resume {run_dir}" in stderr and "Traceback" not in stderr, stderr
    assert not list(run_dir.rglob("*.tmp*"))
    assert read_manifest(run_dir)["requested"]["batch_sizes"] == [1]
