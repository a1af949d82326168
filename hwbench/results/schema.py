"""The results format: one row per trial, an explicit pyarrow schema, a version in the file.

History of SCHEMA_VERSION (old files are kept as fixtures under tests/fixtures/):
  1  (hwbench 0.1.0) first release: trial records with latency statistics, cold start,
     memory, scenario, effective precision, accuracy drift and energy columns.
  2  (hwbench 0.2.0) portability and rigour: precision_native / precision_note (native or
     emulated on this ISA), stop_reason, unresolved_percentiles and the p50 interval's
     relative half-width (the stopping rule), the host's activity during the timed window
     (cpu_steal_pct, other_cpu_pct), warnings (flags that do not invalidate), processes and
     process_p50_spread (repeats in fresh workers), and how the run is priced
     (instance_type_source, price_usd_per_hour, price_note). Version-1 files are migrated on
     read (MIGRATIONS below): the new columns come back empty, processes as 1.
  3  (hwbench 0.3.0) the server scenario (hwbench.measure.servertrial): one record per offered
     rate with its queueing and service times, batch sizes, lost requests, the issuer's lag,
     the LoadGen early-stopping bound it can claim, and the capacity at a p99 SLO shared by the
     records of one search. Older files get these columns empty;
     and generative LLMs (the generate workload): prompt and output lengths,
     TTFT/TPOT/ITL/E2E percentiles (vLLM's definitions, hwbench.adapter.tokens), token
     throughputs (prefill and decode apart), the KV cache's size, where the prompts came from,
     energy per token and the generation accuracy check. Older rows read as workload "inference";
     and served endpoints (--adapter openai): the endpoint, failures with their reasons, goodput
     at TTFT/TPOT/E2E bounds, the client's own CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pyarrow as pa

from hwbench.jsonsafe import json_safe

SCHEMA_VERSION = 3
SCHEMA_VERSION_KEY = b"hwbench.schema_version"

STATUS_OK = "ok"
STATUS_UNSUPPORTED = "unsupported"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_UNSUPPORTED, STATUS_ERROR)

POWER_METHODS = ("nvml-counter", "nvml-sampled", "rapl", "neuron", "estimate-tdp", "none")


@dataclass
class TrialRecord:
    """One result row. Units are in the names. None means 'not measured', never zero."""

    run_id: str
    trial_id: str
    model: str
    model_sha256: str
    adapter: str
    device: str  # what ran it, e.g. "Intel(R) Xeon(R) Platinum 8488C" or "NVIDIA H100 80GB HBM3"
    precision: str  # requested
    batch_size: int
    scenario: str = "single-stream"
    status: str = STATUS_OK
    error: str | None = None
    valid: bool = False
    invalid_reasons: list[str] = field(default_factory=list)
    precision_effective: str | None = None
    concurrency: int = 1
    input_shapes: str = "{}"  # JSON: input name -> shape at this batch size
    n_samples: int = 0
    duration_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_p999_ms: float | None = None
    latency_mean_ms: float | None = None
    latency_std_ms: float | None = None
    latency_cv: float | None = None  # std / mean
    latency_robust_cv: float | None = None  # 1.4826 * MAD / median: spread without the outliers
    latency_p50_ci_low_ms: float | None = None
    latency_p50_ci_high_ms: float | None = None
    latency_p99_ci_low_ms: float | None = None
    latency_p99_ci_high_ms: float | None = None
    throughput_sps: float | None = None
    cold_start_s: float | None = None
    peak_rss_mb: float | None = None
    device_mem_peak_mb: float | None = None
    accuracy_ok: bool | None = None  # None for the fp32 reference itself or when not checked
    acc_max_abs_err: float | None = None
    acc_mean_rel_err: float | None = None
    acc_cosine: float | None = None
    acc_top1_agreement: float | None = None
    energy_j_per_inference: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    energy_above_idle_j_per_inference: float | None = None
    power_method: str = "none"
    power_period_ms: float | None = None
    power_note: str | None = None  # how the energy was obtained, e.g. the TDP's source for estimates
    accelerator: str | None = None  # "T4", "H100", "Inferentia2"... None for CPU runs
    accelerators_used: int | None = None  # k of the instance's n accelerators
    instance_type: str | None = None
    host: str = ""
    settings: str = "{}"  # JSON: effective adapter settings (threads, graph opt level, compile mode...)
    started_at: str = ""  # ISO 8601 UTC
    hwbench_version: str = ""
    # -- added in schema 2 ---------------------------------------------------------------
    precision_native: bool | None = None  # True: the ISA/device runs it natively; False: emulated or upcast
    precision_note: str | None = None  # why, e.g. "bf16 emulated: no avx512_bf16, amx_bf16 or avx_ne_convert"
    stop_reason: str | None = None  # why the timed loop stopped: see hwbench.measure.profiler.STOP_REASONS
    unresolved_percentiles: list[str] = field(default_factory=list)  # e.g. ["p99", "p99.9"]: interval open
    latency_p50_ci_rel_halfwidth: float | None = None  # (ci_high - ci_low) / 2 / p50
    cpu_steal_pct: float | None = None  # CPU time stolen by the hypervisor in the window, % of all CPU time
    other_cpu_pct: float | None = None  # other processes' CPU use in the window, % of all CPUs
    warnings: list[str] = field(default_factory=list)  # worth a look but not invalidating (noisy host...)
    processes: int = 1  # fresh worker processes whose samples are pooled in this record
    process_p50_spread: float | None = None  # (max - min) / median of the per-process p50s
    instance_type_source: str | None = None  # "given", "detected: DMI product name", "assumed: ..."
    price_usd_per_hour: float | None = None  # a price given for this machine (--usd-per-hour)
    price_note: str | None = None  # where that price comes from
    # --- server scenario (v3) ---
    # One record per offered rate; latency_p*_ms are then END TO END, scheduled arrival -> completion.
    offered_rps: float | None = None  # the arrival process's rate
    achieved_rps: float | None = None  # requests completed / (schedule start -> last completion)
    burstiness: float | None = None  # gamma shape of the arrival gaps (1 = Poisson)
    queue_p50_ms: float | None = None  # scheduled arrival -> its batch's start
    queue_p99_ms: float | None = None
    service_p50_ms: float | None = None  # its batch's start -> end
    service_p99_ms: float | None = None
    batch_sizes_json: str | None = None  # JSON {batch size: batches formed}
    max_batch: int | None = None  # dynamic batching: the most requests per batch
    max_queue_delay_ms: float | None = None  # dynamic batching: the oldest request's longest wait for a batch
    requests_dropped: int | None = None  # refused: the queue was full
    requests_timed_out: int | None = None  # still queued when the drain window closed
    sched_lag_p99_ms: float | None = None  # the issuer's actual minus scheduled issue time, p99
    p99_bound_claimed: str | None = None  # LoadGen early stopping's claimable p99 bound, or why none
    slo_p99_ms: float | None = None  # the SLO the search (or the rates) were judged against
    capacity_at_slo_rps: float | None = None  # the highest rate measured to meet the SLO
    capacity_lo_rps: float | None = None  # bracket: = capacity_at_slo_rps
    capacity_hi_rps: float | None = None  # bracket: the lowest rate above it measured to fail
    capacity_search: str | None = None  # the key shared by one search's (or one rate list's) records
    # --- generation (v3) ---------------------------------------------------------------
    # A generate record's latency_* columns are per generate call (E2E of the batch), n_samples
    # counts sequences, throughput_sps sequences/s; the token metrics below are the LLM's own.
    workload: str = "inference"  # "inference" (one forward pass per item) | "generate" (an LLM decoding)
    prompt_tokens: int | None = None  # tokens per prompt
    output_tokens: int | None = None  # tokens generated per sequence (exactly: EOS ignored)
    ttft_p50_ms: float | None = None  # time to first token, per sequence
    ttft_p90_ms: float | None = None
    ttft_p99_ms: float | None = None
    ttft_p50_ci_low_ms: float | None = None
    ttft_p50_ci_high_ms: float | None = None
    ttft_p99_ci_low_ms: float | None = None
    ttft_p99_ci_high_ms: float | None = None
    tpot_p50_ms: float | None = None  # (E2E - TTFT) / (output tokens - 1), per sequence
    tpot_p90_ms: float | None = None
    tpot_p99_ms: float | None = None
    tpot_p50_ci_low_ms: float | None = None
    tpot_p50_ci_high_ms: float | None = None
    tpot_p99_ci_low_ms: float | None = None
    tpot_p99_ci_high_ms: float | None = None
    itl_p50_ms: float | None = None  # gaps between consecutive tokens, pooled over sequences
    itl_p99_ms: float | None = None
    e2e_p50_ms: float | None = None  # start to last token, per sequence
    e2e_p99_ms: float | None = None
    output_tokens_per_s: float | None = None  # aggregate: every output token / the timed window
    total_tokens_per_s: float | None = None  # aggregate: (prompt + output) tokens / the timed window
    output_tokens_per_s_per_seq: float | None = None  # median over sequences of output tokens / E2E
    total_tokens_per_s_per_seq: float | None = None  # median over sequences of (prompt + output) / E2E
    prefill_tokens_per_s: float | None = None  # median over calls of batch x prompt tokens / TTFT
    decode_tokens_per_s: float | None = None  # median over calls of batch x (output - 1) / (last - first token)
    kv_cache_mb: float | None = None  # the KV cache at prompt + output tokens (computed from the shape; in peak_rss_mb)
    prompt_source: str | None = None  # "random token ids" | "tokenizer"
    random_weights: bool | None = None  # True: real speed, not real text
    energy_j_per_output_token: float | None = None
    energy_j_per_token: float | None = None  # per prompt + output token
    acc_greedy_agreement: float | None = None  # mean share of the first acc_greedy_tokens greedy tokens equal to fp32's (common prefix)
    acc_greedy_tokens: int | None = None
    # --- served endpoints (v3): --adapter openai, measured by the client ---------------------
    endpoint_url: str | None = None  # scheme://host:port/path only: never credentials or a query
    served_model: str | None = None  # the name the server serves
    requests_failed: int | None = None  # requests that failed (HTTP errors, timeouts, cut-off streams...)
    failure_reasons: list[str] = field(default_factory=list)  # "N x reason", most common first
    goodput_rps: float | None = None  # requests/s that met every per-request SLO bound (DistServe)
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    slo_e2e_ms: float | None = None
    client_cpu_pct: float | None = None  # the load generator's own CPU over the run, % of one core
    usage_mismatch: int | None = None  # answers whose usage.completion_tokens differs from the chunks received
    schema_version: int = SCHEMA_VERSION

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "str | None": pa.string(),
    "int": pa.int64(),
    "int | None": pa.int64(),
    "float | None": pa.float64(),
    "bool": pa.bool_(),
    "bool | None": pa.bool_(),
    "list[str]": pa.list_(pa.string()),
}

RECORD_SCHEMA = pa.schema(
    [pa.field(f.name, _TYPES[str(f.type)], nullable=True) for f in fields(TrialRecord)],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)

LATENCY_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("trial_id", pa.string()),
        pa.field("iteration", pa.int64()),
        pa.field("latency_ns", pa.int64()),
    ],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)

RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)

# Columns added by each version, with the value an older file gets for them.
MIGRATIONS: dict[int, dict[str, Any]] = {
    2: {
        "precision_native": None, "precision_note": None, "stop_reason": None, "unresolved_percentiles": [],
        "latency_p50_ci_rel_halfwidth": None, "cpu_steal_pct": None, "other_cpu_pct": None, "warnings": [],
        "processes": 1, "process_p50_spread": None, "instance_type_source": None, "price_usd_per_hour": None,
        "price_note": None,
    },
    3: {  # --- server scenario (v3) ---
        "offered_rps": None, "achieved_rps": None, "burstiness": None, "queue_p50_ms": None, "queue_p99_ms": None,
        "service_p50_ms": None, "service_p99_ms": None, "batch_sizes_json": None, "max_batch": None,
        "max_queue_delay_ms": None, "requests_dropped": None, "requests_timed_out": None, "sched_lag_p99_ms": None,
        "p99_bound_claimed": None, "slo_p99_ms": None, "capacity_at_slo_rps": None, "capacity_lo_rps": None,
        "capacity_hi_rps": None, "capacity_search": None,
        "workload": "inference", "prompt_tokens": None, "output_tokens": None,
        **{f"{m}_{k}": None for m in ("ttft", "tpot") for k in ("p50_ms", "p90_ms", "p99_ms", "p50_ci_low_ms",
                                                            "p50_ci_high_ms", "p99_ci_low_ms", "p99_ci_high_ms")},
        "itl_p50_ms": None, "itl_p99_ms": None, "e2e_p50_ms": None, "e2e_p99_ms": None,
        "output_tokens_per_s": None, "total_tokens_per_s": None, "output_tokens_per_s_per_seq": None,
        "total_tokens_per_s_per_seq": None, "prefill_tokens_per_s": None, "decode_tokens_per_s": None,
        "kv_cache_mb": None, "prompt_source": None, "random_weights": None, "energy_j_per_output_token": None,
        "energy_j_per_token": None, "acc_greedy_agreement": None, "acc_greedy_tokens": None,
        "endpoint_url": None, "served_model": None, "requests_failed": None, "failure_reasons": [],
        "goodput_rps": None, "slo_ttft_ms": None, "slo_tpot_ms": None, "slo_e2e_ms": None, "client_cpu_pct": None,
        "usage_mismatch": None,
    },
}


def migrate_records(table: pa.Table, version: int) -> pa.Table:
    """A records table of schema `version` brought to SCHEMA_VERSION: added columns get their defaults."""
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for name, default in MIGRATIONS.get(v, {}).items():
            if name in table.column_names:
                continue
            typ = RECORD_SCHEMA.field(name).type
            table = table.append_column(pa.field(name, typ), pa.array([default] * table.num_rows, type=typ))
    return table  # schema_version keeps the version the row was written under


def records_table(records: list[TrialRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=RECORD_SCHEMA)


def record_from_row(row: dict[str, Any]) -> TrialRecord:
    names = {f.name for f in fields(TrialRecord)}
    return TrialRecord(**{k: v for k, v in row.items() if k in names})


def settings_json(settings: dict[str, Any]) -> str:
    """The settings column: JSON through the one cleaner (NaN -> null, numpy scalars -> Python)."""
    return json.dumps(json_safe(settings), sort_keys=True, default=str)
