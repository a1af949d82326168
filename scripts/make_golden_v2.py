"""Write tests/fixtures/schema_v2_run: the golden run folder of results schema 2.

Run once when schema 2 was frozen; the files are committed and never rewritten, so
that a later hwbench is tested on what 0.2.0 really wrote. The values are made up
for the test (a 'Test CPU' host), not measurements.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hwbench.results.schema import SCHEMA_VERSION, TrialRecord
from hwbench.results.store import RunWriter

assert SCHEMA_VERSION == 2, "this script writes the schema-2 fixture only"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "schema_v2_run"
if OUT.exists() and "--force" not in sys.argv:
    sys.exit(f"{OUT} exists: golden fixtures are never rewritten")

common = dict(run_id="golden-v2", model="mlp-tiny", model_sha256="cd" * 32, adapter="ort-cpu", device="Test CPU",
              batch_size=1, host="golden", hwbench_version="0.2.0", instance_type="c6a.large",
              instance_type_source="assumed: test", started_at="2026-12-01T00:00:01+00:00")
unsupported = TrialRecord(trial_id="mlp-tiny__ort-cpu__bf16__b1__single-stream", precision="bf16",
                          status="unsupported", error="bf16 is emulated on this CPU (test)", precision_native=False,
                          precision_note="bf16 emulated (test)", **common)
ok = TrialRecord(
    trial_id="mlp-tiny__ort-cpu__fp32__b1__single-stream", precision="fp32", status="ok", valid=False,
    invalid_reasons=["only 3 samples (< 100): p99 is about the maximum"], precision_effective="fp32",
    input_shapes='{"x": [1, 16]}', n_samples=3, duration_s=0.5, latency_p50_ms=2.0, latency_p90_ms=2.8,
    latency_p95_ms=2.9, latency_p99_ms=2.98, latency_p999_ms=2.998, latency_mean_ms=2.0, latency_std_ms=1.0,
    latency_cv=0.5, latency_robust_cv=0.74, latency_p50_ci_low_ms=1.0, latency_p50_ci_high_ms=3.0,
    latency_p99_ci_low_ms=3.0, latency_p99_ci_high_ms=None, throughput_sps=6.0, cold_start_s=0.25,
    peak_rss_mb=123.0, energy_j_per_inference=0.5, avg_power_w=3.0, power_method="estimate-tdp",
    power_period_ms=100.0, power_note="TDP 10 W (test)", settings='{"intra_op_num_threads": 0}',
    precision_native=True, precision_note="fp32 native", stop_reason="time-cap",
    unresolved_percentiles=["p90", "p95", "p99", "p99.9"], latency_p50_ci_rel_halfwidth=0.5, cpu_steal_pct=3.5,
    other_cpu_pct=12.0, warnings=["noisy host: 3.5% of CPU time stolen (test)"], processes=2,
    process_p50_spread=0.1, price_usd_per_hour=0.0765, price_note="test price", **common,
)
w = RunWriter(OUT)
w.write_manifest({"run_id": "golden-v2", "created_at": "2026-12-01T00:00:00+00:00", "hwbench_version": "0.2.0",
                  "schema_version": 2, "instance_type": "c6a.large", "host": {"cpu_model": "Test CPU", "hostname": "golden"},
                  "models": {"mlp-tiny": {"sha256": "cd" * 32, "input_shapes": {"1": {"x": [1, 16]}}}}})
w.write_trial(unsupported)
w.write_trial(ok, np.array([1_000_000, 2_000_000, 3_000_000], dtype=np.int64))
w.compact()
for sub in ("records", "latencies"):
    (OUT / sub).rmdir()
print(json.dumps({"written": str(OUT)}))
