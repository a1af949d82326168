"""The frontier and the scheduler contract: mark, pick within an SLO, export, load.

The frontier per model is the set of points not dominated on p99 latency and a second
objective: cost per 1M inferences (the default), throughput or energy per inference.
Energy estimates (power_method "estimate-tdp") never compete with measured energy.

An SLO pick accounts for batching. A central batcher fills batches from the request
stream at R requests/s, so a batch of b waits up to (b-1)/R for its last request; a
request's latency is that wait plus the batch's p99. Instances needed = ceil(R /
throughput); the fleet costs instances x the (k/n-shared) hourly price. Utilisation is
R / (instances x throughput): full utilisation queues without bound, so leave headroom.

Export (JSON, `schema_version` 1) is what a scheduler reads:
    {"kind": "hwbench.frontier", "schema_version": 1, "generated_at", "hwbench_version",
     "objective", "price_kind", "electricity", "points": [POINT, ...]}
    POINT = {"model", "model_sha256", "hardware", "instance_type", "device", "accelerator",
             "accelerators_used", "adapter", "precision", "precision_effective", "batch_size",
             "scenario", "concurrency", "latency_p50_ms", "latency_p99_ms", "throughput_sps",
             "price_usd_per_hour", "price_share", "price_basis", "price_as_of", "price_source",
             "cost_usd_per_1m", "energy_j_per_inference", "energy_estimated", "on_frontier"}
Every priced point is exported, on the frontier or not, because with whole instances the
cheapest fleet for a rate can be a point off the full-utilisation frontier.
"""

from __future__ import annotations

import datetime as dt
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
from hwbench.errors import HwbenchError, ResultsError, UsageError
from hwbench.analyse.llmcost import LLM_COLUMNS, LLM_COST_COLUMNS, frontier_axes
from hwbench.analyse.pareto import MAX, MIN, pareto_mask_by

FRONTIER_SCHEMA_VERSION = 1
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
    """The cheapest configuration that meets a p99 SLO at a request rate, and its fleet."""

    model: str
    hardware: str
    instance_type: str | None
    adapter: str
    precision: str
    batch_size: int
    scenario: str
    latency_p99_ms: float  # the batch's own p99
    batching_wait_ms: float  # (b - 1) / R
    request_latency_p99_ms: float  # wait + batch p99
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


def slo_table(points: pd.DataFrame, slo_p99_ms: float, rate_rps: float) -> pd.DataFrame:
    """Every priced point with its batching wait, request p99, fleet size and cost, and whether it meets the SLO."""
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise UsageError(f"request rate must be positive, got {rate_rps}")
    if not (slo_p99_ms > 0 and math.isfinite(slo_p99_ms)):
        raise UsageError(f"p99 SLO must be positive, got {slo_p99_ms} ms")
    thr = pd.to_numeric(points["throughput_sps"], errors="coerce").astype(float)
    price = pd.to_numeric(points["price_usd_per_hour"], errors="coerce").astype(float)
    p99 = pd.to_numeric(points["latency_p99_ms"], errors="coerce").astype(float)
    usable = (thr > 0) & price.notna() & p99.notna()
    if "p99_resolved" in points:  # an open p99 interval cannot promise an SLO
        usable &= points["p99_resolved"].fillna(True).astype(bool)
    t = points.loc[usable]
    thr, price, p99 = thr[usable], price[usable], p99[usable]
    wait_ms = (t["batch_size"].astype(float) - 1.0) / rate_rps * 1000.0
    instances = np.ceil(rate_rps / thr.to_numpy() - 1e-9).astype(np.int64)
    fleet = instances * price
    return t.assign(
        batching_wait_ms=wait_ms, request_latency_p99_ms=wait_ms + p99, instances=instances,
        fleet_usd_per_hour=fleet, utilisation=rate_rps / (instances * thr),
        cost_usd_per_1m_at_rate=fleet / (rate_rps * 3600.0) * 1e6, meets_slo=(wait_ms + p99) <= slo_p99_ms,
    )


def _cheapest(table: pd.DataFrame) -> pd.Series | None:
    ok = table[table["meets_slo"]]
    if ok.empty:
        return None
    order = ok.sort_values(["fleet_usd_per_hour", "request_latency_p99_ms", "throughput_sps"],
                           ascending=[True, True, False], kind="stable")
    return order.iloc[0]


def _to_pick(row: pd.Series, slo_p99_ms: float, rate_rps: float) -> Pick:
    text = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)  # noqa: E731
    return Pick(model=str(row["model"]), hardware=str(row["hardware"]), instance_type=text(row.get("instance_type")),
                adapter=str(row["adapter"]), precision=str(row["precision"]), batch_size=int(row["batch_size"]),
                scenario=text(row.get("scenario")) or "", latency_p99_ms=float(row["latency_p99_ms"]),
                batching_wait_ms=float(row["batching_wait_ms"]), request_latency_p99_ms=float(row["request_latency_p99_ms"]),
                throughput_sps=float(row["throughput_sps"]), instances=int(row["instances"]),
                price_usd_per_hour=float(row["price_usd_per_hour"]), fleet_usd_per_hour=float(row["fleet_usd_per_hour"]),
                utilisation=float(row["utilisation"]), cost_usd_per_1m_at_rate=float(row["cost_usd_per_1m_at_rate"]),
                price_as_of=text(row.get("price_as_of")), price_source=text(row.get("price_source")),
                slo_p99_ms=slo_p99_ms, rate_rps=rate_rps)


def pick(points: pd.DataFrame, model: str, slo_p99_ms: float, rate_rps: float) -> Pick:
    """The cheapest fleet for `model` whose request p99 (batching wait included) meets the SLO."""
    mine = points[points["model"] == model]
    if mine.empty:
        raise UsageError(f"no points for model {model!r}")
    table = slo_table(mine, slo_p99_ms, rate_rps)
    best = _cheapest(table)
    if best is None:
        if table.empty:
            if "p99_resolved" in mine and not mine["p99_resolved"].fillna(True).astype(bool).any():
                raise NoFeasiblePick(f"{model}: no point has a resolved p99 (its interval needs 368 samples; "
                                     "re-measure with a larger --max-duration-s)")
            raise NoFeasiblePick(f"{model}: no priced point to pick from (unknown instance types?)")
        near = table.sort_values("request_latency_p99_ms").iloc[0]
        raise NoFeasiblePick(
            f"{model}: nothing meets p99 <= {slo_p99_ms:g} ms at {rate_rps:g} req/s; the fastest is {near['hardware']} "
            f"{near['adapter']} {near['precision']} b{int(near['batch_size'])} at {near['request_latency_p99_ms']:.3g} ms"
        )
    return _to_pick(best, slo_p99_ms, rate_rps)


def plan(points: pd.DataFrame, demands: Mapping[str, tuple[float, float]]) -> Plan:
    """Pick each model's cheapest fleet ({model: (slo_p99_ms, rate_rps)}), and compare with the
    cheapest homogeneous choice: one instance type serving every model within its SLO.

    With one model the two coincide and the saving is zero; the saving is what placing each
    model on its own best hardware earns over a one-size-fits-all fleet. Raises
    NoFeasiblePick when some model has no configuration within its SLO."""
    picks = {m: pick(points, m, slo, rate) for m, (slo, rate) in demands.items()}
    total = float(sum(p.fleet_usd_per_hour for p in picks.values()))
    per_type: dict[str, float] = {}
    for i, (model, (slo, rate)) in enumerate(demands.items()):
        table = slo_table(points[points["model"] == model], slo, rate)
        best = table[table["meets_slo"]].groupby("instance_type")["fleet_usd_per_hour"].min()
        per_type = best.to_dict() if i == 0 else {t: c + best[t] for t, c in per_type.items() if t in best.index}
    if not per_type:
        return Plan(picks, total, None, None, None)
    cheapest = min(per_type, key=lambda t: (per_type[t], t))
    return Plan(picks, total, cheapest, float(per_type[cheapest]), float(per_type[cheapest]) - total)


def export(points: pd.DataFrame, path: Path, *, objective: str = "cost", price_kind: str = "on-demand",
           electricity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the priced points (with `on_frontier`) as the scheduler's JSON; return the document."""
    if "on_frontier" not in points:
        points = mark_frontier(points, objective)
    priced = points[pd.to_numeric(points["price_usd_per_hour"], errors="coerce").notna()]
    rows = priced.reindex(columns=list(POINT_FIELDS)).astype(object)
    rows = rows.where(pd.notna(rows), None)
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

    def pick(self, model: str, slo_p99_ms: float, rate_rps: float) -> Pick:
        return pick(self.points, model, slo_p99_ms, rate_rps)

    def plan(self, demands: Mapping[str, tuple[float, float]]) -> Plan:
        return plan(self.points, demands)


def load(path: Path | str) -> Frontier:
    """Read an exported frontier, refusing foreign files and newer schema versions."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"frontier file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"frontier file {p} is unreadable: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != FRONTIER_KIND:
        raise ResultsError(f"{p} is not an hwbench frontier export (kind is not {FRONTIER_KIND!r})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ResultsError(f"{p} has no valid schema_version")
    if version > FRONTIER_SCHEMA_VERSION:
        raise ResultsError(f"{p} is frontier schema {version}; this hwbench reads up to {FRONTIER_SCHEMA_VERSION}: upgrade")
    points = doc.get("points")
    if not isinstance(points, list):
        raise ResultsError(f"{p}: 'points' must be a list")
    for i, point in enumerate(points):
        missing = [k for k in REQUIRED_POINT_FIELDS if not isinstance(point, dict) or k not in point]
        if missing:
            raise ResultsError(f"{p}: point {i} lacks {', '.join(missing)}")
    return Frontier(doc)
