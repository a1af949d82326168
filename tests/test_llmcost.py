"""LLM points in the matrix and on the frontier: $ and J per 1M tokens, ranked per (prompt, output) bucket."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hwbench.analyse.frontier import mark_frontier
from hwbench.analyse.llmcost import add_llm_costs, frontier_axes


def _points() -> pd.DataFrame:
    # two buckets of one model; in bucket p128/o32: A is faster and dearer, B slower and cheaper, C dominated
    rows = [
        ("A", 128, 32, 10.0, 50.0, 100.0),
        ("B", 128, 32, 20.0, 60.0, 400.0),
        ("C", 128, 32, 25.0, 70.0, 50.0),
        ("D", 512, 32, 40.0, 300.0, 10.0),  # alone in its bucket: on the frontier whatever the others do
    ]
    return pd.DataFrame({
        "model": "llm", "adapter": [r[0] for r in rows], "workload": "generate",
        "prompt_tokens": [r[1] for r in rows], "output_tokens": [r[2] for r in rows],
        "tpot_p99_ms": [r[3] for r in rows], "ttft_p99_ms": [r[4] for r in rows], "latency_p99_ms": 1000.0,
        "output_tokens_per_s": [r[5] for r in rows], "total_tokens_per_s": [r[5] * 5 for r in rows],
        "energy_j_per_output_token": 0.5, "energy_j_per_token": 0.1, "price_usd_per_hour": 3.6,
        "throughput_sps": 1.0, "energy_estimated": False,
    })


def test_cost_per_million_tokens_from_price_and_tokens_per_s() -> None:
    p = add_llm_costs(_points())
    # $3.6/h at 100 tokens/s: 360,000 tokens per $3.6 -> $10 per 1M tokens
    assert p.loc[0, "usd_per_1m_output_tokens"] == pytest.approx(10.0)
    assert p.loc[0, "usd_per_1m_total_tokens"] == pytest.approx(2.0)
    assert p.loc[0, "j_per_1m_output_tokens"] == pytest.approx(5e5) and p.loc[0, "j_per_1m_total_tokens"] == pytest.approx(1e5)


def test_frontier_is_tpot_p99_against_cost_per_token_within_each_bucket() -> None:
    p = mark_frontier(add_llm_costs(_points()).assign(cost_usd_per_1m=np.nan), "cost")
    on = dict(zip(p["adapter"], p["on_frontier"]))
    assert on == {"A": True, "B": True, "C": False, "D": True}
    groups, latency, values = frontier_axes(add_llm_costs(_points()), "cost_usd_per_1m", llm_latency="ttft")
    assert len(set(groups)) == 2 and list(latency) == [50.0, 60.0, 70.0, 300.0]


def test_inference_points_keep_their_p99_and_cost() -> None:
    inf = pd.DataFrame({"model": ["m", "m"], "latency_p99_ms": [1.0, 2.0], "cost_usd_per_1m": [2.0, 1.0],
                        "throughput_sps": [1.0, 2.0], "energy_estimated": False})
    groups, latency, values = frontier_axes(inf, "cost_usd_per_1m")
    assert list(latency) == [1.0, 2.0] and list(values) == [2.0, 1.0] and len(set(groups)) == 1
    assert mark_frontier(inf, "cost")["on_frontier"].tolist() == [True, True]


def test_build_matrix_keeps_prompt_buckets_apart_and_prices_tokens() -> None:
    from hwbench.analyse.matrix import build_matrix
    from hwbench.catalog.prices import load_builtin
    from hwbench.results.schema import TrialRecord, records_table

    recs = []
    for i, prompt in enumerate((128, 512)):
        r = TrialRecord(run_id="r", trial_id=f"t{i}", model="llm", model_sha256="s", adapter="torch", device="cpu",
                        precision="fp32", batch_size=1, scenario="generate", valid=True, latency_p99_ms=100.0,
                        throughput_sps=1.0, instance_type="c7i.large", started_at=f"2026-12-01T00:00:0{i}")
        r.workload, r.prompt_tokens, r.output_tokens = "generate", prompt, 32
        r.output_tokens_per_s, r.total_tokens_per_s, r.tpot_p99_ms = 100.0, 500.0, 10.0
        recs.append(r)
    m = build_matrix(records_table(recs).to_pandas(), load_builtin())
    assert sorted(m.points["prompt_tokens"]) == [128, 512]  # one point key each, not the latest of one
    hourly = m.points["price_usd_per_hour"].iloc[0]
    assert m.points["usd_per_1m_output_tokens"].iloc[0] == pytest.approx(hourly / (100 * 3600) * 1e6)
