"""The catalog's Google Cloud, TPU and spot entries: each dated and sourced, spot below on-demand,
TPUs priced but not profilable, the stated arithmetic and statistics reproducible from the entry's
own source text, and spot used by the planner only for interruptible classes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hwbench.analyse.capacities import CapacityTable
from hwbench.analyse.demand import parse_workload
from hwbench.analyse.fleetplan import plan_workload
from hwbench.analyse.planner import Capacity
from hwbench.catalog.prices import load_builtin, load_catalog
from hwbench.errors import ConfigError

GCP_FILE = "skypilot-catalog catalogs/v7/gcp/vms.csv at commit 017e2502fb63c7a28757acd94002b2d6099d3e3d"
AWS_FILE = "skypilot-catalog catalogs/v7/aws/vms.csv at commit 001367d22a0033fac286a8c71aeac7109e431bcb"
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def catalog():
    return load_builtin()


def gcp(catalog) -> list:
    return [p for p in catalog.prices.values() if p.provider == "gcp"]


def test_every_gcp_entry_is_dated_and_sourced_on_demand_and_spot(catalog) -> None:
    entries = gcp(catalog)
    assert len(entries) >= 10
    for p in entries:
        assert p.region == "us-central1", p.name
        assert ISO_DATE.match(p.as_of) and ISO_DATE.match(p.spot_as_of or ""), p.name
        assert GCP_FILE in p.source and GCP_FILE in (p.spot_source or ""), p.name
        assert p.source.startswith("Google Cloud Compute Engine on-demand") and "SpotPrice" in p.spot_source
        assert p.on_demand_usd_per_hour and p.spot_usd_per_hour, p.name


def test_gcp_covers_amd_arm_intel_cpus_gpus_and_tpus(catalog) -> None:
    entries = gcp(catalog)
    cpus = [p for p in entries if p.accelerator_count == 0]
    assert {p.cpu_vendor for p in cpus} >= {"AMD", "Ampere", "Intel"}
    assert {p.accelerator for p in entries if p.accelerator} >= {"L4", "A100-40GB", "H100", "TPU-v5e", "TPU-v5p", "TPU-v6e"}
    for p in entries:  # an accelerator names its model and count; a non-TPU entry names its CPU
        assert (p.accelerator is None) == (p.accelerator_count == 0), p.name
        if not (p.accelerator or "").startswith("TPU"):
            assert p.cpu_vendor and p.cpu_family and p.vcpus, p.name


def test_spot_is_below_on_demand_wherever_both_exist(catalog) -> None:
    both = [p for p in catalog.prices.values() if p.spot_usd_per_hour is not None and p.on_demand_usd_per_hour is not None]
    assert len(both) >= 15
    for p in both:
        assert p.spot_usd_per_hour < p.on_demand_usd_per_hour, p.name


def test_tpu_entries_are_priced_and_flagged_unprofilable(catalog) -> None:
    tpus = [p for p in catalog.prices.values() if (p.accelerator or "").startswith("TPU")]
    assert {p.name for p in tpus} == {"tpu-v5litepod-8", "tpu-v5p-8", "tpu-v6e-1"}
    for p in tpus:
        assert p.profilable is False and p.accelerator_count >= 1
        assert p.on_demand_usd_per_hour > 0 and p.spot_usd_per_hour > 0
    assert catalog.get("trn1.2xlarge").profilable is False  # no Trainium adapter either
    assert catalog.get("g2-standard-4").profilable and catalog.get("c6a.large").profilable


def test_gpu_prices_are_the_vm_row_plus_the_gpu_row_the_source_names(catalog) -> None:
    rows = re.compile(r"VM row \S+ \(([\d.]+), spot ([\d.]+)\) plus GPU row \S+ x\d+ \(([\d.]+), spot ([\d.]+)\)")
    for name in ("g2-standard-4", "g2-standard-8", "a2-highgpu-8g", "a3-highgpu-1g"):
        p = catalog.get(name)
        vm, vm_spot, gpu, gpu_spot = map(float, rows.search(p.source).groups())
        assert p.on_demand_usd_per_hour == pytest.approx(vm + gpu, abs=1e-9), name
        assert p.spot_usd_per_hour == pytest.approx(vm_spot + gpu_spot, abs=1e-9), name
    assert "check before relying" in catalog.get("a3-highgpu-1g").note


def test_aws_spot_prices_are_the_stated_median_over_the_zones_listed(catalog) -> None:
    spot = {n: p for n, p in catalog.prices.items() if p.provider == "aws" and p.spot_usd_per_hour is not None}
    assert set(spot) >= {"c6a.large", "c6a.xlarge", "g4dn.xlarge", "g5.12xlarge", "g6.xlarge"}
    for name, p in spot.items():
        assert AWS_FILE in p.spot_source and "median over the us-east-1 zones" in p.spot_source, name
        assert ISO_DATE.match(p.spot_as_of or ""), name
        zones = [float(v) for v in re.findall(r"az\d+ ([\d.]+)", p.spot_source)]
        assert len(zones) >= 4, name
        lower_median = sorted(zones)[(len(zones) - 1) // 2]
        assert p.spot_usd_per_hour == lower_median, name
        assert p.source.startswith("AWS EC2 On-Demand pricing")  # the on-demand price keeps its own source


def test_profilable_must_be_a_boolean_and_an_override_keeps_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[instances.x]\non_demand_usd_per_hour = 1\nas_of = 2026-01-01\nsource = "s"\nprofilable = "no"\n')
    with pytest.raises(ConfigError, match=r"instances\.x\.profilable must be true or false"):
        load_catalog([bad])
    override = tmp_path / "mine.toml"
    override.write_text('[instances."tpu-v6e-1"]\non_demand_usd_per_hour = 2.0\nas_of = 2026-11-30\nsource = "our rate"\n')
    p = load_catalog([override]).get("tpu-v6e-1")
    assert (p.on_demand_usd_per_hour, p.profilable, p.accelerator) == (2.0, False, "TPU-v6e")


def test_the_planner_puts_a_catalog_spot_price_only_under_interruptible_classes(catalog) -> None:
    w = parse_workload({"classes": {"live": {"model": "m", "rate_rps": 100, "slo_p99_ms": 100},
                                    "batch": {"model": "m", "rate_rps": 100, "slo_p99_ms": 1000, "interruptible": True}},
                        "pool": {"instance_types": ["g6.xlarge"], "pricing": ["on-demand", "spot"]}})
    caps = [Capacity(c, "g6.xlarge", 150.0, "given: test") for c in ("live", "batch")]
    report = plan_workload(w, CapacityTable(capacities=caps), catalog)
    hour = report.plan.hours[0]
    assert hour.counts == {"g6.xlarge/on-demand": 1, "g6.xlarge/spot": 1}
    assert hour.routing["live"] == {"g6.xlarge/on-demand": pytest.approx(1.0)}
    assert set(hour.routing["batch"]) <= {"g6.xlarge/spot", "g6.xlarge/on-demand"}
    spot = next(o for o in report.plan.options if o.key == "g6.xlarge/spot")
    g6 = catalog.get("g6.xlarge")
    assert (spot.usd_per_hour, spot.as_of, spot.source) == (g6.spot_usd_per_hour, g6.spot_as_of, g6.spot_source)
    on_demand = next(o for o in report.plan.options if o.key == "g6.xlarge/on-demand")
    assert (on_demand.as_of, on_demand.source) == (g6.as_of, g6.source)
