"""Sweep cost: how much of a sweep's wall time is measurement, and where the rest of each trial goes.

Runs a small fixed sweep through the real runner (a worker process per trial): the `null`
and `ort-cpu` adapters on the built-in mlp-tiny, fp32 and int8, batch 1 and 4, quick measure
settings, accuracy on, with a private model cache and run folder in a temporary directory.
Per trial it prints the time outside the timed window and the cold start, broken down from
the wall-clock stamps the parent and the worker record (the record's settings["timings"]):

  spawn      the parent's last stamp before starting the worker -> the kernel created it (10 ms resolution)
  interp     process created -> hwbench.measure.worker runs (interpreter start-up, site, `import hwbench`)
  job        the job file read
  imports    hwbench's measurement modules imported, the model spec parsed
  adapter    the adapter module imported, its class built
  inputs     the trial's inputs generated
  post       after the timed loop: statistics and record columns (summarized)
  accuracy   accuracy inputs, untimed inference, comparison with the reference
  finish     the record finished (close, RSS)
  exit       the record written, the worker exited and reaped, the parent read the record back
  parent     the parent's own work per trial before it starts the worker (context, job file)

outside = the parent's wall per trial - duration_s (timed window) - cold_start_s (compile).
The sweep's fixed costs (probes, the reference job, starting the worker server) are in
wall_s but not in any trial; the model export is done before timing. The sweep runs twice
in one run: workers as fresh interpreters (HWBENCH_FORKSERVER=0), then forked by the
worker server (the default). Target: outside <= 0.5 s per trial. The last line is one
JSON object. Usage: python benchmarks/sweep_cost.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Every phase, as (name, stamp at its end); each phase starts at the previous stamp.
PHASES = (
    ("spawn", "process_started"), ("interp", "worker_started"), ("job", "job_loaded"), ("imports", "imported"),
    ("adapter", "adapter_loaded"), ("inputs", "inputs_ready"),
)
AFTER = (("post", "summarized"), ("accuracy", "accuracy_done"), ("finish", "trial_done"))
TARGET_OUTSIDE_S = 0.5


def _breakdown(t: dict[str, float], start_s: float, done_s: float) -> dict[str, float | None]:
    """Seconds per phase from the stamps (None where a stamp is missing)."""
    out: dict[str, float | None] = {"parent": t["spawned"] - start_s if "spawned" in t else None}
    prev = "spawned"
    for name, key in PHASES:
        out[name] = t[key] - t[prev] if key in t and prev in t else None
        prev = key if key in t else prev
    # trial_start (in run_trial) falls between `imported` and `adapter_loaded`: counted in adapter
    prev = "measured"
    for name, key in AFTER:
        out[name] = t[key] - t[prev] if key in t and prev in t else None
        prev = key
    out["exit"] = done_s - t["trial_done"] if "trial_done" in t else None
    return out


def sweep(fork_server: bool) -> dict[str, Any]:
    """Run the fixed sweep once (workers forked by the server, or fresh interpreters); its figures."""
    from hwbench.measure.runner import SweepRunner
    from hwbench.measure.settings import MeasureSettings, SweepConfig

    os.environ["HWBENCH_FORKSERVER"] = "1" if fork_server else "0"
    with tempfile.TemporaryDirectory(prefix="hwbench-sweep-cost-") as tmp:
        os.environ["HWBENCH_CACHE"] = str(Path(tmp) / "cache")
        config = SweepConfig(models=("mlp-tiny",), adapters=("null", "ort-cpu"), precisions=("fp32", "int8"),
                             batch_sizes=(1, 4), measure=MeasureSettings.quick(), idle_power_s=0, threads=1)
        from hwbench.models import resolve

        resolve("mlp-tiny", cache_dir=Path(tmp) / "cache")  # the export is not the runner's cost
        events: dict[str, list[float]] = {}

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind in ("trial_start", "trial_done"):
                events.setdefault(data["trial"].trial_id, []).append(time.time())

        t0 = time.perf_counter()
        result = SweepRunner(config, Path(tmp) / "runs", on_event=on_event).run()
        wall_s = time.perf_counter() - t0
        records = result.records.to_dict("records")

    rows = []
    for r in records:
        start_s, done_s = events[r["trial_id"]]
        t = json.loads(r["settings"] or "{}").get("timings", {})
        timed_s = float(r["duration_s"] or 0.0)
        cold_s = float(r["cold_start_s"] or 0.0)
        rows.append({"trial": r["trial_id"], "status": r["status"], "trial_wall_s": done_s - start_s, "timed_s": timed_s,
                     "cold_start_s": cold_s, "outside_s": done_s - start_s - timed_s - cold_s, "forked": "forked" in t,
                     **_breakdown(t, start_s, done_s)})
    names = ["parent"] + [n for n, _ in PHASES] + [n for n, _ in AFTER] + ["exit"]
    mode = "fork server" if fork_server else "fresh interpreter per trial"
    print(f"-- {mode}")
    print(f"{'trial':44} {'status':6} {'wall':>6} {'timed':>6} {'cold':>6} {'outside':>7} | "
          + " ".join(f"{n:>8}" for n in names))
    for row in rows:
        cells = " ".join(f"{row[n]:8.3f}" if row[n] is not None else f"{'-':>8}" for n in names)
        print(f"{row['trial']:44} {row['status']:6} {row['trial_wall_s']:6.2f} {row['timed_s']:6.2f} "
              f"{row['cold_start_s']:6.2f} {row['outside_s']:7.3f} | {cells}")
    timed_total = sum(row["timed_s"] for row in rows)
    outside = [row["outside_s"] for row in rows]
    print(f"wall {wall_s:.2f} s for {len(rows)} trials; timed windows {timed_total:.2f} s "
          f"(wall / timed = {wall_s / timed_total:.2f}); outside per trial: median {statistics.median(outside):.3f} s, "
          f"max {max(outside):.3f} s; notes: {result.notes}")
    return {
        "trials": len(rows),
        "forked_trials": sum(row["forked"] for row in rows),
        "wall_s": round(wall_s, 3),
        "timed_s": round(timed_total, 3),
        "wall_over_timed": round(wall_s / timed_total, 3),
        "outside_per_trial_median_s": round(statistics.median(outside), 4),
        "outside_per_trial_max_s": round(max(outside), 4),
        "phase_median_s": {n: round(statistics.median(v), 4) for n in names
                           if (v := [row[n] for row in rows if row[n] is not None])},
    }


def main() -> int:
    load_before = os.getloadavg()[0]
    spawn = sweep(fork_server=False)
    fork = sweep(fork_server=True)
    load_after = os.getloadavg()[0]
    print(f"load average {load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} CPUs "
          "(a busy machine inflates both; compare the two sweeps of this one run)")
    print(json.dumps({
        "benchmark": "sweep_cost",
        "source": "measured",
        "fork_server": fork,
        "fresh_interpreter": spawn,
        "outside_per_trial_median_s": fork["outside_per_trial_median_s"],
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
        "target": {"outside_per_trial_s_max": TARGET_OUTSIDE_S},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
