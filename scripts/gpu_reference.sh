#!/usr/bin/env bash
# The one prepared run for an NVIDIA GPU machine (H100/H200 class): the torch adapter on CUDA
# at fp32, tf32, fp16 and bf16 for resnet50 and bert-base (batch 1, 8, 32) with the NVML
# power meter, plus raw NVML (and RAPL, if readable) counter traces and a cross-check of
# hwbench's NVML meters against each other. Budget: under 8 minutes.
#
# Assumes: run from a copy of the hwbench repository; python with torch (CUDA build),
# nvidia-ml-py, numpy and hwbench's dependencies (typer, rich, pandas, pyarrow, onnx, psutil,
# scipy) importable; no internet. A wheels/ directory, if present, is installed offline first.
# Writes under $OUT (default ./gpu-reference-out): reference/ (the hwbench run), env/, traces/.
# Exit status: 0 done, 3 hwbench's dependencies or CLI missing (env and traces still written),
# 4 no trial succeeded (read reference/*.log). Worst case about 8.3 minutes (the timeouts below).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-reference-out}"
PY="${PYTHON:-python}"
mkdir -p "$OUT/env" "$OUT/traces" "$OUT/reference"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HWBENCH_CACHE="${HWBENCH_CACHE:-/tmp/hwbench-cache}"  # models and engines: keep them out of $OUT
start=$(date +%s)
log() { echo "[gpu_reference +$(( $(date +%s) - start ))s] $*" | tee -a "$OUT/env/steps.log" >&2; }

# 1. What the machine is (cheap, always useful).
log "environment"
nvidia-smi -q > "$OUT/env/nvidia-smi-q.txt" 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv \
  > "$OUT/env/gpu.csv" 2>&1
lscpu > "$OUT/env/lscpu.txt" 2>&1
"$PY" -m pip freeze > "$OUT/env/pip-freeze.txt" 2>/dev/null
git rev-parse HEAD > "$OUT/env/hwbench-commit.txt" 2>/dev/null
if [ -d wheels ]; then
  log "installing wheels/ offline"
  "$PY" -m pip install --no-index --find-links wheels -q typer rich pandas pyarrow onnx psutil scipy matplotlib \
    >> "$OUT/env/steps.log" 2>&1
fi

# 2. Raw counter traces and a meter cross-check (about 15 s).
log "NVML/RAPL traces"
timeout 60 "$PY" - "$OUT/traces" <<'PYEOF' >> "$OUT/env/steps.log" 2>&1
import json, sys, threading, time
from pathlib import Path
import pynvml, torch
out = Path(sys.argv[1])
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
name = pynvml.nvmlDeviceGetName(h)
info = {"gpu": name.decode() if isinstance(name, bytes) else name,
        "compute_capability": list(pynvml.nvmlDeviceGetCudaComputeCapability(h))}

def record(seconds, period_s=0.002):
    rows, wait, end = [], threading.Event(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        rows.append((time.perf_counter(), pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
                     pynvml.nvmlDeviceGetPowerUsage(h)))
        wait.wait(period_s)
    return {"t_s": [r[0] for r in rows], "energy_mj": [r[1] for r in rows], "power_mw": [r[2] for r in rows]}

stop = threading.Event()
def load():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    while not stop.is_set():
        a @ a
        torch.cuda.synchronize()

info["idle"] = record(3.0)
worker = threading.Thread(target=load)
worker.start(); time.sleep(1.0)
info["busy"] = record(3.0)
# hwbench's own meters over the same 4 s of load: they should agree within a few percent
from hwbench.power.nvml import NvmlCounterMeter, NvmlSampledMeter
meters = [NvmlCounterMeter(0), NvmlSampledMeter(0)]
for m in meters: m.begin()
time.sleep(4.0)
readings = [m.end() for m in meters]
stop.set(); worker.join()
info["meters"] = [{"method": r.method, "energy_j": r.energy_j, "duration_s": r.duration_s, "avg_power_w": r.avg_power_w,
                   "period_ms": r.period_ms, "too_short": r.too_short, "note": r.note} for r in readings if r]
for m in meters: m.close()
(out / "nvml.json").write_text(json.dumps(info))
print("meters:", info["meters"])
from hwbench.power import rapl
problem = rapl.rapl_problem()
if problem is None:
    doms = rapl.discover_domains()
    rows, wait, end = [], threading.Event(), time.perf_counter() + 2.0
    while time.perf_counter() < end:
        rows.append([time.perf_counter()] + [d.read_uj() for d in doms]); wait.wait(0.001)
    (out / "rapl.json").write_text(json.dumps({"domains": [[d.name, d.max_range_uj] for d in doms], "rows": rows}))
else:
    (out / "rapl.json").write_text(json.dumps({"unavailable": problem}))
PYEOF
log "traces exit $?"

# 3. hwbench itself.
if ! "$PY" -c "import typer, rich, pandas, pyarrow, onnx, psutil, scipy" 2>> "$OUT/env/steps.log"; then
  log "hwbench's dependencies are missing (see steps.log); stopping before the profile"; exit 3
fi
if ! "$PY" -m hwbench --help > /dev/null 2>> "$OUT/env/steps.log"; then
  log "python -m hwbench does not start (see steps.log)"; exit 3
fi
"$PY" -m hwbench devices --json > "$OUT/reference/devices.json" 2>> "$OUT/env/steps.log"
for model in resnet50 bert-base; do  # one run per model, so a failure or timeout keeps the other
  log "profile $model"
  timeout 210 "$PY" -m hwbench profile "$model" --adapter torch --device cuda \
    --precision fp32,tf32,fp16,bf16 --batch 1,8,32 ${HWBENCH_INSTANCE:+--instance "$HWBENCH_INSTANCE"} \
    --out "$OUT/reference" --json > "$OUT/reference/$model.json" 2> "$OUT/reference/$model.log"
  log "profile $model exit $?"
done
"$PY" - "$OUT/reference" <<'PYEOF' 2>&1 | tee -a "$OUT/env/steps.log"
import glob, sys
import pandas as pd
frames = [pd.read_parquet(f) for f in glob.glob(f"{sys.argv[1]}/*/records.parquet")]
df = pd.concat(frames) if frames else pd.DataFrame(columns=["status", "power_method"])
print(df.groupby(["status", "power_method"]).size().to_string() if len(df) else "no records")
sys.exit(0 if (df["status"] == "ok").any() else 4)
PYEOF
status=$?
log "done (exit $status)"
exit "$status"
