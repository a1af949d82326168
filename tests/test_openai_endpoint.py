"""The OpenAI-compatible client against a real (fake, instant) HTTP server on 127.0.0.1.

Every fault the server can inject yields a failed TokenTiming with its reason, never an
exception; timing follows the open loop; keys never leave the environment.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the openai adapter needs aiohttp: pip install 'hwbench[serve]'")

from device_adapters.openai_http import OpenAIEndpoint  # noqa: E402
from hwbench.errors import UsageError  # noqa: E402
from hwbench.measure.arrivals import ArrivalProcess  # noqa: E402
from hwbench.measure.endpoint_load import run_load  # noqa: E402
from hwbench.measure.prompts import synthetic_prompt, words_for  # noqa: E402
from hwbench.testing.fake_openai import FakeConfig, FakeOpenAIServer  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(FakeConfig(default_tokens=8, itl_s=0.002, slow_first_s=0.3, stall_s=3.0)) as srv:
        yield srv


def one(server, model: str, api: str = "chat", **kw):
    client = OpenAIEndpoint(server.base_url, model, api=api, **kw)
    result = run_load(client, ["a b c"], 8, concurrency=1)
    assert len(result.timings) == 1
    return result.timings[0]


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_stream_is_stamped_per_token(server, api):
    t = one(server, "fake", api)
    assert t.ok and t.error is None
    assert t.output_tokens == 8 and len(t.token_ns) == 8
    assert all(b >= a for a, b in zip(t.token_ns, t.token_ns[1:]))
    assert t.ttft_ns > 0 and t.tpot_ns >= 1.5e6  # the server waits 2 ms between tokens
    assert t.meta["prompt_tokens_reported"] == 3 and t.meta["finish_reason"] == "length"


@pytest.mark.parametrize("fault, reason", [
    ("stall", "read timeout"), ("disconnect", "connection closed mid-stream"), ("429", "HTTP 429"),
    ("500", "HTTP 500"), ("malformed", "malformed SSE frame"), ("garbage", "not an event stream"),
    ("redirect", "refused"),
])
def test_every_fault_is_a_failed_record_with_its_reason(server, fault, reason):
    t = one(server, f"fault:{fault}", read_timeout_s=1.0)
    assert not t.ok
    assert reason in t.error


def test_partial_answers_keep_their_stamps_and_warnings(server):
    stalled = one(server, "fault:stall", read_timeout_s=1.0)
    assert len(stalled.token_ns) == 2  # what arrived before the stall is kept
    no_done = one(server, "fault:no-done")
    assert no_done.ok and no_done.meta["warning"] == "stream ended without [DONE]"
    short = one(server, "fault:short")
    assert short.ok and short.output_tokens == 4
    slow = one(server, "fault:slow-first")
    assert slow.ok and slow.ttft_ns >= 0.25e9


def test_a_non_streamed_answer_has_one_stamp_and_the_servers_count(server):
    t = one(server, "fake", stream=False)
    assert t.ok and len(t.token_ns) == 1 and t.output_tokens == 8
    assert t.tpot_ns is None  # one stamp says nothing per token


def test_unreachable_endpoint_is_a_failed_record():
    client = OpenAIEndpoint("http://127.0.0.1:9/v1", "fake", connect_timeout_s=1.0)
    t = run_load(client, ["x"], 4, concurrency=1).timings[0]
    assert not t.ok and "connect" in t.error


def test_open_loop_is_not_slowed_by_a_slow_server():
    # 200 ms to the first token, 20 requests/s for 1 s: a closed loop of one would issue 5; the open loop issues all
    with FakeOpenAIServer(FakeConfig(ttft_s=0.2, default_tokens=2)) as slow:
        offsets = ArrivalProcess(20.0, seed=1).offsets_for(1.0)
        r = run_load(OpenAIEndpoint(slow.base_url, "fake"), ["x"] * len(offsets), 2, offsets_s=offsets, offered_rps=20.0)
    assert len(r.completed) == len(offsets) > 10
    issued = np.array([t.start_ns for t in r.timings])
    scheduled = np.array([t.scheduled_ns for t in r.timings])
    assert np.all(issued >= scheduled)
    assert r.lag_p99_ms < 50  # issued on schedule, not after the previous answer (200 ms)
    assert min(t.ttft_ns for t in r.completed) >= 0.19e9


def test_closed_loop_keeps_the_concurrency(server):
    r = run_load(OpenAIEndpoint(server.base_url, "fake"), ["x"] * 12, 8, concurrency=4)
    assert r.mode == "closed-loop" and len(r.completed) == 12 and r.lag_p99_ms is None


def test_the_api_key_comes_from_the_environment_and_is_never_described(server, monkeypatch):
    monkeypatch.setenv("HWB_TEST_KEY", "sk-secret-value")
    client = OpenAIEndpoint(server.base_url, "fake", api_key_env="HWB_TEST_KEY")
    assert "sk-secret-value" not in repr(client.describe()) and client.describe()["api_key"] == "sent"
    assert client.describe()["tls_verify"] is True and client.describe()["redirects"] == "refused"
    monkeypatch.delenv("HWB_TEST_KEY")
    with pytest.raises(UsageError, match="HWB_TEST_KEY"):
        OpenAIEndpoint(server.base_url, "fake", api_key_env="HWB_TEST_KEY")


@pytest.mark.parametrize("kwargs, match", [
    (dict(base_url="ftp://x/v1", served_model="m"), "http"), (dict(base_url="http://127.0.0.1:1/v1", served_model=""), "served-model"),
    (dict(base_url="http://127.0.0.1:1/v1", served_model="m", api="edits"), "--api"),
    (dict(base_url="http://127.0.0.1:1/v1", served_model="m", read_timeout_s=float("nan")), "read timeout"),
])
def test_bad_client_settings_are_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        OpenAIEndpoint(**kwargs)


def test_synthetic_prompts_calibrate_against_the_servers_count(server):
    async def count(text):
        async with OpenAIEndpoint(server.base_url, "fake", api="completions") as c:
            return await c.count_prompt_tokens(text)

    probe = synthetic_prompt(200, seed=1)
    ratio = asyncio.run(count(probe)) / 200  # the fake counts words: ratio 1
    prompt = synthetic_prompt(words_for(64, ratio), seed=2)
    assert asyncio.run(count(prompt)) == 64
    assert synthetic_prompt(10, seed=3) == synthetic_prompt(10, seed=3) != synthetic_prompt(10, seed=4)
