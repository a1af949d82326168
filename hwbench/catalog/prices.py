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

    [instances."c7g.large"]                  # a reserved price and a spot price, each dated and sourced
    provider = "aws";  accelerator_count = 0;  vcpus = 2;  cpu_vendor = "AWS";  cpu_family = "Graviton3"
    on_demand_usd_per_hour = 0.0725;  as_of = 2026-01-19;  source = "..."
    reserved_usd_per_hour = 0.046;  reserved_term = "1yr standard no upfront"  # dated by as_of/source
    spot_usd_per_hour = 0.03;  spot_as_of = 2026-01-19;  spot_source = "..."  # volatile: its own date

    [instances."c6a.large"]                  # a CPU instance: cpu_vendor and cpu_family optional
    provider = "aws";  accelerator_count = 0;  vcpus = 2;  cpu_vendor = "AMD";  cpu_family = "Zen 3"
    on_demand_usd_per_hour = 0.0765;  as_of = 2026-01-19;  source = "..."

    [instances.lab-a100]                     # on-premises, by total cost of ownership
    provider = "on-prem";  accelerator = "A100-80GB";  accelerator_count = 4
    capital_usd = 90000;  lifetime_years = 4;  power_w = 2400   # or power_w = "measured"
    usd_per_kwh = 0.12;  pue = 1.4;  as_of = 2026-01-15;  source = "PO 4411"

Pricing kinds (PRICE_KINDS): on-demand, spot, reserved (a committed term, named by
reserved_term) and owned (the TCO basis). A spot price moves with the market: it may carry its
own spot_as_of and spot_source (the entry's as_of and source otherwise), and is shown as volatile.

An entry overriding a built-in name keeps the descriptive fields it does not restate
(provider, accelerators, vCPUs) but must give its own price, as_of and source. Each table
is checked by a pydantic model (InstanceEntry, ElectricityEntry: unknown fields forbidden).
Unknown fields, negative or non-finite prices, a PUE below 1, missing dates or sources, a
spot or reserved price above the on-demand one, an as_of (or spot_as_of) date in the future and an
accelerator named with accelerator_count 0 are refused, all problems in one message naming the
file and the entry (these checks stay here, in the loader, so every file is held to them).

cpu_vendor and cpu_family name the instance's processor as hwbench.host.cpu names a host's
("AMD" "Zen 3", "Intel" "Sapphire Rapids", "AWS" "Graviton3"); they are given together or not
at all. `profilable = false` marks a type hwbench has no adapter for (TPU, Trainium): it is priced
for planning from given capacities, never for a run of its own. `hwbench profile --instance auto` assumes the catalog type with this host's CPU and
vCPU count, and a given --instance whose CPU differs from the host's is warned about.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from hwbench.errors import ConfigError

HOURS_PER_YEAR = 8760
PRICE_SCHEMA_VERSION = 1
BUILTIN_ORIGIN = "built-in"
ON_DEMAND = "on-demand"
SPOT = "spot"
RESERVED = "reserved"
OWNED = "owned"
PRICE_KINDS = (ON_DEMAND, SPOT, RESERVED, OWNED)
TCO = "tco"
POWER_MEASURED = "measured"

_DESCRIPTIVE = ("provider", "region", "accelerator", "accelerator_count", "vcpus", "cpu_vendor", "cpu_family", "note",
                "profilable")
_TCO_FIELDS = ("capital_usd", "lifetime_years", "power_w", "usd_per_kwh", "pue")
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
    reserved_usd_per_hour: float | None = None  # the effective hourly rate of a committed term
    reserved_term: str | None = None  # "1yr standard no upfront"
    spot_as_of: str | None = None  # a spot price's own date (volatile); the entry's as_of when None
    spot_source: str | None = None
    profilable: bool = True  # False: no hwbench adapter runs on it (TPU, Trainium); priced for planning only

    @property
    def basis(self) -> str:
        return TCO if self.tco is not None else ON_DEMAND

    @property
    def kinds(self) -> tuple[str, ...]:
        """The pricing kinds this entry has a price for (owned: the TCO basis)."""
        if self.tco is not None:
            return (OWNED,)
        given = {ON_DEMAND: self.on_demand_usd_per_hour, SPOT: self.spot_usd_per_hour,
                 RESERVED: self.reserved_usd_per_hour}
        return tuple(k for k, v in given.items() if v is not None)

    def usd_per_hour(self, kind: str = ON_DEMAND, measured_power_w: float | None = None) -> float | None:
        """The whole instance's hourly price of `kind`, or None when this entry has no such price.

        An owned (TCO) entry answers its TCO whatever the kind: it has only the one cost."""
        if self.tco is not None:
            return self.tco.usd_per_hour(measured_power_w)
        if kind == SPOT:
            return self.spot_usd_per_hour
        if kind == RESERVED:
            return self.reserved_usd_per_hour
        return self.on_demand_usd_per_hour


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


# -- validation: one pydantic model per table; each message names its place -------------------


def _fail(message: str) -> PydanticCustomError:
    """A field's problem, worded to follow its location: 'instances.x.pue <message>'."""
    return PydanticCustomError("price", "{message}", {"message": message})


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise _fail(f"must be a date like 2025-11-30, got {value!r}")


def _check_number(value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite number of at least `minimum` (above it when `strict`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = "greater than" if strict else "at least"
        word = "negative" if value < 0 else "too small"
        raise _fail(f"is {word} ({value}); it must be {relation} {minimum:g}")
    return float(value)


def _number(minimum: float = 0.0, strict: bool = False) -> Any:
    return Annotated[float | None, PlainValidator(lambda v: _check_number(v, minimum, strict))]


def _whole(minimum: int, what: str) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(f"must be {what}, got {value!r}")
        return value
    return Annotated[int | None, PlainValidator(check)]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"must be a non-empty string, got {value!r}")
    return value.strip()


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"must be true or false, got {value!r}")
    return value


def _power(value: Any) -> float | str:
    return POWER_MEASURED if value == POWER_MEASURED else _check_number(value)


# Optional in the type (a field left out is None); a TOML value is never None, so never checked as one.
Text = Annotated[str | None, PlainValidator(_text)]
Date = Annotated[str | None, PlainValidator(_date)]
Usd = _number(strict=True)  # an hourly price: above 0
NonNegative = _number()


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceEntry(_Table):
    """One [instances.NAME] table. Which fields must be present depends on the others (a cloud
    price or a TCO basis), so presence is checked by `_presence`, on the raw table, whatever else is wrong."""

    provider: Text = None
    region: Text = None
    accelerator: Text = None
    accelerator_count: _whole(0, "a whole number >= 0") = None
    vcpus: _whole(1, "a positive whole number") = None
    cpu_vendor: Text = None
    cpu_family: Text = None
    note: Text = None
    profilable: Annotated[bool | None, PlainValidator(_flag)] = None
    on_demand_usd_per_hour: Usd = None
    spot_usd_per_hour: Usd = None
    spot_as_of: Date = None
    spot_source: Text = None
    reserved_usd_per_hour: Usd = None
    reserved_term: Text = None
    capital_usd: NonNegative = None
    lifetime_years: _number(strict=True) = None
    power_w: Annotated[float | str | None, PlainValidator(_power)] = None  # or "measured"
    usd_per_kwh: NonNegative = None
    pue: _number(minimum=1.0) = None
    as_of: Date = None
    source: Text = None

    def rules(self, today: dt.date) -> list[str]:
        """Problems between valid fields: prices, accelerators and dates that contradict each other."""
        out = []
        count = self.accelerator_count if self.accelerator_count is not None else (1 if self.accelerator else 0)
        if count > 0 and self.accelerator is None:
            out.append(f"accelerator_count is {count} but no accelerator is named")
        if count == 0 and self.accelerator is not None:
            out.append(f"accelerator is {self.accelerator!r} but accelerator_count is 0 (give the count, or leave "
                       "accelerator out for a CPU instance)")
        od, spot = self.on_demand_usd_per_hour, self.spot_usd_per_hour
        if od is not None and spot is not None and spot > od:
            out.append(f"spot_usd_per_hour ({spot:g}) is above on_demand_usd_per_hour ({od:g}): spot is a discount")
        reserved = self.reserved_usd_per_hour
        if od is not None and reserved is not None and reserved > od:
            out.append(f"reserved_usd_per_hour ({reserved:g}) is above on_demand_usd_per_hour ({od:g}): "
                       "a reservation is a discount")
        out += _future(self.as_of, today)
        out += [f"spot_{p}" for p in _future(self.spot_as_of, today)]
        return out


class ElectricityEntry(_Table):
    """The [electricity] table: every field required."""

    usd_per_kwh: NonNegative
    as_of: Date
    source: Text


def _future(as_of: str | None, today: dt.date) -> list[str]:
    """A price is observed, never forecast: an as_of after today (a day of slack for time zones) is refused."""
    if as_of and dt.date.fromisoformat(as_of) > today + dt.timedelta(days=1):
        return [f"as_of {as_of} is in the future (today is {today.isoformat()}): give the date the price was observed"]
    return []


def _errors(error: ValidationError, where: str) -> list[str]:
    out = []
    for e in error.errors(include_url=False):
        key = str(e["loc"][0]) if e["loc"] else ""
        if e["type"] == "extra_forbidden":
            out.append(f"{where}: unknown field {key!r}")
        elif e["type"] == "missing":
            out.append(f"{where}: needs {key}")
        elif e["type"] == "price":
            out.append(f"{where}.{key} {e['ctx']['message']}")
        else:
            out.append(f"{where}.{key}: {e['msg']}")
    return out


def _presence(raw: Mapping[str, Any], where: str) -> list[str]:
    """What an instance table must give: a cloud price or a whole TCO basis (not both), a date and a source."""
    out = []
    tco_keys = [k for k in _TCO_FIELDS if k in raw]
    if tco_keys:
        missing = [k for k in _TCO_FIELDS if k not in raw]
        if missing:
            out.append(f"{where}: an on-premises (TCO) entry also needs {', '.join(missing)}")
        if any(k in raw for k in ("on_demand_usd_per_hour", "spot_usd_per_hour", "reserved_usd_per_hour")):
            out.append(f"{where}: give either an hourly price or a TCO basis, not both")
    elif "on_demand_usd_per_hour" not in raw:
        out.append(f"{where}: needs on_demand_usd_per_hour, or a TCO basis ({', '.join(_TCO_FIELDS)})")
    if "source" not in raw:
        out.append(f"{where}: needs a source (where the price comes from)")
    if "as_of" not in raw:
        out.append(f"{where}: needs as_of (the date the price was observed)")
    if ("reserved_usd_per_hour" in raw) != ("reserved_term" in raw):
        out.append(f"{where}: reserved_usd_per_hour and reserved_term go together (e.g. \"1yr standard no upfront\")")
    if ("spot_as_of" in raw or "spot_source" in raw) and "spot_usd_per_hour" not in raw:
        out.append(f"{where}: spot_as_of and spot_source date a spot price: give spot_usd_per_hour")
    if ("cpu_vendor" in raw) != ("cpu_family" in raw):
        out.append(f"{where}: cpu_vendor and cpu_family go together (give both, e.g. \"AMD\" and \"Zen 3\")")
    return out


def _parse_instance(name: str, raw: Mapping[str, Any], origin: str, problems: list[str],
                    today: dt.date) -> Price | None:
    where = f"instances.{name}"
    before = len(problems)
    try:
        e = InstanceEntry.model_validate(raw)
    except ValidationError as err:
        problems += _errors(err, where)
        e = None
    problems += _presence(raw, where)
    if e is None:
        return None
    problems += [f"{where}: {p}" for p in e.rules(today)]
    if len(problems) > before:
        return None
    tco = None
    if "capital_usd" in raw:
        power = None if e.power_w == POWER_MEASURED else e.power_w
        tco = Tco(e.capital_usd, e.lifetime_years, power, e.usd_per_kwh, e.pue)  # type: ignore[arg-type]
    count = e.accelerator_count if e.accelerator_count is not None else (1 if e.accelerator else 0)
    return Price(name=name, provider=e.provider or ("on-prem" if tco else "unknown"), as_of=e.as_of or "",
                 source=e.source or "", region=e.region, accelerator=e.accelerator, accelerator_count=count,
                 vcpus=e.vcpus, on_demand_usd_per_hour=e.on_demand_usd_per_hour,
                 spot_usd_per_hour=e.spot_usd_per_hour, tco=tco, note=e.note, origin=origin,
                 cpu_vendor=e.cpu_vendor, cpu_family=e.cpu_family,
                 reserved_usd_per_hour=e.reserved_usd_per_hour, reserved_term=e.reserved_term,
                 spot_as_of=e.spot_as_of, spot_source=e.spot_source,
                 profilable=e.profilable is not False)


def _raw_of(price: Price) -> dict[str, Any]:
    """The descriptive fields of a parsed entry, for a user override to build on."""
    out: dict[str, Any] = {k: getattr(price, k) for k in _DESCRIPTIVE if getattr(price, k) is not None}
    out["accelerator_count"] = price.accelerator_count
    return out


def _parse_document(doc: Mapping[str, Any], origin: str, base: PriceCatalog | None) -> PriceCatalog:
    problems: list[str] = []
    today = dt.date.today()
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
        parsed = _parse_instance(name, merged, origin, problems, today)
        if parsed is not None:
            prices[name] = parsed
    electricity = base.electricity if base else None
    if "electricity" in doc:
        raw_e = doc["electricity"]
        if not isinstance(raw_e, dict):
            problems.append("electricity must be a table")
        else:
            electricity = _parse_electricity(raw_e, origin, problems, today)
    if problems:
        raise ConfigError(f"{origin}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: " + "; ".join(problems))
    files = (base.files if base else ()) + (() if origin == BUILTIN_ORIGIN else (origin,))
    return PriceCatalog(prices=prices, electricity=electricity, files=files)


def _parse_electricity(raw: Mapping[str, Any], origin: str, problems: list[str], today: dt.date) -> Electricity | None:
    try:
        e = ElectricityEntry.model_validate(raw)
    except ValidationError as err:
        problems += _errors(err, "electricity")
        return None
    future = [f"electricity: {p}" for p in _future(e.as_of, today)]
    problems += future
    return None if future else Electricity(usd_per_kwh=e.usd_per_kwh, as_of=e.as_of, source=e.source, origin=origin)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"price file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"price file {path} is not valid TOML: {e}") from e


def check_document(doc: Mapping[str, Any], origin: str) -> PriceCatalog:
    """Parse a catalog document on its own (no built-in entries under it): how a generated file
    is checked before it is written. Raises ConfigError naming `origin` and each bad entry."""
    return _parse_document(doc, origin, None)


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
