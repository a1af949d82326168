"""Endpoint records downstream: the frontier's $ per 1M tokens at the SLO, and the planner's capacity rows.

Records come from a real profile of the fake OpenAI-compatible server on 127.0.0.1 (priced by
--instance g5.xlarge from the built-in catalog); the curve logic is also checked on hand-built rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hwbench.analyse.demand import parse_workload
from hwbench.analyse.llmcapacity import llm_capacities, parse_bucket
from hwbench.analyse.server import collapse_server_rows
from hwbench.catalog.prices import load_builtin
from hwbench.cli import app
from hwbench.errors import HwbenchError
from hwbench.results import store

runner = CliRunner()
INSTANCE = "g5.xlarge"
SLO = {"slo_ttft_ms": 400.0, "slo_tpot_ms": 40.0}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    pytest.importorskip("aiohttp", reason="the openai adapter needs aiohttp: pip install 'hwbench[serve]'")
    from device_adapters.openai_http import OpenAIEndpoint
    from hwbench.measure.endpoint_session import EndpointConfig, run_endpoint_profile
    from hwbench.testing.fake_openai import FakeConfig, FakeOpenAIServer

    out = tmp_path_factory.mktemp("endpoint-results")
    with FakeOpenAIServer(FakeConfig(ttft_s=0.01, itl_s=0.002)) as srv:
        cfg = EndpointConfig(url=srv.base_url, served_model="fake", api="completions", prompt_tokens=(16,),
                             output_tokens=(6,), rates_rps=(5.0, 10.0), requests=12, warmup_requests=1,
                             instance=INSTANCE, accelerator="1xA10G", **SLO)

        def factory():
            return OpenAIEndpoint(srv.base_url, "fake", api="completions")

        run_endpoint_profile(cfg, factory, out, factory().describe(), max_search_rates=3)
    return out


def _open_loop(df: pd.DataFrame) -> pd.DataFrame:
    return df[pd.to_numeric(df["offered_rps"], errors="coerce").gt(0)]


def test_the_frontier_prices_an_endpoint_per_1m_tokens_at_its_slo(results: Path) -> None:
    df = store.load_records([results])
    valid_open = _open_loop(df[df["valid"].astype(bool)])
    assert len(valid_open) >= 3  # the two given rates and the search's
    out = runner.invoke(app, ["frontier", str(results), "--json"])
    assert out.exit_code == 0, out.output
    points = [p for p in json.loads(out.output)["points"] if p["scenario"] == "server"]
    assert len(points) == 1  # the open-loop curve is one point ...
    p = points[0]
    assert p["offered_rps"] == valid_open["offered_rps"].max()  # ... at the highest rate that met its SLOs
    assert p["slo_ttft_ms"] == SLO["slo_ttft_ms"] and p["ttft_p99_ms"] <= SLO["slo_ttft_ms"]
    usd = load_builtin().get(INSTANCE).usd_per_hour("on-demand")
    assert p["price_usd_per_hour"] == pytest.approx(usd)
    assert p["usd_per_1m_output_tokens"] == pytest.approx(usd / (p["output_tokens_per_s"] * 3600) * 1e6)
    text = runner.invoke(app, ["frontier", str(results)])
    assert text.exit_code == 0, text.output
    flat = " ".join(text.output.split())
    assert "$/1M out tok" in flat and "p16/o6" in flat and f"{p['usd_per_1m_output_tokens']:.3g}" in flat
    assert "within" in flat  # the "at SLO" column names the bounds (the table may wrap them)


def _workload(tmp_path: Path, **cls) -> Path:
    body = {"model": "fake", "bucket": "p16/o6", "rate_rps": 4, "slo_p99_ms": 5000, **SLO, **cls}
    lines = ["schema_version = 1", "[classes.chat]"] + [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    lines += ["[pool]", f'instance_types = ["{INSTANCE}"]']
    path = tmp_path / "workload.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_planner_takes_the_endpoint_capacity_as_a_measured_row(results: Path, tmp_path: Path) -> None:
    df = store.load_records([results])
    top = _open_loop(df[df["valid"].astype(bool)])["offered_rps"].max()
    out = runner.invoke(app, ["plan", str(_workload(tmp_path)), "--results", str(results), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    caps = doc["capacities"]
    assert len(caps) == 1 and caps[0]["class"] == "chat" and caps[0]["instance_type"] == INSTANCE
    assert caps[0]["source"] == "measured" and caps[0]["capacity_rps"] == pytest.approx(top)
    assert "p16/o6" in caps[0]["config"]
    assert doc["usd_per_hour"] > 0


def test_a_class_in_another_bucket_gets_no_endpoint_capacity(results: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["plan", str(_workload(tmp_path, bucket="p512/o6")), "--results", str(results)])
    assert isinstance(out.exception, HwbenchError)  # main() turns it into one line and exit 2
    assert "class 'chat' (fake) cannot be served" in str(out.exception)


def _rows(rates, ttft, run="r1", prompt=16, output=6) -> pd.DataFrame:
    return pd.DataFrame({"run_id": run, "trial_id": [f"t{r}" for r in rates], "model": "m", "adapter": "openai",
                         "served_model": "m", "instance_type": INSTANCE, "workload": "generate", "scenario": "server",
                         "offered_rps": rates, "prompt_tokens": prompt, "output_tokens": output,
                         "settings": json.dumps({"prompt_tokens_requested": prompt}), "ttft_p99_ms": ttft,
                         "tpot_p99_ms": 10.0, "e2e_p99_ms": [t + 50 for t in ttft], **SLO, "slo_e2e_ms": None})


def _cls(**kw):
    c = {"model": "m", "bucket": "p16/o6", "rate_rps": 1, "slo_p99_ms": 1000, **SLO, **kw}
    return parse_workload({"classes": {"c": c}, "pool": {"instance_types": [INSTANCE]}}).classes[0]


def test_the_capacity_is_the_highest_rate_before_the_first_miss():
    rows = _rows([1.0, 2.0, 4.0, 8.0], [100.0, 150.0, 500.0, 120.0])  # 4/s misses TTFT 400; 8/s is past the miss
    caps, notes = llm_capacities(_cls(), rows)
    assert [c.capacity_rps for c in caps] == [2.0] and caps[0].source == "measured" and not notes
    caps, notes = llm_capacities(_cls(slo_ttft_ms=600.0), rows)
    assert [c.capacity_rps for c in caps] == [8.0]
    caps, notes = llm_capacities(_cls(slo_ttft_ms=50.0), rows)
    assert caps == [] and "misses" in notes[0]
    caps, notes = llm_capacities(_cls(slo_p99_ms=180.0), rows)  # the class's E2E bound: 150 + 50 > 180
    assert [c.capacity_rps for c in caps] == [1.0]


def test_buckets_match_by_the_requested_prompt_and_the_output():
    rows = pd.concat([_rows([1.0, 2.0], [100.0, 100.0]), _rows([3.0], [100.0], run="r2", prompt=128)], ignore_index=True)
    assert [c.capacity_rps for c in llm_capacities(_cls(), rows)[0]] == [2.0]
    assert [c.capacity_rps for c in llm_capacities(_cls(bucket="p128/o6"), rows)[0]] == [3.0]
    caps, notes = llm_capacities(_cls(bucket=None), rows)
    assert caps == [] and "2 prompt/output buckets" in notes[0]
    assert parse_bucket("p128/o256") == (128, 256) and parse_bucket("seq=128") is None


def test_the_frontier_point_of_an_endpoint_curve_is_its_highest_rate_within_the_slo():
    rows = _rows([1.0, 2.0, 4.0], [100.0, 300.0, 900.0]).assign(latency_p99_ms=np.nan, slo_p99_ms=np.nan, achieved_rps=1.0,
                                                                latency_p50_ms=np.nan)
    kept, curves = collapse_server_rows(rows, np.arange(3), np.zeros(3, dtype=np.int64))
    assert list(kept) == [1]  # 2/s: the highest rate whose TTFT p99 met 400 ms
    assert [p["offered_rps"] for p in curves[1]] == [1.0, 2.0, 4.0] and curves[1][2]["ttft_p99_ms"] == 900.0


def test_an_endpoint_given_only_its_accelerator_is_priced_as_an_assumed_catalog_type(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp", reason="the openai adapter needs aiohttp: pip install 'hwbench[serve]'")
    from device_adapters.openai_http import OpenAIEndpoint
    from hwbench.measure.endpoint_session import EndpointConfig, instance_of, run_endpoint_profile
    from hwbench.testing.fake_openai import FakeConfig, FakeOpenAIServer

    catalog = load_builtin()
    h100 = sorted((p.usd_per_hour("on-demand"), p.name) for p in catalog.prices.values()
                  if p.accelerator == "H100" and p.accelerator_count == 1 and p.usd_per_hour("on-demand") is not None)
    assert h100, "the built-in catalog has a 1 x H100 type"
    with FakeOpenAIServer(FakeConfig(default_tokens=4)) as srv:
        cfg = EndpointConfig(url=srv.base_url, served_model="fake", api="completions", prompt_tokens=(8,),
                             output_tokens=(4,), concurrency=(1,), requests=4, warmup_requests=0, accelerator="1xH100")
        run = run_endpoint_profile(cfg, lambda: OpenAIEndpoint(srv.base_url, "fake", api="completions"), tmp_path,
                                   {"endpoint": "fake"})
    rec = run.records[0]
    assert rec.instance_type == h100[0][1]  # the cheapest catalog type with that accelerator and count
    assert rec.instance_type_source.startswith(f"assumed: {h100[0][1]}") and "1 x H100" in rec.instance_type_source
    assert "estimate" in rec.instance_type_source and any("assumed" in n for n in run.notes)
    out = runner.invoke(app, ["frontier", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["points"][0]["price_usd_per_hour"] == pytest.approx(h100[0][0])
    assert any("ASSUMED" in n for n in doc.get("notes", [])), doc.get("notes")
    # a count or model the catalog does not have is left unpriced with the reason, never priced by guess
    none, why = instance_of(EndpointConfig(url=srv.base_url, served_model="fake", accelerator="3xH100"))
    assert none is None and why.startswith("not priced: no instance type in the price catalog has 3 x H100")
    assert instance_of(EndpointConfig(url=srv.base_url, served_model="fake", instance="g5.xlarge",
                                      accelerator="1xH100")) == ("g5.xlarge", "given")
