"""The queueing model's error against measured server runs on this CPU: predicted / measured p99.

For each adapter, in one run of this script and on the same model, precision and threads:
  1. a single-stream trial (batch 1): its raw latencies are the service-time distribution;
  2. a server-scenario run (`hwbench profile --scenario server --rate-rps R1,R2,R3`) at the rates
     that put that distribution at the target utilisations (default 50%, 70%, 90%);
  3. the modelled p99 at each rate: hwbench.analyse.capacity's FIFO replay of the single-stream
     samples under Poisson arrivals, and the Allen-Cunneen M/G/1 cross-check, beside the measured p99.
A ratio above 1 means the model is conservative (it predicts a worse p99 than measured).
The utilisation is the offered rate x the mean single-stream service time, as the model sees it.
Run it on a quiet machine; on a shared one the two measurements drift apart and the ratio with them.
Needs the server scenario (`hwbench profile --scenario server`); exits 2 with a message where it is absent.
The last line printed is one JSON object.

    python benchmarks/queueing_model_error.py [--model mlp-tiny] [--adapter ort-cpu,openvino]
        [--utilisation 0.5,0.7,0.9] [--duration-s 10] [--threads 1] [--profile-arg=--max-batch=1 ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.analyse.capacity import allen_cunneen_p99_s, modelled_p99_s
from hwbench.results import store


def hwbench(*args: str) -> None:
    cmd = [sys.executable, "-m", "hwbench", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def valid_ok(records: Any, scenario: str) -> Any:
    mine = records[(records["scenario"] == scenario) & (records["status"] == "ok")]
    if mine.empty:
        raise SystemExit(f"no {scenario} record measured: {records[['scenario', 'status', 'error']].to_dict('records')}")
    return mine


def one_adapter(adapter: str, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    common = ["--adapter", adapter, "--batch", "1", "--precision", args.precision, "--threads", str(args.threads),
              "--no-accuracy", "--duration-s", str(args.duration_s)]
    ss_dir = root / f"ss-{adapter}"
    hwbench("profile", args.model, *common, "--scenario", "single-stream", "--out", str(ss_dir))
    ss = valid_ok(store.load_records([ss_dir]), "single-stream").iloc[-1]
    lat = store.load_latencies([ss_dir])
    service_s = lat[lat["trial_id"] == ss["trial_id"]]["latency_ns"].to_numpy(dtype=np.float64) / 1e9
    mean_s = float(service_s.mean())
    rates = [u / mean_s for u in args.utilisation]
    srv_dir = root / f"server-{adapter}"
    hwbench("profile", args.model, *common, "--scenario", "server", "--rate-rps", ",".join(f"{r:.6g}" for r in rates),
            "--out", str(srv_dir), *args.profile_arg)
    server = valid_ok(store.load_records([srv_dir]), "server").sort_values("offered_rps")
    rows = []
    for _, r in server.iterrows():
        offered = float(r["offered_rps"])
        measured = float(r["latency_p99_ms"])
        replay = modelled_p99_s(service_s, offered) * 1e3
        ac = allen_cunneen_p99_s(service_s, offered) * 1e3
        rows.append(dict(adapter=adapter, offered_rps=offered, achieved_rps=float(r["achieved_rps"]),
                         utilisation=offered * mean_s, measured_p99_ms=measured, replay_p99_ms=replay,
                         allen_cunneen_p99_ms=ac, replay_ratio=replay / measured, allen_cunneen_ratio=ac / measured,
                         service_p50_ms=float(np.median(service_s)) * 1e3, max_batch=r.get("max_batch"),
                         batch_sizes=r.get("batch_sizes_json"), valid=bool(r["valid"]),
                         invalid_reasons=[] if r["invalid_reasons"] is None else list(r["invalid_reasons"]), sched_lag_p99_ms=r.get("sched_lag_p99_ms")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp-tiny")
    ap.add_argument("--adapter", default="ort-cpu,openvino")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--utilisation", default="0.5,0.7,0.9")
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--profile-arg", action="append", default=[], help="an extra flag for the server-scenario profile")
    ap.add_argument("--keep", type=Path, help="keep the run folders here")
    args = ap.parse_args()
    args.utilisation = [float(u) for u in args.utilisation.split(",")]
    usage = subprocess.run([sys.executable, "-m", "hwbench", "profile", "--help"], capture_output=True, text=True).stdout
    if "--rate-rps" not in usage:  # the server scenario's flag
        print("queueing_model_error: this hwbench has no server scenario (`hwbench profile --help` shows no "
              "--rate-rps); it lands with issue 11's `hwbench profile --scenario server`", file=sys.stderr)
        raise SystemExit(2)
    if not all(0 < u < 1 for u in args.utilisation):
        raise SystemExit("--utilisation values must be above 0 and below 1")
    root = args.keep or Path(tempfile.mkdtemp(prefix="hwbench-qerr-"))
    rows = [row for a in args.adapter.split(",") for row in one_adapter(a, args, root)]
    print(f"{'adapter':<10} {'util':>5} {'offered':>9} {'achieved':>9} {'measured p99':>13} {'replay p99':>11} "
          f"{'ratio':>6} {'A-C p99':>9} {'ratio':>6}  valid")
    for r in rows:
        print(f"{r['adapter']:<10} {r['utilisation']:>5.0%} {r['offered_rps']:>9.4g} {r['achieved_rps']:>9.4g} "
              f"{r['measured_p99_ms']:>11.3g}ms {r['replay_p99_ms']:>9.3g}ms {r['replay_ratio']:>6.2f} "
              f"{r['allen_cunneen_p99_ms']:>7.3g}ms {r['allen_cunneen_ratio']:>6.2f}  {r['valid']}")
    print(json.dumps({"benchmark": "queueing_model_error", "model": args.model, "precision": args.precision,
                      "threads": args.threads, "duration_s": args.duration_s, "rows": rows}, default=str))


if __name__ == "__main__":
    main()
