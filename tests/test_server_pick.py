"""A pick that holds: measured capacity from server-scenario records, modelled capacity otherwise, both labelled
through the matrix, the pick, the export and the CLI; the rate-latency plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hwbench.analyse.frontier import FRONTIER_SCHEMA_VERSION, export, load, mark_frontier, pick, slo_table
from hwbench.analyse.matrix import build_matrix
from hwbench.analyse.sizing import MEASURED, attach_service_sketches
from hwbench.catalog.prices import load_catalog
from hwbench.cli import app
from hwbench.results import store
from hwbench.results.schema import TrialRecord
from hwbench.results.store import RunWriter

SHA = "7" * 64
# offered rps -> (p50, p99) ms: the p99 crosses 50 ms between 30 and 40 req/s
CURVE = {10.0: (12.0, 15.0), 20.0: (14.0, 20.0), 30.0: (20.0, 40.0), 40.0: (60.0, 200.0)}


def rec(run: str, n: int, **kw: Any) -> TrialRecord:
    base: dict[str, Any] = dict(run_id=run, trial_id=f"{run}-{n}", model="m", model_sha256=SHA, adapter="ort-cpu",
                                device="cpu", precision="fp32", batch_size=1, valid=True, latency_p50_ms=9.0,
                                latency_p99_ms=10.0, throughput_sps=90.0, instance_type="c7i.large", host="box",
                                started_at="2026-12-01T10:00:00Z", input_shapes='{"x": [1, 4]}')
    base.update(kw)
    return TrialRecord(**base)


def server_records(run: str = "srv") -> list[TrialRecord]:
    return [rec(run, i, scenario="server", offered_rps=r, achieved_rps=r * 0.99, latency_p50_ms=p50, latency_p99_ms=p99,
                throughput_sps=r * 0.99, slo_p99_ms=50.0, capacity_at_slo_rps=33.0, capacity_lo_rps=30.0,
                capacity_hi_rps=40.0, capacity_search="bracket 10,20,40; bisect 30", max_batch=1, burstiness=1.0,
                queue_p99_ms=p99 - 9.0, service_p99_ms=9.0, started_at=f"2026-12-01T10:0{i}:00Z")
            for i, (r, (p50, p99)) in enumerate(CURVE.items())]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    rng = np.random.default_rng(0)
    for run, records in {
        "srv": server_records() + [rec("srv", 9)],  # a single-stream point on the same configuration: superseded
        "ss": [rec("ss", 0, instance_type="c7i.xlarge", latency_p50_ms=5.0, latency_p99_ms=6.0, throughput_sps=190.0)],
    }.items():
        writer = RunWriter(root / run)
        writer.write_manifest({"run_id": run, "host": {"hostname": "box"}})
        for r in records:
            samples = rng.gamma(25.0, (r.latency_p50_ms or 1.0) / 25.0, 400)
            writer.write_trial(r, (samples * 1e6).astype(np.int64) if r.scenario != "server" else None)
        writer.compact()
    return root


def points_of(results: Path) -> pd.DataFrame:
    matrix = build_matrix(store.load_records([results]), load_catalog())
    return attach_service_sketches(mark_frontier(matrix.points), store.load_latencies([results]))


def test_server_records_become_one_point_with_its_curve(results: Path) -> None:
    points = points_of(results)
    server = points[points["scenario"] == "server"]
    assert len(server) == 1  # four rates, one point
    row = server.iloc[0]
    assert [p["offered_rps"] for p in row["rate_curve"]] == sorted(CURVE)
    assert row["offered_rps"] == 30.0 and row["throughput_sps"] == pytest.approx(29.7)  # the last rate within 50 ms
    assert row["service_sketch_ms"] is None  # no per-call samples: the curve is the measurement
    assert len(points[points["scenario"] == "single-stream"]["service_sketch_ms"].iloc[0]) == 200


def test_pick_by_measured_capacity_at_the_searched_slo(results: Path) -> None:
    points = points_of(results)
    table = slo_table(points, 50.0, 100.0)
    assert "c7i.large" in set(table["instance_type"])
    assert set(table.loc[table["instance_type"] == "c7i.large", "scenario"]) == {"server"}  # the measured curve speaks
    p = pick(points[points["instance_type"] == "c7i.large"], "m", 50.0, 100.0)
    assert p.capacity_source == MEASURED and p.capacity_rps == 33.0 and "capacity search" in p.capacity_note
    assert p.instances == 4 and p.rate_per_instance_rps == 25.0  # ceil(100 / 33)
    assert p.request_latency_p99_ms == pytest.approx(30.0)  # measured 20 ms at 20 req/s, 40 at 30: 30 at 25
    assert p.batching_wait_ms == 0.0  # a server run's latency already holds its batching
    # at a tighter SLO than the search's, the capacity is read off the curve: 20 req/s, where p99 was 20 ms
    p = pick(points[points["instance_type"] == "c7i.large"], "m", 30.0, 100.0)
    assert (p.capacity_rps, p.instances, p.capacity_source) == (20.0, 5, MEASURED) and "lower bound" in p.capacity_note


def test_modelled_capacity_is_labelled_and_never_mixed(results: Path) -> None:
    points = points_of(results)
    table = slo_table(points, 50.0, 100.0).set_index("instance_type")
    assert table.loc["c7i.large", "capacity_source"] == MEASURED
    assert table.loc["c7i.xlarge", "capacity_source"] == "modelled: FIFO replay of the measured service times, Poisson arrivals"
    assert table.loc["c7i.xlarge", "capacity_cross_check_rps"] > 0  # Allen-Cunneen beside it
    assert pd.isna(table.loc["c7i.large", "capacity_cross_check_rps"])  # no model beside a measurement


def test_export_and_load_carry_the_source_and_the_curve(results: Path, tmp_path: Path) -> None:
    points = points_of(results)
    doc = export(points, tmp_path / "f.json")
    assert doc["schema_version"] == FRONTIER_SCHEMA_VERSION == 2
    by_scenario = {p["scenario"]: p for p in json.loads((tmp_path / "f.json").read_text())["points"]}
    srv, ss = by_scenario["server"], by_scenario["single-stream"]
    assert srv["capacity_source"] == MEASURED and srv["capacity_at_slo_rps"] == 33.0 and srv["slo_p99_ms"] == 50.0
    assert len(srv["rate_curve"]) == 4 and srv["capacity_lo_rps"] == 30.0 and srv["capacity_hi_rps"] == 40.0
    assert ss["capacity_source"] is None and len(ss["service_sketch_ms"]) == 200  # modelled at pick time
    f = load(tmp_path / "f.json")
    for slo, rate in ((50.0, 100.0), (30.0, 100.0), (50.0, 500.0)):
        assert f.pick("m", slo, rate) == pick(points, "m", slo, rate)


def test_a_version_1_export_still_loads_and_is_modelled_without_samples(tmp_path: Path) -> None:
    doc = {"kind": "hwbench.frontier", "schema_version": 1, "points": [
        {"model": "m", "hardware": "h", "instance_type": "h", "adapter": "a", "precision": "fp32", "batch_size": 1,
         "scenario": "single-stream", "latency_p99_ms": 5.0, "throughput_sps": 250.0, "price_usd_per_hour": 1.0,
         "cost_usd_per_1m": 1.0, "on_frontier": True}]}
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    p = load(tmp_path / "v1.json").pick("m", 30.0, 100.0)
    assert p.capacity_source == "modelled: M/D/c at the batch p99 (no raw latencies)" and p.instances == 1


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_cli_prints_the_source_and_the_predicted_p99(results: Path, tmp_path: Path) -> None:
    from hwbench.cli.common import console

    saved, console.width = console._width, 300
    try:
        out = invoke("frontier", str(results), "--slo-p99-ms", "50", "--rate", "100")
    finally:
        console._width = saved
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "at most 90% utilisation" in text
    assert "(modelled: FIFO replay" in text or "(measured;" in text
    doc = json.loads(invoke("frontier", str(results), "--slo-p99-ms", "50", "--rate-rps", "100", "--json",
                            "--max-utilisation", "0.8").output)
    assert doc["max_utilisation"] == 0.8 and doc["picks"]["m"]["max_utilisation"] == 0.8
    assert doc["picks"]["m"]["capacity_source"] in (MEASURED, "modelled: FIFO replay of the measured service times, Poisson arrivals")
    srv = [p for p in doc["points"] if p["scenario"] == "server"][0]
    assert srv["capacity_source"] == MEASURED and srv["capacity_at_slo_rps"] == 33.0 and len(srv["rate_curve"]) == 4
    bad = invoke("frontier", str(results), "--slo-p99-ms", "50", "--rate-rps", "100", "--max-utilisation", "1")
    assert bad.exit_code != 0 and "below 1" in str(bad.exception or bad.output)


def test_cli_plot_draws_the_rate_latency_curve(results: Path, tmp_path: Path) -> None:
    out = invoke("frontier", str(results), "--plot", str(tmp_path / "f.png"))
    assert out.exit_code == 0, out.output
    server = tmp_path / "f.server.png"
    assert server.read_bytes()[:4] == b"\x89PNG" and server.stat().st_size > 10_000


def test_a_full_utilisation_limit_is_refused_with_exit_2(results: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hwbench", "frontier", str(results), "--slo-p99-ms", "50", "--rate-rps",
                           "100", "--max-utilisation", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--max-utilisation must be above 0 and below 1" in done.stderr and len(done.stderr.strip().splitlines()) == 1
