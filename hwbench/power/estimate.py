"""An energy ESTIMATE for CPUs that expose no energy counter (method 'estimate-tdp').

The formula, deliberately simple and always labelled as an estimate:

    energy_j = tdp_w x share x utilisation x duration_s

- tdp_w: the processor's TDP from the table below (vendor specification pages, each entry
  names its source) or the user's --tdp-w (SweepConfig.tdp_w), which wins. A processor that
  is not in the table by name (cloud VMs report "AMD EPYC" or "Intel(R) Xeon(R) Processor")
  but whose microarchitecture family hwbench.host.cpu identifies is estimated from that
  family's REFERENCE part (FAMILY_REFERENCE: the family's top listed server part, per thread),
  and the note names the family and the part: a basis, not this machine's own SKU.
- share: for a table entry, logical CPUs visible here / hardware threads of one package
  (a 2-vCPU VM slice of a 112-thread package gets 2/112 of the TDP; a 2-socket host gets 2).
  This attributes package power in proportion to hardware threads: an assumption, named in
  the note. A user-supplied --tdp-w is taken as the TDP of the CPUs this machine sees (share 1).
- utilisation: busy fraction of all CPUs of the machine during the window, from
  psutil.cpu_times() deltas: busy = total - idle - iowait - steal (steal is time the
  hypervisor gave to someone else). guest/guest_nice are already inside user/nice on Linux
  and are not counted twice.

TDP is a thermal design figure, not measured power: real draw can be well below it at low
load and above it under turbo. No idle-power term is added, because nothing here measures it.
An unknown processor without --tdp-w gives no estimate at all (method 'none').
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from hwbench.power.base import EnergyReading, PowerMeter, window_too_short


@dataclass(frozen=True)
class TdpEntry:
    """A processor's vendor-specified TDP."""

    name: str  # as the vendor names it; matched after normalize_cpu_name()
    tdp_w: float
    cores: int
    threads: int
    source: str  # where the figure comes from


# Figures transcribed from the vendors' specification pages (not measured by hwbench).
# Not listed on purpose: cloud-custom SKUs such as Xeon Platinum 8488C (AWS m7i/c7i) or
# EPYC 9R14, for which the vendor publishes no TDP; use --tdp-w for those.
TDP_TABLE: tuple[TdpEntry, ...] = (
    TdpEntry(
        "Intel Xeon Platinum 8480+", 350.0, 56, 112,
        "Intel ARK specification: https://www.intel.com/content/www/us/en/products/sku/231746/"
        "intel-xeon-platinum-8480-processor-105m-cache-2-00-ghz/specifications.html",
    ),
    TdpEntry(
        "Intel Xeon Platinum 8380", 270.0, 40, 80,
        "Intel ARK specification: https://www.intel.com/content/www/us/en/products/sku/212287/"
        "intel-xeon-platinum-8380-processor-60m-cache-2-30-ghz/specifications.html",
    ),
    TdpEntry(
        "AMD EPYC 9654", 360.0, 96, 192,
        "AMD product page (default TDP): https://www.amd.com/en/products/processors/server/epyc/"
        "4th-generation-9004-and-8004-series/amd-epyc-9654.html",
    ),
    TdpEntry(
        "AMD EPYC 7763", 280.0, 64, 128,
        "AMD product page (default TDP): https://www.amd.com/en/products/processors/server/epyc/"
        "7003-series/amd-epyc-7763.html",
    ),
)


# (vendor, family) as hwbench.host.cpu names them -> the TDP_TABLE part that stands for the family.
# Cloud-custom SKUs (EPYC 7R13 in C6a, Xeon 8488C in C7i) have no published TDP; the family's
# top part gives a per-thread figure of the same silicon generation.
FAMILY_REFERENCE: dict[tuple[str, str], str] = {
    ("Intel", "Sapphire Rapids"): "Intel Xeon Platinum 8480+",
    ("Intel", "Ice Lake"): "Intel Xeon Platinum 8380",
    ("AMD", "Zen 3"): "AMD EPYC 7763",
    ("AMD", "Zen 4"): "AMD EPYC 9654",
}


def family_reference(vendor: str | None, family: str | None) -> TdpEntry | None:
    """The reference part for a CPU family, or None when the family has none."""
    name = FAMILY_REFERENCE.get((vendor or "", family or ""))
    return next((e for e in TDP_TABLE if e.name == name), None) if name else None


def normalize_cpu_name(name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz' -> 'intel xeon platinum 8480+'."""
    s = name.lower()
    s = re.sub(r"\((r|tm)\)|®|™", " ", s)
    s = re.sub(r"@\s*[\d.]+\s*ghz", " ", s)
    s = re.sub(r"\b\d+-core\b|\bcpu\b|\bprocessor\b", " ", s)
    return " ".join(s.split())


def lookup_tdp(cpu_name: str) -> TdpEntry | None:
    """The table entry whose normalised name equals the processor's, or None."""
    key = normalize_cpu_name(cpu_name)
    return next((e for e in TDP_TABLE if normalize_cpu_name(e.name) == key), None)


def cpu_model_name() -> str:
    """The processor's marketing name, read in one place: hwbench.host.fingerprint.cpu_model."""
    from hwbench.host.fingerprint import cpu_model

    return cpu_model()


# -- pure arithmetic ----------------------------------------------------------------------------
def utilisation(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Busy fraction of all CPUs between two psutil.cpu_times() snapshots (see module doc)."""
    delta = {k: max(0.0, float(after[k]) - float(before[k])) for k in after}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    if total <= 0:
        return 0.0
    not_ours = delta.get("idle", 0.0) + delta.get("iowait", 0.0) + delta.get("steal", 0.0)
    return min(1.0, max(0.0, (total - not_ours) / total))


def estimate_energy_j(tdp_w: float, share: float, util: float, duration_s: float) -> float:
    """tdp_w x share x utilisation x duration: the whole estimate."""
    return tdp_w * share * util * duration_s


@dataclass(frozen=True)
class TdpBasis:
    """What an estimate rests on: a TDP, the share of it attributed here, and where it came from."""

    tdp_w: float
    share: float
    source: str


def tdp_basis(tdp_w: float | None = None, cpu_name: str | None = None, logical_cpus: int | None = None,
              cpu_family: tuple[str | None, str | None] | None = None) -> TdpBasis | str:
    """The basis for an estimate, or the reason there is none (unknown processor, no --tdp-w).

    cpu_family is (vendor, family) as hwbench.host.cpu names them; when cpu_name is None both
    are read from this host, so a caller naming a processor must name its family too.
    """
    if tdp_w is not None:
        if tdp_w <= 0:
            return f"--tdp-w must be positive, got {tdp_w}"
        return TdpBasis(tdp_w=float(tdp_w), share=1.0, source="--tdp-w (user-supplied)")
    if cpu_name is None:
        name = cpu_model_name()
        if cpu_family is None:
            from hwbench.host.fingerprint import cpu_identity

            ident = cpu_identity()
            cpu_family = (ident.vendor, ident.family)
    else:
        name = cpu_name
    entry = lookup_tdp(name)
    cpus = logical_cpus if logical_cpus is not None else (psutil.cpu_count() or 1)
    if entry is not None:
        return TdpBasis(
            tdp_w=entry.tdp_w,
            share=cpus / entry.threads,
            source=f"{entry.name}, {entry.source}; share {cpus}/{entry.threads} hardware threads",
        )
    vendor, family = cpu_family or (None, None)
    ref = family_reference(vendor, family)
    if ref is None:
        known = f" ({vendor} {family})" if vendor and family else ""
        return (f"processor {name!r}{known} is not in hwbench's TDP table and its family has no reference part; "
                "pass --tdp-w to estimate energy")
    return TdpBasis(
        tdp_w=ref.tdp_w,
        share=cpus / ref.threads,
        source=(f"family reference: {name!r} is not in the table by name; this host's CPU is {vendor} {family}, "
                f"whose reference part is the {ref.name} ({ref.source}); share {cpus}/{ref.threads} hardware threads"),
    )


def tick_period_ms() -> float:
    """Resolution of the kernel's CPU time accounting (USER_HZ ticks), which bounds utilisation."""
    try:
        return 1000.0 / float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 10.0


class EstimateTdpMeter(PowerMeter):
    """Estimated energy from TDP and whole-machine CPU utilisation. Never a measurement."""

    method = "estimate-tdp"
    estimated = True

    @classmethod
    def problem(cls, index: int, tdp_w: float | None) -> str | None:
        basis = tdp_basis(tdp_w)
        return basis if isinstance(basis, str) else None

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> PowerMeter:
        basis = tdp_basis(tdp_w)
        assert not isinstance(basis, str), basis
        return cls(basis)

    def __init__(self, basis: TdpBasis) -> None:
        self.basis = basis
        self._before: dict[str, float] | None = None
        self._t0 = 0.0

    @property
    def period_ms(self) -> float | None:
        return tick_period_ms()

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        self._before = psutil.cpu_times()._asdict()

    def end(self) -> EnergyReading | None:
        if self._before is None:
            return None
        after = psutil.cpu_times()._asdict()
        duration = time.perf_counter() - self._t0
        util = utilisation(self._before, after)
        self._before = None
        b = self.basis
        return EnergyReading(
            energy_j=estimate_energy_j(b.tdp_w, b.share, util, duration),
            duration_s=duration,
            method=self.method,
            period_ms=self.period_ms,
            estimated=True,
            note=(
                f"ESTIMATE: TDP {b.tdp_w:g} W ({b.source}) x share {b.share:.4g} "
                f"x whole-machine CPU utilisation {util:.3f}"
            ),
            too_short=window_too_short(duration, tick_period_ms()),
        )
