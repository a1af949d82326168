"""The price catalog: what an hour of each instance type costs, with the date and the source.

Every cost hwbench shows is derived from one of these prices, and the price's date and
source travel with it. The built-in catalog (hwbench/data/prices.toml) holds list prices
that can be attributed; a user file adds entries or overrides them, including on-premises
machines priced by total cost of ownership:

    $/hour = capital_usd / (lifetime_years x 8760) + kW x PUE x $/kWh

A run that used k of an instance's n accelerators is charged k/n of its price. An
instance type the catalog does not know is never priced by guess: the caller reports it.

File format (TOML, schema_version 1). For brevity the sketch below puts several keys on a
line, separated by ";"; a real file has one key per line:

    schema_version = 1                       # optional
    [electricity]                            # optional: prices energy per 1M inferences
    usd_per_kwh = 0.12;  as_of = 2026-01-15;  source = "utility bill, Jan 2026"

    [instances."g4dn.xlarge"]                # a cloud instance (a built-in name: overridden)
    provider = "aws";  region = "us-east-1";  accelerator = "T4";  accelerator_count = 1
    vcpus = 4;  on_demand_usd_per_hour = 0.526;  spot_usd_per_hour = 0.21  # spot optional
    as_of = 2025-11-30;  source = "https://aws.amazon.com/ec2/pricing/on-demand/"

    [instances."c6a.large"]                  # a CPU instance: cpu_vendor and cpu_family optional
    provider = "aws";  accelerator_count = 0;  vcpus = 2;  cpu_vendor = "AMD";  cpu_family = "Zen 3"
    on_demand_usd_per_hour = 0.0765;  as_of = 2026-01-19;  source = "..."

    [instances.lab-a100]                     # on-premises, by total cost of ownership
    provider = "on-prem";  accelerator = "A100-80GB";  accelerator_count = 4
    capital_usd = 90000;  lifetime_years = 4;  power_w = 2400   # or power_w = "measured"
    usd_per_kwh = 0.12;  pue = 1.4;  as_of = 2026-01-15;  source = "PO 4411"

An entry overriding a built-in name keeps the descriptive fields it does not restate
(provider, accelerators, vCPUs) but must give its own price, as_of and source. Unknown
fields, negative prices, a PUE below 1 and missing dates or sources are refused, all
problems in one message.

cpu_vendor and cpu_family name the instance's processor as hwbench.host.cpu names a host's
("AMD" "Zen 3", "Intel" "Sapphire Rapids", "AWS" "Graviton3"); they are given together or not
at all. `hwbench profile --instance auto` assumes the catalog type with this host's CPU and
vCPU count, and a given --instance whose CPU differs from the host's is warned about.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from hwbench.errors import ConfigError

HOURS_PER_YEAR = 8760
PRICE_SCHEMA_VERSION = 1
BUILTIN_ORIGIN = "built-in"
ON_DEMAND = "on-demand"
SPOT = "spot"
TCO = "tco"
POWER_MEASURED = "measured"

_DESCRIPTIVE = ("provider", "region", "accelerator", "accelerator_count", "vcpus", "cpu_vendor", "cpu_family", "note")
_CLOUD_PRICE = ("on_demand_usd_per_hour", "spot_usd_per_hour")
_TCO_FIELDS = ("capital_usd", "lifetime_years", "power_w", "usd_per_kwh", "pue")
_ATTRIBUTION = ("as_of", "source")
INSTANCE_FIELDS = frozenset(_DESCRIPTIVE + _CLOUD_PRICE + _TCO_FIELDS + _ATTRIBUTION)
ELECTRICITY_FIELDS = frozenset(("usd_per_kwh", "as_of", "source"))
TOP_LEVEL_KEYS = frozenset(("schema_version", "instances", "electricity"))


def tco_usd_per_hour(capital_usd: float, lifetime_years: float, power_w: float, usd_per_kwh: float, pue: float) -> float:
    """Hourly cost of owned hardware: straight-line capital plus facility-level electricity."""
    return capital_usd / (lifetime_years * HOURS_PER_YEAR) + power_w / 1000.0 * pue * usd_per_kwh


def accelerator_share(accelerators_used: int | None, accelerator_count: int) -> float:
    """The fraction of an instance a run is charged: k of n accelerators, or all of a CPU instance.

    When the record does not say how many accelerators it used, the whole instance is charged
    (an upper bound, never a guess downwards).
    """
    if accelerator_count <= 0 or accelerators_used is None:
        return 1.0
    if accelerators_used <= 0 or accelerators_used > accelerator_count:
        raise ValueError(f"{accelerators_used} accelerators used of an instance with {accelerator_count}")
    return accelerators_used / accelerator_count


@dataclass(frozen=True)
class Tco:
    """The basis of an on-premises price. power_w None means: use the run's measured power."""

    capital_usd: float
    lifetime_years: float
    power_w: float | None
    usd_per_kwh: float
    pue: float

    def usd_per_hour(self, measured_power_w: float | None = None) -> float | None:
        power_w = self.power_w if self.power_w is not None else measured_power_w
        if power_w is None:
            return None
        return tco_usd_per_hour(self.capital_usd, self.lifetime_years, power_w, self.usd_per_kwh, self.pue)


@dataclass(frozen=True)
class Price:
    """One catalog entry: an instance type (or owned machine) and what an hour of it costs."""

    name: str
    provider: str
    as_of: str  # ISO date the price was observed
    source: str
    region: str | None = None
    accelerator: str | None = None
    accelerator_count: int = 0  # 0: a CPU-only instance
    vcpus: int | None = None
    on_demand_usd_per_hour: float | None = None
    spot_usd_per_hour: float | None = None
    tco: Tco | None = None
    note: str | None = None
    origin: str = BUILTIN_ORIGIN  # "built-in" or the user file it came from
    cpu_vendor: str | None = None  # "AMD", "Intel", "AWS": as hwbench.host.cpu names a host's CPU
    cpu_family: str | None = None  # "Zen 3", "Sapphire Rapids", "Graviton3"

    @property
    def basis(self) -> str:
        return TCO if self.tco is not None else ON_DEMAND

    def usd_per_hour(self, kind: str = ON_DEMAND, measured_power_w: float | None = None) -> float | None:
        """The whole instance's hourly price, or None when this entry has no such price."""
        if self.tco is not None:
            return self.tco.usd_per_hour(measured_power_w)
        return self.spot_usd_per_hour if kind == SPOT else self.on_demand_usd_per_hour


@dataclass(frozen=True)
class Electricity:
    """The price of energy, used for energy $ per 1M inferences."""

    usd_per_kwh: float
    as_of: str
    source: str
    origin: str = BUILTIN_ORIGIN


@dataclass(frozen=True)
class PriceCatalog:
    """Instance prices by name, plus an optional electricity price."""

    prices: Mapping[str, Price]
    electricity: Electricity | None = None
    files: tuple[str, ...] = ()  # user files merged over the built-in catalog, in order

    def get(self, name: str | None) -> Price | None:
        return self.prices.get(name) if name else None

    def __contains__(self, name: object) -> bool:
        return name in self.prices

    def names(self) -> list[str]:
        return sorted(self.prices)


def _date(value: Any, where: str, problems: list[str]) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    problems.append(f"{where}.as_of must be a date like 2025-11-30, got {value!r}")
    return ""


def _number(raw: Mapping[str, Any], key: str, where: str, problems: list[str], *, minimum: float = 0.0,
            strict: bool = False) -> float | None:
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"{where}.{key} must be a number, got {value!r}")
        return None
    if value < minimum or (strict and value == minimum):
        relation = "greater than" if strict else "at least"
        word = "negative" if value < 0 else "too small"
        problems.append(f"{where}.{key} is {word} ({value}); it must be {relation} {minimum:g}")
        return None
    return float(value)


def _text(raw: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key} must be a non-empty string, got {value!r}")
        return None
    return value.strip()


def _parse_instance(name: str, raw: Mapping[str, Any], origin: str, problems: list[str]) -> Price | None:
    where = f"instances.{name}"
    unknown = sorted(set(raw) - INSTANCE_FIELDS)
    for key in unknown:
        problems.append(f"{where}: unknown field {key!r}")
    before = len(problems)
    on_demand = _number(raw, "on_demand_usd_per_hour", where, problems, strict=True)
    spot = _number(raw, "spot_usd_per_hour", where, problems, strict=True)
    tco_keys = [k for k in _TCO_FIELDS if k in raw]
    tco: Tco | None = None
    if tco_keys:
        missing = [k for k in _TCO_FIELDS if k not in raw]
        if missing:
            problems.append(f"{where}: an on-premises (TCO) entry also needs {', '.join(missing)}")
        if "on_demand_usd_per_hour" in raw or "spot_usd_per_hour" in raw:
            problems.append(f"{where}: give either an hourly price or a TCO basis, not both")
        power_w: float | None = None
        if raw.get("power_w") != POWER_MEASURED:
            power_w = _number(raw, "power_w", where, problems)
        capital = _number(raw, "capital_usd", where, problems)
        years = _number(raw, "lifetime_years", where, problems, strict=True)
        kwh = _number(raw, "usd_per_kwh", where, problems)
        pue = _number(raw, "pue", where, problems, minimum=1.0)
        if not missing and None not in (capital, years, kwh, pue):
            tco = Tco(capital, years, power_w, kwh, pue)  # type: ignore[arg-type]
    elif on_demand is None and "on_demand_usd_per_hour" not in raw:
        problems.append(f"{where}: needs on_demand_usd_per_hour, or a TCO basis ({', '.join(_TCO_FIELDS)})")
    count = raw.get("accelerator_count", 1 if raw.get("accelerator") else 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        problems.append(f"{where}.accelerator_count must be a whole number >= 0, got {count!r}")
        count = 0
    accelerator = _text(raw, "accelerator", where, problems)
    if count > 0 and accelerator is None:
        problems.append(f"{where}: accelerator_count is {count} but no accelerator is named")
    vcpus = raw.get("vcpus")
    if vcpus is not None and (isinstance(vcpus, bool) or not isinstance(vcpus, int) or vcpus <= 0):
        problems.append(f"{where}.vcpus must be a positive whole number, got {vcpus!r}")
    source = _text(raw, "source", where, problems)
    if source is None and "source" not in raw:
        problems.append(f"{where}: needs a source (where the price comes from)")
    as_of = _date(raw["as_of"], where, problems) if "as_of" in raw else ""
    if "as_of" not in raw:
        problems.append(f"{where}: needs as_of (the date the price was observed)")
    provider = _text(raw, "provider", where, problems) or ("on-prem" if tco_keys else "unknown")
    region = _text(raw, "region", where, problems)
    note = _text(raw, "note", where, problems)
    cpu_vendor = _text(raw, "cpu_vendor", where, problems)
    cpu_family = _text(raw, "cpu_family", where, problems)
    if ("cpu_vendor" in raw) != ("cpu_family" in raw):
        problems.append(f"{where}: cpu_vendor and cpu_family go together (give both, e.g. \"AMD\" and \"Zen 3\")")
    if len(problems) > before or unknown:
        return None
    return Price(name=name, provider=provider, as_of=as_of, source=source or "", region=region,
                 accelerator=accelerator, accelerator_count=count, vcpus=vcpus, on_demand_usd_per_hour=on_demand,
                 spot_usd_per_hour=spot, tco=tco, note=note, origin=origin,
                 cpu_vendor=cpu_vendor, cpu_family=cpu_family)


def _raw_of(price: Price) -> dict[str, Any]:
    """The descriptive fields of a parsed entry, for a user override to build on."""
    out: dict[str, Any] = {k: getattr(price, k) for k in _DESCRIPTIVE if getattr(price, k) is not None}
    out["accelerator_count"] = price.accelerator_count
    return out


def _parse_document(doc: Mapping[str, Any], origin: str, base: PriceCatalog | None) -> PriceCatalog:
    problems: list[str] = []
    for key in sorted(set(doc) - TOP_LEVEL_KEYS):
        problems.append(f"unknown top-level key {key!r} (expected {', '.join(sorted(TOP_LEVEL_KEYS))})")
    version = doc.get("schema_version", PRICE_SCHEMA_VERSION)
    if version != PRICE_SCHEMA_VERSION:
        problems.append(f"schema_version {version!r} is not supported (this hwbench reads {PRICE_SCHEMA_VERSION})")
    prices: dict[str, Price] = dict(base.prices) if base else {}
    instances = doc.get("instances", {})
    if not isinstance(instances, dict):
        problems.append("instances must be a table of [instances.NAME] entries")
        instances = {}
    for name, raw in instances.items():
        if not isinstance(raw, dict):
            problems.append(f"instances.{name} must be a table")
            continue
        merged = dict(raw)
        inherited = prices.get(name)
        if inherited is not None:  # an override keeps what it does not restate, except the price itself
            merged = {**_raw_of(inherited), **raw}
        parsed = _parse_instance(name, merged, origin, problems)
        if parsed is not None:
            prices[name] = parsed
    electricity = base.electricity if base else None
    if "electricity" in doc:
        raw_e = doc["electricity"]
        if not isinstance(raw_e, dict):
            problems.append("electricity must be a table")
        else:
            electricity = _parse_electricity(raw_e, origin, problems)
    if problems:
        raise ConfigError(f"{origin}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: " + "; ".join(problems))
    files = (base.files if base else ()) + (() if origin == BUILTIN_ORIGIN else (origin,))
    return PriceCatalog(prices=prices, electricity=electricity, files=files)


def _parse_electricity(raw: Mapping[str, Any], origin: str, problems: list[str]) -> Electricity | None:
    before = len(problems)
    for key in sorted(set(raw) - ELECTRICITY_FIELDS):
        problems.append(f"electricity: unknown field {key!r}")
    for key in sorted(ELECTRICITY_FIELDS - set(raw)):
        problems.append(f"electricity: needs {key}")
    usd = _number(raw, "usd_per_kwh", "electricity", problems)
    source = _text(raw, "source", "electricity", problems)
    as_of = _date(raw["as_of"], "electricity", problems) if "as_of" in raw else ""
    if len(problems) > before or usd is None or source is None:
        return None
    return Electricity(usd_per_kwh=usd, as_of=as_of, source=source, origin=origin)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"price file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"price file {path} is not valid TOML: {e}") from e


def load_builtin() -> PriceCatalog:
    """The catalog shipped with hwbench."""
    text = resources.files("hwbench").joinpath("data/prices.toml").read_text(encoding="utf-8")
    return _parse_document(tomllib.loads(text), BUILTIN_ORIGIN, None)


def merge_file(base: PriceCatalog, path: Path) -> PriceCatalog:
    """Add or override entries from a user price file; refuse the file whole if anything is wrong."""
    return _parse_document(_read_toml(Path(path)), str(path), base)


def load_catalog(paths: Iterable[Path] = ()) -> PriceCatalog:
    """The built-in catalog with each user file merged over it, in order."""
    catalog = load_builtin()
    for path in paths:
        catalog = merge_file(catalog, Path(path))
    return catalog
