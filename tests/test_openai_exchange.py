"""The pieces that keep the client's measurement window lean: reading captured exchanges after the
window, the request body template, the exact due-instant timer, the per-process result log."""

from __future__ import annotations

import asyncio
import json
import pickle
import time

import pytest

from device_adapters.openai_exchange import TOKENS, Exchange, settle
from hwbench.measure.due_timer import DueTimer
from hwbench.measure.result_log import ResultLog, read_log


def _frame(text: str | None, finish: str | None = None) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "text": text or "", "finish_reason": finish}]}).encode() + b"\n\n"


def test_each_event_is_stamped_by_the_read_that_completed_its_line():
    a, b, c = _frame("x"), _frame("y"), _frame(None, "length")
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
    # read 1 ends mid-way through the second event: that event belongs to read 2's stamp
    reads = [(100, a + b[:7]), (200, b[7:] + c), (300, usage + b"data: [DONE]\n\n")]
    t = settle(Exchange(start_ns=50, scheduled_ns=40, api="completions", stream=True, status=200,
                        content_type="text/event-stream", reads=reads))
    assert t.ok and t.token_ns == (100, 200) and t.scheduled_ns == 40 and t.start_ns == 50
    assert t.meta["prompt_tokens_reported"] == 3 and t.meta["finish_reason"] == "length" and t.output_tokens == 2


def test_a_fault_counts_the_tokens_that_came_before_it_and_a_bad_frame_wins_over_a_later_fault():
    reads = [(10, _frame("x") + _frame("y"))]
    cut = settle(Exchange(0, None, "completions", True, list(reads), 200, content_type="text/event-stream",
                          fault=f"connection closed mid-stream after {TOKENS} token(s) (X)"))
    assert not cut.ok and cut.error == "connection closed mid-stream after 2 token(s) (X)" and len(cut.token_ns) == 2
    bad = settle(Exchange(0, None, "completions", True, [(10, _frame("x") + b"data: {nope\n\n")], 200,
                          content_type="text/event-stream", fault=f"timeout after {TOKENS} token(s)"))
    assert not bad.ok and bad.error.startswith("malformed SSE frame after 1 token(s)")


def test_statuses_bodies_and_encodings_become_reasons():
    ex = lambda **kw: Exchange(0, None, "chat", True, **kw)  # noqa: E731
    assert "redirect to 'http://x/' refused" in settle(ex(status=302, location="http://x/")).error
    assert settle(ex(status=503, head=b"busy  now")).error == "HTTP 503: busy now"
    assert "Content-Encoding 'gzip'" in settle(ex(status=200, content_encoding="gzip")).error
    assert "not an event stream" in settle(ex(status=200, content_type="text/html", head=b"<html>")).error
    plain = Exchange(0, None, "chat", False, [(7, json.dumps({"choices": [{"message": {"content": "hi"},
                     "finish_reason": "stop"}], "usage": {"completion_tokens": 4}}).encode())], 200)
    t = settle(plain)
    assert t.ok and t.token_ns == (7,) and t.output_tokens == 4
    assert pickle.loads(pickle.dumps(plain)) == plain  # a client process logs exchanges pickled


def test_the_body_template_encodes_exactly_what_json_dumps_would():
    pytest.importorskip("aiohttp")
    from device_adapters.openai_http import OpenAIEndpoint

    for api in ("chat", "completions"):
        for stream in (True, False):
            c = OpenAIEndpoint("http://127.0.0.1:1/v1", "m", api=api, stream=stream, ignore_eos=True)
            for prompt in ("plain words", 'quotes " and \\ and \n and é and \x00prompt\x00'):
                url, data = c.encoded(prompt, 17)
                want_url, want = c._payload(prompt, 17, stream)
                assert str(url) == want_url and json.loads(data) == want and data == json.dumps(want).encode()


def test_the_due_timer_never_wakes_early():
    async def main() -> list[int]:
        timer = DueTimer.create(time.perf_counter_ns)
        if timer is None:
            pytest.skip("no timerfd here (not Linux, or perf_counter is not CLOCK_MONOTONIC)")
        early = []
        try:
            for k in range(30):
                due = time.perf_counter_ns() + (k % 5) * 300_000  # 0 to 1.2 ms ahead: below uvloop's timer grain
                await timer.wait_until(due)
                early.append(due - time.perf_counter_ns())
        finally:
            timer.close()
        return early

    assert max(asyncio.run(main())) <= 0
    assert DueTimer.create(lambda: 0) is None  # another clock: no timer, the issuer falls back


def test_the_result_log_keeps_whole_records_and_drops_a_cut_one(tmp_path):
    path = str(tmp_path / "w.log")
    log = ResultLog(path)
    log.append(0, "first")
    log.append(3, {"second": [1, 2]})
    log.close()
    with open(path, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00half a rec")  # the writer died mid-record
    assert read_log(path) == [(0, "first"), (3, {"second": [1, 2]})]
    assert read_log(str(tmp_path / "missing.log")) == []
