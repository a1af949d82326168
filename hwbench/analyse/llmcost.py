"""LLM points in the matrix and on the frontier: $ and J per 1M output / total tokens, and the axes
a generate point is ranked on.

    usd_per_1m_output_tokens = $/hour / (output_tokens_per_s x 3600) x 10^6   (aggregate, full utilisation)
    usd_per_1m_total_tokens  = $/hour / (total_tokens_per_s x 3600) x 10^6    (prompt + output tokens)
    j_per_1m_output_tokens   = energy_j_per_output_token x 10^6 (and per total token likewise)

A generate point's frontier is TPOT p99 (or TTFT p99) against $ per 1M output tokens, within its
(model, prompt tokens, output tokens) bucket: a 1024-token prompt and a 128-token one are different
request classes, never one Pareto set. Inference points keep their p99 against $ per 1M inferences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GENERATE = "generate"
LLM_LATENCIES = {"tpot": "tpot_p99_ms", "ttft": "ttft_p99_ms"}
# the record columns a generate point carries into the matrix (absent from older records: None)
LLM_COLUMNS = ("workload", "prompt_tokens", "output_tokens", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms",
               "e2e_p99_ms", "output_tokens_per_s", "total_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s",
               "energy_j_per_output_token", "energy_j_per_token", "kv_cache_mb",
               "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms")  # the last three: a served endpoint's bounds (its curve's point is at them)
LLM_COST_COLUMNS = ("usd_per_1m_output_tokens", "usd_per_1m_total_tokens", "j_per_1m_output_tokens", "j_per_1m_total_tokens")
# objective -> the generate point's own column
_LLM_OBJECTIVE = {"cost_usd_per_1m": "usd_per_1m_output_tokens", "throughput_sps": "output_tokens_per_s",
                  "energy_j_per_inference": "energy_j_per_output_token"}


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def per_1m(usd_per_hour: np.ndarray, tokens_per_s: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(usd_per_hour, dtype=float) / (np.asarray(tokens_per_s, dtype=float) * 3600.0) * 1e6
    return np.where(np.asarray(tokens_per_s, dtype=float) > 0, out, np.nan)


def add_llm_costs(points: pd.DataFrame) -> pd.DataFrame:
    """The four LLM cost columns (NaN on inference points and unpriced ones)."""
    hourly = _num(points, "price_usd_per_hour")
    return points.assign(
        usd_per_1m_output_tokens=per_1m(hourly, _num(points, "output_tokens_per_s")),
        usd_per_1m_total_tokens=per_1m(hourly, _num(points, "total_tokens_per_s")),
        j_per_1m_output_tokens=_num(points, "energy_j_per_output_token") * 1e6,
        j_per_1m_total_tokens=_num(points, "energy_j_per_token") * 1e6,
    )


def is_generate(points: pd.DataFrame) -> np.ndarray:
    if "workload" not in points:
        return np.zeros(len(points), dtype=bool)
    return (points["workload"].to_numpy(dtype=object) == GENERATE)


def frontier_axes(points: pd.DataFrame, column: str, llm_latency: str = "tpot") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group ids, latency, objective values) for mark_frontier: generate points ranked in their
    (model, prompt, output) bucket on TPOT (or TTFT) p99 and their per-token column."""
    gen = is_generate(points)
    latency = _num(points, "latency_p99_ms")
    values = _num(points, column)
    if not gen.any():
        return pd.factorize(points["model"])[0], latency, values
    key = points["model"].astype(str).to_numpy(dtype=object).copy()
    bucket = ("|p" + points["prompt_tokens"].astype(str) + "|o" + points["output_tokens"].astype(str)).to_numpy(dtype=object)
    key = np.where(gen, key + bucket, key)
    latency = np.where(gen, _num(points, LLM_LATENCIES[llm_latency]), latency)
    values = np.where(gen, _num(points, _LLM_OBJECTIVE.get(column, column)), values)
    return pd.factorize(key)[0], latency, values
