"""Does a server-scenario pick hold? Search a capacity, pick a fleet at a rate, measure one instance of it.

1. `hwbench profile MODEL --scenario server --slo-p99-ms X` searches the capacity at the SLO and
   confirms it with a full-length point (skipped with --results DIR, which reuses a run).
2. `hwbench frontier DIR --slo-p99-ms X --rate-rps R --json` picks the cheapest fleet: n instances,
   each at R / n, with the p99 it predicts there (read off the measured curve).
3. One instance is measured at R / n, open loop, with a full-length schedule (at least
   --min-queries queries, up to --max-duration-s), as a fresh run: `hwbench profile ... --rate-rps R/n`.
Printed: the pick, the predicted and measured p99 at R / n, and whether the measured one is within
the SLO. One instance at R / n stands for the fleet when a router splits R evenly over n instances
that do not share a CPU (each of them is this host); routing and placement effects are not measured.

    python benchmarks/server_pick.py [--model resnet50] [--adapter ort-cpu] [--precision int8]
        [--slo-p99-ms 100] [--rate-rps 10] [--instance c6a.large] [--out DIR] [--results DIR]

Run it on a quiet machine. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def hwbench(*args: str, log: Path) -> str:
    cmd = [sys.executable, "-m", "hwbench", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    if done.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode} (log: {log}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return done.stdout


def plot_search(search_dir: Path, verify_dir: Path | None, slo_ms: float, path: Path) -> Path:
    """Every rate the search measured (hollow: short points, flagged invalid; filled: valid full-length
    confirmations), their service p99, the SLO, the confirmed capacity and the one-instance check."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hwbench.results import store

    recs = store.load_records([search_dir])
    recs = recs[(recs["scenario"] == "server") & (recs["status"] == "ok")].sort_values("offered_rps")
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    valid = recs["valid"].astype(bool)
    for mask, face, label in ((~valid, "none", "search point (short: flagged invalid)"),
                              (valid, "C0", "full-length point (valid)")):
        g = recs[mask]
        ax.scatter(g["offered_rps"], g["latency_p99_ms"], facecolors=face, edgecolors="C0", s=40, label=f"p99, {label}")
        ax.scatter(g["offered_rps"], g["service_p99_ms"], facecolors=face if face == "none" else "C2", edgecolors="C2",
                   marker="s", s=24, label=f"service p99, {label}")
    ax.axhline(slo_ms, color="black", ls="-.", lw=1.0, label=f"SLO p99 {slo_ms:g} ms")
    cap = recs["capacity_at_slo_rps"].dropna()
    if len(cap) and cap.iloc[0] > 0:
        ax.axvline(float(cap.iloc[0]), color="C0", ls=":", lw=1.2, label=f"confirmed capacity {float(cap.iloc[0]):.3g} req/s")
    if verify_dir is not None:
        v = store.load_records([verify_dir])
        v = v[(v["scenario"] == "server") & (v["status"] == "ok")]
        ax.scatter(v["offered_rps"], v["latency_p99_ms"], marker="*", s=140, color="C3",
                   label="one instance of the pick at R / n (fresh run)")
    ax.set_xlabel("offered rate (requests/s, open-loop Poisson arrivals)")
    ax.set_ylabel("ms from scheduled arrival (measured)")
    model = recs["model"].iloc[0] if len(recs) else ""
    ax.set_title(f"{model}: server scenario capacity search")
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=110)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--adapter", default="ort-cpu")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--slo-p99-ms", type=float, default=100.0)
    ap.add_argument("--rate-rps", type=float, default=10.0)
    ap.add_argument("--instance", default="c6a.large")
    ap.add_argument("--min-queries", type=int, default=460)
    ap.add_argument("--max-duration-s", type=float, default=240.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None, help="reuse a server-scenario run instead of searching")
    ap.add_argument("--verified", type=Path, default=None, help="with --results: reuse the one-instance run too")
    ap.add_argument("--plot", type=Path, default=None, help="save the search's curve and the check here (PNG)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hwbench-server-pick-"))
    out.mkdir(parents=True, exist_ok=True)
    common = ["--adapter", args.adapter, "--precision", args.precision, "--batch", "1", "--scenario", "server",
              "--instance", args.instance, "--yes"]
    t0 = time.perf_counter()
    search_dir = args.results
    if search_dir is None:
        search_dir = out / "search"
        hwbench("profile", args.model, *common, "--slo-p99-ms", f"{args.slo_p99_ms:g}", "--out", str(search_dir),
                log=out / "search.log")
    search_s = time.perf_counter() - t0
    picked = json.loads(hwbench("frontier", str(search_dir), "--model", args.model, "--slo-p99-ms", f"{args.slo_p99_ms:g}",
                                "--rate-rps", f"{args.rate_rps:g}", "--json", log=out / "frontier.log"))
    pick: Any = picked["picks"].get(args.model)
    result: dict[str, Any] = {"model": args.model, "adapter": args.adapter, "precision": args.precision,
                              "slo_p99_ms": args.slo_p99_ms, "rate_rps": args.rate_rps, "search_wall_s": round(search_s, 1)}
    if not isinstance(pick, dict):
        result["pick"] = pick  # the reason no fleet meets the SLO
        print(f"no pick: {pick}")
        print(json.dumps(result))
        return 1
    per = args.rate_rps / pick["instances"]
    sweep = out / "verify.toml"
    sweep.write_text("[server]\n" f"min_queries = {args.min_queries}\n" f"max_duration_s = {args.max_duration_s:g}\n")
    verify_dir = args.verified
    if verify_dir is None:
        verify_dir = out / "verify"
        hwbench("profile", args.model, *common, "--config", str(sweep), "--rate-rps", f"{per:.6g}",
                "--slo-p99-ms", f"{args.slo_p99_ms:g}", "--out", str(verify_dir), log=out / "verify.log")
    if args.plot is not None:
        plot_search(search_dir, verify_dir, args.slo_p99_ms, args.plot)
    from hwbench.results import store

    recs = store.load_records([verify_dir])
    rec = recs[(recs["scenario"] == "server") & (recs["status"] == "ok")].iloc[-1]
    measured = float(rec["latency_p99_ms"])
    holds = bool(measured <= args.slo_p99_ms and rec["valid"])
    result.update({
        "instances": pick["instances"], "capacity_rps": pick.get("capacity_rps"), "capacity_source": pick.get("capacity_source"),
        "rate_per_instance_rps": per, "predicted_p99_ms": pick["request_latency_p99_ms"], "measured_p99_ms": measured,
        "measured_valid": bool(rec["valid"]), "measured_invalid_reasons": list(rec["invalid_reasons"]),
        "measured_queries": int(rec["n_samples"]), "p99_bound_claimed": rec["p99_bound_claimed"],
        "fleet_usd_per_hour": pick["fleet_usd_per_hour"], "holds": holds, "out": str(out),
    })
    print(f"pick: {pick['instances']} x {pick['hardware']} ({args.adapter} {args.precision}), capacity "
          f"{pick.get('capacity_rps')} req/s ({pick.get('capacity_source')}), ${pick['fleet_usd_per_hour']:.4f}/h")
    print(f"one instance at {per:.4g} req/s: predicted p99 {pick['request_latency_p99_ms']:.1f} ms, measured "
          f"{measured:.1f} ms from {int(rec['n_samples'])} queries (valid: {bool(rec['valid'])}; "
          f"early stopping: {rec['p99_bound_claimed']}) -> {'holds' if holds else 'DOES NOT HOLD'} at the "
          f"{args.slo_p99_ms:g} ms SLO")
    print(json.dumps(result, default=str))
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
