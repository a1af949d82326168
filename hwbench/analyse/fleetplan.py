"""`hwbench plan` as a library call: price the pool, solve the mix, and compare it with homogeneous fleets.

`plan_workload` returns a PlanReport: the optimal mixed fleet (hwbench.analyse.planner), the
best homogeneous fleet (one instance type for every class, each of its pricing kinds allowed),
"everything on the fastest accelerator" (the pooled accelerator type with the most capacity,
averaged over the classes; the fastest type of any kind when the pool has no accelerator), and
the saving against each. Prices come from the catalog by pricing kind (on-demand, spot,
reserved, owned: the TCO basis), or from a capacity table's usd_per_hour, each with its source.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hwbench.errors import UsageError
from hwbench.catalog.prices import PriceCatalog
from hwbench.analyse.capacities import CapacityTable
from hwbench.analyse.demand import Workload
from hwbench.analyse.planner import Capacity, FleetPlan, Option, solve


@dataclass
class Baseline:
    """A comparison fleet: what it is, its plan (None when it cannot serve every class) and why not."""

    label: str
    instance_type: str | None
    usd_per_hour: float | None
    saving_usd_per_hour: float | None
    saving_pct: float | None
    reason: str | None = None
    plan: FleetPlan | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "plan"}
        out["counts"] = None if self.plan is None else self.plan.hours[0].counts if len(self.plan.hours) == 1 else \
            self.plan.autoscaling_bounds()
        return out


@dataclass
class PlanReport:
    """Everything `hwbench plan` shows: the plan, its capacities with sources, the baselines, the notes."""

    plan: FleetPlan
    capacities: list[Capacity]
    homogeneous: Baseline
    fastest: Baseline
    notes: list[str] = field(default_factory=list)


def _hourly(price: Any, kind: str) -> float | None:
    """The catalog entry's hourly price of `kind`, or None (never guessed from another kind)."""
    tco = getattr(price, "tco", None)
    if kind == "owned":
        return tco.usd_per_hour() if tco is not None else None
    if tco is not None:
        return None  # owned hardware has no cloud price
    field_name = {"on-demand": "on_demand_usd_per_hour", "spot": "spot_usd_per_hour",
                  "reserved": "reserved_usd_per_hour"}[kind]
    value = getattr(price, field_name, None)
    return float(value) if value is not None else None


def price_options(workload: Workload, catalog: PriceCatalog, given: dict[tuple[str, str], tuple[float, str | None, str | None]]
                  ) -> tuple[list[Option], list[str]]:
    """An Option per pooled (instance type, pricing kind) with a known price; notes for those without one."""
    options, notes = [], []
    for t in workload.pool.instance_types:
        price = catalog.get(t)
        for kind in workload.pool.pricing:
            if (t, kind) in given:
                usd, as_of, source = given[(t, kind)]
                options.append(Option(t, kind, usd, as_of, source, getattr(price, "accelerator_count", 0) or 0))
                continue
            if price is None:
                notes.append(f"{t}: not in the price catalog (add it with --prices FILE or a usd_per_hour column)")
                break
            usd = _hourly(price, kind)
            if usd is None:
                needs_power = kind == "owned" and price.tco is not None and price.tco.power_w is None
                notes.append(f"{t}: its owned (TCO) price needs a power figure; plan does not take it from runs yet, so give "
                             "power_w in the price file" if needs_power else f"{t}: no {kind} price in the catalog")
                continue
            as_of, source = price.as_of, price.source
            if kind == "spot":  # a spot price carries its own date and source (volatile)
                as_of, source = price.spot_as_of or as_of, price.spot_source or source
            options.append(Option(t, kind, float(usd), as_of, source, price.accelerator_count))
    return options, list(dict.fromkeys(notes))


def _restricted(workload: Workload, caps: list[Capacity], options: list[Option], types: set[str], label: str,
                best_usd: float, **kw: Any) -> tuple[float, Baseline]:
    mine = [o for o in options if o.instance_type in types]
    name = next(iter(types)) if len(types) == 1 else None
    try:
        plan = solve(workload, caps, mine, **kw)
    except UsageError as e:
        return math.inf, Baseline(label, name, None, None, None, reason=str(e))
    saving = plan.usd_per_hour - best_usd
    pct = 100.0 * saving / plan.usd_per_hour if plan.usd_per_hour > 0 else None
    return plan.usd_per_hour, Baseline(label, name, plan.usd_per_hour, saving, pct, plan=plan)


def _serves_all(workload: Workload, caps: list[Capacity], t: str) -> bool:
    have = {c.cls for c in caps if c.instance_type == t and c.capacity_rps > 0}
    return all(c.name in have for c in workload.classes)


def plan_workload(workload: Workload, table: CapacityTable, catalog: PriceCatalog, *, max_utilisation: float | None = None,
                  slice_factor: int | None = None, mip_rel_gap: float = 0.0, time_limit_s: float = 60.0) -> PlanReport:
    """The cheapest mixed fleet for the workload, with the homogeneous and fastest-accelerator baselines."""
    options, notes = price_options(workload, catalog, table.given_prices)
    notes = list(table.notes) + notes
    caps = table.capacities
    measured = {c.instance_type for c in caps}
    notes += [f"{t}: no capacity for any class (not in the results; give --capacities with a cited source)"
              for t in workload.pool.instance_types if t not in measured]
    kw = dict(max_utilisation=max_utilisation, slice_factor=slice_factor, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s)
    try:
        plan = solve(workload, caps, options, **kw)  # type: ignore[arg-type]
    except UsageError as e:  # say why capacities are missing, when the results say it
        raise UsageError(f"{e}; {notes[0]}" if notes and "cannot be served" in str(e) else str(e)) from None
    types = [t for t in workload.pool.instance_types if any(o.instance_type == t for o in options)]
    best_h: Baseline | None = None
    best_cost = math.inf
    for t in types:
        if not _serves_all(workload, caps, t):
            continue
        cost, b = _restricted(workload, caps, options, {t}, "best homogeneous fleet", plan.usd_per_hour, **kw)
        if cost < best_cost:
            best_cost, best_h = cost, b
    homogeneous = best_h or Baseline("best homogeneous fleet", None, None, None, None,
                                     reason="no single pooled instance type serves every class at its SLO")
    full = [t for t in types if _serves_all(workload, caps, t)]
    accel = [t for t in full if any(o.accelerator_count > 0 for o in options if o.instance_type == t)]
    fastest_label = "everything on the fastest accelerator" if accel else "everything on the fastest type (no accelerator pooled)"
    pool = accel or full
    if pool:
        def speed(t: str) -> float:
            values = [c.capacity_rps for c in caps if c.instance_type == t]
            return math.exp(sum(math.log(v) for v in values) / len(values))
        fastest_type = max(pool, key=lambda t: (speed(t), t))
        _, fastest = _restricted(workload, caps, options, {fastest_type}, fastest_label, plan.usd_per_hour, **kw)
    else:
        fastest = Baseline(fastest_label, None, None, None, None, reason="no single pooled type serves every class")
    return PlanReport(plan=plan, capacities=caps, homogeneous=homogeneous, fastest=fastest, notes=notes)
