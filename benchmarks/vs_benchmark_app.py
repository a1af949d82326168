"""hwbench's openvino adapter side by side with OpenVINO's own benchmark_app.

On the same ONNX file (resnet50 from hwbench.models by default), the same precision
and the same static shapes, alternating rounds (hwbench, benchmark_app, then the
reverse order) so that drift of the machine hits both sides alike:
  latency:    hwbench single-stream p50  vs  `benchmark_app -hint latency` median
  throughput: hwbench offline items/s    vs  `benchmark_app -hint throughput` FPS
benchmark_app gets explicit `-shape` and `-layout`, so its FPS counts items, not requests.
Targets: latency_ratio (hwbench / benchmark_app) <= 1.05, throughput_ratio >= 0.97.
The model is resolved in a child process so that neither torch nor onnxruntime is loaded
in this one (measured here: onnxruntime imported first makes OpenVINO's calls slower).
The last line printed is one JSON object.

    python benchmarks/vs_benchmark_app.py [--model resnet50] [--precision fp32] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from device_adapters.openvino_rt import OpenVinoAdapter
from hwbench.models.spec import ModelSpec
from hwbench.measure.profiler import measure_offline, measure_single_stream
from hwbench.measure.settings import MeasureSettings
from hwbench.measure.stats import summarize
from hwbench.models.workload import make_inputs

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_UNIT_MS = {"ms": 1.0, "us": 1e-3, "s": 1e3}


def resolve_in_child(model: str) -> ModelSpec:
    code = f"from hwbench.models import resolve; print(resolve({model!r}).to_json())"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return ModelSpec.from_json(out.strip().splitlines()[-1])


def layout(rank: int) -> str:
    """A layout string benchmark_app accepts: N for the batch axis, then '?' for the rest."""
    return {4: "NCHW", 3: "NC?", 2: "NC"}.get(rank, "N" + "?" * (rank - 1))


def benchmark_app(spec: ModelSpec, precision: str, batch: int, hint: str, seconds: float) -> dict[str, float]:
    """Run benchmark_app once; return its median latency (ms) and throughput (items/s)."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    shapes = ",".join(f"{i.name}{list(i.with_batch(batch))}".replace(" ", "") for i in spec.inputs)
    layouts = ",".join(f"{i.name}[{layout(len(i.shape))}]" for i in spec.inputs)
    cmd = [
        exe, "-m", str(spec.onnx_path), "-d", "CPU", "-hint", hint, "-shape", shapes, "-layout", layouts,
        "-infer_precision", OV_PRECISION[precision], "-t", str(int(round(seconds))),
    ]  # fmt: skip
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    median = re.search(r"Median:\s+([\d.]+)\s+(ms|us|s)\b", text)
    fps = re.search(r"Throughput:\s+([\d.]+)\s+FPS", text)
    if not median or not fps:
        raise RuntimeError(f"could not parse benchmark_app output:\n{text[-2000:]}")
    return {"median_ms": float(median.group(1)) * _UNIT_MS[median.group(2)], "fps": float(fps.group(1))}


def hwbench_side(spec: ModelSpec, precision: str, batch: int, settings: MeasureSettings) -> dict[str, float]:
    """hwbench's single-stream p50 (ms) and offline throughput (items/s) on one prepared adapter."""
    adapter = OpenVinoAdapter()
    adapter.prepare(spec, precision, batch, make_inputs(spec, batch))
    try:
        m = measure_single_stream(adapter.run, settings)
        single = summarize(m.samples_ns, batch, m.wall_s, m.completed, settings, capped=m.capped)
        off = measure_offline(adapter.open_concurrent(0), settings)
        offline = summarize(off.samples_ns, batch, off.wall_s, off.completed, settings, capped=off.capped)
        eff = adapter.effective()
    finally:
        adapter.close()
    return {
        "p50_ms": single["latency_p50_ms"],
        "cv": single["latency_cv"],
        "throughput_sps": offline["throughput_sps"],
        "offline_concurrency": eff.settings["offline_concurrency"],
        "precision_effective": eff.precision,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--precision", default="fp32", choices=sorted(OV_PRECISION))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed window of each run, both tools")
    ap.add_argument("--rounds", type=int, default=4, help="alternating order: ABBA...")
    args = ap.parse_args(argv)

    spec = resolve_in_child(args.model)
    settings = MeasureSettings(warmup_s=1.0, min_duration_s=args.seconds, min_iters=20)
    ours: list[dict[str, float]] = []
    theirs_lat: list[float] = []
    theirs_fps: list[float] = []
    for r in range(args.rounds):
        order = ("hwbench", "benchmark_app") if r % 2 == 0 else ("benchmark_app", "hwbench")
        for side in order:
            if side == "hwbench":
                ours.append(hwbench_side(spec, args.precision, args.batch, settings))
                print(f"round {r} hwbench:       p50 {ours[-1]['p50_ms']:.3f} ms, offline {ours[-1]['throughput_sps']:.1f} items/s", flush=True)
            else:
                lat = benchmark_app(spec, args.precision, args.batch, "latency", args.seconds)
                tput = benchmark_app(spec, args.precision, args.batch, "throughput", args.seconds)
                theirs_lat.append(lat["median_ms"])
                theirs_fps.append(tput["fps"])
                print(f"round {r} benchmark_app: median {lat['median_ms']:.3f} ms, throughput {tput['fps']:.1f} FPS", flush=True)

    p50 = statistics.median(o["p50_ms"] for o in ours)
    sps = statistics.median(o["throughput_sps"] for o in ours)
    ba_ms, ba_fps = statistics.median(theirs_lat), statistics.median(theirs_fps)
    result = {
        "model": args.model,
        "precision": args.precision,
        "precision_effective": ours[0]["precision_effective"],
        "batch_size": args.batch,
        "rounds": args.rounds,
        "hwbench_p50_ms": round(p50, 4),
        "benchmark_app_median_ms": round(ba_ms, 4),
        "latency_ratio": round(p50 / ba_ms, 4),
        "hwbench_throughput_sps": round(sps, 2),
        "benchmark_app_fps": round(ba_fps, 2),
        "throughput_ratio": round(sps / ba_fps, 4),
        "hwbench_offline_concurrency": ours[0]["offline_concurrency"],
        "source": "measured, this machine, medians over rounds",
    }
    print(f"latency ratio (hwbench p50 / benchmark_app median): {result['latency_ratio']:.3f}  (target <= 1.05)")
    print(f"throughput ratio (hwbench / benchmark_app):        {result['throughput_ratio']:.3f}  (target >= 0.97)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
