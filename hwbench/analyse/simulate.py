"""`hwbench plan --simulate`: replay a fleet plan and measure each class's SLO attainment in the model.

Per planned hour: Poisson arrivals per class at its rate; each request routed to an option by
the plan's routing table, then to one of that option's instances uniformly at random (a random
split of a Poisson stream is Poisson); each instance a FIFO queue (hwbench.analyse.queueing.replay_fifo)
with as many servers as its point's concurrency, each request's service time drawn from the
measured service times of its class on that instance type. The first 10% of the window is
warm-up and left out. Spot interruptions are not simulated (the optimiser derates spot instead).

A class attains its SLO when at least 99% of its requests finish within its p99 bound. The
simple capacity model can promise that while the replay disagrees (an instance near 95%
utilisation queues far beyond its unloaded p99): `plan_until_simulation_agrees` lowers the
planned utilisation step by step until every simulated class attains. Classes whose routed
hardware has no service-time samples (given capacities, frontier exports) are reported as not
simulated, never as passing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hwbench.errors import UsageError
from hwbench.analyse.capacities import CapacityTable
from hwbench.analyse.demand import Workload
from hwbench.analyse.fleetplan import PlanReport, plan_workload
from hwbench.analyse.planner import Capacity, FleetPlan
from hwbench.analyse.queueing import replay_fifo
from hwbench.catalog.prices import PriceCatalog

TARGET_ATTAINMENT = 0.99  # a p99 bound holds when 99% of requests meet it
WARMUP_FRACTION = 0.1


@dataclass
class ClassResult:
    """One class's replayed outcome (over every simulated hour)."""

    cls: str
    slo_p99_ms: float
    requests: int
    attainment: float | None  # fraction of requests within the p99 bound
    p99_ms: float | None  # the simulated p99 latency
    meets_slo: bool | None  # None: not simulated
    note: str | None = None


@dataclass
class Simulation:
    classes: dict[str, ClassResult]
    hours_simulated: list[int]
    seed: int
    requests_per_hour: int
    notes: list[str] = field(default_factory=list)

    @property
    def all_meet(self) -> bool:
        return all(r.meets_slo is not False for r in self.classes.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"all_meet": self.all_meet, "kind": "model (discrete-event replay), not a measurement"}


def simulate(workload: Workload, plan: FleetPlan, capacities: list[Capacity], *, seed: int = 0,
             requests_per_hour: int = 40_000, hours: list[int] | None = None) -> Simulation:
    """Replay the plan's hours (all by default) with about `requests_per_hour` requests each."""
    rng = np.random.default_rng(seed)
    caps = {(c.cls, c.instance_type): c for c in capacities}
    options = {o.key: o for o in plan.options}
    slo = {c.name: c.slo_p99_ms for c in workload.classes}
    latencies: dict[str, list[np.ndarray]] = {c.name: [] for c in workload.classes}
    unsimulated: dict[str, str] = {}
    chosen = list(range(len(plan.hours))) if hours is None else hours
    for h in chosen:
        hp = plan.hours[h]
        rates = workload.rates(h)
        total = sum(rates.values())
        if total <= 0:
            continue
        window_s = requests_per_hour / total
        # which options can be replayed: every class routed there needs service-time samples
        blind = {key for cls, route in hp.routing.items() for key in route
                 if caps.get((cls, options[key].instance_type)) is None or caps[(cls, options[key].instance_type)].service_s is None}
        per_instance: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray, str]]] = {}
        for cls, route in hp.routing.items():
            n = rng.poisson(rates[cls] * window_s)
            arrivals = np.sort(rng.uniform(0.0, window_s, size=n))
            keys = list(route)
            pick = rng.choice(len(keys), size=n, p=np.asarray([route[k] for k in keys]) / sum(route.values()))
            for i, key in enumerate(keys):
                if key in blind:
                    unsimulated[cls] = f"routed to {options[key].instance_type}, which has no measured service times"
                    continue
                mine = arrivals[pick == i]
                count = hp.counts.get(key, 0)
                if count <= 0:
                    continue
                inst = rng.integers(0, count, size=len(mine))
                samples = caps[(cls, options[key].instance_type)].service_s
                for j in range(count):
                    a = mine[inst == j]
                    if len(a):
                        per_instance.setdefault((key, j), []).append((a, rng.choice(samples, size=len(a)), cls))  # type: ignore[arg-type]
        for (key, _), parts in per_instance.items():
            arrivals = np.concatenate([p[0] for p in parts])
            service = np.concatenate([p[1] for p in parts])
            owner = np.concatenate([np.full(len(p[0]), p[2], dtype=object) for p in parts])
            order = np.argsort(arrivals, kind="stable")
            servers = min(caps[(cls, options[key].instance_type)].servers for cls in {p[2] for p in parts})
            lat = replay_fifo(arrivals[order], service[order], servers=max(1, servers))
            keep = arrivals[order] >= WARMUP_FRACTION * window_s
            for cls in {p[2] for p in parts}:
                mask = keep & (owner[order] == cls)
                latencies[cls].append(lat[mask] * 1e3)
    results = {}
    for c in workload.classes:
        if c.name in unsimulated:
            results[c.name] = ClassResult(c.name, c.slo_p99_ms, 0, None, None, None, note=f"not simulated: {unsimulated[c.name]}")
            continue
        lat = np.concatenate(latencies[c.name]) if latencies[c.name] else np.empty(0)
        if not len(lat):
            results[c.name] = ClassResult(c.name, c.slo_p99_ms, 0, None, None, None, note="no requests in the simulated window")
            continue
        attained = float(np.mean(lat <= slo[c.name]))
        p99 = float(np.percentile(lat, 99))
        note = None
        if attained < TARGET_ATTAINMENT:
            note = (f"FAILS its p99: {attained:.1%} within {c.slo_p99_ms:g} ms (simulated p99 {p99:.4g} ms), although the "
                    f"capacity model plans it at up to {plan.max_utilisation:.0%} utilisation: keep more headroom")
        results[c.name] = ClassResult(c.name, c.slo_p99_ms, int(len(lat)), attained, p99, attained >= TARGET_ATTAINMENT, note)
    return Simulation(results, chosen, seed, requests_per_hour)


def plan_until_simulation_agrees(workload: Workload, table: CapacityTable, catalog: PriceCatalog, *, step: float = 0.05,
                                 floor: float = 0.5, seed: int = 0, requests_per_hour: int = 40_000,
                                 **kw: Any) -> tuple[PlanReport, Simulation, list[dict[str, Any]]]:
    """Plan, replay, and lower the planned utilisation by `step` until every simulated class attains its SLO.

    Each step goes below the utilisation the last plan actually runs at, so every step changes the plan.
    Returns the last report, its simulation and the history (utilisation, $/hour, classes failing).
    Stops at `floor` and says so in the simulation's notes rather than pretending the plan holds.
    """
    if not 0 < floor <= 1 or not 0 < step < 1:
        raise UsageError(f"headroom search needs 0 < floor <= 1 and 0 < step < 1, got floor {floor:g}, step {step:g}")
    u = 1.0 - workload.pool.headroom
    history: list[dict[str, Any]] = []
    while True:
        report = plan_workload(workload, table, catalog, max_utilisation=u, **kw)
        sim = simulate(workload, report.plan, report.capacities, seed=seed, requests_per_hour=requests_per_hour)
        failing = [n for n, r in sim.classes.items() if r.meets_slo is False]
        history.append({"max_utilisation": round(u, 6), "usd_per_hour": report.plan.usd_per_hour, "failing": failing})
        if not failing:
            return report, sim, history
        # the next utilisation is below what this plan actually runs at, so the next plan must differ
        peak = max((v for h in report.plan.hours for v in h.utilisation.values()), default=u)
        nxt = min(u - step, peak - 1e-6)
        if nxt < floor - 1e-12:
            sim.notes.append(f"stopped at {u:.0%} planned utilisation (the floor is {floor:.0%}): "
                             f"{', '.join(failing)} still fail their p99")
            return report, sim, history
        u = nxt
