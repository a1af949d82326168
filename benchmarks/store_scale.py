"""Fleet-scale store benchmark: 1,000,000 records from 1,000 run folders, local disk vs an S3 emulator,
and the Ray driver's overhead per trial, side by side.

1. Writes FOLDERS run folders of ROWS records each (synthetic rows, built by benchmarks/frontier_scale.py's
   generator) to a temporary folder (or --data DIR, kept), then loads them with
   hwbench.results.store.load_records in a fresh process (time and that process's peak RSS): first
   from the run folders, then after `hwbench store compact` (hwbench.results.consolidate, timed too)
   from the consolidated file. Target (issue 15): at most 1.5 s and 600 MB locally.
2. Uploads the same folders to a moto S3 server (an emulator, on 127.0.0.1 at a free port) and loads
   them through s3://, before and after compacting there: same code path, the endpoint set by
   AWS_ENDPOINT_URL_S3.
3. Runs one tiny sweep (null adapter, a 4-input ONNX model, 8 trials) directly, then the same sweep as a
   fleet task on a 4-node local Ray cluster (ray.cluster_utils.Cluster), cold (first task on a fresh
   cluster) and warm (a second fleet run into a new store); prints the wall time per trial of each.

Every figure is measured on this machine in this run; on a shared host they are noisy, compare the
ratios. The last line printed is one JSON object.

    PYTHONPATH=. .venv/bin/python benchmarks/store_scale.py [--folders 1000] [--rows 1000] [--data DIR]
        [--skip-s3] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from frontier_scale import _hardware_rows  # noqa: E402  (the same synthetic rows as the analyser benchmark)

import numpy as np  # noqa: E402

from hwbench.results import store  # noqa: E402

LOAD_CHILD = """
import json, resource, sys, time
from hwbench.results import store
t0 = time.perf_counter()
df = store.load_records(sys.argv[1])
s = time.perf_counter() - t0
print(json.dumps({"rows": len(df), "load_s": s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate(root: Path, folders: int, rows: int) -> int:
    """`folders` run folders, each with a manifest and one compacted records.parquet of `rows` records."""
    rng = np.random.default_rng(0)
    base = _hardware_rows(0, models=-(-rows // 80), rng=rng).slice(0, rows)
    names = base.schema.names
    for f in range(folders):
        run = f"run-{f:04d}"
        cols = {n: base[n] for n in names}
        cols["run_id"] = pa.array([run] * rows, pa.string())
        cols["trial_id"] = pa.array([f"{run}-t{i}" for i in range(rows)], pa.string())
        cols["host"] = pa.array([f"host-{f:04d}"] * rows, pa.string())
        d = root / run
        d.mkdir(parents=True)
        (d / store.MANIFEST).write_text(json.dumps({"run_id": run}))
        pq.write_table(pa.Table.from_pydict(cols, schema=base.schema), d / store.RECORDS)
    return folders * rows


COMPACT_CHILD = """
import json, resource, sys, time
from hwbench.results.consolidate import consolidate
t0 = time.perf_counter()
done = consolidate(sys.argv[1])
s = time.perf_counter() - t0
print(json.dumps({"rows": done.rows, "compact_s": s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load_in_child(target: str, env: dict[str, str] | None = None, code: str = LOAD_CHILD) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_and_compact(target: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Load from the run folders, compact, load again: each in a fresh process."""
    folders = load_in_child(target, env)
    compact = load_in_child(target, env, COMPACT_CHILD)
    consolidated = load_in_child(target, env)
    return {"folders": folders, "compact": compact, "consolidated": consolidated}


def _say(where: str, res: dict) -> None:
    f, c, k = res["folders"], res["consolidated"], res["compact"]
    print(f"{where}: from run folders {f['load_s']:.2f} s, peak RSS {f['peak_rss_mb']:.0f} MB; compact "
          f"{k['compact_s']:.1f} s (peak {k['peak_rss_mb']:.0f} MB); consolidated {c['load_s']:.2f} s, peak RSS "
          f"{c['peak_rss_mb']:.0f} MB ({c['rows']:,} rows)", flush=True)


def s3_part(root: Path) -> dict[str, float]:
    from pyarrow import fs

    from hwbench.testing.s3emu import MotoServer

    with MotoServer() as server:
        server.create_bucket("bench")
        s3 = server.filesystem()
        t0 = time.perf_counter()
        fs.copy_files(str(root), "bench/results", source_filesystem=fs.LocalFileSystem(), destination_filesystem=s3,
                      use_threads=True)
        upload_s = time.perf_counter() - t0
        res = load_and_compact("s3://bench/results", server.env())
        res["upload_s"] = upload_s
        return res


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def ray_part(tmp: Path, nodes: int = 4, trials: int = 8) -> dict[str, float]:
    """The same sweep (null adapter, `trials` batch sizes) run directly, then as one fleet task on a
    `nodes`-node local cluster: the difference per trial is the driver's overhead (cold worker, pull,
    mirroring each trial to the store, compaction upload)."""
    import ray
    from ray.cluster_utils import Cluster

    from hwbench.fleet.driver import run_fleet
    from hwbench.fleet.spec import parse_fleet
    from hwbench.measure.runner import SweepRunner

    os.environ["RAY_TMPDIR"] = str(tmp / "ray")  # inside the benchmark's folder, removed with it
    os.environ["HWBENCH_CACHE"] = str(tmp / "cache")
    sweep = {"models": [str(_tiny_onnx(tmp / "tiny.onnx"))], "adapters": ["null"], "precisions": ["fp32"],
             "batch_sizes": list(range(1, trials + 1)), "idle_power_s": 0, "accuracy": {"enabled": False},
             "measure": {"warmup_s": 0.02, "warmup_min_iters": 1, "min_duration_s": 0.1, "max_duration_s": 0.3,
                         "min_iters": 5}}
    fleet = parse_fleet({"name": "bench", "sweeps": {"s": sweep},
                         "groups": {"g": {"resource": "bench_node", "sweep": "s"}}})
    cfg = fleet.groups[0].sweep
    t0 = time.perf_counter()
    SweepRunner(cfg, tmp / "direct").run()
    direct_s = time.perf_counter() - t0
    from hwbench.testing.raylocal import loopback_only

    obj = 80 * 2**20
    loopback = loopback_only()  # every node on 127.0.0.1 only
    loopback.__enter__()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "object_store_memory": obj})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=1, resources={"bench_node": 1}, object_store_memory=obj)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        t0 = time.perf_counter()
        res = run_fleet(fleet, f"file://{tmp}/fleet-store")
        fleet_s = time.perf_counter() - t0
        assert res.complete, [o.error for o in res.outcomes]
        t0 = time.perf_counter()
        res = run_fleet(fleet, f"file://{tmp}/fleet-store-warm")
        warm_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
        cluster.shutdown()
        loopback.__exit__(None, None, None)
    return {"trials": trials, "nodes": nodes, "direct_s_per_trial": direct_s / trials,
            "fleet_s_per_trial": fleet_s / trials, "fleet_warm_s_per_trial": warm_s / trials,
            "overhead_s_per_trial": (fleet_s - direct_s) / trials, "warm_overhead_s_per_trial": (warm_s - direct_s) / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="records per folder")
    parser.add_argument("--data", type=Path, help="generate the run folders here (kept; reused when present)")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hwbench-store-scale-"))
    data = args.data or tmp / "results"
    result: dict[str, object] = {"folders": args.folders, "rows_per_folder": args.rows,
                                 "note": "synthetic records; every time measured on this machine in this run"}
    try:
        if not (data / "run-0000" / store.MANIFEST).exists():
            t0 = time.perf_counter()
            rows = generate(data, args.folders, args.rows)
            print(f"generated {rows:,} records in {args.folders} folders in {time.perf_counter() - t0:.1f} s", flush=True)
        shutil.rmtree(data / "_consolidated", ignore_errors=True)  # a kept --data folder: start from the folders
        local = load_and_compact(str(data))
        _say("local", local)
        result["local"] = local
        met = local["consolidated"]["load_s"] <= 1.5 and local["consolidated"]["peak_rss_mb"] <= 600
        result["target_met"] = met
        print(f"target (<= 1.5 s, <= 600 MB, consolidated, local): {'met' if met else 'MISSED'}", flush=True)
        direct = local["folders"]["load_s"] <= 1.5 and local["folders"]["peak_rss_mb"] <= 600
        result["target_met_from_folders"] = direct
        print(f"the same target from the {args.folders} run folders (not compacted): {'met' if direct else 'MISSED'}",
              flush=True)
        if not args.skip_s3:
            shutil.rmtree(data / "_consolidated", ignore_errors=True)
            s3 = s3_part(data)
            _say(f"s3 (moto emulator, upload {s3['upload_s']:.1f} s)", s3)
            result["s3_emulator"] = s3
            result["s3_over_local"] = round(s3["consolidated"]["load_s"] / local["consolidated"]["load_s"], 2)
        if not args.skip_ray:
            ray = ray_part(tmp)
            print(f"sweep direct: {ray['direct_s_per_trial']:.3f} s/trial; through Ray (4 nodes): "
                  f"{ray['fleet_s_per_trial']:.3f} s/trial cold, {ray['fleet_warm_s_per_trial']:.3f} warm; overhead "
                  f"{ray['overhead_s_per_trial']:+.3f} s/trial cold, {ray['warm_overhead_s_per_trial']:+.3f} warm", flush=True)
            result["ray"] = ray
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
