"""Sizing one point's fleet for a request rate within a p99 SLO, by measured or modelled capacity.

A request is one item. Two sources of capacity, never mixed within a point:

- **measured**: a server-scenario point (hwbench.analyse.server). Its latencies already run
  from scheduled arrival to completion, dynamic batching and queueing included, so there is
  no separate batching wait; the capacity is the one its search measured at the SLO, or read
  off its curve at another SLO, and the predicted p99 at R / instances is interpolated
  between measured rates.
- **modelled: <model>**: any other point. Its raw latencies (a sketch of their quantiles,
  `service_sketch_ms`) are the service time of one call of b items; with a central batcher
  a request first waits up to (b - 1) / R for its batch to fill, then the batch queues for
  one of the point's `concurrency` servers. The calls reach an instance as a Poisson stream
  at R / (instances x b) (conservative: batching and round-robin smooth it), replayed by
  hwbench.analyse.capacity. A point without raw latencies is modelled as M/D/c at its batch
  p99, and says so. The capacity is capped at max_utilisation x the service rate, and at
  max_utilisation x the point's measured throughput where that is lower.

instances = ceil(R / capacity); utilisation = (R / instances) / the instance's service rate.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from hwbench.analyse.capacity import (
    DEFAULT_MAX_UTILISATION,
    REPLAY_MODEL,
    allen_cunneen_capacity_rps,
    modelled_capacity_rps,
    modelled_p99_s,
    service_sketch_s,
)
from hwbench.analyse.server import SERVER, measured_capacity_rps, measured_p99_ms, saturation_rps

MEASURED = "measured"
MODELLED = "modelled"
NO_SAMPLES_MODEL = "M/D/c at the batch p99 (no raw latencies)"
SIZING_COLUMNS = ("batching_wait_ms", "capacity_rps", "capacity_source", "capacity_note", "capacity_cross_check_rps",
                  "instances", "rate_per_instance_rps", "request_latency_p99_ms", "utilisation", "meets_slo")


def attach_service_sketches(points: pd.DataFrame, latencies: pd.DataFrame) -> pd.DataFrame:
    """Add `service_sketch_ms`: each point's raw per-call latencies (store.load_latencies), as quantiles."""
    sketches: dict[tuple[str, str], list[float]] = {}
    if len(latencies):
        for (run, trial), g in latencies.groupby(["run_id", "trial_id"], sort=False):
            sketch = service_sketch_s(g["latency_ns"].to_numpy(dtype=np.float64) / 1e9)
            if len(sketch):
                sketches[(str(run), str(trial))] = [float(v) * 1e3 for v in sketch]
    keys = zip(points["run_id"].astype(str), points["trial_id"].astype(str)) if "trial_id" in points else []
    found = [sketches.get(k) for k in keys] if sketches else [None] * len(points)
    return points.assign(service_sketch_ms=pd.Series(found, index=points.index, dtype=object))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_measured(row: Mapping[str, Any]) -> bool:
    return row.get("scenario") == SERVER and isinstance(row.get("rate_curve"), list) and bool(row.get("rate_curve"))


def lower_bound_instances(row: Mapping[str, Any], rate_rps: float, max_utilisation: float) -> int:
    """Fewest instances a modelled point can need (its capped throughput): prunes the pick's search."""
    thr = _float(row.get("throughput_sps"))
    return max(1, math.ceil(rate_rps / (max_utilisation * thr) - 1e-9)) if thr > 0 else 1


def _shape(row: Mapping[str, Any]) -> tuple[int, int, np.ndarray, str, float]:
    batch = max(1, int(_float(row.get("batch_size")) or 1))
    conc = _float(row.get("concurrency"))
    servers = int(conc) if math.isfinite(conc) and conc >= 1 else 1
    service, model = _service_s(row)
    return batch, servers, service, model, _float(row.get("throughput_sps"))


def _fits(batch: int, servers: int, service: np.ndarray, thr: float, slo_p99_ms: float, rate_rps: float, instances: int,
          max_utilisation: float, seed: int) -> float | None:
    per = rate_rps / instances
    if per > max_utilisation * batch * servers / float(service.mean()) or (thr > 0 and per > max_utilisation * thr):
        return None
    p99 = (batch - 1) / rate_rps * 1000.0 + modelled_p99_s(service, per / batch, servers=servers, seed=seed) * 1e3
    return p99 if p99 <= slo_p99_ms else None


def fits_with(row: Mapping[str, Any], slo_p99_ms: float, rate_rps: float, instances: int, *,
              max_utilisation: float = DEFAULT_MAX_UTILISATION, seed: int = 0) -> dict[str, Any] | None:
    """A modelled point's sizing with exactly `instances`, by one replay and no capacity search; None if they do not suffice.

    The capacity is left unsearched (NaN): the pick searches it for the point it returns."""
    batch, servers, service, model, thr = _shape(row)
    p99 = _fits(batch, servers, service, thr, slo_p99_ms, rate_rps, instances, max_utilisation, seed)
    if p99 is None:
        return None
    per = rate_rps / instances
    rate = batch * servers / float(service.mean())
    return dict(batching_wait_ms=(batch - 1) / rate_rps * 1000.0, capacity_rps=math.nan,
                capacity_source=f"{MODELLED}: {model}", capacity_note="capacity not searched (a candidate of a pick)",
                capacity_cross_check_rps=None, instances=instances, rate_per_instance_rps=per, request_latency_p99_ms=p99,
                utilisation=per / (min(rate, thr) if thr > 0 else rate), meets_slo=True)


def size_point(row: Mapping[str, Any], slo_p99_ms: float, rate_rps: float, *,
               max_utilisation: float = DEFAULT_MAX_UTILISATION, seed: int = 0) -> dict[str, Any]:
    """The SIZING_COLUMNS of one point at a rate and SLO (instances 0 and meets_slo False when none suffice)."""
    return (_size_measured if is_measured(row) else _size_modelled)(row, slo_p99_ms, rate_rps, max_utilisation, seed)


def _result(capacity: float, source: str, note: str, wait_ms: float, rate_rps: float, slo_p99_ms: float,
            p99_at: Any, service_rate: float, cross: float | None, unloaded_ms: float, fewer: Any = None) -> dict[str, Any]:
    if not capacity > 0:
        return dict(batching_wait_ms=wait_ms, capacity_rps=0.0, capacity_source=source, capacity_note=note,
                    capacity_cross_check_rps=cross, instances=0, rate_per_instance_rps=math.nan,
                    request_latency_p99_ms=unloaded_ms, utilisation=math.nan, meets_slo=False)
    instances = max(1, math.ceil(rate_rps / capacity - 1e-9))
    if fewer is not None and instances > 1 and fewer(instances - 1):  # the search's tolerance: one fewer may do
        instances -= 1
    per = rate_rps / instances
    p99 = p99_at(per)
    return dict(batching_wait_ms=wait_ms, capacity_rps=capacity, capacity_source=source, capacity_note=note,
                capacity_cross_check_rps=cross, instances=instances, rate_per_instance_rps=per,
                request_latency_p99_ms=p99, utilisation=per / service_rate if service_rate > 0 else math.nan,
                meets_slo=bool(p99 <= slo_p99_ms))


def _size_measured(row: Mapping[str, Any], slo_p99_ms: float, rate_rps: float, max_utilisation: float,
                   seed: int) -> dict[str, Any]:
    curve = row["rate_curve"]
    searched_slo, searched_cap = _float(row.get("slo_p99_ms")), _float(row.get("capacity_at_slo_rps"))
    capacity = measured_capacity_rps(curve, slo_p99_ms, searched_slo_p99_ms=searched_slo, searched_capacity_rps=searched_cap)
    same = math.isfinite(searched_slo) and math.isclose(searched_slo, slo_p99_ms) and searched_cap > 0
    note = (f"server scenario: capacity search at p99 <= {searched_slo:g} ms" if same else
            f"server scenario: read off the measured curve at p99 <= {slo_p99_ms:g} ms (a lower bound)")
    rep_p99 = _float(row.get("latency_p99_ms"))

    def p99_at(per: float) -> float:
        v = measured_p99_ms(curve, per)
        return v if math.isfinite(v) else rep_p99  # between the last rate tried and the searched capacity

    lowest = measured_p99_ms(curve, 0.0)
    return _result(capacity, MEASURED, note, 0.0, rate_rps, slo_p99_ms, p99_at, saturation_rps(curve), None, lowest)


def _service_s(row: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    sketch = row.get("service_sketch_ms")
    if isinstance(sketch, (list, tuple, np.ndarray)) and len(sketch):
        return np.asarray(sketch, dtype=np.float64) / 1e3, REPLAY_MODEL
    return np.array([_float(row.get("latency_p99_ms")) / 1e3]), NO_SAMPLES_MODEL


def _size_modelled(row: Mapping[str, Any], slo_p99_ms: float, rate_rps: float, max_utilisation: float,
                   seed: int) -> dict[str, Any]:
    batch, servers, service, model, thr = _shape(row)
    source = f"{MODELLED}: {model}"
    wait_ms = (batch - 1) / rate_rps * 1000.0
    budget_ms = slo_p99_ms - wait_ms
    unloaded_ms = wait_ms + float(np.quantile(service, 0.99)) * 1e3
    service_rate = batch * servers / float(service.mean())
    if budget_ms <= 0:
        return _result(0.0, source, f"the batching wait alone ({wait_ms:.3g} ms) exceeds the SLO", wait_ms, rate_rps,
                       slo_p99_ms, None, service_rate, None, unloaded_ms)
    calls, note = modelled_capacity_rps(service, budget_ms, servers=servers, max_utilisation=max_utilisation, seed=seed)
    capacity = batch * calls
    if thr > 0 and capacity > max_utilisation * thr:  # the measured throughput is below the samples' service rate
        capacity = max_utilisation * thr
        note += f"; capped at {max_utilisation:.0%} of the measured throughput"
    if batch > 1:
        note += f"; {batch} items per call, after a batching wait of {wait_ms:.3g} ms"
    cross_calls, _ = allen_cunneen_capacity_rps(service, budget_ms, servers=servers, max_utilisation=max_utilisation)
    cross = min(batch * cross_calls, max_utilisation * thr) if thr > 0 else batch * cross_calls

    def p99_at(per: float) -> float:
        return wait_ms + modelled_p99_s(service, per / batch, servers=servers, seed=seed) * 1e3

    def fewer(n: int) -> bool:
        return _fits(batch, servers, service, thr, slo_p99_ms, rate_rps, n, max_utilisation, seed) is not None

    return _result(capacity, source, note, wait_ms, rate_rps, slo_p99_ms, p99_at,
                   min(service_rate, thr) if thr > 0 else service_rate, cross, unloaded_ms, fewer)
