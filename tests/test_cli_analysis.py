"""The analysis commands end to end: runs written by the store, read by `frontier`, `prices`, `compare`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from hwbench.cli import app
from hwbench.errors import ResultsError
from hwbench.analyse.frontier import load
from hwbench.results.schema import TrialRecord
from hwbench.results.store import RunWriter

runner = CliRunner()
SHA = "9" * 64


def record(run: str, n: int, **kw: Any) -> TrialRecord:
    base: dict[str, Any] = dict(run_id=run, trial_id=f"{run}-{n}", model="resnet50", model_sha256=SHA, adapter="ort-cpu",
                                device="Intel Xeon 8488C", precision="fp32", batch_size=1, valid=True,
                                latency_p50_ms=30.0, latency_p99_ms=33.0, throughput_sps=32.0, accuracy_ok=None,
                                instance_type="c7i.large", host="box1", started_at="2026-01-01T00:00:00Z",
                                input_shapes='{"input": [1, 3, 224, 224]}')
    base.update(kw)
    if "input_shapes" not in kw:
        base["input_shapes"] = json.dumps({"input": [base["batch_size"], 3, 224, 224]})
    return TrialRecord(**base)


def write_run(root: Path, run: str, records: list[TrialRecord], *, samples_scale: float = 1.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = RunWriter(root / run)
    writer.write_manifest({"run_id": run, "host": {"hostname": records[0].host}})
    for r in records:
        samples = rng.normal(r.latency_p50_ms or 1.0, 0.02 * (r.latency_p50_ms or 1.0), 300) * samples_scale
        writer.write_trial(r, (samples * 1e6).astype(np.int64))
    writer.compact()
    return root / run


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_run(root, "cpu", [
        record("cpu", 0),
        record("cpu", 1, batch_size=8, latency_p50_ms=210.0, latency_p99_ms=230.0, throughput_sps=37.0),
        record("cpu", 2, precision="int8", precision_effective="int8", latency_p50_ms=11.0, latency_p99_ms=12.5,
               throughput_sps=87.0, accuracy_ok=True),
        record("cpu", 3, batch_size=32, valid=False, invalid_reasons=["cv 0.25 above 0.10"]),
    ])
    write_run(root, "gpu", [
        record("gpu", 0, adapter="cuda", device="Tesla T4", accelerator="T4", accelerators_used=1, instance_type="g4dn.xlarge",
               host="gpubox", latency_p50_ms=2.0, latency_p99_ms=2.4, throughput_sps=480.0),
        record("gpu", 1, adapter="cuda", device="Tesla T4", accelerator="T4", accelerators_used=1, instance_type="g4dn.xlarge",
               host="gpubox", batch_size=8, latency_p50_ms=9.0, latency_p99_ms=10.0, throughput_sps=880.0),
    ])
    write_run(root, "lab", [record("lab", 0, instance_type="mystery.box", host="lab1", latency_p99_ms=1.0)])
    return root


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def wide_console() -> Any:
    """Tables rendered 220 columns wide, so that no cell wraps in the middle of what a test looks for."""
    from hwbench.cli.common import console

    saved = console._width
    console.width = 220
    yield console
    console._width = saved


def test_frontier_json_prices_every_point_with_date_and_source(results: Path) -> None:
    out = invoke("frontier", str(results), "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    points = {(p["instance_type"], p["adapter"], p["precision"], p["batch_size"]): p for p in doc["points"]}
    assert len(points) == 6  # the invalid b32 record is listed apart
    t4 = points[("g4dn.xlarge", "cuda", "fp32", 1)]
    assert t4["price_usd_per_hour"] == pytest.approx(0.526)
    assert t4["cost_usd_per_1m"] == pytest.approx(0.526 / (480 * 3600) * 1e6)
    assert (t4["price_as_of"], t4["price_basis"]) == ("2025-11-30", "on-demand")
    assert points[("c7i.large", "ort-cpu", "int8", 1)]["cost_usd_per_1m"] == pytest.approx(0.08925 / (87 * 3600) * 1e6)
    frontier = sorted((p["adapter"], p["batch_size"]) for p in doc["points"] if p["on_frontier"])
    # the T4 b8 point is the cheapest per 1M and the T4 b1 the fastest priced; unpriced mystery.box competes on nothing
    assert frontier == [("cuda", 1), ("cuda", 8)]
    assert doc["invalid"][0]["reasons"] == "cv 0.25 above 0.10"
    assert doc["unpriced"][0]["instance_type"] == "mystery.box"
    assert {p["instance_type"] for p in doc["prices_used"]} == {"c7i.large", "g4dn.xlarge"}
    assert any("differ in precision" in n for n in doc["notes"])


def test_frontier_tables_pick_export_and_plot(results: Path, tmp_path: Path) -> None:
    export_path, plot_path = tmp_path / "frontier.json", tmp_path / "frontier.png"
    out = invoke("frontier", str(results), "--slo-p99-ms", "50", "--rate-rps", "100", "--export", str(export_path),
                 "--plot", str(plot_path))
    assert out.exit_code == 0, out.output
    text = out.output
    assert "★" in text and "Prices used" in text and "never priced by guess" in text and "Measured but invalid" in text
    assert "Cheapest within p99 <= 50 ms at 100 requests/s" in text
    assert plot_path.stat().st_size > 10_000 and plot_path.read_bytes()[:4] == b"\x89PNG"
    f = load(export_path)
    p = f.pick("resnet50", slo_p99_ms=50.0, rate_rps=100.0)
    # T4 b1: 1 instance at 0.526 $/h. c7i.large int8 serves 11 ms calls: 2 instances (50 req/s each, 55% busy) queue
    # past 50 ms at p99 in the replay of its latencies, 3 do not: 0.268 $/h, still cheaper
    assert (p.instance_type, p.precision, p.instances) == ("c7i.large", "int8", 3)
    assert p.capacity_source.startswith("modelled: FIFO replay") and p.request_latency_p99_ms <= 50.0
    assert p.fleet_usd_per_hour == pytest.approx(3 * 0.08925)
    assert f"{p.fleet_usd_per_hour:.4g}" in text


def test_plot_needs_priced_points(tmp_path: Path) -> None:
    import pandas as pd

    from hwbench.errors import UsageError
    from hwbench.analyse.plot import plot_frontier

    unpriced = pd.DataFrame({"model": ["m"], "hardware": ["h"], "precision": ["fp32"], "adapter": ["a"], "batch_size": [1],
                             "cost_usd_per_1m": [float("nan")], "latency_p99_ms": [1.0]})
    with pytest.raises(UsageError, match="nothing to plot"):
        plot_frontier(unpriced, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_frontier_pick_in_json_and_infeasible_slo(results: Path) -> None:
    doc = json.loads(invoke("frontier", str(results), "--slo-p99-ms", "1", "--rate-rps", "10", "--json").output)
    assert "nothing meets" in doc["picks"]["resnet50"]
    doc = json.loads(invoke("frontier", str(results), "--slo-p99-ms", "100", "--rate-rps", "400", "--json").output)
    pick = doc["picks"]["resnet50"]
    assert pick["batching_wait_ms"] == pytest.approx(0.0) and pick["instances"] >= 1


def test_merge_refusal_and_allow_mixed(results: Path) -> None:
    write_run(results, "other", [record("other", 0, model_sha256="1" * 64, host="elsewhere")])
    out = invoke("frontier", str(results))
    assert isinstance(out.exception, ResultsError) and "--allow-mixed" in str(out.exception)
    assert invoke("frontier", str(results), "--allow-mixed").exit_code == 0


def test_prices_command(tmp_path: Path) -> None:
    doc = json.loads(invoke("prices", "--json").output)
    names = {p["name"]: p for p in doc["instances"]}
    assert names["p5en.48xlarge"]["on_demand_usd_per_hour"] == 63.296 and names["p5en.48xlarge"]["as_of"] == "2025-11-30"
    text = invoke("prices").output
    assert "p5en.48xlarge" in text and "63.296" in text and "2025-11-30" in text


def test_user_prices_from_the_environment_and_included_drift(results: Path, tmp_path: Path, wide_console: Any) -> None:
    prices = tmp_path / "mine.toml"
    prices.write_text('[instances."mystery.box"]\non_demand_usd_per_hour = 0.36\nas_of = 2026-02-01\nsource = "our quote"\n')
    doc = json.loads(runner.invoke(app, ["frontier", str(results), "--json"], env={"HWBENCH_PRICES": str(prices)}).output)
    mystery = [p for p in doc["points"] if p["instance_type"] == "mystery.box"][0]
    assert mystery["price_usd_per_hour"] == 0.36 and mystery["price_source"] == "our quote"
    assert mystery["cost_usd_per_1m"] == pytest.approx(0.36 / (32 * 3600) * 1e6)
    assert doc["unpriced"] == []
    write_run(results, "drift", [record("drift", 0, precision="int8", accuracy_ok=False, latency_p99_ms=0.5)])
    assert "(drift)" not in invoke("frontier", str(results)).output
    assert "(drift)" in invoke("frontier", str(results), "--include-inaccurate").output


def test_compare_exit_code_on_planted_regression(tmp_path: Path) -> None:
    recs = lambda run, scale: [record(run, i, batch_size=b, latency_p50_ms=10.0 * b * scale, latency_p99_ms=11.0 * b * scale)  # noqa: E731
                               for i, b in enumerate((1, 8))]
    base = write_run(tmp_path, "base", recs("base", 1.0), seed=1)
    slow = write_run(tmp_path, "slow", recs("slow", 1.15), samples_scale=1.15, seed=2)
    out = invoke("compare", str(base), str(slow), "--fail-above-pct", "10")
    assert out.exit_code == 1, out.output
    assert "FAIL" in out.output and "regression" in out.output
    assert invoke("compare", str(base), str(slow), "--fail-above-pct", "30").exit_code == 0
    doc = json.loads(invoke("compare", str(base), str(slow), "--json").output)
    assert {t["verdict"] for t in doc["trials"]} == {"regression"} and doc["failed"] is False


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwbench", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path) -> None:
    neg = tmp_path / "neg.toml"
    neg.write_text('[instances.x]\non_demand_usd_per_hour = -1.0\nas_of = 2026-01-01\nsource = "s"\n')
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[instances.x]\non_demand_usd_per_hour = 1.0\nprice_eur = 1\nas_of = 2026-01-01\nsource = "s"\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    no_records = tmp_path / "no-records"
    RunWriter(no_records / "run").write_manifest({"run_id": "run"})
    cases = [
        (("prices", "--prices", str(neg)), "negative"),
        (("prices", "--prices", str(unknown)), "unknown field 'price_eur'"),
        (("frontier", str(tmp_path / "missing")), "does not exist"),
        (("frontier", str(empty)), "no hwbench runs found"),
        (("frontier", str(no_records)), "no trial records"),
        (("compare", str(tmp_path / "missing"), str(empty)), "does not exist"),
    ]
    for args, message in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hwbench: error:") and message in lines[0], (args, proc.stderr)


def test_given_price_end_to_end_profile_then_frontier_and_export(tmp_path: Path, wide_console: Any) -> None:
    """`profile --usd-per-hour --price-note` records the price; `frontier` prices from it and says so.

    The frontier half reads records written by the store with the profile's price columns, so a
    busy machine (the null adapter's timings flagged unstable) cannot make the test flaky.
    """
    prof = invoke("profile", "mlp-tiny", "--adapter", "null", "--batch", "1", "--precision", "fp32", "--quick",
                  "--no-accuracy", "--out", str(tmp_path / "runs"), "--usd-per-hour", "0.05",
                  "--price-note", "lab box, 3-year TCO", "--json")
    assert prof.exit_code == 0, prof.output
    recs = json.loads(prof.stdout[prof.stdout.index("{"):])["records"]
    assert recs and all((r["price_usd_per_hour"], r["price_note"], r["instance_type_source"])
                        == (0.05, "lab box, 3-year TCO", "given") for r in recs)
    root = tmp_path / "results"
    write_run(root, "lab", [record("lab", 0, instance_type=None, host="lab1", price_usd_per_hour=0.05,
                                   price_note="lab box, 3-year TCO", instance_type_source="given")])
    export_path = tmp_path / "f.json"
    out = invoke("frontier", str(root), "--export", str(export_path))
    assert out.exit_code == 0, out.output
    assert "(given)" in out.output and "given: lab box, 3-year TCO" in out.output
    doc = json.loads(export_path.read_text())
    assert [p["price_basis"] for p in doc["points"]] == ["given: lab box, 3-year TCO"]
    assert doc["points"][0]["price_usd_per_hour"] == pytest.approx(0.05)
    assert doc["points"][0]["cost_usd_per_1m"] == pytest.approx(0.05 / (32.0 * 3600) * 1e6)


def test_frontier_groups_points_that_never_ran_by_reason(tmp_path: Path) -> None:
    """Unsupported points come back as one line per reason with a count, not one row each."""
    root = tmp_path / "results"
    why = "bf16 is emulated on this CPU (test)"
    write_run(root, "cpu", [
        record("cpu", 0),
        *[record("cpu", i, precision="bf16", status="unsupported", error=why, valid=False, batch_size=b,
                 latency_p50_ms=None, latency_p99_ms=None, throughput_sps=None)
          for i, b in ((1, 1), (2, 8), (3, 32))],
    ])
    out = invoke("frontier", str(root))
    assert out.exit_code == 0, out.output
    assert "Not measured (3 records" in out.output and out.output.count("emulated on this CPU (test)") == 1
