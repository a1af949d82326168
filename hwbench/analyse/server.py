"""Server-scenario records as points: one rate-latency curve per configuration, and its measured capacity.

`hwbench profile --scenario server` writes one record per offered rate. The matrix keeps one
point per configuration (and run): the record at the highest offered rate whose measured p99
met the search's SLO (else the lowest rate), with `throughput_sps` set to the rate it
achieved there, so its $/1M is at a load it sustained within the SLO. The whole curve rides
along in `rate_curve`, so that a pick at another SLO, the export and the plot read it.

Capacity at an SLO is MEASURED here: the record's own `capacity_at_slo_rps` at its SLO, or,
at another SLO, the highest offered rate on the curve up to which every measured p99 meets it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SERVER = "server"
CURVE_FIELDS = ("offered_rps", "achieved_rps", "latency_p50_ms", "latency_p99_ms", "queue_p99_ms", "service_p99_ms",
                "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms")  # the last three: served-LLM (endpoint) curves
# a served LLM's (hwbench profile URL --adapter openai) bounds: measured p99 column -> its bound's column
LLM_BOUNDS = (("ttft_p99_ms", "slo_ttft_ms"), ("tpot_p99_ms", "slo_tpot_ms"), ("e2e_p99_ms", "slo_e2e_ms"))
SERVER_COLUMNS = ("offered_rps", "achieved_rps", "burstiness", "max_batch", "max_queue_delay_ms", "p99_bound_claimed",
                  "slo_p99_ms", "capacity_at_slo_rps", "capacity_lo_rps", "capacity_hi_rps", "capacity_search")


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def collapse_server_rows(records: pd.DataFrame, rows: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, dict[int, list[dict[str, Any]]]]:
    """Of `rows` (indices into records), keep every non-server row and one server row per group id.

    `group` gives each record its configuration id (the point key and the run). Returns the
    kept rows, sorted, and each kept server row's curve: a list of CURVE_FIELDS dicts by rate.
    """
    if "scenario" not in records or "offered_rps" not in records:
        return rows, {}
    is_server = (records["scenario"].to_numpy(dtype=object)[rows] == SERVER)
    if not is_server.any():
        return rows, {}
    server_rows = rows[is_server]
    curves: dict[int, list[dict[str, Any]]] = {}
    keep = [rows[~is_server]]
    bounds = [b for pair in LLM_BOUNDS for b in pair if b in records and b not in CURVE_FIELDS]
    frame = records.loc[server_rows, list(dict.fromkeys([c for c in CURVE_FIELDS if c in records] + ["slo_p99_ms", *bounds]))]
    frame = frame.assign(_g=group[server_rows])
    for _, g in frame.groupby("_g", sort=False):
        g = g.assign(offered_rps=pd.to_numeric(g["offered_rps"], errors="coerce")).sort_values("offered_rps", kind="stable")
        slo = _num(g["slo_p99_ms"].dropna().iloc[0]) if g["slo_p99_ms"].notna().any() else math.nan
        p99 = pd.to_numeric(g["latency_p99_ms"], errors="coerce").to_numpy(dtype=float)
        within = np.flatnonzero(p99 <= slo) if math.isfinite(slo) else np.flatnonzero(_meets_llm_bounds(g))
        rep = int(g.index[within[-1]] if len(within) else g.index[0])
        curves[rep] = [{k: (None if pd.isna(v) else float(v)) for k, v in r.items() if k in CURVE_FIELDS}
                       for r in g[[c for c in CURVE_FIELDS if c in g]].to_dict(orient="records")]
        keep.append(np.array([rep]))
    return np.sort(np.concatenate(keep)), curves


def _meets_llm_bounds(g: pd.DataFrame) -> np.ndarray:
    """Per row: every TTFT/TPOT/E2E bound the row was measured against met by its measured p99
    (False where it has none: an endpoint run without SLOs has no "within" row)."""
    meets = np.ones(len(g), dtype=bool)
    bounded = np.zeros(len(g), dtype=bool)
    for measured, bound in LLM_BOUNDS:
        if measured not in g or bound not in g:
            continue
        b = pd.to_numeric(g[bound], errors="coerce").to_numpy(dtype=float)
        v = pd.to_numeric(g[measured], errors="coerce").to_numpy(dtype=float)
        has = np.isfinite(b)
        bounded |= has
        meets &= ~has | (v <= b)
    return meets & bounded


def measured_capacity_rps(curve: list[dict[str, Any]] | None, slo_p99_ms: float, *,
                          searched_slo_p99_ms: float | None = None, searched_capacity_rps: float | None = None) -> float:
    """The measured capacity at `slo_p99_ms`: the search's own result at its SLO, else read off the curve.

    Off the curve it is the highest offered rate up to which every measured p99 meets the SLO:
    a lower bound, as the true capacity lies between that rate and the next one tried. 0.0 when
    even the lowest rate misses.
    """
    same = searched_slo_p99_ms is not None and math.isfinite(_num(searched_slo_p99_ms)) and \
        math.isclose(float(searched_slo_p99_ms), slo_p99_ms, rel_tol=1e-9)
    if same and searched_capacity_rps is not None and _num(searched_capacity_rps) > 0:
        return float(searched_capacity_rps)
    best = 0.0
    for point in sorted(curve or [], key=lambda p: _num(p.get("offered_rps"))):
        p99, rate = _num(point.get("latency_p99_ms")), _num(point.get("offered_rps"))
        if not (p99 <= slo_p99_ms):
            break
        best = rate
    return best


def measured_p99_ms(curve: list[dict[str, Any]] | None, rate_rps: float) -> float:
    """The p99 at `rate_rps`, linear between measured rates; below the lowest rate, the lowest rate's (an upper bound)."""
    pts = sorted(((_num(p.get("offered_rps")), _num(p.get("latency_p99_ms"))) for p in curve or []))
    pts = [(r, v) for r, v in pts if math.isfinite(r) and math.isfinite(v)]
    if not pts:
        return math.nan
    rates, p99 = np.array([r for r, _ in pts]), np.array([v for _, v in pts])
    if rate_rps > rates[-1]:
        return math.nan  # beyond the curve: not measured
    return float(np.interp(rate_rps, rates, p99))


def saturation_rps(curve: list[dict[str, Any]] | None) -> float:
    """The highest achieved rate on the curve: a lower bound on the instance's service rate."""
    rates = [_num(p.get("achieved_rps")) for p in curve or []]
    rates = [r for r in rates if math.isfinite(r)]
    return max(rates) if rates else math.nan
