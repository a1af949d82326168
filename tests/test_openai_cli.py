"""`hwbench profile URL --adapter openai` end to end, through the real entry point, against the fake
OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("aiohttp", reason="the openai adapter needs aiohttp: pip install 'hwbench[serve]'")

from hwbench.results.store import load_records  # noqa: E402
from hwbench.testing.fake_openai import FakeConfig, FakeOpenAIServer  # noqa: E402


def _profile(args, tmp_path, timeout=300):
    return subprocess.run([sys.executable, "-m", "hwbench", "profile", *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=timeout)


def test_profile_an_endpoint_end_to_end_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("HWB_TEST_KEY", "sk-never-written")
    with FakeOpenAIServer(FakeConfig(ttft_s=0.01, itl_s=0.002)) as srv:
        r = _profile([srv.base_url, "--adapter", "openai", "--served-model", "fake", "--api-key-env", "HWB_TEST_KEY",
                      "--prompt-tokens", "16", "--output-tokens", "6", "--concurrency", "2", "--rate-rps", "10",
                      "--requests", "12", "--slo-ttft-ms", "500", "--slo-tpot-ms", "50", "--accelerator", "1xfake",
                      "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    df = load_records([tmp_path / "out"])
    assert len(df) == len(doc["records"]) >= 3  # the two load points, then the capacity search's rates
    closed = df[df["scenario"] == "offline"].iloc[0]
    assert closed["concurrency"] == 2 and closed["workload"] == "generate" and closed["output_tokens"] == 6
    assert closed["ttft_p50_ms"] > 5 and closed["tpot_p50_ms"] > 1 and closed["requests_failed"] == 0
    assert closed["prompt_tokens"] == 16  # calibrated on the server's own count (the fake counts words)
    assert closed["device"] == "1xfake" and closed["endpoint_url"].startswith("http://127.0.0.1:")
    searched = df[df["capacity_search"].fillna("") != ""]
    assert len(searched) and searched["capacity_at_slo_rps"].notna().all()
    for path in (tmp_path / "out").rglob("*"):  # the key is never written: records, manifest, anything
        if path.is_file():
            assert b"sk-never-written" not in path.read_bytes(), path


def test_an_endpoint_whose_every_request_fails_keeps_its_records_and_exits_3(tmp_path):
    with FakeOpenAIServer() as srv:
        r = _profile([srv.base_url, "--adapter", "openai", "--served-model", "fault:500", "--requests", "3",
                      "--output-tokens", "4"], tmp_path)
    assert r.returncode == 3, r.stderr
    assert "no successful request" in r.stderr and "Traceback" not in r.stderr
    df = load_records([tmp_path / "out"])
    assert len(df) == 1 and df.iloc[0]["status"] == "error" and df.iloc[0]["requests_failed"] == 3
    assert "HTTP 500" in df.iloc[0]["failure_reasons"][0]


@pytest.mark.parametrize("args, match", [
    (["http://127.0.0.1:1/v1", "--served-model", "m"], "--adapter openai"),
    (["http://127.0.0.1:1/v1", "--adapter", "openai"], "--served-model"),
    (["mlp-tiny", "--served-model", "m"], "go with a served endpoint"),
    (["http://127.0.0.1:1/v1", "--adapter", "openai", "--served-model", "m", "--slo-preset", "nope"], "unknown SLO preset"),
    (["http://127.0.0.1:1/v1", "--adapter", "openai", "--served-model", "m", "--rate-rps", "0"], "rate"),
])
def test_bad_endpoint_flags_are_one_line_usage_errors(tmp_path, args, match):
    r = _profile(args, tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert match in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
