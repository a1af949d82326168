"""Scale benchmark for the fleet optimiser (hwbench.analyse.planner.solve) on SYNTHETIC instances.

Each instance has C request classes and T instance types (on-demand), one planned hour. Every
class has a capacity on about 70% of the types (drawn log-uniformly, 5-500 requests/s per
instance, as if the types differed by two orders of magnitude in speed), rates from 1 to 2000
requests/s, prices from $0.1 to $30/hour, and a cap on every fifth type. None of these numbers
is a measurement: they exercise the solver's size, not any hardware. Sizes: 10, 100, 1,000
classes against 20 and 100 types, plus the target case, 100 classes x 50 types, which should
solve to optimality (MIP gap 0) in at most 5 s. Each solve has a 60 s limit; a solve that hits
it reports its gap. Last line: one JSON object.

    python benchmarks/planner_scale.py [--quick]   # --quick: skip 1,000 x 100
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from hwbench.errors import UsageError
from hwbench.analyse.demand import parse_workload
from hwbench.analyse.planner import Capacity, Option, solve

SEED = 20261201
TARGET = (100, 50, 5.0)  # classes, types, seconds


def instance(classes: int, types: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(types)]
    caps_count = {n: int(rng.integers(5, 40)) for n in names[::5]}
    w = parse_workload({"classes": {f"c{k}": {"model": f"m{k % 7}", "rate_rps": float(np.exp(rng.uniform(0, np.log(2000)))),
                                              "slo_p99_ms": 100.0} for k in range(classes)},
                        "pool": {"instance_types": names, "max_count": caps_count}})
    caps = [Capacity(f"c{k}", t, float(np.exp(rng.uniform(np.log(5), np.log(500)))), "synthetic")
            for k in range(classes) for j, t in enumerate(names) if j == k % types or rng.uniform() < 0.7]
    options = [Option(t, "on-demand", float(np.exp(rng.uniform(np.log(0.1), np.log(30))))) for t in names]
    return w, caps, options


def main(quick: bool = False) -> int:
    sizes = [(c, t) for c in (10, 100, 1000) for t in (20, 100)] + [TARGET[:2]]
    if quick:
        sizes = [s for s in sizes if s != (1000, 100)]
    rows = []
    for classes, types in sizes:
        w, caps, options = instance(classes, types, SEED + classes * 1000 + types)
        started = time.perf_counter()
        try:
            plan = solve(w, caps, options, time_limit_s=60.0)
            row = {"classes": classes, "types": types, "routes": len(caps), "status": plan.status, "mip_gap": plan.mip_gap,
                   "solve_s": round(plan.solve_time_s, 3), "total_s": round(time.perf_counter() - started, 3),
                   "usd_per_hour": round(plan.usd_per_hour, 4)}
        except UsageError as e:
            row = {"classes": classes, "types": types, "status": f"refused: {e}"}
        rows.append(row)
        print(f"{classes:>5} classes x {types:>3} types: {row.get('status')}, gap {row.get('mip_gap', '-')}, "
              f"solve {row.get('solve_s', '-')} s (with model building {row.get('total_s', '-')} s)", flush=True)
    target = next(r for r in rows if (r["classes"], r["types"]) == TARGET[:2])
    ok = target.get("status") == "optimal" and target.get("mip_gap", 1) <= 1e-9 and target.get("solve_s", 1e9) <= TARGET[2]
    print(json.dumps({"benchmark": "planner_scale", "synthetic": True, "seed": SEED, "rows": rows,
                      "target": {"classes": TARGET[0], "types": TARGET[1], "max_s": TARGET[2], "met": ok}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv))
