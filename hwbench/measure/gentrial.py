"""One generate trial, in-process (the worker's branch for --workload generate), and the fp32
reference of the generation accuracy check.

Like hwbench.measure.trial.run_trial, every outcome becomes a record. The accuracy check
compares each precision with fp32 torch (the reference job, one per model, writes it): the
prefill's next-token logits over accuracy.min_items sequences (32: one flip is 0.97, as for
classifiers), their cosine and tie-aware top-1 agreement (hwbench.measure.accuracy, the
classifiers' rules) gate the point; the greedy continuation's agreement over the first N
tokens (the common prefix's share) is recorded beside them but does not gate: on random weights
near-tied logits make one early flip change every later token.
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwbench import __version__
from hwbench.adapter import AdapterOptions
from hwbench.adapter import registry
from hwbench.fsutil import atomic_write
from hwbench.measure.genstats import call_latency_ns, summarize_generation
from hwbench.measure.settings import MeasureSettings, SweepConfig
from hwbench.models.llmspec import LlmSpec
from hwbench.results.schema import STATUS_OK, STATUS_UNSUPPORTED, TrialRecord, settings_json

if TYPE_CHECKING:
    from hwbench.adapter.generative import GenerativeAdapter
    from hwbench.measure.trial import Trial, TrialContext

REFERENCE_ADAPTER = "torch"
REFERENCE_PRECISION = "fp32"
GREEDY_SEQUENCES = 8  # greedy continuations compared per point (the first whole batches); logits: accuracy.min_items rows
PROMPT_SOURCE_RANDOM = "random token ids"
_KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 4}  # int8 is weight-only: the KV cache stays fp32


def is_reference(trial: "Trial") -> bool:
    return trial.adapter == REFERENCE_ADAPTER and trial.precision == REFERENCE_PRECISION


def accuracy_prompt_tokens(prompt_tokens: int, cfg: SweepConfig) -> int:
    return max(1, min(prompt_tokens, cfg.generate.accuracy_prompt_tokens))


def accuracy_batches(spec: LlmSpec, batch_size: int, prompt_tokens: int, seed: int, sequences: int) -> list[np.ndarray]:
    """The same prompts for the reference and every candidate: whole batches for `sequences` rows."""
    from hwbench.measure.generation import random_prompts

    n = max(1, math.ceil(sequences / batch_size))
    return [random_prompts(spec.vocab_size, batch_size, prompt_tokens, seed + 7919 * i + prompt_tokens) for i in range(n)]


def greedy_batches(batch_size: int) -> int:
    return max(1, math.ceil(GREEDY_SEQUENCES / batch_size))


def reference_key(batch_size: int, prompt_tokens: int, index: int, what: str) -> str:
    return f"b{batch_size}_p{prompt_tokens}_i{index}_{what}"


def compute_llm_reference(spec: LlmSpec, points: list[tuple[int, int]], greedy_tokens: int, seed: int,
                          out_npz: Path, cache_dir: str, threads: int = 0, sequences: int = 32) -> None:
    """fp32 torch prefill logits and greedy tokens for every (batch, accuracy prompt length), no pickle."""
    cls = registry.load_generative(REFERENCE_ADAPTER)
    adapter = cls(AdapterOptions(cache_dir=cache_dir, threads=threads))
    adapter.prepare(spec, REFERENCE_PRECISION, max(b for b, _ in points), max(p for _, p in points), greedy_tokens)
    arrays: dict[str, Any] = {}
    for b, p in points:
        for i, ids in enumerate(accuracy_batches(spec, b, p, seed, sequences)):
            arrays[reference_key(b, p, i, "logits")] = adapter.prefill_logits(ids).astype(np.float32)
            if i < greedy_batches(b):
                arrays[reference_key(b, p, i, "greedy")] = adapter.greedy_tokens(ids, greedy_tokens)
    adapter.close()
    atomic_write(out_npz, lambda fh: np.savez(fh, **arrays))


def greedy_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    """Mean over rows of the common prefix's length / N: 1.0 when every greedy token matches."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    n = ref.shape[1]
    same = ref == cand
    prefix = np.where(same.all(axis=1), n, np.argmin(same, axis=1))
    return float(np.mean(prefix / n))


def _check_accuracy(adapter: "GenerativeAdapter", trial: "Trial", spec: LlmSpec, rec: TrialRecord,
                    ctx: "TrialContext") -> None:
    cfg = ctx.config
    if not cfg.accuracy.enabled or is_reference(trial) or not ctx.reference_npz:
        return
    from hwbench.measure.accuracy import compare_outputs

    p = accuracy_prompt_tokens(trial.prompt_tokens, cfg)
    n = cfg.generate.greedy_tokens
    refs, cands, agree = [], [], []
    with np.load(ctx.reference_npz, allow_pickle=False) as ref:
        for i, ids in enumerate(accuracy_batches(spec, trial.batch_size, p, cfg.accuracy.seed, cfg.accuracy.min_items)):
            key = reference_key(trial.batch_size, p, i, "logits")
            if key not in ref:
                return  # no reference for this point: not checked
            refs.append(ref[key])
            cands.append(adapter.prefill_logits(ids))
            if i < greedy_batches(trial.batch_size):
                agree.append(greedy_agreement(ref[reference_key(trial.batch_size, p, i, "greedy")],
                                              adapter.greedy_tokens(ids, n)))
    result = compare_outputs(refs, cands, "classification", cfg.accuracy)
    rec.accuracy_ok = bool(result.ok)
    rec.acc_max_abs_err, rec.acc_mean_rel_err = result.max_abs_err, result.mean_rel_err
    rec.acc_cosine, rec.acc_top1_agreement = result.cosine, result.top1_agreement
    rec.acc_greedy_agreement, rec.acc_greedy_tokens = float(np.mean(agree)), n
    settings = json.loads(rec.settings)
    settings["accuracy"] = {"reasons": list(result.reasons), "notes": list(result.notes), "prompt_tokens": p,
                            "sequences": sum(len(r) for r in refs), "reference": f"{REFERENCE_ADAPTER} {REFERENCE_PRECISION}",
                            "top1_agreement_tie_aware": result.top1_agreement_tie_aware}
    rec.settings = settings_json(settings)


def generate_base_record(trial: "Trial", spec: LlmSpec | None, ctx: "TrialContext") -> TrialRecord:
    """The identity columns of a generate trial's record (hwbench.measure.trial.base_record's branch)."""
    from hwbench.measure.trial import _instance_columns

    rec = TrialRecord(
        run_id=ctx.run_id, trial_id=trial.trial_id, model=trial.model, model_sha256=spec.sha256 if spec else "",
        adapter=trial.adapter, device=ctx.cpu_model, precision=trial.precision, batch_size=trial.batch_size,
        scenario=trial.scenario, input_shapes=json.dumps({"input_ids": [trial.batch_size, trial.prompt_tokens]}),
        host=ctx.hostname, started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hwbench_version=__version__, **_instance_columns(ctx),
    )
    rec.workload, rec.prompt_tokens, rec.output_tokens = "generate", trial.prompt_tokens, trial.output_tokens
    rec.prompt_source = PROMPT_SOURCE_RANDOM  # hwbench feeds seeded token ids, with or without a tokenizer
    rec.random_weights = spec.random_weights if spec else None
    return rec


def resolve_llms(cfg: SweepConfig, cache_dir: Path) -> dict[str, LlmSpec]:
    """Every model of a generate sweep as an LlmSpec; UsageError when a grid point cannot fit its context."""
    from hwbench.errors import UsageError
    from hwbench.models.zoo.llama import resolve_llm

    specs = {}
    for name in cfg.models:
        spec = specs[name] = resolve_llm(name, cache_dir)
        longest = max(cfg.prompt_tokens) + max(cfg.output_tokens)
        if max(cfg.prompt_tokens) >= spec.context_tokens or longest > spec.context_tokens:
            raise UsageError(f"--prompt-tokens {max(cfg.prompt_tokens)} + --output-tokens {max(cfg.output_tokens)} = "
                             f"{longest} tokens exceed {spec.name}'s context of {spec.context_tokens} tokens")
    return specs


def reference_job(runner: Any, spec: LlmSpec, trials: list["Trial"]) -> dict[str, Any] | None:
    """The fp32 torch reference job for `spec`'s trials (None when torch cannot run here)."""
    from hwbench.measure.worker import JOB_LLM_REFERENCE
    from hwbench.results.store import safe_name

    if not runner._probe(REFERENCE_ADAPTER).available:
        runner.notes.append("generation accuracy not checked: the fp32 reference needs the torch generation adapter")
        return None
    cfg = runner.config
    points = sorted({(t.batch_size, accuracy_prompt_tokens(t.prompt_tokens, cfg)) for t in trials})
    out = runner.run_dir / "reference" / f"{safe_name(spec.name)}-{spec.sha256[:16]}-generate.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    return {"kind": JOB_LLM_REFERENCE, "workload": "generate", "model_spec": spec.to_json(), "points": points,
            "greedy_tokens": cfg.generate.greedy_tokens, "seed": cfg.accuracy.seed, "out_npz": str(out),
            "sequences": cfg.accuracy.min_items,
            "cache_dir": str(runner._cache_dir()), "threads": cfg.threads}


def _latency_columns(rec: TrialRecord, call_ns: list[int], batch: int, wall_s: float, cfg: SweepConfig,
                     stop_reason: str) -> None:
    """The classic latency_* columns over whole calls, with stats.summarize's validity rules."""
    from hwbench.measure.stats import summarize

    g = cfg.generate
    rules = MeasureSettings(min_duration_s=g.min_duration_s, max_duration_s=g.max_duration_s, min_iters=g.min_calls,
                            min_samples_for_p99=1, max_cv=cfg.measure.max_cv)
    stats = summarize(np.asarray(call_ns, dtype=np.int64), batch, wall_s, len(call_ns), rules,
                      stop_reason="time-cap" if stop_reason == "time-cap" else "p50-tight")
    for k, v in stats.items():
        if k == "warnings":
            rec.warnings.extend(v)
        else:
            setattr(rec, k, v)


def run_generate_trial(trial: "Trial", spec: LlmSpec, ctx: "TrialContext") -> tuple[TrialRecord, np.ndarray | None]:
    """Run one generate trial; every outcome becomes a record (ok, unsupported or error)."""
    from hwbench.measure.trial import (_apply_activity, _instance_columns, _peak_rss_mb, apply_effective, record_failure,
                                       stamp_timings)

    timings = {"trial_start": time.time()}
    rec = generate_base_record(trial, spec, ctx)
    cfg = ctx.config
    options = AdapterOptions(device=cfg.device, threads=cfg.threads, concurrency=cfg.concurrency, cache_dir=ctx.cache_dir,
                             extra=dict(cfg.adapter_options.get(trial.adapter, {})))
    adapter = None
    samples = None
    try:
        cls = registry.load_generative(trial.adapter)
        adapter = cls(options)
        reason = adapter.check(spec, trial.precision, trial.batch_size, trial.prompt_tokens, trial.output_tokens)
        if reason:
            rec.status, rec.error = STATUS_UNSUPPORTED, reason
            return rec, None
        support = adapter.precision_support(trial.precision)
        rec.precision_native, rec.precision_note = support.native, support.note
        if support.native is False:
            if not cfg.allow_emulated:
                rec.status, rec.error = STATUS_UNSUPPORTED, (f"{support.note}: skipped; --allow-emulated "
                                                             "(sweep file: allow_emulated = true) runs it anyway")
                return rec, None
            rec.warnings.append(f"{trial.precision} is emulated or upcast here (precision_note): its speed is not "
                                "representative of hardware that runs it natively")
        load_before = round(os.getloadavg()[0], 2)
        t0 = time.perf_counter()
        adapter.prepare(spec, trial.precision, trial.batch_size, trial.prompt_tokens, trial.output_tokens)
        rec.cold_start_s = time.perf_counter() - t0
        timings["prepared"] = time.time()
        from hwbench.host.activity import ActivityProbe
        from hwbench.measure.generation import measure_generation
        from hwbench.power.select import energy_columns, meter_for

        placement = adapter.placement
        meter = meter_for(placement.kind, placement.meter_index, tdp_w=cfg.tdp_w)
        try:
            m = measure_generation(adapter, spec.vocab_size, trial.batch_size, trial.prompt_tokens, trial.output_tokens,
                                   cfg.generate, meter=meter, activity=ActivityProbe())
        finally:
            meter.close()
        timings["measured"] = time.time()
        lat = [call_latency_ns(c) for c in m.calls]
        samples = np.asarray([v for v in lat if v is not None], dtype=np.int64)
        _latency_columns(rec, list(samples), trial.batch_size, m.wall_s, cfg, m.stop_reason)
        gen = summarize_generation(m.calls, m.wall_s)
        for k, v in gen.items():
            setattr(rec, k, v)
        rec.stop_reason = m.stop_reason
        rec.kv_cache_mb = spec.kv_cache_bytes(trial.batch_size, trial.prompt_tokens + trial.output_tokens,
                                              _KV_BYTES.get(trial.precision, 4)) / 2**20
        rec.warnings = list(dict.fromkeys([*_instance_columns(ctx).get("warnings", []), *(rec.warnings or [])]))
        seqs = sum(len(c) for c in m.calls)
        n_out = sum(t.output_tokens for c in m.calls for t in c)
        n_all = n_out + sum(t.prompt_tokens for c in m.calls for t in c)
        idle = None
        if ctx.idle_power_w is not None and ctx.idle_power_method:
            from hwbench.power.base import EnergyReading

            idle = EnergyReading(energy_j=ctx.idle_power_w, duration_s=1.0, method=ctx.idle_power_method,
                                 period_ms=None, estimated=ctx.idle_power_method == "estimate-tdp")
        for key, value in energy_columns(m.energy, seqs, idle).items():
            setattr(rec, key, value)
        if m.energy is not None and n_out > 0:
            rec.energy_j_per_output_token = m.energy.energy_j / n_out
            rec.energy_j_per_token = m.energy.energy_j / n_all
            if m.energy.too_short:
                rec.invalid_reasons.append(f"power window {m.energy.duration_s:.2f} s shorter than ten meter periods")
                rec.valid = False
        host_activity = _apply_activity(rec, m.activity, ctx)
        settings = apply_effective(rec, adapter.effective())
        rec.device_mem_peak_mb = adapter.device_memory_peak_mb()
        rec.settings = settings_json({**settings, "warmup_calls": m.warmup_calls, "calls": len(m.calls),
                                      "loadavg_1m_before": load_before, "host_activity": host_activity,
                                      "kv_cache_bytes_per_value": _KV_BYTES.get(trial.precision, 4),
                                      "has_tokenizer": spec.has_tokenizer})
        _check_accuracy(adapter, trial, spec, rec, ctx)
        timings["accuracy_done"] = time.time()
        rec.status = STATUS_OK
    except Exception as e:  # noqa: BLE001 - an adapter failure is a result (unsupported or error), not a crash
        record_failure(rec, e)
    finally:
        if adapter is not None:
            try:
                adapter.close()
            except Exception:  # noqa: BLE001 - closing must not hide the result
                pass
    rec.peak_rss_mb = _peak_rss_mb()
    timings["trial_done"] = time.time()
    stamp_timings(rec, timings)
    return rec, samples
