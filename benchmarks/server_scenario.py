"""Server scenario: the issuer's scheduling lag, and what a capacity search costs.

1. Scheduling lag: on a one-Add ONNX model (ort-cpu, exact partial batches, max batch 8) the
   open-loop issuer (hwbench.measure.server) runs Poisson schedules at 1,000 and 5,000 req/s;
   the lag is actual minus scheduled issue time. Printed: its p50, p99 and max, and how many
   requests were served.
2. Search cost: hwbench.measure.capacity.search_capacity over real rate points on a sleep-based
   fake system (service 2 ms, max batch 1, an M/D/1 queue up to the sleep's jitter) at a 10 ms
   p99 SLO; printed: the wall time of the whole search against the number of rates it tried.

Timings depend on the host and its load: compare runs made on the same quiet machine.
The last line is one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness_overhead import add_model  # the same one-Add model (a sibling script: benchmarks/ is on sys.path)

from device_adapters.ort_cpu import OrtCpuAdapter
from hwbench.adapter import AdapterOptions
from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.capacity import RatePoint, search_capacity
from hwbench.measure.server import measure_server, warm_up

LAG_RATES_RPS = (1000.0, 5000.0)
LAG_DURATION_S = 3.0
SERVICE_MS, SLO_MS = 2.0, 10.0


def lag(tmp: Path) -> dict[str, dict[str, float]]:
    spec = add_model(tmp / "add.onnx")
    adapter = OrtCpuAdapter(AdapterOptions(cache_dir=str(tmp), threads=1))
    adapter.prepare(spec, "fp32", 8, {"x": np.ones((8, 16), dtype=np.float32)})
    warm_up(adapter.run_batch, 8, 0.2)
    out = {}
    for rate in LAG_RATES_RPS:
        offsets = ArrivalProcess(rate, seed=1).offsets_for(LAG_DURATION_S)
        m = measure_server(adapter.run_batch, offsets, max_batch=8)
        lag_ms = m.lag_ns / 1e6
        out[f"{rate:g}"] = {"lag_p50_ms": float(np.percentile(lag_ms, 50)), "lag_p99_ms": float(np.percentile(lag_ms, 99)),
                            "lag_max_ms": float(lag_ms.max()), "requests": len(offsets), "served": int(m.served.sum())}
        print(f"lag at {rate:g} req/s: p50 {out[f'{rate:g}']['lag_p50_ms']:.3f} ms, p99 {out[f'{rate:g}']['lag_p99_ms']:.3f} ms, "
              f"max {out[f'{rate:g}']['lag_max_ms']:.3f} ms ({len(offsets)} requests)", file=sys.stderr)
    adapter.close()
    return out


def search_cost() -> dict[str, float]:
    def run_batch(n: int) -> None:
        time.sleep(SERVICE_MS / 1e3)

    tried: list[float] = []

    def measure(rate: float) -> RatePoint:
        t0 = time.perf_counter()
        offsets = ArrivalProcess(rate, seed=len(tried)).offsets_for(1.0, min_count=500)
        m = measure_server(run_batch, offsets, max_batch=1, drain_s=1.0)
        p99 = float(np.percentile(m.latency_ns, 99)) / 1e6 if m.served.any() else None
        tried.append(time.perf_counter() - t0)
        return RatePoint(rate, m.timed_out == 0 and p99 is not None and p99 <= SLO_MS, p99)

    t0 = time.perf_counter()
    cap = search_capacity(measure, SLO_MS, start_rps=0.5 * 1000.0 / SERVICE_MS, max_rates=8, rel_tol=0.1)
    wall = time.perf_counter() - t0
    print(f"search: {len(cap.points)} rates in {wall:.1f} s ({wall / len(cap.points):.2f} s per rate), capacity "
          f"{cap.capacity_rps} req/s (bracket to {cap.hi_rps})", file=sys.stderr)
    return {"rates_tried": len(cap.points), "wall_s": wall, "s_per_rate": wall / len(cap.points),
            "capacity_rps": cap.capacity_rps, "capacity_hi_rps": cap.hi_rps}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = {"scheduling_lag": lag(Path(tmp)), "capacity_search": search_cost(),
                  "source": "measured on this host (see the module docstring)"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
