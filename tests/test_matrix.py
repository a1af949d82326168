"""The performance/cost matrix: cost arithmetic by hand, what is left out and why, merge refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hwbench.errors import ResultsError, UsageError
from hwbench.analyse.matrix import build_matrix, check_merge, cost_usd_per_1m, energy_usd_per_1m
from hwbench.catalog.prices import load_builtin, load_catalog
from hwbench.results.schema import TrialRecord

_n = iter(range(10**6))


def rec(**kw: Any) -> TrialRecord:
    i = next(_n)
    base: dict[str, Any] = dict(
        run_id="run-a", trial_id=f"t{i}", model="resnet50", model_sha256="a" * 64, adapter="ort-cpu",
        device="Xeon 8488C", precision="fp32", batch_size=1, valid=True, latency_p50_ms=10.0,
        latency_p99_ms=12.0, throughput_sps=100.0, instance_type="c7i.large", host="box1",
        started_at=f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", input_shapes='{"input": [1, 3, 224, 224]}',
    )
    base.update(kw)
    return TrialRecord(**base)


def frame(*records: TrialRecord) -> pd.DataFrame:
    return pd.DataFrame([r.to_row() for r in records])


def one(matrix_points: pd.DataFrame, **match: Any) -> pd.Series:
    sel = matrix_points
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_cost_formula_by_hand() -> None:
    # 0.526 $/h at 500 items/s: 0.526 / 1.8e6 items per hour * 1e6 = 0.29222... $ per 1M
    assert cost_usd_per_1m(0.526, 500.0) == pytest.approx(0.526 / 1.8)
    assert pd.isna(cost_usd_per_1m(1.0, 0.0))
    # 2 J per inference: 2e6 J per 1M = 0.5556 kWh, at 0.18 $/kWh = 0.1 $
    assert energy_usd_per_1m(2.0, 0.18) == pytest.approx(0.1)


def test_cpu_and_k_of_n_pricing_by_hand() -> None:
    df = frame(
        rec(batch_size=1, throughput_sps=100.0),
        rec(instance_type="p5.48xlarge", device="NVIDIA H100 80GB HBM3", accelerator="H100", accelerators_used=2,
            throughput_sps=4000.0, adapter="trt"),
        rec(instance_type="inf2.48xlarge", device="Inferentia2", accelerator="Inferentia2", accelerators_used=3,
            throughput_sps=900.0, adapter="neuron"),
        rec(instance_type="g4dn.xlarge", device="Tesla T4", accelerator="T4", accelerators_used=None,
            throughput_sps=700.0, adapter="cuda"),
    )
    pts = build_matrix(df, load_builtin()).points
    cpu = one(pts, adapter="ort-cpu")
    assert cpu.price_usd_per_hour == pytest.approx(0.08925)
    assert cpu.cost_usd_per_1m == pytest.approx(0.08925 / (100 * 3600) * 1e6)  # 0.2479 $
    h100 = one(pts, adapter="trt")
    assert h100.price_usd_per_hour == pytest.approx(55.04 * 2 / 8)  # 13.76 $/h for 2 of 8 H100s
    assert h100.price_share == "2/8"
    assert h100.cost_usd_per_1m == pytest.approx(13.76 / (4000 * 3600) * 1e6)
    inf = one(pts, adapter="neuron")
    assert inf.price_usd_per_hour == pytest.approx(12.98 / 4)  # 3 of 12 Inferentia2
    t4 = one(pts, adapter="cuda")
    assert t4.price_usd_per_hour == pytest.approx(0.526) and t4.price_share == "1/1"
    assert set(pts["price_as_of"]) == {"2025-11-30"} and pts["price_source"].str.contains("aws.amazon.com").all()


def test_unknown_instance_is_reported_not_priced() -> None:
    df = frame(rec(), rec(instance_type="m99.huge", adapter="b"), rec(instance_type=None, host="laptop", adapter="c"),
               rec(instance_type="p5.48xlarge", accelerator="H100", accelerators_used=9, adapter="d"))
    m = build_matrix(df, load_builtin())
    assert m.points["price_usd_per_hour"].notna().sum() == 1
    assert pd.isna(one(m.points, adapter="b")["cost_usd_per_1m"])
    reasons = dict(zip(m.unpriced["instance_type"], m.unpriced["reason"]))
    assert "not in the price catalog" in reasons["m99.huge"]
    assert "no instance type recorded" in reasons["(host laptop)"]
    assert "exceed" in reasons["p5.48xlarge"]
    assert list(m.prices_used["instance_type"]) == ["c7i.large"]


def test_on_prem_tco_from_the_runs_measured_power(tmp_path: Path) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[instances.lab]\naccelerator = "A100"\naccelerator_count = 4\ncapital_usd = 35040\nlifetime_years = 1\n'
                      'power_w = "measured"\nusd_per_kwh = 0.2\npue = 1.5\nas_of = 2026-01-01\nsource = "PO 1"\n')
    df = frame(rec(instance_type="lab", accelerator="A100", accelerators_used=1, avg_power_w=300.0, power_method="nvml-counter"),
               rec(instance_type="lab", accelerator="A100", accelerators_used=1, adapter="no-power"))
    m = build_matrix(df, load_catalog([prices]))
    # capital 35040 $/y = 4 $/h for the box, 1 of 4 GPUs -> 1 $/h; the run's 0.3 kW x 1.5 x 0.2 = 0.09 $/h
    assert one(m.points, adapter="ort-cpu").price_usd_per_hour == pytest.approx(1.09)
    assert one(m.points, adapter="ort-cpu").price_basis == "tco + the run's measured power"
    assert "measured power" in m.unpriced["reason"].iloc[0]


def test_spot_prices_where_known(tmp_path: Path) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[instances."g4dn.xlarge"]\non_demand_usd_per_hour = 0.526\nspot_usd_per_hour = 0.2\n'
                      'as_of = 2026-03-01\nsource = "spot history"\n')
    df = frame(rec(), rec(instance_type="g4dn.xlarge", accelerator="T4", accelerators_used=1, adapter="cuda"))
    m = build_matrix(df, load_catalog([prices]), price_kind="spot")
    assert one(m.points, adapter="cuda").price_usd_per_hour == 0.2
    assert one(m.points, adapter="cuda").price_basis == "spot"
    assert "no spot price for c7i.large" in m.unpriced["reason"].iloc[0]  # never the on-demand price in its place


def test_invalid_and_inaccurate_are_kept_apart() -> None:
    df = frame(rec(), rec(batch_size=4, valid=False, invalid_reasons=["cv 0.31 above 0.10", "too few samples"]),
               rec(batch_size=64, status="error", error="out of memory", valid=False),
               rec(precision="int8", precision_effective="int8", accuracy_ok=False))
    m = build_matrix(df, load_builtin())
    assert len(m.points) == 1
    reasons = dict(zip(m.invalid["batch_size"], m.invalid["reasons"]))
    assert reasons == {4: "cv 0.31 above 0.10; too few samples", 64: "error: out of memory"}
    assert list(m.inaccurate["precision"]) == ["int8"]
    m2 = build_matrix(df, load_builtin(), include_inaccurate=True)
    assert len(m2.points) == 2
    assert any("accuracy" in n for n in m2.notes) and any("differ in precision" in n for n in m2.notes)


def test_scenarios_are_separate_points_and_the_latest_repeat_wins() -> None:
    df = frame(rec(scenario="single-stream", started_at="2026-01-01T00:00:00Z", throughput_sps=50.0),
               rec(scenario="single-stream", started_at="2026-01-02T00:00:00Z", throughput_sps=60.0),
               rec(scenario="offline", concurrency=2))
    pts = build_matrix(df, load_builtin()).points
    assert sorted(pts["scenario"]) == ["offline", "single-stream"]
    assert one(pts, scenario="single-stream").throughput_sps == 60.0


def test_machines_of_one_instance_type_are_one_hardware() -> None:
    df = frame(rec(host="a", run_id="r1", started_at="2026-01-01T00:00:00Z", throughput_sps=90.0),
               rec(host="b", run_id="r2", started_at="2026-01-03T00:00:00Z", throughput_sps=95.0),
               rec(host="c", run_id="r3", instance_type=None, batch_size=8))
    pts = build_matrix(df, load_builtin()).points
    assert sorted(pts["hardware"].astype(str)) == ["c | Xeon 8488C", "c7i.large | Xeon 8488C"]
    assert one(pts, batch_size=1).throughput_sps == 95.0  # the later run of the same point on the same hardware


def test_energy_estimates_are_labelled_and_priced_with_electricity(tmp_path: Path) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[electricity]\nusd_per_kwh = 0.18\nas_of = 2026-01-01\nsource = "bill"\n')
    df = frame(rec(energy_j_per_inference=2.0, power_method="rapl"),
               rec(adapter="b", energy_j_per_inference=4.0, power_method="estimate-tdp"))
    pts = build_matrix(df, load_catalog([prices])).points
    assert not one(pts, adapter="ort-cpu").energy_estimated and one(pts, adapter="b").energy_estimated
    assert one(pts, adapter="ort-cpu").energy_usd_per_1m == pytest.approx(0.1)


def test_merge_refusal_on_hash_and_shapes() -> None:
    df = frame(rec(run_id="r1", host="a"), rec(run_id="r2", host="b", model_sha256="b" * 64))
    with pytest.raises(ResultsError, match="different hashes.*--allow-mixed"):
        build_matrix(df, load_builtin())
    notes = build_matrix(df, load_builtin(), allow_mixed=True).notes
    assert any("allow-mixed" in n for n in notes)
    shapes = frame(rec(run_id="r1"), rec(run_id="r2", input_shapes='{"input": [1, 3, 299, 299]}'))
    with pytest.raises(ResultsError, match="different input shapes"):
        check_merge(shapes)
    same = frame(rec(run_id="r1", host="a"), rec(run_id="r2", host="b", batch_size=8, input_shapes='{"input": [8, 3, 224, 224]}'))
    assert check_merge(same) == []


def test_model_filter_and_empty_input() -> None:
    df = frame(rec(), rec(model="bert", model_sha256="c" * 64))
    assert set(build_matrix(df, load_builtin(), models=["bert"]).points["model"]) == {"bert"}
    with pytest.raises(UsageError, match="no results for model gpt"):
        build_matrix(df, load_builtin(), models=["gpt"])
    with pytest.raises(ResultsError, match="no trial records"):
        build_matrix(df.iloc[0:0], load_builtin())


def test_perf_per_watt_is_items_per_joule() -> None:
    df = frame(rec(energy_j_per_inference=0.25, power_method="rapl", avg_power_w=25.0),
               rec(batch_size=8, energy_j_per_inference=0.5, power_method="estimate-tdp"),
               rec(batch_size=4))
    points = build_matrix(df, load_builtin()).points
    assert one(points, batch_size=1).items_per_j == pytest.approx(4.0)  # 100 items/s at 25 W
    est = one(points, batch_size=8)
    assert est.items_per_j == pytest.approx(2.0) and bool(est.energy_estimated)
    assert pd.isna(one(points, batch_size=4).items_per_j)


def test_given_price_is_used_with_its_basis() -> None:
    df = frame(
        rec(instance_type=None, host="lab1", price_usd_per_hour=0.05, price_note="lab box, 3-year TCO",
            instance_type_source="given", throughput_sps=500.0, started_at="2026-03-04T10:00:00Z"),
        rec(instance_type="c7i.large", price_usd_per_hour=0.2, instance_type_source="given", throughput_sps=100.0,
            batch_size=8),  # a given figure wins over the catalog's
        rec(instance_type="c7i.large", throughput_sps=100.0, batch_size=4),
    )
    m = build_matrix(df, load_builtin())
    lab = one(m.points, host="lab1")
    assert lab["price_usd_per_hour"] == pytest.approx(0.05)
    assert lab["cost_usd_per_1m"] == pytest.approx(0.05 / (500 * 3600) * 1e6)
    assert lab["price_basis"] == "given: lab box, 3-year TCO" and lab["price_as_of"] == "2026-03-04"
    assert one(m.points, batch_size=8)["price_usd_per_hour"] == pytest.approx(0.2)
    assert one(m.points, batch_size=8)["price_basis"] == "given"
    catalog_priced = one(m.points, batch_size=4)
    assert catalog_priced["price_usd_per_hour"] == pytest.approx(0.08925) and catalog_priced["price_basis"] == "on-demand"
    assert m.unpriced.empty
    given_rows = m.prices_used[m.prices_used["origin"] == "record"]
    assert set(given_rows["basis"]) == {"given: lab box, 3-year TCO", "given"}
    assert "(host lab1)" in set(given_rows["instance_type"])


def test_assumed_instance_is_priced_and_said_so_and_unresolved_says_why() -> None:
    assumed = "assumed: c6a.large is the catalog's 2-vCPU type with this host's CPU (AMD Zen 3); not detected"
    why = "not priced: no instance type in the price catalog has this host's CPU (AMD Zen 3) and 3 vCPUs"
    df = frame(rec(instance_type="c6a.large", instance_type_source=assumed, throughput_sps=100.0),
               rec(instance_type=None, host="odd", instance_type_source=why, batch_size=8))
    m = build_matrix(df, load_builtin())
    p = one(m.points, batch_size=1)
    assert p["price_usd_per_hour"] == pytest.approx(0.0765)
    assert p["price_basis"] == f"on-demand; {assumed}"
    assert any("ASSUMED" in n and assumed in n for n in m.notes)
    assert list(m.unpriced["reason"]) == [why]
