"""How much load hwbench's HTTP client sustains, and how late it issues requests.

Against the instant fake server (hwbench.testing.fake_openai, in its own process, so the two do
not share a GIL; its instant answers are pre-built, one write each), open-loop Poisson load at
several target rates, streamed and not: the achieved rate, the scheduling lag p99 (actual minus
scheduled issue time, pooled over the client processes) and the CPU both sides used, each in %
of one core (the client's pooled over its processes; the server's read from /proc over the
schedule's wall time). Target (issue 14): at least 2,000 requests/s with lag p99 under 5 ms.
Client and server share this host's cores: read the figures as what one host does with both
side by side, and the server CPU column as what the client could not have.

    python benchmarks/http_client.py [--rates 1000,2000] [--client-processes 1,2] [--duration-s 3]

The event loop is uvloop when it is installed (HWBENCH_EVENT_LOOP=asyncio forces the stock one,
for both sides: the fake server reads it too).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from device_adapters.openai_http import OpenAIEndpoint
from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.endpoint_load import loop_factory, run_load

TARGET_RPS = 2000.0
TARGET_LAG_P99_MS = 5.0


def _cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="1000,2000,3000", help="offered requests/s, comma-separated")
    ap.add_argument("--client-processes", default="1,2", help="client process counts to try, comma-separated")
    ap.add_argument("--duration-s", type=float, default=3.0)
    ap.add_argument("--tokens", type=int, default=8, help="tokens per answer (streamed: one SSE frame each)")
    ap.add_argument("--modes", default="stream,plain")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "hwbench.testing.fake_openai", "--tokens", str(args.tokens)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        time.sleep(0.3)
        print(f"fake server {url} (pid {server.pid}); {args.tokens} tokens per answer; {args.duration_s:g} s per point; "
              f"event loop {loop_factory()[1]}; host CPUs {os.cpu_count()}")
        print(f"{'mode':<7} {'procs':>5} {'target/s':>9} {'achieved/s':>11} {'failed':>7} {'lag p99 ms':>11} "
              f"{'client CPU':>11} {'per process':>14} {'server CPU':>11}  verdict")
        for mode in args.modes.split(","):
            stream = mode == "stream"
            for procs in _ints(args.client_processes):
                for rate in _ints(args.rates):
                    offsets = ArrivalProcess(float(rate), seed=rate).offsets_for(args.duration_s)
                    client = OpenAIEndpoint(url, "fake", api="completions", stream=stream, max_connections=512)
                    s0 = _cpu_s(server.pid)
                    r = run_load(client, ["benchmark prompt"] * len(offsets), args.tokens, offsets_s=offsets,
                                 offered_rps=rate, processes=procs)
                    server_pct = 100.0 * (_cpu_s(server.pid) - s0) / max(r.wall_s, 1e-9)
                    lag = r.lag_p99_ms if r.lag_p99_ms is not None else float("nan")
                    scheduled_rps = len(offsets) / max(float(offsets[-1]), 1e-9)  # this seeded schedule's own rate
                    ok = r.achieved_rps >= 0.97 * scheduled_rps and lag < TARGET_LAG_P99_MS and not r.failed
                    per = "/".join(f"{c:.0f}" for c in r.client_cpu_pct_per_process) + "%"
                    verdict = ("meets" if ok else "misses") + " the target" if rate >= TARGET_RPS else (
                        "on schedule" if ok else "behind")
                    print(f"{mode:<7} {r.processes:>5} {rate:>9} {r.achieved_rps:>11.0f} {len(r.failed):>7} {lag:>11.2f} "
                          f"{r.client_cpu_pct:>10.0f}% {per:>14} {server_pct:>10.0f}%  {verdict}", flush=True)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
