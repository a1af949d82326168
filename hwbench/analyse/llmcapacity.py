"""Capacities of served LLMs for the planner: a request class's bucket read off an endpoint's measured curve.

`hwbench profile URL --adapter openai` writes one record per open-loop rate for each
(prompt tokens, output tokens) bucket, each with its measured TTFT, TPOT and E2E p99s (and a
capacity search's rates when SLOs were given). A planner class for a served LLM names its
model (the served model name), its bucket and its bounds:

    [classes.chat]
    model = "smollm2";  bucket = "p128/o128";  rate_rps = 3
    slo_ttft_ms = 2000;  slo_tpot_ms = 100;  slo_p99_ms = 30000   # slo_p99_ms bounds the end-to-end p99

Its capacity on an instance type is MEASURED: the highest offered rate of one run's curve
up to which every valid point's measured p99s meet every bound the class gives (a lower
bound: the true capacity lies between it and the next rate tried). A bucket matches a record
by the prompt length it asked for (the server's own count can differ by a few tokens) and
its output length.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pandas as pd

from hwbench.analyse.demand import RequestClass
from hwbench.analyse.planner import Capacity

GENERATE = "generate"
MEASURED = "measured"
_BUCKET = re.compile(r"^\s*p(\d+)\s*/\s*o(\d+)\s*$")


def parse_bucket(bucket: str | None) -> tuple[int, int] | None:
    """(prompt tokens, output tokens) of a bucket written "p128/o256", else None (not an LLM bucket)."""
    m = _BUCKET.match(bucket or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_llm_class(c: RequestClass) -> bool:
    return parse_bucket(c.bucket) is not None or c.slo_ttft_ms is not None or c.slo_tpot_ms is not None


def _requested_prompt(row: dict[str, Any]) -> float:
    """The prompt length the run asked for (settings), else the one the server reported."""
    try:
        settings = json.loads(row.get("settings") or "{}")
    except (TypeError, ValueError):
        settings = {}
    value = settings.get("prompt_tokens_requested") if isinstance(settings, dict) else None
    if value is None:
        value = row.get("prompt_tokens")
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _meets(row: dict[str, Any], c: RequestClass) -> bool:
    for col, bound in (("ttft_p99_ms", c.slo_ttft_ms), ("tpot_p99_ms", c.slo_tpot_ms), ("e2e_p99_ms", c.slo_p99_ms)):
        if bound is None:
            continue
        try:
            value = float(row.get(col))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        if not value <= bound:  # NaN misses
            return False
    return True


def llm_capacities(c: RequestClass, records: pd.DataFrame) -> tuple[list[Capacity], list[str]]:
    """Capacities for class c from usable (valid, ok) records of its model: one per (run, instance type) curve."""
    notes: list[str] = []
    if "workload" not in records or "offered_rps" not in records:
        return [], [f"class {c.name}: no served-LLM (open-loop generate) records for {c.model}"]
    rows = records[(records["workload"] == GENERATE) & pd.to_numeric(records["offered_rps"], errors="coerce").gt(0)]
    bucket = parse_bucket(c.bucket)
    if bucket is None:
        shapes = {(int(p), int(o)) for p, o in zip(rows["prompt_tokens"], rows["output_tokens"]) if pd.notna(p) and pd.notna(o)}
        if len(shapes) > 1:
            return [], [f"class {c.name}: {c.model}'s records hold {len(shapes)} prompt/output buckets; "
                        "give the class bucket = \"pP/oO\" to choose one"]
        if shapes:
            bucket = next(iter(shapes))
    if bucket is None or rows.empty:
        return [], [f"class {c.name}: no served-LLM (open-loop generate) records for {c.model}"
                    + (f" in bucket p{bucket[0]}/o{bucket[1]}" if bucket else "")]
    recs = rows.to_dict(orient="records")
    mine = [r for r in recs if _requested_prompt(r) == bucket[0] and float(r.get("output_tokens") or -1) == bucket[1]]
    if not mine:
        return [], [f"class {c.name}: no record of {c.model} in bucket p{bucket[0]}/o{bucket[1]}"]
    curves: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in mine:
        curves.setdefault((str(r["run_id"]), str(r["instance_type"])), []).append(r)
    bounds = ", ".join(f"{k} p99 <= {v:g} ms" for k, v in (("TTFT", c.slo_ttft_ms), ("TPOT", c.slo_tpot_ms),
                                                           ("E2E", c.slo_p99_ms)) if v is not None)
    out = []
    for (run, inst), curve in sorted(curves.items()):
        best = 0.0
        for r in sorted(curve, key=lambda r: float(r["offered_rps"])):
            if not _meets(r, c):
                break
            best = float(r["offered_rps"])
        if best <= 0:
            notes.append(f"class {c.name} on {inst}: even the lowest rate run {run} measured misses {bounds}")
            continue
        out.append(Capacity(c.name, inst, best, MEASURED, config=(
            f"{curve[0].get('adapter')} endpoint {curve[0].get('served_model') or c.model} p{bucket[0]}/o{bucket[1]}, "
            f"highest rate of run {run} with {bounds} (a lower bound)")))
    return out, notes
