"""Process repeats (``--processes N``, after pyperf): one trial in N fresh workers, one record.

A single process is one draw of everything fixed at start-up: memory layout (ASLR),
which core the scheduler settles on, the runtime's kernel and thread-pool choices. Two
processes of the same trial can differ by more than either one's samples vary, and an
interval computed from one process's samples cannot see that. So the runner (hwbench.
runner) runs the trial's worker N times, one after another; each worker writes its
record and latencies to a part folder (``parts/<trial>/p<i>/``, never the run's own
records), and this module merges the parts into the trial's ONE record and ONE latency
set, which the runner then saves atomically like any other trial. A run killed part-way
leaves no record for the trial, so ``resume`` redoes it from its first process.

The merged record:

- samples: the N processes' samples pooled, in process order (settings.processes gives
  each process's n_samples, so process i's samples are a contiguous range of iterations);
  every statistic comes from hwbench.measure.stats.summarize on the pool, with the windows' total
  duration and batch count;
- ``processes`` = N, ``process_p50_spread`` = (max - min) / median of the per-process p50s;
- the p50 interval is the envelope (the union) of the pooled order-statistic interval and
  a Student-t interval over the N per-process p50s (mean +- t(0.975, N-1) * sd / sqrt(N)).
  The pooled interval treats every sample as independent, which is only right when the
  processes agree; the t-interval treats each process's p50 as one draw of a random
  process effect plus noise and so carries the between-process variance, but with few
  processes it is wide (t(0.975, 1) = 12.7). Taking the envelope is never narrower than
  either: it is honest when processes disagree and costs little when they agree (its low
  end is clamped at 0: a latency is never negative). The p99
  interval stays the pooled one (a per-process p99 is too noisy for a t-interval);
- ``cold_start_s`` is the first process's (the coldest: model file and compile caches
  not yet warm); every process's cold start is kept in settings.process_cold_start_s;
- host activity (steal, other processes) is the duration-weighted mean of the processes'
  windows, and the noisy-host warnings are recomputed on it; other warnings and
  invalid reasons that are not about the samples (a short power window...) are kept;
- energy per item is the item-weighted mean, average power the duration-weighted mean.

A process that fails (crash, timeout, error record) stops the repeats: the trial becomes
an error record that says which process failed, why, and how many succeeded; the
successful processes' samples are still saved as the trial's latencies and summarized in
settings.processes, so nothing measured is lost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import t as student_t

from hwbench.host.activity import NOISE_PREFIX, activity_warnings
from hwbench.results.schema import STATUS_ERROR, TrialRecord, settings_json
from hwbench.measure.settings import MeasureSettings
from hwbench.measure.stats import CAP_WARNING_PREFIX, summarize
from hwbench.results.store import read_trial_record, safe_name

PARTS = "parts"
PROCESS_ENV = "HWBENCH_PROCESS"  # set in each worker: its 1-based index among the trial's processes


def parts_root(run_dir: Path, trial_id: str) -> Path:
    return Path(run_dir) / PARTS / safe_name(trial_id)


def part_dir(run_dir: Path, trial_id: str, index: int) -> Path:
    """Where process `index` (1-based) of a trial writes its record and latencies."""
    return parts_root(run_dir, trial_id) / f"p{index}"


def read_part(part: Path, trial_id: str) -> tuple[TrialRecord | None, np.ndarray]:
    """One process's record (None if it wrote none) and its latencies (empty if none)."""
    if not (part / "records").is_dir():
        return None, np.zeros(0, dtype=np.int64)
    rec = read_trial_record(part, trial_id)
    lat = part / "latencies" / (safe_name(trial_id) + ".parquet")
    samples = (pq.read_table(lat, columns=["latency_ns"]).column(0).to_numpy().astype(np.int64)
               if lat.exists() else np.zeros(0, dtype=np.int64))
    return rec, samples


def p50_interval(pooled_lo: float, pooled_hi: float, p50s: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """The envelope of the pooled interval and a t-interval over the per-process p50s (see the module doc)."""
    n = len(p50s)
    if n < 2 or any(not math.isfinite(p) for p in p50s):
        return pooled_lo, pooled_hi
    mean = statistics.fmean(p50s)
    half = float(student_t.ppf(0.5 + confidence / 2.0, n - 1)) * statistics.stdev(p50s) / math.sqrt(n)
    return max(0.0, min(pooled_lo, mean - half)), max(pooled_hi, mean + half)  # a latency is never below 0


def p50_spread(p50s: list[float]) -> float | None:
    """(max - min) / median of the per-process p50s; None with fewer than two."""
    if len(p50s) < 2:
        return None
    median = statistics.median(p50s)
    return (max(p50s) - min(p50s)) / median if median > 0 else None


def _settings(rec: TrialRecord) -> dict[str, Any]:
    try:
        out = json.loads(rec.settings or "{}")
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def _weighted(values: list[float | None], weights: list[float]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w > 0]
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0 or len(pairs) < len(values):
        return None
    return sum(v * w for v, w in pairs) / total


def _summary(index: int, rec: TrialRecord) -> dict[str, Any]:
    return {"process": index, "status": rec.status, "n_samples": rec.n_samples, "duration_s": rec.duration_s,
            "latency_p50_ms": rec.latency_p50_ms, "cold_start_s": rec.cold_start_s,
            "cpu_steal_pct": rec.cpu_steal_pct, "other_cpu_pct": rec.other_cpu_pct,
            "stop_reason": rec.stop_reason, "started_at": rec.started_at, "error": rec.error}


def _own_reasons(rec: TrialRecord, samples: np.ndarray, settings: MeasureSettings) -> list[str]:
    """A process's invalid reasons that are not about its samples (those are recomputed on the pool)."""
    capped = bool(_settings(rec).get("capped"))
    about_samples = summarize(samples, rec.batch_size, rec.duration_s or 0.0, rec.n_samples, settings,
                              capped=capped, stop_reason=rec.stop_reason)["invalid_reasons"]
    return [r for r in rec.invalid_reasons if r not in about_samples]


def _pooled_stop_reason(parts: list[TrialRecord]) -> str | None:
    """One stop reason for the pool: the common one, else the time cap if any process hit it (the
    conservative reading), else the first process's. Each process's own is kept in settings."""
    reasons = [p.stop_reason for p in parts]
    if len(set(reasons)) == 1:
        return reasons[0]
    return "time-cap" if "time-cap" in reasons else reasons[0]


def merge(parts: list[TrialRecord], samples: list[np.ndarray], settings: MeasureSettings) -> tuple[TrialRecord, np.ndarray]:
    """N successful processes of one trial -> one record and the pooled samples."""
    first = parts[0]
    rec = dataclasses.replace(first, invalid_reasons=[], warnings=[])
    pooled = np.concatenate([np.asarray(s, dtype=np.int64) for s in samples])
    durations = [p.duration_s or 0.0 for p in parts]
    items = [float(p.n_samples * p.batch_size) for p in parts]
    capped = all(bool(_settings(p).get("capped")) for p in parts)
    stats = summarize(pooled, first.batch_size, sum(durations), sum(p.n_samples for p in parts), settings, capped=capped,
                      stop_reason=_pooled_stop_reason(parts))
    for k, v in stats.items():
        setattr(rec, k, v)
    own = list(dict.fromkeys(r for p, s in zip(parts, samples) for r in _own_reasons(p, s, settings)))
    rec.invalid_reasons = list(stats["invalid_reasons"]) + own
    rec.valid = bool(stats["valid"]) and not own

    p50s = [p.latency_p50_ms for p in parts if p.latency_p50_ms is not None]
    if rec.latency_p50_ci_low_ms is not None and rec.latency_p50_ci_high_ms is not None:
        lo, hi = p50_interval(rec.latency_p50_ci_low_ms, rec.latency_p50_ci_high_ms, p50s)
        rec.latency_p50_ci_low_ms, rec.latency_p50_ci_high_ms = lo, hi
        if rec.latency_p50_ms:
            rec.latency_p50_ci_rel_halfwidth = (hi - lo) / 2.0 / rec.latency_p50_ms
    rec.processes = len(parts)
    rec.process_p50_spread = p50_spread(p50s)
    rec.cold_start_s = first.cold_start_s

    rec.cpu_steal_pct = _weighted([p.cpu_steal_pct for p in parts], durations)
    rec.other_cpu_pct = _weighted([p.other_cpu_pct for p in parts], durations)
    kept = [w for p in parts for w in p.warnings if not w.startswith((NOISE_PREFIX, CAP_WARNING_PREFIX))]
    rec.warnings = list(dict.fromkeys(kept + list(stats["warnings"]))) + activity_warnings(
        rec.cpu_steal_pct, rec.other_cpu_pct, settings.max_steal_pct, settings.max_other_cpu_pct)

    rec.energy_j_per_inference = _weighted([p.energy_j_per_inference for p in parts], items)
    rec.energy_above_idle_j_per_inference = _weighted([p.energy_above_idle_j_per_inference for p in parts], items)
    rec.avg_power_w = _weighted([p.avg_power_w for p in parts], durations)
    rec.peak_rss_mb = max((p.peak_rss_mb for p in parts if p.peak_rss_mb is not None), default=None)
    rec.device_mem_peak_mb = max((p.device_mem_peak_mb for p in parts if p.device_mem_peak_mb is not None), default=None)
    drifted = [p for p in parts if p.accuracy_ok is False]
    if drifted:  # the worst case is the one to show
        d = drifted[0]
        rec.accuracy_ok, rec.acc_max_abs_err, rec.acc_mean_rel_err = False, d.acc_max_abs_err, d.acc_mean_rel_err
        rec.acc_cosine, rec.acc_top1_agreement = d.acc_cosine, d.acc_top1_agreement

    extra = _settings(first)
    host = dict(extra.get("host_activity") or {})
    if host:
        host.update(cpu_steal_pct=rec.cpu_steal_pct, other_cpu_pct=rec.other_cpu_pct, window_s=sum(durations),
                    total_ticks=None, own_cpu_pct=None)
    extra.update({
        "host_activity": host or None,
        "processes": [_summary(i, p) for i, p in enumerate(parts, 1)],
        "process_cold_start_s": [p.cold_start_s for p in parts],
        "p50_interval": f"envelope of the pooled order-statistic interval and a t-interval over {len(p50s)} per-process p50s",
    })
    rec.settings = settings_json(extra)
    return rec, pooled


def failed(base: TrialRecord, parts: list[TrialRecord], samples: list[np.ndarray], requested: int,
           failed_index: int, cause: str) -> tuple[TrialRecord, np.ndarray]:
    """The error record of a trial whose process `failed_index` failed; earlier processes' samples are kept."""
    rec = dataclasses.replace(base, status=STATUS_ERROR, valid=False, invalid_reasons=[], warnings=[])
    ok = len(parts)
    pooled = (np.concatenate([np.asarray(s, dtype=np.int64) for s in samples]) if samples
              else np.zeros(0, dtype=np.int64))
    kept = f"their {len(pooled)} samples are kept" if ok else "nothing was measured"
    rec.error = (f"process {failed_index} of {requested} failed: {cause}; {ok} of {requested} processes "
                 f"succeeded ({kept})")[:2000]
    rec.processes = ok
    rec.n_samples = len(pooled)
    rec.process_p50_spread = p50_spread([p.latency_p50_ms for p in parts if p.latency_p50_ms is not None])
    rec.cold_start_s = parts[0].cold_start_s if parts else None
    rec.peak_rss_mb = max((p.peak_rss_mb for p in parts if p.peak_rss_mb is not None), default=base.peak_rss_mb)
    rec.settings = settings_json({"processes": [_summary(i, p) for i, p in enumerate(parts, 1)],
                                  "processes_requested": requested, "failed_process": failed_index,
                                  "process_cold_start_s": [p.cold_start_s for p in parts]})
    return rec, pooled
