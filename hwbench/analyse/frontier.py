"""The frontier and the scheduler contract: mark, pick within an SLO, export, load.

The frontier per model is the set of points not dominated on p99 latency and a second
objective: cost per 1M inferences (the default), throughput or energy per inference.
Energy estimates (power_method "estimate-tdp") never compete with measured energy.

An SLO pick sizes each point's fleet by its capacity at the SLO (hwbench.analyse.sizing):
MEASURED for a server-scenario point (its rate-latency curve), MODELLED for any other (a
queue replay of its own raw latencies, batching wait included), labelled in
`capacity_source`, never mixed. Instances = ceil(R / capacity); the fleet costs instances x
the (k/n-shared) hourly price; the request p99 is the predicted one at R / instances. A
modelled capacity is capped at `max_utilisation` (DEFAULT_MAX_UTILISATION, never 1: a full
queue has no bounded p99). Where a configuration (model, hardware, adapter, precision) has
a server point, its other points are left out of the pick: the measured curve speaks for it.

Export (JSON, `schema_version` 2) is what a scheduler reads:
    {"kind": "hwbench.frontier", "schema_version": 1, "generated_at", "hwbench_version",
     "objective", "price_kind", "electricity", "points": [POINT, ...]}
    POINT = {"model", "model_sha256", "hardware", "instance_type", "device", "accelerator",
             "accelerators_used", "adapter", "precision", "precision_effective", "batch_size",
             "scenario", "concurrency", "latency_p50_ms", "latency_p99_ms", "throughput_sps",
             "price_usd_per_hour", "price_share", "price_basis", "price_as_of", "price_source",
             "cost_usd_per_1m", "energy_j_per_inference", "energy_estimated", "on_frontier",
             # version 2: the server scenario and what sizing reads
             "offered_rps", "achieved_rps", "burstiness", "max_batch", "max_queue_delay_ms",
             "p99_bound_claimed", "slo_p99_ms", "capacity_at_slo_rps", "capacity_lo_rps",
             "capacity_hi_rps", "capacity_source", "rate_curve", "service_sketch_ms"}
Versions: 1 (hwbench 0.1) the points; 2 (hwbench 0.3) the server fields, the measured capacity
("capacity_source": "measured" on server points, else null: a modelled capacity depends on
the SLO and is computed at pick time from "service_sketch_ms", 200 quantiles of the raw
per-call latencies) and the rate-latency curve. A version-1 file loads; its points have no
sketch and are modelled as M/D/c at their batch p99, and say so.
Every priced point is exported, on the frontier or not, because with whole instances the
cheapest fleet for a rate can be a point off the full-utilisation frontier.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from hwbench.fsutil import atomic_write_text
from hwbench.jsonsafe import json_safe

from hwbench import __version__
from hwbench.analyse.exportfile import read_export
from hwbench.errors import HwbenchError, ResultsError, UsageError
from hwbench.analyse.capacity import DEFAULT_MAX_UTILISATION
from hwbench.analyse.llmcost import LLM_COLUMNS, LLM_COST_COLUMNS, frontier_axes
from hwbench.analyse.pareto import MAX, MIN, pareto_mask_by
from hwbench.analyse.server import SERVER, SERVER_COLUMNS
from hwbench.analyse.sizing import MEASURED, SIZING_COLUMNS, fits_with, is_measured, lower_bound_instances, size_point

FRONTIER_SCHEMA_VERSION = 2
FRONTIER_KIND = "hwbench.frontier"
OBJECTIVES: dict[str, tuple[str, str]] = {
    "cost": ("cost_usd_per_1m", MIN),
    "throughput": ("throughput_sps", MAX),
    "energy": ("energy_j_per_inference", MIN),
}
POINT_FIELDS = (
    "model", "model_sha256", "hardware", "instance_type", "device", "accelerator", "accelerators_used", "adapter",
    "precision", "precision_effective", "batch_size", "scenario", "concurrency", "latency_p50_ms", "latency_p99_ms",
    "throughput_sps", "price_usd_per_hour", "price_share", "price_basis", "price_as_of", "price_source",
    "cost_usd_per_1m", "energy_j_per_inference", "items_per_j", "energy_estimated", "on_frontier", "p99_resolved",
    *(c for c in SERVER_COLUMNS if c != "capacity_search"), "capacity_source", "rate_curve", "service_sketch_ms",
    *LLM_COLUMNS, *LLM_COST_COLUMNS,
)
REQUIRED_POINT_FIELDS = ("model", "hardware", "batch_size", "latency_p99_ms", "throughput_sps",
                         "price_usd_per_hour", "cost_usd_per_1m")


class NoFeasiblePick(HwbenchError):
    """No priced configuration of the model meets the SLO at the rate."""


def mark_frontier(points: pd.DataFrame, objective: str = "cost") -> pd.DataFrame:
    """Add `on_frontier` and `frontier_basis` (what the frontier was computed on) per model.

    A model without a single cost (or energy) figure is ranked on throughput instead, and
    says so. With energy, a model with measured energy leaves its estimates off.
    """
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    column, sense = OBJECTIVES[objective]
    model, p99, values = frontier_axes(points, column)  # generate points: their (prompt, output) bucket, TPOT p99, per token
    per_model = lambda flags: np.bincount(model, weights=flags, minlength=model.max(initial=-1) + 1)[model]  # noqa: E731
    rows = per_model(np.ones(len(points)))
    labels = [f"p99 vs {objective}", "p99 vs energy (estimated)", f"p99 vs throughput (no {objective} figures)"]
    basis = np.zeros(len(points), dtype=np.int8)
    if objective == "energy":
        estimated = points["energy_estimated"].to_numpy(dtype=bool)
        has_measured = per_model(~estimated & ~np.isnan(values)) > 0
        values = np.where(estimated & has_measured, np.nan, values)
        basis[estimated & ~has_measured] = 1
    if objective != "throughput":  # a model with no cost (or energy) figure at all is ranked on throughput
        fallback = per_model(np.isnan(values)) == rows
        throughput = pd.to_numeric(points["throughput_sps"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        values = np.where(fallback, -throughput, values)  # negated: minimised like the cost
        basis[fallback] = 2
    frame = pd.DataFrame({"model": model, "p99": p99, "second": values})
    mask = pareto_mask_by(frame, {"p99": MIN, "second": sense}, "model")
    return points.assign(on_frontier=mask, frontier_basis=pd.Categorical.from_codes(basis, categories=labels))


@dataclass(frozen=True)
class Pick:
    """The cheapest configuration that meets a p99 SLO at a request rate, and its fleet.

    `capacity_source` is "measured" (a server-scenario curve) or "modelled: <model>"; the
    request p99 is the one predicted (or measured) at rate_rps / instances, queueing included."""

    model: str
    hardware: str
    instance_type: str | None
    adapter: str
    precision: str
    batch_size: int
    scenario: str
    latency_p99_ms: float  # the batch's own p99 (a server point: at the rate it was picked from)
    batching_wait_ms: float  # (b - 1) / R; 0 for a server point, whose latencies include it
    request_latency_p99_ms: float  # predicted (or measured) at rate_rps / instances, queueing included
    throughput_sps: float
    instances: int
    price_usd_per_hour: float  # one instance (its k/n share)
    fleet_usd_per_hour: float
    utilisation: float
    cost_usd_per_1m_at_rate: float
    price_as_of: str | None
    price_source: str | None
    slo_p99_ms: float
    rate_rps: float
    capacity_rps: float = math.nan  # one instance's capacity at the SLO (requests/s)
    capacity_source: str = ""  # "measured" or "modelled: <model>"
    capacity_note: str = ""
    capacity_cross_check_rps: float | None = None  # modelled: the Allen-Cunneen M/G/c capacity, for comparison
    rate_per_instance_rps: float = math.nan
    max_utilisation: float = DEFAULT_MAX_UTILISATION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """Per-model picks (each model on its best hardware) against one instance type for all."""

    picks: dict[str, Pick]
    total_usd_per_hour: float
    homogeneous_instance_type: str | None  # the cheapest single instance type meeting every model's SLO
    homogeneous_usd_per_hour: float | None
    saving_usd_per_hour: float | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["picks"] = {m: p.to_dict() for m, p in self.picks.items()}
        return out


def _check_demand(slo_p99_ms: float, rate_rps: float, max_utilisation: float) -> None:
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise UsageError(f"request rate must be positive, got {rate_rps}")
    if not (slo_p99_ms > 0 and math.isfinite(slo_p99_ms)):
        raise UsageError(f"p99 SLO must be positive, got {slo_p99_ms} ms")
    if not (0 < max_utilisation < 1):
        raise UsageError(f"the utilisation limit must be above 0 and below 1 (a full queue has no p99), got {max_utilisation:g}")


def _candidates(points: pd.DataFrame) -> pd.DataFrame:
    """The priced points with a usable p99, less the points a measured server curve speaks for."""
    thr = pd.to_numeric(points["throughput_sps"], errors="coerce").astype(float)
    price = pd.to_numeric(points["price_usd_per_hour"], errors="coerce").astype(float)
    p99 = pd.to_numeric(points["latency_p99_ms"], errors="coerce").astype(float)
    usable = (thr > 0) & price.notna() & p99.notna()
    if "p99_resolved" in points:  # an open p99 interval cannot promise an SLO
        usable &= points["p99_resolved"].astype(object).fillna(True).astype(bool)
    t = points.loc[usable]
    if "scenario" in t and "rate_curve" in t:
        served = t.apply(lambda r: is_measured(r), axis=1).astype(bool) if len(t) else pd.Series([], dtype=bool)
        if served.any():
            key = ["model", "hardware", "adapter", "precision"]
            covered = t.loc[served, key].astype(str).drop_duplicates().assign(_covered=True)
            mark = t[key].astype(str).merge(covered, on=key, how="left")["_covered"].eq(True).to_numpy(dtype=bool)
            t = t[served.to_numpy() | ~mark]
    return t.assign(throughput_sps=pd.to_numeric(t["throughput_sps"], errors="coerce").astype(float),
                    price_usd_per_hour=pd.to_numeric(t["price_usd_per_hour"], errors="coerce").astype(float))


def _sized(t: pd.DataFrame, slo_p99_ms: float, rate_rps: float, max_utilisation: float,
           rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """t with its SIZING_COLUMNS, fleet and cost; `rows` when the sizing is already done."""
    if rows is None:
        rows = [size_point(r, slo_p99_ms, rate_rps, max_utilisation=max_utilisation) for r in t.to_dict(orient="records")]
    cols = pd.DataFrame(rows, index=t.index, columns=list(SIZING_COLUMNS))
    fleet = cols["instances"].astype(float).where(cols["instances"] > 0) * t["price_usd_per_hour"]
    return t.assign(**{c: cols[c] for c in SIZING_COLUMNS}).assign(
        instances=cols["instances"].astype(np.int64), fleet_usd_per_hour=fleet,
        cost_usd_per_1m_at_rate=fleet / (rate_rps * 3600.0) * 1e6, meets_slo=cols["meets_slo"].astype(bool))


def slo_table(points: pd.DataFrame, slo_p99_ms: float, rate_rps: float, *,
              max_utilisation: float = DEFAULT_MAX_UTILISATION) -> pd.DataFrame:
    """Every candidate point with its capacity (and its source), fleet size, predicted request p99 and cost.

    One capacity search per point: a modelled point replays its queue, so for a large
    matrix prefer pick(), which sizes only the points that could still be the cheapest."""
    _check_demand(slo_p99_ms, rate_rps, max_utilisation)
    return _sized(_candidates(points), slo_p99_ms, rate_rps, max_utilisation)


def _pruned(t: pd.DataFrame, slo_p99_ms: float, rate_rps: float, max_utilisation: float) -> pd.DataFrame:
    """The candidates that could be the cheapest, sized; the others are left out.

    Best first on a lower bound of each fleet's cost: a measured point's bound is 0 (it is
    sized at once, cheaply), a modelled one's is its throughput at the cap. A popped modelled
    point is first tried at its bound with one replay (its capacity left unsearched); if that
    fails its bound rises by one instance and it is sized in full only when popped again. The search stops when the lowest
    bound left exceeds the cheapest fleet found, so the answer is the full table's."""
    records = t.to_dict(orient="records")
    price = t["price_usd_per_hour"].to_numpy(dtype=float)
    heap: list[tuple[float, int, int]] = []  # (bound on the fleet's cost, position, instances to try; 0: size it)
    for pos, r in enumerate(records):
        n = 0 if is_measured(r) else lower_bound_instances(r, rate_rps, max_utilisation)
        heap.append((n * price[pos], pos, n))
    heapq.heapify(heap)
    sized: dict[int, dict[str, Any]] = {}
    best = math.inf
    while heap:
        bound, pos, n = heapq.heappop(heap)
        if bound > best * (1 + 1e-12):
            break
        if n > 0:  # the fewest instances its throughput allows: exact when they suffice
            one = fits_with(records[pos], slo_p99_ms, rate_rps, n, max_utilisation=max_utilisation)
            if one is None:
                heapq.heappush(heap, ((n + 1) * price[pos], pos, 0))
                continue
        else:
            one = size_point(records[pos], slo_p99_ms, rate_rps, max_utilisation=max_utilisation)
        sized[pos] = one
        if one["meets_slo"]:
            best = min(best, one["instances"] * price[pos])
    order = sorted(sized)
    return _sized(t.iloc[order], slo_p99_ms, rate_rps, max_utilisation, rows=[sized[p] for p in order])


def _cheapest(table: pd.DataFrame) -> pd.Series | None:
    ok = table[table["meets_slo"]]
    if ok.empty:
        return None
    order = ok.sort_values(["fleet_usd_per_hour", "request_latency_p99_ms", "throughput_sps"],
                           ascending=[True, True, False], kind="stable")
    return order.iloc[0]


def _to_pick(row: pd.Series, slo_p99_ms: float, rate_rps: float, max_utilisation: float) -> Pick:
    text = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)  # noqa: E731
    cross = row.get("capacity_cross_check_rps")
    return Pick(model=str(row["model"]), hardware=str(row["hardware"]), instance_type=text(row.get("instance_type")),
                adapter=str(row["adapter"]), precision=str(row["precision"]), batch_size=int(row["batch_size"]),
                scenario=text(row.get("scenario")) or "", latency_p99_ms=float(row["latency_p99_ms"]),
                batching_wait_ms=float(row["batching_wait_ms"]), request_latency_p99_ms=float(row["request_latency_p99_ms"]),
                throughput_sps=float(row["throughput_sps"]), instances=int(row["instances"]),
                price_usd_per_hour=float(row["price_usd_per_hour"]), fleet_usd_per_hour=float(row["fleet_usd_per_hour"]),
                utilisation=float(row["utilisation"]), cost_usd_per_1m_at_rate=float(row["cost_usd_per_1m_at_rate"]),
                price_as_of=text(row.get("price_as_of")), price_source=text(row.get("price_source")),
                slo_p99_ms=slo_p99_ms, rate_rps=rate_rps, capacity_rps=float(row["capacity_rps"]),
                capacity_source=str(row["capacity_source"]), capacity_note=str(row["capacity_note"]),
                capacity_cross_check_rps=None if cross is None or cross != cross else float(cross),
                rate_per_instance_rps=float(row["rate_per_instance_rps"]), max_utilisation=max_utilisation)


def pick(points: pd.DataFrame, model: str, slo_p99_ms: float, rate_rps: float, *,
         max_utilisation: float = DEFAULT_MAX_UTILISATION) -> Pick:
    """The cheapest fleet for `model` whose predicted request p99 at rate_rps / instances meets the SLO."""
    _check_demand(slo_p99_ms, rate_rps, max_utilisation)
    mine = points[points["model"] == model]
    if mine.empty:
        raise UsageError(f"no points for model {model!r}")
    table = _pruned(_candidates(mine), slo_p99_ms, rate_rps, max_utilisation)
    best = _cheapest(table)
    if best is None:
        if table.empty:
            if "p99_resolved" in mine and not mine["p99_resolved"].astype(object).fillna(True).astype(bool).any():
                raise NoFeasiblePick(f"{model}: no point has a resolved p99 (its interval needs 368 samples; "
                                     "re-measure with a larger --max-duration-s)")
            raise NoFeasiblePick(f"{model}: no priced point to pick from (unknown instance types?)")
        near = table.sort_values("request_latency_p99_ms").iloc[0]
        raise NoFeasiblePick(
            f"{model}: nothing meets p99 <= {slo_p99_ms:g} ms at {rate_rps:g} req/s within {max_utilisation:.0%} "
            f"utilisation; the fastest is {near['hardware']} {near['adapter']} {near['precision']} "
            f"b{int(near['batch_size'])} at {near['request_latency_p99_ms']:.3g} ms unloaded ({near['capacity_source']})"
        )
    if not best["capacity_rps"] >= 0:  # a candidate sized without its capacity search: search it now
        full = size_point(best.to_dict(), slo_p99_ms, rate_rps, max_utilisation=max_utilisation)
        best = best.copy()
        for k in ("capacity_rps", "capacity_note", "capacity_cross_check_rps"):
            best[k] = full[k]
    return _to_pick(best, slo_p99_ms, rate_rps, max_utilisation)


def plan(points: pd.DataFrame, demands: Mapping[str, tuple[float, float]], *,
         max_utilisation: float = DEFAULT_MAX_UTILISATION) -> Plan:
    """Pick each model's cheapest fleet ({model: (slo_p99_ms, rate_rps)}), and compare with the
    cheapest homogeneous choice: one instance type serving every model within its SLO.

    With one model the two coincide and the saving is zero; the saving is what placing each
    model on its own best hardware earns over a one-size-fits-all fleet. Raises
    NoFeasiblePick when some model has no configuration within its SLO."""
    picks = {m: pick(points, m, slo, rate, max_utilisation=max_utilisation) for m, (slo, rate) in demands.items()}
    total = float(sum(p.fleet_usd_per_hour for p in picks.values()))
    per_type: dict[str, float] = {}
    for i, (model, (slo, rate)) in enumerate(demands.items()):
        mine = _candidates(points[points["model"] == model])
        sized = [_pruned(g, slo, rate, max_utilisation) for _, g in mine.groupby("instance_type", sort=True)]
        table = pd.concat(sized) if sized else _sized(mine, slo, rate, max_utilisation)
        best = table[table["meets_slo"]].groupby("instance_type")["fleet_usd_per_hour"].min()
        per_type = best.to_dict() if i == 0 else {t: c + best[t] for t, c in per_type.items() if t in best.index}
    if not per_type:
        return Plan(picks, total, None, None, None)
    cheapest = min(per_type, key=lambda t: (per_type[t], t))
    return Plan(picks, total, cheapest, float(per_type[cheapest]), float(per_type[cheapest]) - total)


def label_capacity(points: pd.DataFrame) -> pd.DataFrame:
    """Add `capacity_source`: "measured" on server points with a curve; None elsewhere (modelled at pick time)."""
    if "rate_curve" not in points or "scenario" not in points:
        return points.assign(capacity_source=None)
    return points.assign(capacity_source=[MEASURED if c == SERVER and isinstance(v, list) and v else None
                                          for c, v in zip(points["scenario"], points["rate_curve"])])


def export(points: pd.DataFrame, path: Path, *, objective: str = "cost", price_kind: str = "on-demand",
           electricity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the priced points (with `on_frontier`) as the scheduler's JSON; return the document."""
    if "on_frontier" not in points:
        points = mark_frontier(points, objective)
    priced = points[pd.to_numeric(points["price_usd_per_hour"], errors="coerce").notna()]
    rows = label_capacity(priced).reindex(columns=list(POINT_FIELDS)).astype(object)
    rows = rows.where(rows.map(lambda v: isinstance(v, list) or pd.notna(v)), None)
    doc = {
        "kind": FRONTIER_KIND, "schema_version": FRONTIER_SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hwbench_version": __version__, "objective": objective, "price_kind": price_kind,
        "electricity": dict(electricity) if electricity else None,
        "points": [_plain(r) for r in rows.to_dict(orient="records")],
    }
    try:
        atomic_write_text(Path(path), json.dumps(doc, indent=1, allow_nan=False) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from e
    return doc


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return json_safe(row)


class Frontier:
    """A loaded frontier export: the points, and picks over them (the scheduler's API)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = dict(doc)
        self.schema_version: int = int(doc["schema_version"])
        self.points = pd.DataFrame(list(doc["points"]), columns=list(POINT_FIELDS))

    @property
    def models(self) -> list[str]:
        return sorted(self.points["model"].unique())

    def frontier(self, model: str) -> pd.DataFrame:
        """The model's frontier points, fastest first."""
        mine = self.points[(self.points["model"] == model) & self.points["on_frontier"].astype(bool)]
        return mine.sort_values("latency_p99_ms").reset_index(drop=True)

    def pick(self, model: str, slo_p99_ms: float, rate_rps: float, *,
             max_utilisation: float = DEFAULT_MAX_UTILISATION) -> Pick:
        return pick(self.points, model, slo_p99_ms, rate_rps, max_utilisation=max_utilisation)

    def plan(self, demands: Mapping[str, tuple[float, float]], *, max_utilisation: float = DEFAULT_MAX_UTILISATION) -> Plan:
        return plan(self.points, demands, max_utilisation=max_utilisation)


def load(path: Path | str) -> Frontier:
    """Read an exported frontier, refusing foreign files and newer schema versions."""
    p, doc, version = read_export(path, FRONTIER_KIND, "frontier", FRONTIER_SCHEMA_VERSION)
    points = doc.get("points")
    if not isinstance(points, list):
        raise ResultsError(f"{p}: 'points' must be a list")
    for i, point in enumerate(points):
        missing = [k for k in REQUIRED_POINT_FIELDS if not isinstance(point, dict) or k not in point]
        if missing:
            raise ResultsError(f"{p}: point {i} lacks {', '.join(missing)}")
    return Frontier(doc)
