"""The fleet optimiser: the cheapest mix of instances, and the routing table, that serves every class at its SLO.

A mixed-integer program, solved by HiGHS (scipy.optimize.milp):

    variables  N[o]      whole instances of option o = (instance type, pricing kind); one per hour for
                         on-demand and spot, one for the whole day for reserved and owned (paid every hour)
               x[k,o,h]  the fraction of class k's requests in hour h routed to option o, in [0, 1]
    minimise   sum_o committed price_o N[o] + 1/H sum_h sum_o elastic price_o N[o,h]
               (+ 1/H sum energy: rate x J/request x $/kWh, with objective "cost+energy")
    subject to sum_o x[k,o,h] = 1                                  every request is served
               sum_k rate[k,h] x[k,o,h] / cap[k,o] <= N[o,h]       no instance above its capacity at the SLO
               sum_{o of type t} N[o,h] <= max_count[t]             availability caps
    with       cap[k,o] = capacity_rps(k, t) x (1 - headroom) x (1 - spot derate, for spot)
               x[k,o,h] = 0 for spot options unless class k is interruptible

Routing is continuous by default. With `slice_factor` s it is restricted to multiples of 1/s, as
Melange (Griggs et al., arXiv 2404.14527) slices each request bucket; the sliced optimum can never
be cheaper and is strictly dearer when a class's best split is not a multiple of 1/s (README).
The model assumes load adds linearly on an instance (the fractions of capacity each class uses sum
to at most one), one copy of each model per instance, and capacities measured or modelled at the
class's SLO; `hwbench plan --simulate` checks the result by replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from hwbench.errors import UsageError
from hwbench.analyse.demand import COMMITTED_KINDS, Workload

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Capacity:
    """Requests/s one instance of `instance_type` serves for class `cls` within its p99 SLO, and where that comes from.

    `source` is "measured", "modelled: <basis>" or "given: <citation>". `service_s` holds the
    service-time samples the simulation draws from (None when not known), `servers` the requests
    one instance serves at once (the point's concurrency), `config` the point it was derived from.
    """

    cls: str
    instance_type: str
    capacity_rps: float
    source: str
    config: str = ""
    j_per_request: float | None = None
    servers: int = 1
    service_s: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Option:
    """An instance type at a pricing kind, and its hourly price (with the price's date and source)."""

    instance_type: str
    pricing: str
    usd_per_hour: float
    as_of: str | None = None
    source: str | None = None
    accelerator_count: int = 0

    @property
    def key(self) -> str:
        return f"{self.instance_type}/{self.pricing}"

    @property
    def committed(self) -> bool:
        return self.pricing in COMMITTED_KINDS


@dataclass
class HourPlan:
    """One hour's fleet and routing table (routing[class][option key] = fraction of its requests)."""

    hour: int
    counts: dict[str, int]
    routing: dict[str, dict[str, float]]
    usd_per_hour: float
    utilisation: dict[str, float]  # option key -> planned load / capacity of its instances


@dataclass
class FleetPlan:
    """The optimiser's answer: per-hour plans, costs, and how the solve went."""

    hours: list[HourPlan]
    options: list[Option]
    usd_per_hour: float  # instance cost, averaged over the hours
    energy_usd_per_hour: float
    class_usd_per_1m: dict[str, float]
    status: str
    mip_gap: float
    solve_time_s: float
    max_utilisation: float
    slice_factor: int | None = None

    def autoscaling_bounds(self) -> dict[str, tuple[int, int]]:
        """Option key -> (least, most) instances over the day."""
        keys = {k for h in self.hours for k in h.counts}
        return {k: (min(h.counts.get(k, 0) for h in self.hours), max(h.counts.get(k, 0) for h in self.hours)) for k in sorted(keys)}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["options"] = [asdict(o) | {"key": o.key} for o in self.options]
        out["autoscaling_bounds"] = {k: list(v) for k, v in self.autoscaling_bounds().items()}
        return out


def effective_capacity(cap: Capacity, option: Option, workload: Workload, max_utilisation: float) -> float:
    """The planned capacity: the capacity at the SLO, less headroom, less the spot derating."""
    derate = workload.pool.spot_interruption_derate if option.pricing == "spot" else 0.0
    return cap.capacity_rps * max_utilisation * (1.0 - derate)


def _pairs(workload: Workload, capacities: dict[tuple[str, str], Capacity], options: Sequence[Option]) -> list[tuple[int, int]]:
    out = []
    for k, c in enumerate(workload.classes):
        for o, opt in enumerate(options):
            cap = capacities.get((c.name, opt.instance_type))
            if cap is None or not cap.capacity_rps > 0:
                continue
            if opt.pricing == "spot" and not c.interruptible:
                continue
            out.append((k, o))
    return out


def _unservable(workload: Workload, pairs: list[tuple[int, int]], options: Sequence[Option],
                capacities: dict[tuple[str, str], Capacity]) -> None:
    served = {k for k, _ in pairs}
    for k, c in enumerate(workload.classes):
        if k in served:
            continue
        measured = sorted({o.instance_type for o in options if (c.name, o.instance_type) in capacities})
        if measured and not c.interruptible:
            raise UsageError(f"class {c.name!r} ({c.model}) cannot be served: only spot capacity is pooled for "
                             f"{', '.join(measured)}, and spot is only for interruptible classes")
        types = ", ".join(sorted({o.instance_type for o in options})) or "none priced"
        raise UsageError(f"class {c.name!r} ({c.model}) cannot be served: no capacity at its p99 SLO of "
                         f"{c.slo_p99_ms:g} ms on any pooled option ({types})")


def solve(workload: Workload, capacities: Iterable[Capacity], options: Sequence[Option], *,
          max_utilisation: float | None = None, slice_factor: int | None = None, mip_rel_gap: float = 0.0,
          time_limit_s: float = 60.0) -> FleetPlan:
    """The cheapest fleet and routing for `workload` over `options`; UsageError naming a class that cannot be served.

    Without reserved or owned options the hours are independent, and each is solved on its own.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    capacities = list(capacities)
    caps = {(c.cls, c.instance_type): c for c in capacities}
    u = (1.0 - workload.pool.headroom) if max_utilisation is None else max_utilisation
    if not 0 < u <= 1:
        raise UsageError(f"max utilisation must be in (0, 1], got {u:g}")
    options = list(options)
    if workload.hours > 1 and not any(o.committed for o in options):
        return _hour_by_hour(workload, capacities, options, max_utilisation=u, slice_factor=slice_factor,
                             mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s)
    pairs = _pairs(workload, caps, options)
    _unservable(workload, pairs, options, caps)
    H, classes = workload.hours, workload.classes
    rates = np.array([[workload.rates(h)[c.name] for h in range(H)] for c in classes])  # K x H
    # variable layout: committed N[o] | elastic N[o,h] | x[p,h]
    n_index: dict[tuple[int, int], int] = {}
    cost: list[float] = []
    for o, opt in enumerate(options):
        if opt.committed:
            idx = len(cost)
            cost.append(opt.usd_per_hour)
            for h in range(H):
                n_index[(o, h)] = idx
        else:
            for h in range(H):
                n_index[(o, h)] = len(cost)
                cost.append(opt.usd_per_hour / H)
    n_count = len(cost)
    x_index: dict[tuple[int, int], int] = {}
    eff = {}
    price_kwh = workload.pool.usd_per_kwh if workload.pool.objective == "cost+energy" else None
    for p, (k, o) in enumerate(pairs):
        cap = caps[(classes[k].name, options[o].instance_type)]
        eff[p] = effective_capacity(cap, options[o], workload, u)
        for h in range(H):
            if rates[k, h] <= 0:
                continue
            x_index[(p, h)] = len(cost)
            energy = 0.0
            if price_kwh is not None and cap.j_per_request:
                energy = rates[k, h] * 3600.0 * cap.j_per_request / J_PER_KWH * price_kwh / H
            cost.append(energy)
    rows, cols, vals, lo, hi = [], [], [], [], []

    def add_row(entries: list[tuple[int, float]], low: float, high: float) -> None:
        r = len(lo)
        for c_, v in entries:
            rows.append(r)
            cols.append(c_)
            vals.append(v)
        lo.append(low)
        hi.append(high)

    by_class: dict[tuple[int, int], list[int]] = {}
    by_option: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for (p, h), j in x_index.items():
        k, o = pairs[p]
        by_class.setdefault((k, h), []).append(j)
        by_option.setdefault((o, h), []).append((j, rates[k, h] / eff[p]))
    for k, c in enumerate(classes):
        for h in range(H):
            if rates[k, h] > 0:
                add_row([(j, 1.0) for j in by_class[(k, h)]], 1.0, 1.0)
    for (o, h), entries in by_option.items():
        add_row(entries + [(n_index[(o, h)], -1.0)], -np.inf, 0.0)
    for t, cap_count in workload.pool.max_count.items():
        mine = [o for o, opt in enumerate(options) if opt.instance_type == t]
        for h in range(H):
            if mine:
                add_row([(n_index[(o, h)], 1.0) for o in mine], -np.inf, float(cap_count))
    nvar = len(cost)
    integrality = np.zeros(nvar)
    integrality[:n_count] = 1
    upper = np.full(nvar, np.inf)
    upper[n_count:] = 1.0
    if slice_factor:  # x = z / s with integer z: Melange-style slices
        if slice_factor < 1:
            raise UsageError(f"slice_factor must be a whole number >= 1, got {slice_factor}")
        integrality[n_count:] = 1
        upper[n_count:] = slice_factor
        vals = [v / slice_factor if c_ >= n_count else v for c_, v in zip(cols, vals)]
        cost = cost[:n_count] + [c_ / slice_factor for c_ in cost[n_count:]]
    A = coo_matrix((vals, (rows, cols)), shape=(len(lo), nvar)).tocsr()
    started = time.perf_counter()
    with _quiet_stdout():
        res = milp(np.asarray(cost), integrality=integrality, bounds=Bounds(np.zeros(nvar), upper),
                   constraints=LinearConstraint(A, np.asarray(lo), np.asarray(hi)),
                   options={"mip_rel_gap": mip_rel_gap, "time_limit": time_limit_s, "disp": False})
    elapsed = time.perf_counter() - started
    if res.x is None:
        if res.status == 2:  # infeasible: caps; name the class that cannot be served within them
            raise UsageError(_infeasible_reason(workload, caps, options, u))
        raise UsageError(f"the optimiser stopped without a plan: {res.message}")
    scale = float(slice_factor or 1)
    return _read_solution(res.x, workload, options, pairs, caps, eff, n_index, x_index, scale, rates,
                          status="optimal" if res.status == 0 else str(res.message),
                          mip_gap=float(getattr(res, "mip_gap", 0.0) or 0.0), solve_time_s=elapsed, u=u,
                          slice_factor=slice_factor, price_kwh=price_kwh)


def _hour_by_hour(workload: Workload, capacities: list[Capacity], options: list[Option], **kw: Any) -> FleetPlan:
    """Independent hours solved one by one (the same optimum as one program over the day, much smaller)."""
    hours: list[HourPlan] = []
    class_usd = dict.fromkeys((c.name for c in workload.classes), 0.0)
    plans = []
    for h in range(workload.hours):
        active = tuple(dataclasses.replace(c, rates_rps=(c.rates_rps[h],)) for c in workload.classes if c.rates_rps[h] > 0)
        if not active:
            hours.append(HourPlan(hour=h, counts={}, routing={}, usd_per_hour=0.0, utilisation={}))
            continue
        p = solve(dataclasses.replace(workload, classes=active), capacities, options, **kw)
        plans.append(p)
        hp = p.hours[0]
        hp.hour = h
        hours.append(hp)
        for c in active:
            class_usd[c.name] += p.class_usd_per_1m[c.name] * c.rates_rps[0] * 3600.0 / 1e6
    per_1m = {}
    for c in workload.classes:
        n = sum(c.rates_rps) * 3600.0
        per_1m[c.name] = class_usd[c.name] / n * 1e6 if n > 0 else math.nan
    status = "optimal" if all(p.status == "optimal" for p in plans) else "; ".join(sorted({p.status for p in plans}))
    return FleetPlan(hours=hours, options=options, usd_per_hour=sum(h.usd_per_hour for h in hours) / workload.hours,
                     energy_usd_per_hour=sum(p.energy_usd_per_hour for p in plans) / workload.hours, class_usd_per_1m=per_1m,
                     status=status, mip_gap=max(p.mip_gap for p in plans), solve_time_s=sum(p.solve_time_s for p in plans),
                     max_utilisation=kw["max_utilisation"], slice_factor=kw["slice_factor"])


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS prints some debug lines to file descriptor 1 even with disp off; they would corrupt `--json`."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (pytest capture, CliRunner): nothing to guard
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _infeasible_reason(workload: Workload, caps: dict[tuple[str, str], Capacity], options: list[Option], u: float) -> str:
    """Which class alone exceeds what the availability caps allow (or, failing that, the classes together)."""
    for c in workload.classes:
        peak = max(c.rates_rps)
        room = 0.0
        for t in {o.instance_type for o in options}:
            cap = caps.get((c.name, t))
            if cap is None:
                continue
            usable = [o for o in options if o.instance_type == t and (o.pricing != "spot" or c.interruptible)]
            if not usable:
                continue
            best = max(effective_capacity(cap, o, workload, u) for o in usable)
            room += best * workload.pool.max_count.get(t, math.inf)
        if room < peak:
            return (f"class {c.name!r} ({c.model}) cannot be served: {peak:g} requests/s at p99 <= {c.slo_p99_ms:g} ms "
                    f"needs more than the pool's caps allow (at most {room:.4g} requests/s)")
    names = ", ".join(c.name for c in workload.classes)
    return f"classes {names} cannot all be served within the pool's max_count caps at once: raise a cap or add a type"


def _read_solution(x: np.ndarray, workload: Workload, options: list[Option], pairs: list[tuple[int, int]],
                   caps: dict[tuple[str, str], Capacity], eff: dict[int, float], n_index: dict[tuple[int, int], int],
                   x_index: dict[tuple[int, int], int], scale: float, rates: np.ndarray, *, status: str, mip_gap: float,
                   solve_time_s: float, u: float, slice_factor: int | None, price_kwh: float | None) -> FleetPlan:
    H, classes = workload.hours, workload.classes
    hours: list[HourPlan] = []
    class_usd = np.zeros(len(classes))
    energy_total = 0.0
    instance_total = 0.0
    for h in range(H):
        counts = {options[o].key: int(round(x[n_index[(o, h)]])) for o in range(len(options))}
        counts = {k: v for k, v in counts.items() if v > 0}
        routing: dict[str, dict[str, float]] = {}
        load = np.zeros(len(options))
        share = np.zeros((len(classes), len(options)))
        for (p, hh), j in x_index.items():
            if hh != h:
                continue
            k, o = pairs[p]
            frac = float(x[j]) / scale
            if frac <= 1e-12:
                continue
            routing.setdefault(classes[k].name, {})[options[o].key] = frac
            share[k, o] = rates[k, h] * frac / eff[p]
            load[o] += share[k, o]
            if price_kwh is not None:
                j_req = caps[(classes[k].name, options[o].instance_type)].j_per_request or 0.0
                energy_total += rates[k, h] * frac * 3600.0 * j_req / J_PER_KWH * price_kwh / H
        hour_usd = sum(options[o].usd_per_hour * counts.get(options[o].key, 0) for o in range(len(options)))
        instance_total += hour_usd / H
        requests = rates[:, h]
        for o, opt in enumerate(options):
            spend = opt.usd_per_hour * counts.get(opt.key, 0)
            if spend == 0:
                continue
            if load[o] > 0:  # an option's cost is shared by the load each class puts on it
                class_usd += spend * share[:, o] / load[o]
            elif requests.sum() > 0:  # idle committed capacity: shared by request volume
                class_usd += spend * requests / requests.sum()
        utilisation = {options[o].key: float(load[o] * u / counts[options[o].key]) for o in range(len(options))
                       if options[o].key in counts}
        hours.append(HourPlan(hour=h, counts=counts, routing=routing, usd_per_hour=hour_usd, utilisation=utilisation))
    per_1m = {}
    for k, c in enumerate(classes):
        n_requests = rates[k].sum() * 3600.0
        per_1m[c.name] = float(class_usd[k] / n_requests * 1e6) if n_requests > 0 else math.nan
    return FleetPlan(hours=hours, options=options, usd_per_hour=float(instance_total), energy_usd_per_hour=float(energy_total),
                     class_usd_per_1m=per_1m, status=status, mip_gap=mip_gap, solve_time_s=solve_time_s, max_utilisation=u,
                     slice_factor=slice_factor)
