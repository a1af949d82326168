"""The plan a scheduler loads: a versioned JSON document of fleet counts and routing tables per hour.

    {"kind": "hwbench.plan", "schema_version": 1, "generated_at", "hwbench_version", "workload",
     "objective", "max_utilisation", "solver": {"status", "mip_gap", "solve_time_s", "slice_factor"},
     "usd_per_hour", "energy_usd_per_hour",
     "options": [{"key": "TYPE/KIND", "instance_type", "pricing", "usd_per_hour", "as_of", "source"}],
     "hours": [{"hour", "counts": {KEY: n}, "routing": {CLASS: {KEY: fraction}}, "usd_per_hour"}],
     "autoscaling_bounds": {KEY: [least, most]},
     "classes": {CLASS: {"model", "bucket", "slo_p99_ms", "interruptible", "usd_per_1m"}},
     "capacities": [{"class", "instance_type", "capacity_rps", "source", "config"}],
     "baselines": {"homogeneous": {...}, "fastest": {...}}, "simulation": {...} | null, "notes": [...]}

A router reads `hours[h].routing[class]`: the fraction of that class's requests to send to each
option's instances. One hour means a constant workload; 24 means an hourly profile.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from hwbench import __version__
from hwbench.analyse.exportfile import read_export
from hwbench.errors import ResultsError, UsageError
from hwbench.fsutil import atomic_write_text
from hwbench.jsonsafe import json_safe
from hwbench.analyse.demand import Workload
from hwbench.analyse.fleetplan import PlanReport

PLAN_KIND = "hwbench.plan"
PLAN_SCHEMA_VERSION = 1


def plan_document(workload: Workload, report: PlanReport, simulation: Any = None) -> dict[str, Any]:
    """The scheduler's document for a plan (and its simulation, when one was run)."""
    p = report.plan
    doc = {
        "kind": PLAN_KIND, "schema_version": PLAN_SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hwbench_version": __version__, "workload": workload.source, "objective": workload.pool.objective,
        "max_utilisation": p.max_utilisation,
        "solver": {"status": p.status, "mip_gap": p.mip_gap, "solve_time_s": p.solve_time_s, "slice_factor": p.slice_factor},
        "usd_per_hour": p.usd_per_hour, "energy_usd_per_hour": p.energy_usd_per_hour,
        "options": [{"key": o.key, "instance_type": o.instance_type, "pricing": o.pricing, "usd_per_hour": o.usd_per_hour,
                     "as_of": o.as_of, "source": o.source} for o in p.options],
        "hours": [{"hour": h.hour, "counts": h.counts, "routing": h.routing, "usd_per_hour": h.usd_per_hour,
                   "utilisation": h.utilisation} for h in p.hours],
        "autoscaling_bounds": {k: list(v) for k, v in p.autoscaling_bounds().items()},
        "classes": {c.name: {"model": c.model, "bucket": c.bucket, "slo_p99_ms": c.slo_p99_ms, "interruptible": c.interruptible,
                             "usd_per_1m": p.class_usd_per_1m.get(c.name)} for c in workload.classes},
        "capacities": [{"class": c.cls, "instance_type": c.instance_type, "capacity_rps": c.capacity_rps, "source": c.source,
                        "config": c.config} for c in report.capacities],
        "baselines": {"homogeneous": report.homogeneous.to_dict(), "fastest": report.fastest.to_dict()},
        "simulation": simulation.to_dict() if simulation is not None else None,
        "notes": report.notes,
    }
    return json_safe(doc)


def export_plan(doc: dict[str, Any], path: Path | str) -> None:
    try:
        atomic_write_text(Path(path), json.dumps(doc, indent=1, allow_nan=False) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from e


class LoadedPlan:
    """A plan export, read back: the routing table and fleet for any hour."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.schema_version = int(doc["schema_version"])

    @property
    def hours(self) -> int:
        return len(self.doc["hours"])

    def routing(self, hour: int = 0) -> dict[str, dict[str, float]]:
        """class -> option key -> fraction of its requests, for `hour` (a constant plan answers every hour)."""
        return self.doc["hours"][hour % self.hours]["routing"]

    def counts(self, hour: int = 0) -> dict[str, int]:
        return self.doc["hours"][hour % self.hours]["counts"]


def load_plan(path: Path | str) -> LoadedPlan:
    """Read a plan export, refusing foreign files and newer schema versions."""
    p, doc, version = read_export(path, PLAN_KIND, "plan", PLAN_SCHEMA_VERSION)
    if not isinstance(doc.get("hours"), list) or not doc["hours"]:
        raise ResultsError(f"{p}: 'hours' must be a non-empty list")
    return LoadedPlan(doc)
