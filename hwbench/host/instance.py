"""Which instance type a run is priced as, and how that is known: given, detected or assumed.

Resolved once per sweep (hwbench.measure.runner), before any trial, and carried on every record as
instance_type + instance_type_source, so the analyser can show how much to trust a price:

- given:    the user said `--instance TYPE` (or `--usd-per-hour X` for a machine they price).
            If the host disagrees (DMI names another type, or the catalog says that type has
            another CPU than this host), the run gets a warning; it is not an error.
- detected: the host says it. On EC2 Nitro instances DMI product_name is the instance type
            (e.g. "c7i.large") and sys_vendor is "Amazon EC2". Read from files only; the
            instance metadata endpoint is never contacted (no network).
- assumed:  `--instance auto` on a host that says nothing: the catalog's CPU instance type with
            this host's CPU vendor and family and vCPU count, stated as an assumption. When
            nothing matches, the run is left unpriced with the reason, never priced by guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwbench.host.cpu import AMAZON_DMI_VENDOR, CpuIdentity
from hwbench.catalog.prices import ON_DEMAND, PriceCatalog

AUTO = "auto"
GIVEN = "given"
DETECTED_DMI = "detected: DMI product name"
_INSTANCE_NAME = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")  # c7i.large, c7a.metal-48xl


@dataclass(frozen=True)
class Dmi:
    """The two DMI strings that identify a cloud machine (None where absent or unreadable)."""

    product_name: str | None = None
    sys_vendor: str | None = None


def read_dmi(root: Path = Path("/")) -> Dmi:
    """DMI product name and system vendor under `root` (tests pass a fake tree)."""
    def read(name: str) -> str | None:
        try:
            text = (Path(root) / "sys/class/dmi/id" / name).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return text or None

    return Dmi(product_name=read("product_name"), sys_vendor=read("sys_vendor"))


def detect_instance_type(dmi: Dmi) -> str | None:
    """The EC2 instance type DMI names, or None (not EC2, or a Xen-era 'HVM domU')."""
    if (dmi.sys_vendor or "").strip() != AMAZON_DMI_VENDOR or not dmi.product_name:
        return None
    name = dmi.product_name.strip()
    return name if _INSTANCE_NAME.match(name) else None


@dataclass(frozen=True)
class InstanceResolution:
    """What every record of the run carries about its instance type and price."""

    instance_type: str | None
    source: str | None  # given / detected: ... / assumed: ... / not priced: ...
    usd_per_hour: float | None = None  # a price the user gave for this machine
    price_note: str | None = None
    notes: tuple[str, ...] = ()  # for the run's notes
    warnings: tuple[str, ...] = field(default_factory=tuple)  # for each record's warnings


def _cpu_of(catalog: PriceCatalog, name: str) -> str | None:
    price = catalog.get(name)
    if price is None or not price.cpu_vendor or not price.cpu_family:
        return None
    return f"{price.cpu_vendor} {price.cpu_family}"


def mismatch_warning(instance_type: str, catalog: PriceCatalog, cpu: CpuIdentity) -> str | None:
    """A warning when the catalog says `instance_type` has another CPU than this host."""
    theirs = _cpu_of(catalog, instance_type)
    if theirs is None or not cpu.known or theirs == cpu.label:
        return None
    return (f"{instance_type} is an {theirs} type; this host is {cpu.label}: "
            "prices will not describe this machine")


def _cheapest_first(catalog: PriceCatalog, keep: Callable[[Any], bool]) -> list[Any]:
    """The catalog's entries that `keep` accepts and that have an on-demand price, cheapest first (ties by name)."""
    matches = [p for p in catalog.prices.values() if keep(p) and p.usd_per_hour(ON_DEMAND) is not None]
    return sorted(matches, key=lambda p: (p.usd_per_hour(ON_DEMAND), p.name))


def assume_instance_type(catalog: PriceCatalog, cpu: CpuIdentity, vcpus: int) -> tuple[str | None, str]:
    """The catalog's CPU-only type with this host's CPU and vCPU count, and the sentence saying so.

    Several matches: the cheapest on-demand one, named with the others. None: the reason.
    """
    if not cpu.known:
        return None, f"not priced: this host's CPU is not identified ({cpu.cpuid}), so no catalog type can be assumed"
    matches = _cheapest_first(catalog, lambda p: p.accelerator_count == 0 and p.vcpus == vcpus
                              and p.cpu_vendor == cpu.vendor and p.cpu_family == cpu.family)
    if not matches:
        return None, (f"not priced: no instance type in the price catalog has this host's CPU ({cpu.label}) "
                      f"and {vcpus} vCPUs; pass --instance TYPE or --usd-per-hour X")
    best = matches[0]
    others = f" (the cheapest of {', '.join(p.name for p in matches)})" if len(matches) > 1 else ""
    return best.name, (f"assumed: {best.name} is the catalog's {vcpus}-vCPU type with this host's CPU "
                       f"({cpu.label}){others}; not detected")


_ACCELERATOR_TEXT = re.compile(r"^\s*(?:(\d+)\s*[x\u00d7*]\s*)?([A-Za-z0-9][A-Za-z0-9 ._-]*?)\s*$")


def assume_for_accelerator(catalog: PriceCatalog, accelerator: str) -> tuple[str | None, str]:
    """For an endpoint on a machine hwbench cannot see, said to have e.g. "1xH100": the cheapest
    on-demand catalog type with that accelerator (its catalog name, case aside) and that count, and
    the sentence saying it is an assumption and on what basis; or None and why nothing matched."""
    m = _ACCELERATOR_TEXT.match(accelerator or "")
    if not m:
        return None, f"not priced: --accelerator {accelerator!r} is not COUNTxMODEL (e.g. 1xH100)"
    count, model = int(m.group(1) or 1), m.group(2).strip()
    matches = _cheapest_first(catalog, lambda p: bool(p.accelerator) and p.accelerator.lower() == model.lower()
                              and p.accelerator_count == count)
    if not matches:
        known = sorted({p.accelerator for p in catalog.prices.values() if p.accelerator})
        return None, (f"not priced: no instance type in the price catalog has {count} x {model} (accelerators it "
                      f"knows: {', '.join(known)}); pass --instance TYPE")
    best = matches[0]
    others = f", of {', '.join(p.name for p in matches)}" if len(matches) > 1 else ""
    return best.name, (f"assumed: {best.name} ({best.provider}, on-demand ${best.usd_per_hour(ON_DEMAND):g}/h as of "
                       f"{best.as_of}) is the cheapest catalog type with {count} x {best.accelerator}{others}; "
                       f"from --accelerator {accelerator!r}, an estimate: the endpoint's real machine is not seen")


def resolve_instance(requested: str | None, catalog: PriceCatalog, cpu: CpuIdentity, vcpus: int, dmi: Dmi,
                     usd_per_hour: float | None = None, price_note: str | None = None) -> InstanceResolution:
    """The instance type and its source for a run, with notes and warnings (see module doc)."""
    detected = detect_instance_type(dmi)
    notes: list[str] = []
    warnings: list[str] = []
    if requested and requested != AUTO:
        name, source = requested, GIVEN
        if detected and detected != requested:
            warnings.append(f"--instance {requested} was given but DMI says this host is {detected}: "
                            "prices will not describe this machine")
        else:
            found = mismatch_warning(requested, catalog, cpu)
            if found:
                warnings.append(found)
    elif detected:
        name, source = detected, DETECTED_DMI
        notes.append(f"instance type {detected} detected from DMI (sys_vendor {dmi.sys_vendor})")
    elif requested == AUTO and usd_per_hour is None:
        name, source = assume_instance_type(catalog, cpu, vcpus)
        notes.append(f"--instance auto: no instance type detected (no EC2 DMI product name); {source}")
    else:
        name, source = None, None
    if usd_per_hour is not None:
        source = GIVEN if source is None or source.startswith("not priced") else source
        notes.append(f"priced at {usd_per_hour:g} $/hour as given (--usd-per-hour)" + (f": {price_note}" if price_note else ""))
    notes.extend(f"warning: {w}" for w in warnings)
    return InstanceResolution(name, source, usd_per_hour, price_note, tuple(notes), tuple(warnings))
