"""How much load hwbench's HTTP client sustains, and how late it issues requests.

Against the instant fake server (hwbench.testing.fake_openai, in its own process, so the two do
not share a GIL), open-loop Poisson load at several target rates, streamed and not: the achieved
rate, the scheduling lag p99 (actual minus scheduled issue time) and the client's CPU. Target
(issue 14): at least 2,000 requests/s with lag p99 under 5 ms. Both processes share this host's
cores: read the figures as what one host does with client and server side by side.
"""

from __future__ import annotations

import subprocess
import sys
import time

from device_adapters.openai_http import OpenAIEndpoint
from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.endpoint_load import run_load

RATES = (500, 1000, 2000, 3000)
DURATION_S = 3.0
TOKENS = 8


def main() -> None:
    server = subprocess.Popen([sys.executable, "-m", "hwbench.testing.fake_openai", "--tokens", str(TOKENS)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        time.sleep(0.3)
        print(f"fake server {url}; {TOKENS} tokens per answer; {DURATION_S:g} s per point")
        print(f"{'mode':<10} {'target/s':>9} {'achieved/s':>11} {'failed':>7} {'lag p99 ms':>11} {'client CPU':>11}  verdict")
        for stream in (True, False):
            for rate in RATES:
                offsets = ArrivalProcess(float(rate), seed=rate).offsets_for(DURATION_S)
                client = OpenAIEndpoint(url, "fake", api="completions", stream=stream, max_connections=512)
                r = run_load(client, ["benchmark prompt"] * len(offsets), TOKENS, offsets_s=offsets, offered_rps=rate)
                lag = r.lag_p99_ms or 0.0
                ok = r.achieved_rps >= 0.97 * rate and lag < 5.0
                print(f"{'stream' if stream else 'plain':<10} {rate:>9} {r.achieved_rps:>11.0f} {len(r.failed):>7} "
                      f"{lag:>11.2f} {r.client_cpu_pct:>10.0f}%  {'meets' if ok else 'misses'} the target at this rate")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
