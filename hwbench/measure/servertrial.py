"""A server-scenario trial: one record per offered rate, and the capacity at a p99 SLO.

The adapter is prepared once at the dynamic batcher's max batch and warmed at every batch size;
then each rate point (hwbench.measure.server) issues a seeded open-loop schedule and serves it
in dynamic batches. With a list of rates each is measured; without, the capacity search
(hwbench.measure.capacity) picks the rates. Each point is one TrialRecord (trial id
`<trial>__rNN_<rate>rps`, all sharing `capacity_search` = the trial's id), with end-to-end
latency percentiles from scheduled arrival, queueing and service apart, and its validity after
LoadGen: a minimum duration and query count, nothing lost, an issuer that kept to its schedule,
and the p99 bound LoadGen's early stopping lets it claim (hwbench.measure.earlystop).
"""

from __future__ import annotations

import dataclasses
import json
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from hwbench.adapter import Adapter, registry
from hwbench.host.activity import ActivityProbe
from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.capacity import RatePoint, bracket_of, confirm_capacity, search_capacity
from hwbench.measure.earlystop import claimable_bound, describe_bound
from hwbench.measure.server import ServerMeasurement, measure_server, warm_up
from hwbench.measure.settings import MeasureSettings, ServerSettings
from hwbench.measure.stats import summarize
from hwbench.measure.trial import (Trial, TrialContext, _apply_activity, _apply_energy, _check_accuracy, _meter,
                                   adapter_options, admit, apply_effective, base_record, record_failure, stamp_timings)
from hwbench.models.spec import ModelSpec
from hwbench.results.schema import STATUS_OK, TrialRecord, settings_json

LAG_SHARE_OF_P99 = 0.10  # the issuer's lag is material above max_sched_lag_ms AND above this share of the p99
LATE_ISSUER = "the issuer ran late"
MIN_FLOOR_BATCHES = 5  # batches of one needed before their median service time may stop the search going down
MIN_ARRIVALS_IN_CAP = 10.0  # the search goes no lower than 10 expected arrivals within max_duration_s
START_UTILISATION = 0.5  # the search's first rate: half of what batch-1 service time alone could serve


def schedule(rate_rps: float, server: ServerSettings, index: int) -> np.ndarray:
    """The arrival offsets of one rate point: past min_duration_s (one arrival beyond it) and at least
    min_queries, cut at max_duration_s (a point cut short of min_queries is invalid, not longer)."""
    process = ArrivalProcess(rate_rps, server.burstiness, seed=server.seed + index)
    n = len(process.offsets_for(server.min_duration_s, server.min_queries)) + 1
    offsets = process.offsets_s(n)
    return offsets[offsets <= server.max_duration_s] if offsets[0] <= server.max_duration_s else offsets[:1]


def _ms(values_ns: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values_ns, q)) / 1e6 if len(values_ns) else None


def point_columns(m: ServerMeasurement, rate_rps: float, server: ServerSettings, measure: MeasureSettings) -> dict[str, Any]:
    """One rate point's record columns (schema v3 server block, latency statistics) and its validity; also
    `warnings` and `short_reasons` (the invalid reasons that are about the point's length), not columns."""
    latency = m.latency_ns
    served = int(len(latency))
    wall = m.wall_s
    stats = summarize(latency, 1, wall, served, measure)
    out = {k: v for k, v in stats.items() if k not in ("valid", "invalid_reasons", "warnings")}
    lag = m.lag_ns[m.issued_ns >= 0]
    out.update({
        "offered_rps": rate_rps, "achieved_rps": served / wall if wall > 0 else None, "burstiness": server.burstiness,
        "queue_p50_ms": _ms(m.queue_ns, 50), "queue_p99_ms": _ms(m.queue_ns, 99),
        "service_p50_ms": _ms(m.service_ns, 50), "service_p99_ms": _ms(m.service_ns, 99),
        "batch_sizes_json": json.dumps({str(k): v for k, v in m.batch_sizes.items()}),
        "max_batch": server.max_batch, "max_queue_delay_ms": server.max_queue_delay_ms,
        "requests_dropped": int(m.dropped.sum()), "requests_timed_out": m.timed_out,
        "sched_lag_p99_ms": _ms(lag, 99), "stop_reason": None,
    })
    unserved = len(m.scheduled_ns) - served
    out["p99_bound_claimed"] = describe_bound(latency / 1e6, unserved)
    issued = len(m.scheduled_ns)
    short: list[str] = []  # too few queries or too short: the point's length, not a failure of the rate
    warnings: list[str] = []
    if issued < server.min_queries:
        short.append(f"only {issued} queries (< min_queries {server.min_queries}): the {server.max_duration_s:g} s "
                     f"schedule cap at {rate_rps:g} req/s")
    if wall < server.min_duration_s:
        short.append(f"run of {wall:.2f} s below the minimum {server.min_duration_s:g} s")
    reasons = list(short)
    if out["requests_dropped"]:
        reasons.append(f"{out['requests_dropped']} requests dropped (queue full at {server.max_queue})")
    if out["requests_timed_out"]:
        reasons.append(f"{out['requests_timed_out']} requests not served {server.drain_s:g} s after the last arrival: "
                       "the system cannot keep up at this rate")
    lag_p99, p99 = out["sched_lag_p99_ms"], out.get("latency_p99_ms")
    if lag_p99 is not None and lag_p99 > server.max_sched_lag_ms:
        material = p99 is None or lag_p99 > LAG_SHARE_OF_P99 * p99
        text = (f"{LATE_ISSUER}: scheduling lag p99 {lag_p99:.3f} ms > {server.max_sched_lag_ms:g} ms"
                + (f" and > {LAG_SHARE_OF_P99:.0%} of the latency p99" if material else ""))
        (reasons if material else warnings).append(text)
    if served == 0:
        reasons.append("no request served")
    out["valid"], out["invalid_reasons"], out["warnings"], out["short_reasons"] = not reasons, reasons, warnings, short
    return out


def meets_slo(rec: TrialRecord, slo_p99_ms: float) -> bool:
    """A rate counts toward capacity when its measured p99 is within the SLO, nothing was lost and the
    issuer kept to its schedule. A point cut short of the minimum duration or query count (a slow
    rate at the schedule cap) still counts, its record flagged invalid: failing it would send the
    search to ever slower rates, each one capped again."""
    if rec.latency_p99_ms is None or rec.latency_p99_ms > slo_p99_ms or rec.requests_dropped or rec.requests_timed_out:
        return False
    return not any(reason.startswith(LATE_ISSUER) for reason in rec.invalid_reasons)


def _slo_warning(rec: TrialRecord, latency_ms: np.ndarray, unserved: int, slo: float) -> None:
    bound, _ = claimable_bound(latency_ms, unserved)
    if meets_slo(rec, slo) and (bound is None or bound > slo):
        rec.warnings.append(f"p99 {rec.latency_p99_ms:.3f} ms meets the {slo:g} ms SLO as measured, but LoadGen's early "
                            f"stopping cannot claim it from {rec.n_samples + unserved} queries ({rec.p99_bound_claimed})")


def _point_record(template: TrialRecord, trial: Trial, index: int, rate: float) -> TrialRecord:
    rec = dataclasses.replace(template, warnings=list(template.warnings), invalid_reasons=[],
                              unresolved_percentiles=[])
    rec.trial_id = f"{trial.trial_id}__r{index:02d}_{rate:.4g}rps"
    rec.capacity_search = trial.trial_id
    return rec


def run_server_trial(trial: Trial, spec: ModelSpec, ctx: TrialContext) -> list[tuple[TrialRecord, np.ndarray | None]]:
    """Run a server-scenario trial; every outcome is a record (one per rate, or one unsupported/error)."""
    timings = {"trial_start": time.time()}
    template = base_record(trial, spec, ctx)
    cfg, server = ctx.config, ctx.config.server
    adapter: Adapter | None = None
    points: list[tuple[TrialRecord, np.ndarray | None]] = []
    try:
        adapter = registry.load(trial.adapter)(dataclasses.replace(adapter_options(trial, ctx), scenario="server"))
        if not admit(adapter, trial, spec, template, cfg):
            return [(template, None)]
        from hwbench.models.workload import make_inputs

        inputs = make_inputs(spec, server.max_batch, seed=0)
        t0 = time.perf_counter()
        adapter.prepare(spec, trial.precision, server.max_batch, inputs)
        template.cold_start_s = time.perf_counter() - t0
        service_ms = warm_up(adapter.run_batch, server.max_batch, server.warmup_s)
        settings = apply_effective(template, adapter.effective())
        template.device_mem_peak_mb = adapter.device_memory_peak_mb()
        _check_accuracy(adapter, trial, spec, template, ctx)  # once, outside timing; onto every point
        base_settings = {**json.loads(template.settings or "{}"), **settings}
        timings["prepared"] = time.time()

        # a confirmation point: LoadGen's final performance run at the rate the search found, as long as
        # confirm_min_queries (enough for an early-stopping p99 claim) within confirm_max_duration_s; its
        # validity asks for min_queries, as every point's does
        full = dataclasses.replace(server, max_duration_s=max(server.max_duration_s, server.confirm_max_duration_s))
        full_schedule = dataclasses.replace(full, min_queries=max(server.min_queries, server.confirm_min_queries))

        def measure(rate: float, confirming: bool = False) -> RatePoint:
            index = len(points)
            plan = full if confirming else server
            offsets = schedule(rate, full_schedule if confirming else server, index)
            meter = _meter(adapter, ctx)
            try:
                m = measure_server(adapter.run_batch, offsets, server.max_batch, server.max_queue_delay_ms,
                                   server.drain_s, server.max_queue, meter=meter, activity=ActivityProbe())
            finally:
                meter.close()
            rec = _point_record(template, trial, index, rate)
            cols = point_columns(m, rate, plan, cfg.measure)
            rec.warnings.extend(cols.pop("warnings"))
            short = cols.pop("short_reasons")
            for k, v in cols.items():
                setattr(rec, k, v)
            _apply_energy(rec, m.energy, SimpleNamespace(completed=rec.n_samples), ctx)
            activity = _apply_activity(rec, m.activity, ctx)
            lag = m.lag_ns[m.issued_ns >= 0]
            rec.settings = settings_json({**base_settings, "host_activity": activity, "server": {
                "partial_batch": type(adapter).partial_batch, "point": index, "queries": len(offsets),
                "confirmation": confirming,
                "arrival_seed": server.seed + index, "service_b1_warmup_ms": service_ms,
                "sched_lag_p50_ms": _ms(lag, 50), "sched_lag_max_ms": float(lag.max()) / 1e6 if len(lag) else None,
                **{k: v for k, v in dataclasses.asdict(plan).items() if k not in ("rates_rps",)}}})
            rec.status = STATUS_OK
            if server.slo_p99_ms is not None:
                _slo_warning(rec, m.latency_ns / 1e6, len(offsets) - rec.n_samples, server.slo_p99_ms)
            points.append((rec, m.latency_ns))
            ok = meets_slo(rec, server.slo_p99_ms) if server.slo_p99_ms is not None else rec.valid
            single = m.single_service_ns
            floor = _ms(single, 50) if len(single) >= MIN_FLOOR_BATCHES else None
            return RatePoint(rate, ok, rec.latency_p99_ms, floor, valid=rec.valid, why_invalid="; ".join(short))

        slo, note = server.slo_p99_ms, ""
        lo = hi = None
        if server.rates_rps:
            tried = [measure(r) for r in server.rates_rps]
            if slo is not None:
                lo, hi = bracket_of(tried)
        else:
            start = START_UTILISATION * 1000.0 / max(service_ms, 1e-3)
            cap = search_capacity(measure, slo, start, server.max_rates, server.rel_tol,
                                  min_rate_rps=MIN_ARRIVALS_IN_CAP / server.max_duration_s)
            lo, hi, note = cap.lo_rps, cap.hi_rps, cap.note
            if lo is not None and server.confirm_tries > 0:
                done = confirm_capacity(lambda r: measure(r, confirming=True), lo, hi, server.confirm_tries,
                                        server.confirm_step)
                lo, hi = done.lo_rps, done.hi_rps
                if lo is None:  # a confirmed capacity needs no warning; an unconfirmed one does
                    note = "; ".join(n for n in (note, done.note) if n)
        for rec, _ in points:
            rec.slo_p99_ms = slo
            rec.capacity_at_slo_rps, rec.capacity_lo_rps, rec.capacity_hi_rps = lo, lo, hi
            if note:
                rec.warnings.append(f"capacity search: {note}")
            if lo is not None and rec.offered_rps == lo and not rec.valid and not any(
                    r.offered_rps == lo and r.valid for r, _ in points):
                rec.warnings.append("the capacity rests on this point, which is invalid: see invalid_reasons")
    except Exception as e:  # noqa: BLE001 - an adapter failure is a result, not a crash
        record_failure(template, e)
        points.append((template, None))  # the points measured before it are kept
    finally:
        if adapter is not None:
            try:
                adapter.close()
            except Exception:  # noqa: BLE001 - closing must not hide the result
                pass
    from hwbench.measure.trial import _peak_rss_mb

    timings["trial_done"] = time.time()
    for rec, _ in points:
        rec.peak_rss_mb = _peak_rss_mb()
        stamp_timings(rec, timings)
    return points
