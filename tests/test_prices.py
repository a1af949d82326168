"""The price catalog: built-in facts, user files, TCO and k-of-n arithmetic, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbench.errors import ConfigError
from hwbench.catalog.prices import accelerator_share, load_builtin, load_catalog, tco_usd_per_hour

# the AWS on-demand facts the catalog must carry (us-east-1, snapshot 2025-11-30)
ISSUE_PRICES = {
    "g4dn.xlarge": ("T4", 1, 0.526), "g6.xlarge": ("L4", 1, 0.8048), "g5.xlarge": ("A10G", 1, 1.006),
    "g6e.xlarge": ("L40S", 1, 1.861), "p4d.24xlarge": ("A100-40GB", 8, 21.958),
    "p4de.24xlarge": ("A100-80GB", 8, 27.447), "p5.48xlarge": ("H100", 8, 55.04),
    "p5en.48xlarge": ("H200", 8, 63.296), "inf2.xlarge": ("Inferentia2", 1, 0.7582),
    "inf2.48xlarge": ("Inferentia2", 12, 12.98),
}


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_catalog_has_the_issue_prices_dated_and_sourced() -> None:
    catalog = load_builtin()
    for name, (accelerator, count, usd) in ISSUE_PRICES.items():
        p = catalog.get(name)
        assert p is not None, name
        assert (p.accelerator, p.accelerator_count, p.on_demand_usd_per_hour) == (accelerator, count, usd)
        assert (p.provider, p.region, p.as_of) == ("aws", "us-east-1", "2025-11-30")
    for p in catalog.prices.values():  # every entry, CPU ones included, is dated, sourced and names its CPU
        tpu = (p.accelerator or "").startswith("TPU")  # the source gives no TPU host CPU
        assert p.as_of and (tpu or (p.cpu_vendor and p.cpu_family)), p.name
        assert p.source.startswith({"aws": "AWS EC2 On-Demand pricing", "azure": "Azure Retail Prices API",
                                    "gcp": "Google Cloud Compute Engine on-demand"}[p.provider])
        assert p.tco is None and p.on_demand_usd_per_hour is not None  # list prices only; TCO is a user file's
    assert catalog.get("c7i.large").accelerator_count == 0


def test_builtin_catalog_spans_two_clouds_amd_arm_gpus_and_accelerators() -> None:
    catalog = load_builtin()
    prices = list(catalog.prices.values())
    assert {p.provider for p in prices} == {"aws", "azure", "gcp"}
    cpu_only = [p for p in prices if p.accelerator_count == 0]
    assert {p.cpu_vendor for p in cpu_only} >= {"AMD", "AWS", "Intel", "Microsoft", "Ampere"}
    assert {p.cpu_family for p in cpu_only if p.cpu_vendor == "AWS"} == {"Graviton3", "Graviton4"}
    assert {p.accelerator for p in prices} >= {"T4", "L4", "A10G", "H100", "Inferentia2", "Trainium", "A100-80GB"}
    for p in prices:  # an accelerator instance says which and how many
        assert (p.accelerator is None) == (p.accelerator_count == 0), p.name
    # facts as the cited snapshots give them
    assert catalog.get("c8g.large").on_demand_usd_per_hour == 0.07976 and catalog.get("c8g.large").as_of == "2026-01-19"
    az = catalog.get("Standard_NC24ads_A100_v4")
    assert (az.provider, az.region, az.as_of, az.on_demand_usd_per_hour, az.accelerator_count) == \
        ("azure", "eastus", "2026-06-18", 3.673, 1)
    assert "karpenter-provider-azure" in az.source


def test_the_owned_tco_example_cites_or_flags_every_input() -> None:
    from hwbench.catalog.prices import OWNED

    example = Path(__file__).parent.parent / "hwbench" / "catalog" / "examples" / "owned_tco.toml"
    catalog = load_catalog([example])
    box = catalog.get("example-owned-4xL4")
    # 40000 / (4 x 8760) + 0.688 kW x 1.58 x 0.1102 $/kWh
    assert box.usd_per_hour(OWNED) == pytest.approx(40000 / 35040 + 0.688 * 1.58 * 0.1102)
    assert box.kinds == (OWNED,) and "EXAMPLE" in box.source
    text = example.read_text(encoding="utf-8")
    for line in ("capital_usd = 40000    EXAMPLE ASSUMPTION", "lifetime_years = 4     EXAMPLE ASSUMPTION",
                 "eia.gov", "uptimeinstitute.com"):
        assert line in text
    assert catalog.electricity.usd_per_kwh == 0.1102


def test_tco_matches_hand_computation() -> None:
    # 90,000 $ over 4 years, 2.4 kW at PUE 1.4 and 0.12 $/kWh:
    # 90000 / 35040 = 2.568493... ; 2.4 * 1.4 * 0.12 = 0.4032 ; total 2.971693...
    assert tco_usd_per_hour(90_000, 4, 2400, 0.12, 1.4) == pytest.approx(2.5684931506849313 + 0.4032)


def test_accelerator_share() -> None:
    assert accelerator_share(1, 8) == 0.125
    assert accelerator_share(3, 12) == 0.25
    assert accelerator_share(None, 8) == 1.0  # not recorded: charge the whole instance, never less
    assert accelerator_share(None, 0) == 1.0
    with pytest.raises(ValueError):
        accelerator_share(9, 8)


def test_user_file_adds_on_prem_and_overrides_a_price(tmp_path: Path) -> None:
    path = write(tmp_path, """
[electricity]
usd_per_kwh = 0.12
as_of = 2026-01-15
source = "utility bill"

[instances.lab-a100]
accelerator = "A100-80GB"
accelerator_count = 4
capital_usd = 90000
lifetime_years = 4
power_w = 2400
usd_per_kwh = 0.12
pue = 1.4
as_of = 2026-01-15
source = "purchase order 4411"

[instances."g4dn.xlarge"]
on_demand_usd_per_hour = 0.40
spot_usd_per_hour = 0.2
as_of = "2026-02-01"
source = "negotiated rate"
""")
    catalog = load_catalog([path])
    lab = catalog.get("lab-a100")
    assert lab.provider == "on-prem" and lab.basis == "tco" and lab.origin == str(path)
    assert lab.usd_per_hour() == pytest.approx(90000 / 35040 + 0.4032)
    g4 = catalog.get("g4dn.xlarge")
    assert (g4.on_demand_usd_per_hour, g4.spot_usd_per_hour, g4.as_of, g4.source) == (0.40, 0.2, "2026-02-01", "negotiated rate")
    assert (g4.accelerator, g4.accelerator_count, g4.region) == ("T4", 1, "us-east-1")  # inherited
    assert catalog.electricity.usd_per_kwh == 0.12
    assert catalog.get("p5.48xlarge").on_demand_usd_per_hour == 55.04  # untouched
    assert catalog.files == (str(path),)


def test_measured_power_tco(tmp_path: Path) -> None:
    path = write(tmp_path, """
[instances.box]
capital_usd = 8760
lifetime_years = 1
power_w = "measured"
usd_per_kwh = 0.5
pue = 2.0
as_of = 2026-01-01
source = "invoice"
""")
    tco = load_catalog([path]).get("box").tco
    assert tco.power_w is None
    assert tco.usd_per_hour() is None  # needs a measurement
    assert tco.usd_per_hour(measured_power_w=100) == pytest.approx(1.0 + 0.1 * 2.0 * 0.5)


@pytest.mark.parametrize("body, message", [
    ('[instances.x]\non_demand_usd_per_hour = -1.0\nas_of = 2026-01-01\nsource = "s"\n', "negative"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\ncolour = "red"\nas_of = 2026-01-01\nsource = "s"\n', "unknown field 'colour'"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nsource = "s"\n', "needs as_of"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nas_of = 2026-01-01\n', "needs a source"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nas_of = "last week"\nsource = "s"\n', "must be a date"),
    ('[instances.x]\ncapital_usd = 100\nas_of = 2026-01-01\nsource = "s"\n', "also needs lifetime_years"),
    ('[instances.x]\ncapital_usd = 1\nlifetime_years = 1\npower_w = 1\nusd_per_kwh = 1\npue = 0.5\n'
     'as_of = 2026-01-01\nsource = "s"\n', "pue is too small"),
    ('[instances.x]\naccelerator_count = 2\non_demand_usd_per_hour = 1.0\nas_of = 2026-01-01\nsource = "s"\n', "no accelerator is named"),
    ('colour = 1\n', "unknown top-level key 'colour'"),
    ('schema_version = 9\n', "schema_version 9"),
    ('[instances.x\n', "not valid TOML"),
    ('[instances."g4dn.xlarge"]\nvcpus = 8\n', "needs on_demand_usd_per_hour"),
])
def test_bad_price_files_are_refused_in_one_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog([write(tmp_path, body)])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, '[instances.a]\non_demand_usd_per_hour = -2\ncolour = 1\nas_of = 2026-01-01\nsource = "s"\n'
                           '[instances.b]\nspot_usd_per_hour = 0\n')
    with pytest.raises(ConfigError, match="problems") as info:
        load_catalog([path])
    text = str(info.value)
    assert "instances.a.on_demand_usd_per_hour is negative" in text and "instances.a: unknown field 'colour'" in text
    assert "instances.b.spot_usd_per_hour" in text and "instances.b: needs as_of" in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog([tmp_path / "nope.toml"])


def test_cpu_instances_name_their_cpu_and_the_fields_go_together(tmp_path: Path) -> None:
    catalog = load_builtin()
    assert (catalog.get("c7i.large").cpu_vendor, catalog.get("c7i.large").cpu_family) == ("Intel", "Sapphire Rapids")
    c6a = catalog.get("c6a.large")
    assert (c6a.cpu_vendor, c6a.cpu_family, c6a.vcpus, c6a.on_demand_usd_per_hour) == ("AMD", "Zen 3", 2, 0.0765)
    assert c6a.as_of == "2026-01-19" and "karpenter" in c6a.source
    for p in catalog.prices.values():
        assert (p.cpu_vendor is None) == (p.cpu_family is None), p.name
    half = write(tmp_path, '[instances."x.large"]\nvcpus = 2\ncpu_vendor = "AMD"\non_demand_usd_per_hour = 0.1\n'
                           'as_of = 2026-01-01\nsource = "quote"\n')
    with pytest.raises(ConfigError, match="cpu_vendor and cpu_family go together"):
        load_catalog([half])
    bad = write(tmp_path, '[instances."x.large"]\ncpu_vendor = 3\ncpu_family = "Zen 3"\non_demand_usd_per_hour = 0.1\n'
                          'as_of = 2026-01-01\nsource = "quote"\n', "bad.toml")
    with pytest.raises(ConfigError, match="cpu_vendor must be a non-empty string"):
        load_catalog([bad])
    # an override keeps the CPU it does not restate
    override = write(tmp_path, '[instances."c6a.large"]\non_demand_usd_per_hour = 0.05\nas_of = 2026-02-01\n'
                               'source = "negotiated"\n', "o.toml")
    assert load_catalog([override]).get("c6a.large").cpu_family == "Zen 3"


@pytest.mark.parametrize("body, message", [
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nspot_usd_per_hour = 1.5\nas_of = 2026-01-01\nsource = "s"\n',
     "instances.x: spot_usd_per_hour (1.5) is above on_demand_usd_per_hour (1): spot is a discount"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nas_of = {future}\nsource = "s"\n',
     "instances.x: as_of {future} is in the future"),
    ('[electricity]\nusd_per_kwh = 0.1\nas_of = {future}\nsource = "s"\n', "electricity: as_of {future} is in the future"),
    ('[instances.x]\naccelerator = "T4"\naccelerator_count = 0\non_demand_usd_per_hour = 1.0\nas_of = 2026-01-01\n'
     'source = "s"\n', "instances.x: accelerator is 'T4' but accelerator_count is 0"),
    ('[instances.x]\non_demand_usd_per_hour = inf\nas_of = 2026-01-01\nsource = "s"\n',
     "instances.x.on_demand_usd_per_hour must be a number, got inf"),
    ('[electricity]\nusd_per_kwh = nan\nas_of = 2026-01-01\nsource = "s"\n', "electricity.usd_per_kwh must be a number, got nan"),
    ('[electricity]\nusd_per_kwh = 0.1\ncolour = 1\n', "electricity: unknown field 'colour'"),
    ('[electricity]\nusd_per_kwh = 0.1\nas_of = 2026-01-01\n', "electricity: needs source"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nreserved_usd_per_hour = 1.2\nreserved_term = "1yr"\n'
     'as_of = 2026-01-01\nsource = "s"\n',
     "instances.x: reserved_usd_per_hour (1.2) is above on_demand_usd_per_hour (1): a reservation is a discount"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nreserved_usd_per_hour = 0.6\nas_of = 2026-01-01\nsource = "s"\n',
     "instances.x: reserved_usd_per_hour and reserved_term go together"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nspot_usd_per_hour = 0.3\nspot_as_of = {future}\n'
     'spot_source = "spot advisor"\nas_of = 2026-01-01\nsource = "s"\n', "instances.x: spot_as_of {future} is in the future"),
    ('[instances.x]\non_demand_usd_per_hour = 1.0\nspot_source = "advisor"\nas_of = 2026-01-01\nsource = "s"\n',
     "instances.x: spot_as_of and spot_source date a spot price: give spot_usd_per_hour"),
    ('[instances.x]\ncapital_usd = 1\nlifetime_years = 1\npower_w = 1\nusd_per_kwh = 1\npue = 1\n'
     'reserved_usd_per_hour = 0.5\nreserved_term = "1yr"\nas_of = 2026-01-01\nsource = "s"\n',
     "instances.x: give either an hourly price or a TCO basis, not both"),
])
def test_contradictions_are_refused(tmp_path: Path, body: str, message: str) -> None:
    import datetime as dt

    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    path = write(tmp_path, body.replace("{future}", future))
    with pytest.raises(ConfigError) as info:
        load_catalog([path])
    assert message.replace("{future}", future) in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}: ")  # names the file, and the entry in the message


def test_spot_at_or_below_on_demand_and_todays_date_are_accepted(tmp_path: Path) -> None:
    import datetime as dt

    today = dt.date.today().isoformat()
    path = write(tmp_path, f'[instances.x]\non_demand_usd_per_hour = 1.0\nspot_usd_per_hour = 1.0\nas_of = {today}\n'
                           'source = "s"\n[instances.y]\naccelerator = "T4"\non_demand_usd_per_hour = 1.0\n'
                           'as_of = 2026-01-01\nsource = "s"\n')
    catalog = load_catalog([path])
    assert catalog.get("x").spot_usd_per_hour == 1.0 and catalog.get("x").as_of == today
    assert catalog.get("y").accelerator_count == 1  # an accelerator named without a count: one of it


def test_pricing_kinds_reserved_spot_and_owned(tmp_path: Path) -> None:
    from hwbench.catalog.prices import ON_DEMAND, OWNED, PRICE_KINDS, RESERVED, SPOT

    path = write(tmp_path, '[instances.x]\non_demand_usd_per_hour = 1.0\nreserved_usd_per_hour = 0.6\n'
                           'reserved_term = "1yr standard no upfront"\nspot_usd_per_hour = 0.3\nspot_as_of = 2026-01-05\n'
                           'spot_source = "given, a spot page, 2026-01-05"\nas_of = 2026-01-01\nsource = "s"\n'
                           '[instances.box]\ncapital_usd = 8760\nlifetime_years = 1\npower_w = 1000\nusd_per_kwh = 0.1\n'
                           'pue = 1.5\nas_of = 2026-01-01\nsource = "example"\n')
    catalog = load_catalog([path])
    x, box = catalog.get("x"), catalog.get("box")
    assert PRICE_KINDS == (ON_DEMAND, SPOT, RESERVED, OWNED)
    assert x.kinds == (ON_DEMAND, SPOT, RESERVED) and box.kinds == (OWNED,)
    assert [x.usd_per_hour(k) for k in (ON_DEMAND, SPOT, RESERVED)] == [1.0, 0.3, 0.6]
    assert (x.spot_as_of, x.as_of, x.reserved_term) == ("2026-01-05", "2026-01-01", "1yr standard no upfront")
    assert box.usd_per_hour(OWNED) == pytest.approx(1.0 + 1.0 * 1.5 * 0.1)  # 8760 $ over 8760 h, plus energy
    assert catalog.get("g4dn.xlarge").usd_per_hour(RESERVED) is None  # no reserved price: None, never a guess
