"""The open-loop schedule spread over client processes: same arrivals, merged right, failures as data."""

from __future__ import annotations

import math

import pytest

from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.endpoint_load import run_load
from hwbench.measure.endpoint_spread import auto_processes, server_is_local, shares
from hwbench.testing.fake_endpoint import InstantEndpoint


def _offsets(n: int = 40, rate: float = 400.0, seed: int = 7) -> list[float]:
    return list(ArrivalProcess(rate, 1.0, seed=seed).offsets_for(0.0, min_count=n))[:n]


def _relative_schedule(result) -> list[int]:
    """Each request's scheduled time minus the first one's, ns, in arrival order."""
    due = [t.scheduled_ns for t in result.timings]
    return [d - due[0] for d in due]


def test_shares_cover_every_arrival_once():
    for n, k in ((10, 3), (7, 7), (1, 1), (100, 4)):
        parts = shares(n, k)
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(n))
        assert all(p == list(range(j, n, k)) for j, p in enumerate(parts))


def test_auto_processes_scale_with_the_rate_and_stop_at_the_cpus():
    assert auto_processes(None, cpus=8) == 1
    assert auto_processes(20.0, cpus=8) == 1
    assert auto_processes(2000.0, cpus=8) == 1
    assert auto_processes(5000.0, cpus=8) == 3
    assert auto_processes(10_000.0, cpus=2) == 2
    assert auto_processes(10_000.0, cpus=2, server_local=True) == 1  # the server needs a CPU too
    assert auto_processes(10_000.0, cpus=8, server_local=True) == 5
    assert auto_processes(10_000.0, cpus=1, server_local=True) == 1
    assert server_is_local("http://127.0.0.1:8000/v1") and server_is_local("http://localhost/v1")
    assert server_is_local("http://[::1]:8000/v1") and not server_is_local("https://api.example.com/v1")


def test_spread_issues_the_same_seeded_schedule_as_one_process():
    offsets = _offsets()
    prompts = ["p"] * len(offsets)
    one = run_load(InstantEndpoint(), prompts, 2, offsets_s=offsets, offered_rps=400.0)
    two = run_load(InstantEndpoint(), prompts, 2, offsets_s=offsets, offered_rps=400.0, processes=2)
    assert two.processes == 2 and len(two.timings) == len(offsets) and all(t.ok for t in two.timings)
    assert _relative_schedule(two) == _relative_schedule(one)  # same offsets, in the same order
    origin = two.timings[0].scheduled_ns - int(offsets[0] * 1e9)
    assert [t.scheduled_ns for t in two.timings] == [origin + int(o * 1e9) for o in offsets]
    pids = [t.meta["pid"] for t in two.timings]
    assert len(set(pids)) == 2  # two processes answered, alternating arrivals
    assert all(pids[i] == pids[i % 2] for i in range(len(pids)))
    assert len(two.client_cpu_pct_per_process) == 2 and len(two.lag_p99_ms_per_process) == 2
    assert math.isfinite(two.client_cpu_pct) and two.lag_p99_ms is not None
    assert len(two.lag_ms) == len(offsets)


def test_an_adapter_exception_is_a_failed_request_not_a_crash():
    offsets = _offsets(12)
    prompts = ["p"] * 12
    prompts[5] = "raise"
    for processes in (1, 2):
        r = run_load(InstantEndpoint(), prompts, 2, offsets_s=offsets, offered_rps=400.0, processes=processes)
        bad = [i for i, t in enumerate(r.timings) if not t.ok]
        assert bad == [5]
        assert "client error: RuntimeError: injected adapter bug" in r.timings[5].error


def test_a_dead_worker_fails_only_the_requests_it_had_not_finished():
    offsets = _offsets(20)
    prompts = ["p"] * 20
    prompts[4] = "die"  # worker 0 of 2 (even arrivals) ends its process at its third request
    r = run_load(InstantEndpoint(), prompts, 2, offsets_s=offsets, offered_rps=400.0, processes=2)
    assert len(r.timings) == 20
    assert all(r.timings[i].ok for i in range(1, 20, 2))
    for i in (0, 2):  # finished before the death: kept as successes, from worker 0's log
        t = r.timings[i]
        assert t.ok and len(t.token_ns) == 2 and t.meta["pid"] != r.timings[1].meta["pid"]
    for i in range(4, 20, 2):
        t = r.timings[i]
        assert not t.ok and t.error.startswith("client worker 0 of 2 failed: exited (code 3)")
        assert t.scheduled_ns is not None
    assert len(r.failed) == 8 and len(r.completed) == 12
    assert len(r.lag_ms) == 12  # the requests worker 0 never finished have no lag to pool
    assert math.isnan(r.client_cpu_pct_per_process[0]) and r.lag_p99_ms_per_process[0] is not None


def test_a_client_process_killed_mid_point_keeps_what_it_had_finished(tmp_path):
    """SIGKILL from outside, while requests are in flight: the finished ones survive, the rest name the process."""
    offsets = [k * 0.002 for k in range(60)]  # 120 ms of arrivals; each answer takes 30 ms
    prompts = ["p"] * 60
    prompts[20] = f"kill-after:{tmp_path / 'killed'}"  # worker 0 (even arrivals) SIGKILLs itself at its 11th
    r = run_load(InstantEndpoint(delay_s=0.03), prompts, 2, offsets_s=offsets, offered_rps=500.0, processes=2)
    kept = [i for i in range(0, 60, 2) if r.timings[i].ok]
    lost = [i for i in range(0, 60, 2) if not r.timings[i].ok]
    assert (tmp_path / "killed").exists()
    assert kept and 20 in lost
    assert kept == list(range(0, min(lost), 2))  # finished before the kill: kept; in flight or never sent: failed
    assert all(r.timings[i].ok for i in range(1, 60, 2))  # the other process is untouched
    assert all("client worker 0 of 2 failed" in r.timings[i].error and "-9" in r.timings[i].error for i in lost)
    assert all(len(r.timings[i].token_ns) == 2 for i in kept)


def test_spread_against_the_fake_http_server():
    pytest.importorskip("aiohttp")
    from device_adapters.openai_http import OpenAIEndpoint
    from hwbench.testing.fake_openai import FakeConfig, FakeOpenAIServer

    offsets = _offsets(30, rate=200.0)
    with FakeOpenAIServer(FakeConfig(default_tokens=4)) as srv:
        r = run_load(OpenAIEndpoint(srv.base_url, "fake", api="completions"), ["a b c"] * 30, 4,
                     offsets_s=offsets, offered_rps=200.0, processes=2)
        assert srv.requests == 30
    assert len(r.completed) == 30 and all(len(t.token_ns) == 4 for t in r.completed)
    assert r.processes == 2 and r.achieved_rps > 0


def test_a_closed_loop_spreads_its_workers_over_processes_and_keeps_what_a_dead_one_finished():
    prompts = ["p"] * 24
    r = run_load(InstantEndpoint(delay_s=0.005), prompts, 2, concurrency=4, processes=2)
    assert r.mode == "closed-loop" and r.concurrency == 4 and r.processes == 2
    assert len(r.completed) == 24 and r.lag_p99_ms is None
    pids = [t.meta["pid"] for t in r.timings]
    assert len(set(pids)) == 2 and all(pids[i] == pids[i % 2] for i in range(24))  # every other request each
    prompts[10] = "die"  # process 0's sixth request: what it had finished is kept
    r = run_load(InstantEndpoint(delay_s=0.005), prompts, 2, concurrency=2, processes=2)
    assert all(r.timings[i].ok for i in range(1, 24, 2))
    assert all(r.timings[i].ok for i in range(0, 10, 2))  # one worker in process 0: finished in order
    assert all(not r.timings[i].ok and r.timings[i].error.startswith("client worker 0 of 2 failed")
               for i in range(10, 24, 2))
