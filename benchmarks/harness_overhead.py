"""Harness overhead: hwbench's timed loop vs a bare loop written inline, same process, interleaved.

On a one-Add ONNX model, the p50 per-call latency measured by hwbench (the ort-cpu
adapter's run() inside hwbench.measure.profiler) is compared with an inline loop making the
very same ONNX Runtime call (run_with_iobinding on the same binding), in alternating
rounds. A bare `session.run` loop (what most scripts write) is printed for reference.
Target: ratio <= 1.05 and overhead < 2 us. The last line is one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from device_adapters.ort_cpu import OrtCpuAdapter
from hwbench.adapter import AdapterOptions
from hwbench.models.spec import InputSpec, ModelSpec
from hwbench.measure.profiler import measure_single_stream
from hwbench.measure.settings import MeasureSettings

ROUNDS = 7
ITERS = 20_000


def add_model(path: Path) -> ModelSpec:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    node = helper.make_node("Add", ["x", "x"], ["y"])
    model = helper.make_model(helper.make_graph([node], "add", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return ModelSpec(name="add", onnx_path=path, sha256="add", inputs=(InputSpec("x", "float32", (1, 16)),), outputs=("y",))


def inline_loop(call, n: int) -> np.ndarray:
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = clock()
        call()
        t1 = clock()
        out.append(t1 - t0)
    return np.asarray(out)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        spec = add_model(Path(tmp) / "add.onnx")
        adapter = OrtCpuAdapter(AdapterOptions(threads=1, cache_dir=tmp))
        inputs = {"x": np.ones((1, 16), dtype=np.float32)}
        adapter.prepare(spec, "fp32", 1, inputs)
        session, binding = adapter._session, adapter._binding
        settings = MeasureSettings(warmup_s=0.05, warmup_min_iters=100, min_duration_s=0.0, min_iters=ITERS, max_iters=ITERS)
        hw, bare, plain = [], [], []
        feeds = {"x": inputs["x"]}
        for r in range(ROUNDS):
            hw.append(np.median(measure_single_stream(adapter.run, settings).samples_ns) / 1e3)
            bare.append(np.median(inline_loop(lambda: session.run_with_iobinding(binding), ITERS)) / 1e3)
            plain.append(np.median(inline_loop(lambda: session.run(None, feeds), ITERS)) / 1e3)
            print(f"round {r}: hwbench p50 {hw[-1]:.3f} us | inline same call {bare[-1]:.3f} us | inline session.run {plain[-1]:.3f} us")
        hw_p50, bare_p50, plain_p50 = (float(statistics.median(v)) for v in (hw, bare, plain))
        result = {
            "benchmark": "harness_overhead",
            "source": "measured",
            "rounds": ROUNDS,
            "iterations_per_round": ITERS,
            "hwbench_p50_us": round(hw_p50, 4),
            "inline_p50_us": round(bare_p50, 4),
            "inline_session_run_p50_us": round(plain_p50, 4),
            "ratio": round(hw_p50 / bare_p50, 4),
            "overhead_us": round(hw_p50 - bare_p50, 4),
            "target": {"ratio_max": 1.05, "overhead_us_max": 2.0},
        }
        result["meets_target"] = bool(result["ratio"] <= 1.05 and result["overhead_us"] < 2.0)
        print(f"hwbench/inline ratio {result['ratio']:.3f}, overhead {result['overhead_us']:.3f} us (median of {ROUNDS} interleaved rounds)")
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
