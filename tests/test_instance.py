"""Pricing the host honestly: CPU identity, DMI detection, the --instance auto assumption, mismatch warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbench.host.cpu import CPU_FAMILIES, identify_cpu
from hwbench.host.instance import (AUTO, DETECTED_DMI, GIVEN, Dmi, assume_instance_type, detect_instance_type, read_dmi,
                              resolve_instance)
from hwbench.power import estimate
from hwbench.catalog.prices import load_builtin, load_catalog

# the first /proc/cpuinfo block of the two kinds of machine this project runs on, and a Graviton3
ZEN3 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "1", "model name": "AMD EPYC"}
SPR = {"vendor_id": "GenuineIntel", "cpu family": "6", "model": "143", "model name": "Intel(R) Xeon(R) Processor"}
GRAVITON3 = {"CPU implementer": "0x41", "CPU architecture": "8", "CPU part": "0xd40"}


def fake_dmi(root: Path, product: str | None, vendor: str | None) -> Path:
    d = root / "sys/class/dmi/id"
    d.mkdir(parents=True)
    if product is not None:
        (d / "product_name").write_text(product + "\n")
    if vendor is not None:
        (d / "sys_vendor").write_text(vendor + "\n")
    return root


@pytest.mark.parametrize("info, dmi_vendor, expected", [
    (ZEN3, None, ("AMD", "Zen 3")),
    (SPR, None, ("Intel", "Sapphire Rapids")),
    ({**SPR, "model": "106"}, None, ("Intel", "Ice Lake")),
    ({**ZEN3, "model": "17"}, None, ("AMD", "Zen 4")),
    (GRAVITON3, "Amazon EC2", ("AWS", "Graviton3")),
    (GRAVITON3, None, ("Arm", "Neoverse V1")),  # the same core elsewhere is not called a Graviton
    ({**ZEN3, "model": "33"}, None, (None, None)),  # family 19h model 21h (desktop): not in the table
    ({"vendor_id": "GenuineIntel", "cpu family": "6", "model": "x"}, None, (None, None)),
    ({}, None, (None, None)),
])
def test_cpu_family_table(info: dict[str, str], dmi_vendor: str | None, expected: tuple[str | None, str | None]) -> None:
    cpu = identify_cpu(info, dmi_vendor)
    assert (cpu.vendor, cpu.family) == expected
    assert cpu.known == (expected[0] is not None)
    if cpu.known:
        assert cpu.source  # every identification names where its numbers come from
    else:
        assert cpu.label.startswith("unknown CPU")


def test_cpu_family_table_rows_are_distinct_and_sourced() -> None:
    keys = [(r.vendor_id, r.family, m) for r in CPU_FAMILIES for m in r.models]
    assert len(keys) == len(set(keys))
    assert all(r.source for r in CPU_FAMILIES)


def test_dmi_detection_with_a_fake_tree(tmp_path: Path) -> None:
    ec2 = read_dmi(fake_dmi(tmp_path / "ec2", "c7i.large", "Amazon EC2"))
    assert ec2 == Dmi("c7i.large", "Amazon EC2") and detect_instance_type(ec2) == "c7i.large"
    xen = read_dmi(fake_dmi(tmp_path / "xen", "HVM domU", "Xen"))
    assert detect_instance_type(xen) is None  # a Xen-era instance does not say its type
    other = read_dmi(fake_dmi(tmp_path / "kvm", "Standard PC (Q35 + ICH9, 2009)", "QEMU"))
    assert detect_instance_type(other) is None
    assert read_dmi(tmp_path / "nothing") == Dmi(None, None)  # no DMI at all (containers, this VM)


def test_detected_instance_is_used_without_instance_flag(tmp_path: Path) -> None:
    dmi = read_dmi(fake_dmi(tmp_path, "c7i.large", "Amazon EC2"))
    res = resolve_instance(None, load_builtin(), identify_cpu(SPR), 2, dmi)
    assert (res.instance_type, res.source) == ("c7i.large", DETECTED_DMI)
    assert res.warnings == ()
    auto = resolve_instance(AUTO, load_builtin(), identify_cpu(SPR), 2, dmi)
    assert (auto.instance_type, auto.source) == ("c7i.large", DETECTED_DMI)


def test_auto_assumes_the_catalog_type_with_this_cpu() -> None:
    res = resolve_instance(AUTO, load_builtin(), identify_cpu(ZEN3), 2, Dmi())
    assert res.instance_type == "c6a.large"
    assert res.source == ("assumed: c6a.large is the catalog's 2-vCPU type with this host's CPU (AMD Zen 3); "
                          "not detected")
    assert any(res.source in n for n in res.notes)
    spr = resolve_instance(AUTO, load_builtin(), identify_cpu(SPR), 2, Dmi())
    assert spr.instance_type == "c7i.large" and spr.source.startswith("assumed: c7i.large")
    four = resolve_instance(AUTO, load_builtin(), identify_cpu(ZEN3), 4, Dmi())
    assert four.instance_type == "c6a.xlarge"


def test_auto_says_so_when_nothing_matches() -> None:
    catalog = load_builtin()
    name, why = assume_instance_type(catalog, identify_cpu(ZEN3), 3)  # no 3-vCPU Zen 3 type
    assert name is None and why.startswith("not priced:") and "AMD Zen 3" in why and "3 vCPUs" in why
    name, why = assume_instance_type(catalog, identify_cpu({**ZEN3, "model": "33"}), 2)
    assert name is None and "not identified" in why
    res = resolve_instance(AUTO, catalog, identify_cpu({}), 2, Dmi())
    assert res.instance_type is None and res.source.startswith("not priced:")


def test_auto_with_several_matches_takes_the_cheapest_and_names_the_others(tmp_path: Path) -> None:
    extra = tmp_path / "p.toml"
    extra.write_text('[instances."m6a.large"]\nprovider = "aws"\naccelerator_count = 0\nvcpus = 2\n'
                     'cpu_vendor = "AMD"\ncpu_family = "Zen 3"\non_demand_usd_per_hour = 0.0864\n'
                     'as_of = 2026-01-19\nsource = "test"\n')
    name, why = assume_instance_type(load_catalog([extra]), identify_cpu(ZEN3), 2)
    assert name == "c6a.large" and "cheapest of c6a.large, m6a.large" in why


def test_given_instance_with_another_cpu_is_warned_not_refused() -> None:
    res = resolve_instance("c7i.large", load_builtin(), identify_cpu(ZEN3), 2, Dmi())
    assert (res.instance_type, res.source) == ("c7i.large", GIVEN)
    assert res.warnings == ("c7i.large is an Intel Sapphire Rapids type; this host is AMD Zen 3: "
                            "prices will not describe this machine",)
    assert any(res.warnings[0] in n for n in res.notes)
    same = resolve_instance("c6a.large", load_builtin(), identify_cpu(ZEN3), 2, Dmi())
    assert same.warnings == ()
    unknown = resolve_instance("my-box", load_builtin(), identify_cpu(ZEN3), 2, Dmi())
    assert unknown.warnings == ()  # nothing known to compare with


def test_given_instance_that_dmi_contradicts_is_warned(tmp_path: Path) -> None:
    dmi = read_dmi(fake_dmi(tmp_path, "c6a.large", "Amazon EC2"))
    res = resolve_instance("c7i.large", load_builtin(), identify_cpu(ZEN3), 2, dmi)
    assert res.instance_type == "c7i.large" and len(res.warnings) == 1 and "DMI says this host is c6a.large" in res.warnings[0]


def test_given_price_is_carried() -> None:
    res = resolve_instance(None, load_builtin(), identify_cpu(ZEN3), 2, Dmi(), usd_per_hour=0.05, price_note="lab box, 3-year TCO")
    assert (res.instance_type, res.source, res.usd_per_hour, res.price_note) == (None, GIVEN, 0.05, "lab box, 3-year TCO")


def test_tdp_basis_follows_the_cpu_family() -> None:
    zen3 = estimate.tdp_basis(None, cpu_name="AMD EPYC", logical_cpus=2, cpu_family=("AMD", "Zen 3"))
    assert not isinstance(zen3, str)
    assert zen3.tdp_w * zen3.share == pytest.approx(280.0 * 2 / 128)  # EPYC 7763: 280 W, 128 threads
    assert "AMD EPYC 7763" in zen3.source and "family reference" in zen3.source
    spr = estimate.tdp_basis(None, cpu_name="Intel(R) Xeon(R) Processor", logical_cpus=2,
                             cpu_family=("Intel", "Sapphire Rapids"))
    assert not isinstance(spr, str) and spr.tdp_w * spr.share == pytest.approx(6.25)  # 350 W x 2/112
    assert isinstance(estimate.tdp_basis(None, cpu_name="AMD EPYC", cpu_family=("AWS", "Graviton3")), str)
    assert isinstance(estimate.tdp_basis(None, cpu_name="AMD EPYC", cpu_family=None), str)


def test_every_record_carries_the_resolution() -> None:
    from dataclasses import asdict

    from hwbench.measure.settings import SweepConfig
    from hwbench.measure.trial import Trial, TrialContext, base_record

    res = resolve_instance("c7i.large", load_builtin(), identify_cpu(ZEN3), 2, Dmi())
    ctx = TrialContext(run_id="r", config=SweepConfig(instance_type="c7i.large"), cpu_model="AMD EPYC", hostname="h",
                       cache_dir="/tmp", instance=asdict(res))
    rec = base_record(Trial("m", "null", "fp32", 1), None, ctx)
    assert (rec.instance_type, rec.instance_type_source) == ("c7i.large", GIVEN)
    assert rec.warnings == list(res.warnings) and "this host is AMD Zen 3" in rec.warnings[0]
    bare = base_record(Trial("m", "null", "fp32", 1), None, TrialContext(
        run_id="r", config=SweepConfig(instance_type=AUTO), cpu_model="x", hostname="h", cache_dir="/tmp"))
    assert bare.instance_type is None  # "auto" itself is never recorded as a type
