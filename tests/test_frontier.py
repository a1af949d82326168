"""The frontier, the SLO pick with its batching wait, the plan's saving, and the export contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import math

import numpy as np
import pandas as pd
import pytest

from hwbench.analyse.capacity import DEFAULT_MAX_UTILISATION, modelled_capacity_rps
from hwbench.analyse.sizing import NO_SAMPLES_MODEL

from hwbench.errors import ResultsError, UsageError
from hwbench.analyse.frontier import (
    FRONTIER_SCHEMA_VERSION,
    NoFeasiblePick,
    export,
    load,
    mark_frontier,
    pick,
    plan,
    slo_table,
)


def point(model: str, instance: str, batch: int, p99_ms: float, thr: float, usd_h: float | None, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        model=model, model_sha256="f" * 64, hardware=f"{instance} | dev", instance_type=instance, device="dev",
        accelerator=None, accelerators_used=None, adapter="ad", precision="fp32", precision_effective="fp32",
        batch_size=batch, scenario="single-stream", concurrency=1, latency_p50_ms=p99_ms * 0.8, latency_p99_ms=p99_ms,
        throughput_sps=thr, price_usd_per_hour=usd_h, price_share="1/1", price_basis="on-demand",
        price_as_of="2025-11-30", price_source="test prices",
        cost_usd_per_1m=None if usd_h is None else usd_h / (thr * 3600) * 1e6,
        energy_j_per_inference=None, energy_estimated=False,
    )
    row.update(kw)
    return row


@pytest.fixture
def points() -> pd.DataFrame:
    return pd.DataFrame([
        point("m", "cpu.small", 1, 20.0, 60.0, 0.10),     # 0.463 $/1M
        point("m", "cpu.small", 8, 90.0, 120.0, 0.10),    # 0.231 $/1M
        point("m", "gpu.one", 1, 4.0, 400.0, 0.50),       # 0.347 $/1M
        point("m", "gpu.one", 32, 40.0, 3200.0, 0.50, concurrency=4),    # 0.043 $/1M
        point("m", "gpu.one", 16, 45.0, 1600.0, 0.50, concurrency=4),    # dominated by b32
        point("m", "nowhere", 1, 1.0, 1000.0, None),      # unpriced
    ])


def test_frontier_on_p99_vs_cost(points: pd.DataFrame) -> None:
    marked = mark_frontier(points)
    on = marked[marked["on_frontier"]]
    assert sorted(zip(on["instance_type"], on["batch_size"])) == [("gpu.one", 1), ("gpu.one", 32)]
    assert set(marked["frontier_basis"]) == {"p99 vs cost"}


def test_throughput_objective_and_fallback_without_prices(points: pd.DataFrame) -> None:
    marked = mark_frontier(points, "throughput")
    on = marked[marked["on_frontier"]]
    assert sorted(zip(on["instance_type"], on["batch_size"])) == [("gpu.one", 32), ("nowhere", 1)]
    unpriced = points.assign(price_usd_per_hour=None, cost_usd_per_1m=None)
    marked = mark_frontier(unpriced)  # no price at all: fall back to throughput, and say so
    assert set(marked["frontier_basis"]) == {"p99 vs throughput (no cost figures)"}
    assert marked["on_frontier"].sum() == 2
    assert set(mark_frontier(points, "energy")["frontier_basis"]) == {"p99 vs throughput (no energy figures)"}
    with pytest.raises(UsageError, match="unknown objective"):
        mark_frontier(points, "beauty")


def test_energy_estimates_never_compete_with_measurements() -> None:
    df = pd.DataFrame([
        point("m", "a", 1, 10.0, 100.0, 1.0, energy_j_per_inference=5.0),
        point("m", "b", 1, 20.0, 100.0, 1.0, energy_j_per_inference=0.1, energy_estimated=True),
        point("n", "b", 1, 20.0, 100.0, 1.0, energy_j_per_inference=0.1, energy_estimated=True),
    ])
    marked = mark_frontier(df, "energy")
    assert marked["on_frontier"].tolist() == [True, False, True]  # model n has only estimates: labelled
    assert marked["frontier_basis"].tolist()[2] == "p99 vs energy (estimated)"


def test_slo_pick_counts_the_batching_wait_and_the_queue(points: pd.DataFrame) -> None:
    # at 100 req/s: gpu b32 waits 31/100 s = 310 ms (+40 ms p99 = 350 ms unloaded); b1 waits 0
    table = slo_table(points, slo_p99_ms=100.0, rate_rps=100.0).set_index(["instance_type", "batch_size"])
    assert table.loc[("gpu.one", 32), "batching_wait_ms"] == pytest.approx(310.0)
    assert table.loc[("gpu.one", 32), "request_latency_p99_ms"] == pytest.approx(350.0)
    assert not table.loc[("gpu.one", 32), "meets_slo"]
    assert table.loc[("cpu.small", 8), "batching_wait_ms"] == pytest.approx(70.0)
    assert ("nowhere", 1) not in table.index  # unpriced points are never picked
    # no raw latencies: modelled as M/D/1 at the batch p99 (20 ms), and labelled so
    cpu = table.loc[("cpu.small", 1)]
    assert cpu["capacity_source"] == f"modelled: {NO_SAMPLES_MODEL}"
    capacity, _ = modelled_capacity_rps(np.array([0.020]), 100.0)
    assert cpu["capacity_rps"] == pytest.approx(capacity)
    assert cpu["instances"] == math.ceil(100 / capacity) > math.ceil(100 / 60)  # more than throughput alone says
    assert 20.0 < cpu["request_latency_p99_ms"] <= 100.0  # queueing included, within the SLO
    p = pick(points, "m", slo_p99_ms=100.0, rate_rps=100.0)
    # within 100 ms: cpu b1 4 x 0.10 = 0.40 $/h beats gpu b1 1 x 0.50; gpu b16/b32 and cpu b8 wait too long
    assert (p.instance_type, p.batch_size, p.instances) == ("cpu.small", 1, math.ceil(100 / capacity))
    assert p.fleet_usd_per_hour == pytest.approx(0.10 * p.instances)
    assert p.utilisation == pytest.approx(100 / p.instances / 50.0)  # per instance / the M/D/1 service rate 1/20 ms
    assert p.utilisation <= DEFAULT_MAX_UTILISATION
    assert p.capacity_source.startswith("modelled: ") and p.rate_per_instance_rps == pytest.approx(100 / p.instances)
    assert p.cost_usd_per_1m_at_rate == pytest.approx(p.fleet_usd_per_hour / (100 * 3600) * 1e6)
    assert (p.price_as_of, p.price_source) == ("2025-11-30", "test prices")
    assert p == _unpruned_cheapest(points, 100.0, 100.0)  # the pruned search finds the full table's answer


def _unpruned_cheapest(points: pd.DataFrame, slo: float, rate: float) -> Any:
    from hwbench.analyse.frontier import _cheapest, _to_pick

    return _to_pick(_cheapest(slo_table(points, slo, rate)), slo, rate, DEFAULT_MAX_UTILISATION)


def test_pick_off_the_frontier_when_whole_instances_make_it_cheaper(points: pd.DataFrame) -> None:
    # at 10 req/s and a loose SLO, one cpu.small (0.10 $/h) beats one gpu (0.50 $/h), though the gpu's $/1M is lower
    p = pick(points, "m", slo_p99_ms=1000.0, rate_rps=10.0)
    assert p.instance_type == "cpu.small" and p.instances == 1
    # at 3000 req/s the gpu b32 (4 streams) is at 94% of its throughput on one instance: over the 90% cap, so
    # 2 instances (1.00 $/h), still cheaper than ~38 cpu.small b8 or 3 gpu b16
    p = pick(points, "m", slo_p99_ms=1000.0, rate_rps=3000.0)
    assert (p.instance_type, p.batch_size, p.instances) == ("gpu.one", 32, 2)
    assert p == _unpruned_cheapest(points, 1000.0, 3000.0)


def test_the_utilisation_cap_binds_and_is_never_100_percent(points: pd.DataFrame) -> None:
    # a loose SLO: the queue would meet it near saturation, the cap keeps each instance below the limit
    for cap in (0.5, 0.9):
        p = pick(points, "m", slo_p99_ms=10_000.0, rate_rps=2000.0, max_utilisation=cap)
        assert p.utilisation <= cap + 1e-9 and p.capacity_rps <= cap * p.throughput_sps + 1e-9
        assert p.max_utilisation == cap
    assert pick(points, "m", 10_000.0, 2000.0, max_utilisation=0.5).instances == 2 > pick(points, "m", 10_000.0, 2000.0).instances
    for bad in (1.0, 0.0, 1.5):
        with pytest.raises(UsageError, match="utilisation limit"):
            pick(points, "m", 100.0, 100.0, max_utilisation=bad)


def test_no_feasible_pick_names_the_fastest(points: pd.DataFrame) -> None:
    with pytest.raises(NoFeasiblePick, match="nothing meets p99 <= 2 ms.*gpu.one.*modelled"):
        pick(points, "m", slo_p99_ms=2.0, rate_rps=10.0)
    with pytest.raises(UsageError, match="rate"):
        slo_table(points, 10.0, 0.0)
    with pytest.raises(UsageError, match="no points for model"):
        pick(points, "zzz", 10.0, 10.0)


def test_plan_saving_against_the_cheapest_homogeneous_choice() -> None:
    df = pd.DataFrame([
        point("vision", "cpu.small", 1, 20.0, 60.0, 0.10),
        point("vision", "gpu.one", 1, 4.0, 400.0, 0.50),
        point("text", "cpu.small", 1, 80.0, 10.0, 0.10),
        point("text", "gpu.one", 1, 6.0, 300.0, 0.50),
    ])
    result = plan(df, {"vision": (50.0, 50.0), "text": (100.0, 50.0)})
    # text on cpu.small: its 80 ms p99 leaves 20 ms for queueing under a 100 ms SLO, so it takes hundreds of instances;
    # vision at 50 req/s needs 5 cpu.small (0.50) or 1 gpu (0.50): one gpu each, and the homogeneous gpu fleet is as cheap
    assert result.picks["text"].instance_type == "gpu.one"
    assert result.total_usd_per_hour == pytest.approx(1.00)
    assert result.homogeneous_instance_type == "gpu.one"
    assert result.saving_usd_per_hour == pytest.approx(0.0)
    result = plan(df, {"vision": (50.0, 20.0), "text": (100.0, 100.0)})
    # vision at 20 req/s: 2 cpu.small (0.20) beat a gpu (0.50); mixed 0.70 against gpu for both at 1.00
    assert (result.picks["vision"].instance_type, result.picks["vision"].instances) == ("cpu.small", 2)
    assert result.total_usd_per_hour == pytest.approx(0.70)
    assert result.homogeneous_instance_type == "gpu.one"
    assert result.saving_usd_per_hour == pytest.approx(0.30)


def test_export_round_trip(tmp_path: Path, points: pd.DataFrame) -> None:
    path = tmp_path / "frontier.json"
    doc = export(mark_frontier(points), path)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == FRONTIER_SCHEMA_VERSION == doc["schema_version"] and raw["kind"] == "hwbench.frontier"
    assert len(raw["points"]) == 5  # the unpriced point is not exported
    for p in raw["points"]:
        assert {"throughput_sps", "latency_p99_ms", "price_usd_per_hour", "cost_usd_per_1m", "on_frontier"} <= set(p)
    f = load(path)
    assert f.models == ["m"]
    assert f.frontier("m")["batch_size"].tolist() == [1, 32]
    direct = pick(points, "m", slo_p99_ms=100.0, rate_rps=100.0)
    assert f.pick("m", slo_p99_ms=100.0, rate_rps=100.0) == direct


@pytest.mark.parametrize("doc, message", [
    ({"kind": "other", "schema_version": 1, "points": []}, "not an hwbench frontier"),
    ({"kind": "hwbench.frontier", "schema_version": 99, "points": []}, "upgrade"),
    ({"kind": "hwbench.frontier", "points": []}, "no valid schema_version"),
    ({"kind": "hwbench.frontier", "schema_version": 1, "points": [{"model": "m"}]}, "point 0 lacks"),
])
def test_load_refuses_foreign_or_newer_files(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=message):
        load(path)
    with pytest.raises(ResultsError, match="does not exist"):
        load(tmp_path / "missing.json")


def test_a_point_with_an_unresolved_p99_is_shown_but_never_picked_for_an_slo() -> None:
    """A time-capped point keeps its p50 and throughput, but its open p99 interval cannot promise an SLO."""
    import pandas as pd

    from hwbench.analyse.frontier import NoFeasiblePick, pick, slo_table

    points = pd.DataFrame({
        "model": ["m", "m"], "hardware": ["a", "b"], "adapter": ["x", "x"], "precision": ["fp32", "fp32"],
        "batch_size": [1, 1], "latency_p99_ms": [5.0, 9.0], "throughput_sps": [1000.0, 500.0],
        "price_usd_per_hour": [1.0, 1.0], "instance_type": ["a", "b"], "p99_resolved": [False, True],
    })
    table = slo_table(points, slo_p99_ms=20.0, rate_rps=100.0)
    assert list(table["hardware"]) == ["b"]  # the cheaper, faster but unresolved point is left out
    assert pick(points, "m", 20.0, 100.0).hardware == "b"
    with pytest.raises(NoFeasiblePick, match="resolved p99"):
        pick(points.assign(p99_resolved=False), "m", 20.0, 100.0)
