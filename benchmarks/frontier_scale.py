"""Scale benchmark for the analyser: 1,000,000 synthetic result rows across 50 hardware types.

Writes them as 50 run folders (one per hardware type, as if from 50 machines) in the store's
format, then times loading them with hwbench.results.store.load_records, and separately the
analysis: the priced matrix, the per-model frontier, and one SLO pick. Target: analysis
no slower than loading (ratio <= 1.0) and peak memory under 2 GB.

The rows are synthetic (random latencies on a full grid of 250 models x 50 hardware x
2 adapters x 4 precisions x 5 batch sizes x 2 scenarios); only the timings are measured.
The last line printed is one JSON object.

    .venv/bin/python benchmarks/frontier_scale.py [--rows-per-model-grid N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hwbench.results import store
from hwbench.analyse.frontier import mark_frontier, pick
from hwbench.analyse.matrix import build_matrix
from hwbench.catalog.prices import load_catalog
from hwbench.results.schema import RECORD_SCHEMA, SCHEMA_VERSION

HARDWARE = 50
PRICED = 45  # the last 5 hardware types are missing from the price file: the unpriced path is exercised too
ADAPTERS = ("ort-cpu", "openvino")
PRECISIONS = ("fp32", "bf16", "int8", "fp16")
BATCHES = (1, 2, 8, 32, 64)
SCENARIOS = ("single-stream", "offline")


def _price_file(folder: Path) -> Path:
    lines = []
    for h in range(PRICED):
        lines += [f'[instances."synth-{h:02d}"]', f"on_demand_usd_per_hour = {0.05 * (h + 1):.4f}",
                  "as_of = 2026-01-01", 'source = "synthetic benchmark price"', ""]
    path = folder / "synthetic-prices.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _hardware_rows(h: int, models: int, rng: np.random.Generator) -> pa.Table:
    """Every (model, adapter, precision, batch, scenario) point on hardware type h."""
    grid = np.array(np.meshgrid(np.arange(models), np.arange(len(ADAPTERS)), np.arange(len(PRECISIONS)),
                                np.arange(len(BATCHES)), np.arange(len(SCENARIOS)), indexing="ij")).reshape(5, -1)
    m, a, p, b, s = grid
    n = m.size
    batch = np.asarray(BATCHES)[b]
    speed = 0.5 + 3.0 * rng.random(models)[m] / (1.0 + 0.1 * h) * (1.0 - 0.2 * p)
    p50 = speed * batch ** 0.8 * rng.lognormal(0.0, 0.05, n)
    p99 = p50 * rng.uniform(1.05, 1.6, n)
    valid = rng.random(n) > 0.05
    run = f"run-{h:02d}"
    strings = lambda values: pa.array(values, pa.string())  # noqa: E731
    cols = {
        "run_id": strings(np.full(n, run)),
        "trial_id": strings(np.char.add(f"{run}-", np.arange(n).astype(str))),
        "model": strings(np.char.add("model-", m.astype(str))),
        "model_sha256": strings(np.char.add("sha-", m.astype(str))),
        "adapter": strings(np.asarray(ADAPTERS)[a]),
        "device": strings(np.full(n, f"Synthetic Device {h}")),
        "precision": strings(np.asarray(PRECISIONS)[p]),
        "precision_effective": strings(np.asarray(PRECISIONS)[p]),
        "batch_size": pa.array(batch.astype(np.int64)),
        "scenario": strings(np.asarray(SCENARIOS)[s]),
        "status": strings(np.full(n, "ok")),
        "valid": pa.array(valid),
        "invalid_reasons": pa.array([[] if v else ["cv above threshold"] for v in valid], pa.list_(pa.string())),
        "concurrency": pa.array(np.where(s == 1, 2, 1).astype(np.int64)),
        "input_shapes": strings(np.char.add(np.char.add('{"input": [', batch.astype(str)), ", 128]}")),
        "latency_p50_ms": pa.array(p50),
        "latency_p99_ms": pa.array(p99),
        "throughput_sps": pa.array(batch * 1000.0 / p50),
        "accuracy_ok": pa.array(np.where(p == 0, None, rng.random(n) > 0.02), pa.bool_()),
        "energy_j_per_inference": pa.array(p50 / batch * 0.2),
        "power_method": strings(np.full(n, "estimate-tdp")),
        "instance_type": strings(np.full(n, f"synth-{h:02d}")),
        "host": strings(np.full(n, f"host-{h:02d}")),
        "started_at": strings(np.full(n, "2026-01-01T00:00:00Z")),
        "schema_version": pa.array(np.full(n, SCHEMA_VERSION, dtype=np.int64)),
    }
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in RECORD_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)


def generate(root: Path, models: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    rows = 0
    for h in range(HARDWARE):
        run_dir = root / f"run-{h:02d}"
        run_dir.mkdir(parents=True)
        (run_dir / store.MANIFEST).write_text(json.dumps({"run_id": f"run-{h:02d}", "host": {"hostname": f"host-{h:02d}"}}))
        table = _hardware_rows(h, models, rng)
        pq.write_table(table, run_dir / store.RECORDS)
        rows += table.num_rows
    return rows


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=250, help="models per hardware type (250 gives 1,000,000 rows)")
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="hwbench-frontier-scale-"))
    try:
        t0 = time.perf_counter()
        rows = generate(root / "results", args.models)
        prices = _price_file(root)
        print(f"generated {rows:,} rows over {HARDWARE} hardware types in {time.perf_counter() - t0:.1f} s", flush=True)

        t0 = time.perf_counter()
        records = store.load_records([root / "results"])
        load_s = time.perf_counter() - t0
        print(f"load:     {load_s:.2f} s ({len(records):,} records)", flush=True)

        t0 = time.perf_counter()
        matrix = build_matrix(records, load_catalog([prices]))
        t1 = time.perf_counter()
        points = mark_frontier(matrix.points)
        t2 = time.perf_counter()
        chosen = pick(points, "model-7", slo_p99_ms=200.0, rate_rps=500.0)
        t3 = time.perf_counter()
        analysis_s = t3 - t0
        print(f"analysis: {analysis_s:.2f} s (matrix {t1 - t0:.2f}, frontier {t2 - t1:.2f}, SLO pick {t3 - t2:.3f}); "
              f"{len(matrix.points):,} points, {int(points['on_frontier'].sum()):,} on frontiers, "
              f"{len(matrix.invalid):,} invalid, {len(matrix.inaccurate):,} inaccurate", flush=True)
        print(f"pick for model-7 (p99 <= 200 ms at 500 req/s): {chosen.instances} x {chosen.hardware} "
              f"{chosen.precision} b{chosen.batch_size}, {chosen.fleet_usd_per_hour:.3f} $/h", flush=True)
        result = {
            "rows": rows, "hardware_types": HARDWARE, "load_s": round(load_s, 3), "analysis_s": round(analysis_s, 3),
            "matrix_s": round(t1 - t0, 3), "frontier_s": round(t2 - t1, 3), "pick_s": round(t3 - t2, 4),
            "ratio": round(analysis_s / load_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "points": len(matrix.points), "frontier_points": int(points["on_frontier"].sum()),
            "note": "synthetic rows; timings measured on this machine",
        }
        print(json.dumps(result))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
