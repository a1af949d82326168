"""The workload file, capacities from records / frontier / tables with their sources, and the plan export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hwbench.errors import ConfigError, ResultsError, UsageError
from hwbench.analyse import capacities as capmod
from hwbench.analyse import capacity as queueing_model
from hwbench.analyse.demand import load_workload, parse_workload
from hwbench.analyse.fleetplan import plan_workload, price_options
from hwbench.analyse.planexport import export_plan, load_plan, plan_document
from hwbench.catalog.prices import load_catalog
from hwbench.results import store
from hwbench.results.schema import TrialRecord
from hwbench.results.store import RunWriter

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "workload.toml"


def doc(**pool: Any) -> dict[str, Any]:
    return {"classes": {"live": {"model": "resnet50", "rate_rps": 30, "slo_p99_ms": 150}},
            "pool": {"instance_types": ["c6a.large", "c7i.large"], **pool}}


def test_example_workload_loads() -> None:
    w = load_workload(EXAMPLE)
    assert {c.model for c in w.classes} == {"resnet50"}
    assert w.hours == 24 and w.rates(8)["tagging"] == 30 and w.rates(3)["interactive"] == 30


@pytest.mark.parametrize("change, message", [
    (lambda d: d["classes"]["live"].update(rate_rps=-1), r"classes\.live\.rate_rps: .*above 0"),
    (lambda d: d["classes"]["live"].update(hourly_rps=[1] * 24), r"classes\.live: .*exactly one of rate_rps"),
    (lambda d: d["classes"]["live"].update(hourly_rps=[1] * 3, rate_rps=None), r"classes\.live\.hourly_rps: must be a list of 24"),
    (lambda d: d["classes"]["live"].pop("slo_p99_ms") and d["classes"]["live"].update(slo_ttft_ms=200),
     r"needs slo_p99_ms.*for a served LLM: the end-to-end p99 bound"),
    (lambda d: d["classes"]["live"].update(colour="red"), r"classes\.live\.colour: unknown key"),
    (lambda d: d["pool"].update(pricing=["cheap"]), r"pool\.pricing\.0"),
    (lambda d: d["pool"].update(max_count={"g5.xlarge": 2}), r"max_count names g5\.xlarge"),
    (lambda d: d["pool"].update(objective="cost+energy"), r"needs usd_per_kwh"),
    (lambda d: d["pool"].update(headroom=1.5), r"pool\.headroom"),
])
def test_bad_workloads_are_refused_in_one_line_naming_file_and_key(change: Any, message: str) -> None:
    d = doc()
    change(d)
    d["classes"]["live"] = {k: v for k, v in d["classes"]["live"].items() if v is not None}
    with pytest.raises(ConfigError, match=message) as e:
        parse_workload(d, "w.toml")
    assert str(e.value).startswith("w.toml: ") and "\n" not in str(e.value)


def test_missing_or_broken_workload_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_workload(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("classes = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_workload(tmp_path / "bad.toml")


def record(run: str, n: int, instance: str, p50_ms: float, **kw: Any) -> TrialRecord:
    base: dict[str, Any] = dict(run_id=run, trial_id=f"{run}-{n}", model="resnet50", model_sha256="9" * 64, adapter="ort-cpu",
                                device="cpu", precision="fp32", batch_size=1, valid=True, latency_p50_ms=p50_ms,
                                latency_p99_ms=p50_ms * 1.2, throughput_sps=1000 / p50_ms, instance_type=instance, host="h",
                                started_at="2026-01-01T00:00:00Z")
    base.update(kw)
    return TrialRecord(**base)


def write_results(root: Path) -> Path:
    """Two instance types measured (as the store writes them), with seeded service-time samples."""
    rng = np.random.default_rng(1)
    for run, inst, p50 in (("a", "c6a.large", 30.0), ("b", "c7i.large", 20.0)):
        w = RunWriter(root / run)
        w.write_manifest({"run_id": run})
        recs = [record(run, 0, inst, p50), record(run, 1, inst, p50 * 5, batch_size=8),
                record(run, 2, inst, p50 / 2, adapter="openvino", valid=False, invalid_reasons=["unstable"])]
        for r in recs:
            w.write_trial(r, (rng.uniform(0.9, 1.1, 400) * r.latency_p50_ms * 1e6).astype(np.int64))
        w.compact()
    return root


def fake_modelled(service_s: np.ndarray, slo_p99_ms: float, *, servers: int = 1, max_utilisation: float = 0.9,
                  seed: int = 0) -> tuple[float, str]:
    """Stands in for the queueing model (its own work item): utilisation x service rate when the p99 fits."""
    if np.percentile(service_s, 99) * 1e3 > slo_p99_ms:
        return 0.0, "p99 service time above the SLO"
    return max_utilisation * servers / float(np.mean(service_s)), f"fake M/G/{servers} at {max_utilisation:.0%}"


def test_capacities_from_records_are_modelled_from_raw_latencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing_model, "modelled_capacity_rps", fake_modelled)
    root = write_results(tmp_path / "results")
    w = parse_workload(doc())
    table = capmod.from_records(w, store.load_records([root]), store.load_latencies([root]))
    caps = {c.instance_type: c for c in table.capacities}
    assert set(caps) == {"c6a.large", "c7i.large"}
    assert caps["c7i.large"].capacity_rps == pytest.approx(0.9 / 0.020, rel=0.02)  # batch 1 only; invalid openvino left out
    assert caps["c7i.large"].source.startswith("modelled: fake M/G/1")
    assert caps["c6a.large"].service_s is not None and len(caps["c6a.large"].service_s) == 400
    report = plan_workload(w, table, load_catalog())
    assert report.plan.usd_per_hour > 0 and report.homogeneous.usd_per_hour is not None
    assert report.homogeneous.usd_per_hour >= report.plan.usd_per_hour - 1e-9


def test_capacities_from_records_with_the_real_queueing_model(tmp_path: Path) -> None:
    root = write_results(tmp_path / "results")
    table = capmod.from_records(parse_workload(doc()), store.load_records([root]), store.load_latencies([root]))
    caps = {c.instance_type: c for c in table.capacities}
    assert caps and all(c.source.startswith("modelled: ") for c in caps.values())
    for c in caps.values():  # below the utilisation cap of the service rate, and above nothing
        assert 0 < c.capacity_rps <= 0.9 * c.servers / float(np.mean(c.service_s)) + 1e-9


def test_server_records_give_measured_capacities_at_an_slo_no_looser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing_model, "modelled_capacity_rps", fake_modelled)
    root = write_results(tmp_path / "results")
    records = store.load_records([root])
    server = records.iloc[[0, 0]].assign(scenario="server", trial_id=["s1", "s2"], slo_p99_ms=[100.0, 500.0],
                                         capacity_at_slo_rps=[21.0, 99.0])
    records = pd.concat([records.assign(slo_p99_ms=np.nan, capacity_at_slo_rps=np.nan), server], ignore_index=True)
    table = capmod.from_records(parse_workload(doc()), records, store.load_latencies([root]))
    c = {c.instance_type: c for c in table.capacities}[records.iloc[0]["instance_type"]]
    assert (c.source, c.capacity_rps) == ("measured", 21.0)  # the 500 ms measurement is looser than the 150 ms SLO
    assert c.service_s is not None  # the simulation still has service times for it


def test_given_table_needs_a_source_and_prices_unknown_hardware(tmp_path: Path) -> None:
    w = parse_workload(doc() | {"pool": {"instance_types": ["c6a.large", "lab-box"]}})
    (tmp_path / "caps.csv").write_text("class,instance_type,capacity_rps,source,as_of,usd_per_hour\n"
                                       "live,c6a.large,25,our vLLM bench,2026-11-01,\n"
                                       "live,lab-box,400,perf_analyzer run 17,2026-11-02,2.5\n")
    table = capmod.from_table(w, tmp_path / "caps.csv")
    srcs = {c.instance_type: c.source for c in table.capacities}
    assert srcs == {"c6a.large": "given: our vLLM bench (as of 2026-11-01)", "lab-box": "given: perf_analyzer run 17 (as of 2026-11-02)"}
    options, notes = price_options(w, load_catalog(), table.given_prices)
    assert {o.key: o.usd_per_hour for o in options}["lab-box/on-demand"] == 2.5
    (tmp_path / "bad.csv").write_text("class,instance_type,capacity_rps,source\nlive,c6a.large,25,\nghost,c6a.large,1,x\n")
    with pytest.raises(ConfigError, match=r"row 1: needs source.*row 2: class 'ghost' is not in the workload"):
        capmod.from_table(w, tmp_path / "bad.csv")
    (tmp_path / "caps.toml").write_text('[[capacity]]\nclass = "live"\ninstance_type = "c6a.large"\ncapacity_rps = 25\nsource = "x"\n')
    assert capmod.from_table(w, tmp_path / "caps.toml").capacities[0].capacity_rps == 25


def test_frontier_points_give_throughput_where_the_unloaded_p99_fits() -> None:
    w = parse_workload(doc())
    pts = pd.DataFrame([dict(model="resnet50", instance_type="c6a.large", batch_size=1, latency_p99_ms=40.0, throughput_sps=30.0,
                             adapter="ort-cpu", precision="fp32", scenario="single-stream", concurrency=1),
                        dict(model="resnet50", instance_type="c7i.large", batch_size=1, latency_p99_ms=400.0, throughput_sps=90.0,
                             adapter="ort-cpu", precision="fp32", scenario="single-stream", concurrency=1)])
    table = capmod.from_frontier(w, pts)
    assert [(c.instance_type, c.capacity_rps) for c in table.capacities] == [("c6a.large", 30.0)]
    assert "no queueing" in table.capacities[0].source


def test_export_round_trip_and_refusals(tmp_path: Path) -> None:
    w = parse_workload(doc())
    table = capmod.CapacityTable([capmod.Capacity("live", "c6a.large", 12.0, "given: t"), capmod.Capacity("live", "c7i.large", 20.0, "given: t")])
    report = plan_workload(w, table, load_catalog())
    d = plan_document(w, report)
    export_plan(d, tmp_path / "plan.json")
    loaded = load_plan(tmp_path / "plan.json")
    assert loaded.schema_version == 1 and loaded.routing(5) == loaded.routing(0) == report.plan.hours[0].routing
    assert sum(loaded.routing()["live"].values()) == pytest.approx(1.0)
    assert loaded.counts() == report.plan.hours[0].counts
    bad = tmp_path / "foreign.json"
    bad.write_text(json.dumps({"kind": "other"}))
    with pytest.raises(ResultsError, match="not an hwbench plan"):
        load_plan(bad)
    bad.write_text(json.dumps(d | {"schema_version": 99}))
    with pytest.raises(ResultsError, match="upgrade"):
        load_plan(bad)


def test_pricing_kinds_come_from_the_catalog_or_are_noted_never_guessed(tmp_path: Path) -> None:
    (tmp_path / "own.toml").write_text('[instances.lab-box]\nprovider = "on-prem"\naccelerator_count = 0\ncapital_usd = 8760\n'
                                       'lifetime_years = 1\npower_w = 1000\nusd_per_kwh = 0.1\npue = 1.0\nas_of = 2026-11-01\n'
                                       'source = "test PO"\n')
    w = parse_workload(doc(instance_types=["lab-box", "c6a.large"], pricing=["on-demand", "owned", "reserved"]))
    catalog = load_catalog([tmp_path / "own.toml"])
    options, notes = price_options(w, catalog, {})
    by_key = {o.key: o for o in options}
    assert by_key["lab-box/owned"].usd_per_hour == pytest.approx(8760 / 8760 + 1.0 * 0.1)  # capital per hour + kW x $/kWh
    assert by_key["c6a.large/on-demand"].usd_per_hour == catalog.get("c6a.large").on_demand_usd_per_hour
    assert "lab-box/on-demand" not in by_key and "lab-box: no on-demand price in the catalog" in notes
    if getattr(catalog.get("c6a.large"), "reserved_usd_per_hour", None) is None:
        assert "c6a.large: no reserved price in the catalog" in notes
