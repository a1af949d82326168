"""Generate trials, in-process (the worker's branch for --workload generate): one, or a group of
points on one prepared model.

Like hwbench.measure.trial.run_trial, every outcome becomes a record. A group is the trials of one
(model, adapter, precision) whose adapter declares `reuses_prepared` (torch): one worker prepares
the model once (the model load and, for torch, the 5-7 s of imports) and measures each point
after its own warm-up call, smallest first so that each record's peak RSS is about its own
(ru_maxrss only grows); a point's accuracy result is reused by the group's later points at the same
(batch, accuracy prompt), which would compute the same numbers. The runner runs any point a
group did not record (a crash, a timeout) again on its own. The accuracy check itself is
hwbench.measure.genaccuracy's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwbench import __version__
from hwbench.adapter import AdapterOptions
from hwbench.adapter import registry
from hwbench.measure.genaccuracy import (accuracy_prompt_tokens, apply_accuracy, compute_llm_reference,  # noqa: F401
                                         greedy_agreement, is_reference, measure_accuracy, reference_for, reference_job)
from hwbench.measure.genstats import call_latency_ns, summarize_generation
from hwbench.measure.settings import MeasureSettings, SweepConfig
from hwbench.models.llmspec import LlmSpec
from hwbench.results.schema import STATUS_OK, STATUS_UNSUPPORTED, TrialRecord, settings_json

if TYPE_CHECKING:
    from hwbench.adapter.generative import GenerativeAdapter
    from hwbench.measure.trial import Trial, TrialContext

PROMPT_SOURCE_RANDOM = "random token ids"
_KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 4}  # int8 is weight-only: the KV cache stays fp32


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


def _size(trial: "Trial") -> int:
    return trial.batch_size * (trial.prompt_tokens + trial.output_tokens)


def group_trials(trials: list["Trial"], reusable: Callable[[str], bool]) -> list[list["Trial"]]:
    """The trials in runs of one worker each: a group per (model, adapter, precision) whose adapter
    `reusable(name)` says reuses a prepared model, smallest point first; every other trial alone."""
    groups: dict[tuple[str, str, str], list["Trial"]] = {}
    out: list[list["Trial"]] = []
    for t in trials:
        if not reusable(t.adapter):
            out.append([t])
            continue
        key = (t.model, t.adapter, t.precision)
        if key not in groups:
            groups[key] = []
            out.append(groups[key])
        groups[key].append(t)
    return [sorted(g, key=_size) if len(g) > 1 else g for g in out]


def run_group(runner: Any, group: list["Trial"], ctx: "TrialContext", spec: LlmSpec) -> list["Trial"]:
    """Run a group in one worker (hwbench.measure.runner's generate branch); the trials it left without a record."""
    from hwbench.results.store import read_trial_record

    runner._emit("trial_start", trial=group[0])
    job = {"kind": "trial", "run_dir": str(runner.run_dir), "model_spec": spec.to_json(), "trial": group[0].__dict__,
           "group": [t.__dict__ for t in group], "config": runner.config.to_dict(), "workload": "generate",
           "context": {k: v for k, v in ctx.__dict__.items() if k != "config"}}
    outcome = runner._spawn(job, f"{group[0].trial_id}.group{len(group)}",
                            timeout_s=runner.config.trial_timeout_s * len(group))
    left = []
    for trial in group:
        done = read_trial_record(runner.run_dir, trial.trial_id)
        if done is None:
            left.append(trial)
        else:
            runner._emit("trial_done", trial=trial, record=done)
    if left:
        runner.notes.append(f"{len(left)} of the {len(group)} points of {group[0].adapter} {group[0].precision} were "
                            f"not recorded by their shared worker ({outcome.cause or 'no record'}): run again alone")
    return left


def run_generate_trial(trial: "Trial", spec: LlmSpec, ctx: "TrialContext") -> tuple[TrialRecord, np.ndarray | None]:
    """Run one generate trial; every outcome becomes a record (ok, unsupported or error)."""
    return next(run_generate_trials([trial], spec, ctx))


def _admit(adapter: "GenerativeAdapter", trial: "Trial", spec: LlmSpec, rec: TrialRecord, cfg: SweepConfig) -> bool:
    """Whether the point can run: False with rec marked unsupported (and why) when it cannot."""
    from hwbench.measure.trial import admit_precision

    reason = adapter.check(spec, trial.precision, trial.batch_size, trial.prompt_tokens, trial.output_tokens)
    if reason:
        rec.status, rec.error = STATUS_UNSUPPORTED, reason
        return False
    return admit_precision(adapter, trial.precision, rec, cfg)


def run_generate_trials(trials: list["Trial"], spec: LlmSpec,
                        ctx: "TrialContext") -> Iterator[tuple[TrialRecord, np.ndarray | None]]:
    """Run the trials of one (model, adapter, precision) on one prepared model, yielding each record
    as it is done (ok, unsupported or error). After an error the model is prepared afresh."""
    from hwbench.measure.trial import _peak_rss_mb, record_failure, stamp_timings

    cfg = ctx.config
    options = AdapterOptions(device=cfg.device, threads=cfg.threads, concurrency=cfg.concurrency, cache_dir=ctx.cache_dir,
                             extra=dict(cfg.adapter_options.get(trials[0].adapter, {})))
    adapter: "GenerativeAdapter | None" = None
    prepared: tuple[float, str] | None = None  # (cold start s, the trial that prepared it)
    accuracy: dict[tuple[int, int], tuple[dict[str, Any], str]] = {}
    try:
        for i, trial in enumerate(trials):
            timings = {"trial_start": time.time()}
            rec = generate_base_record(trial, spec, ctx)
            samples = None
            try:
                if adapter is None:
                    adapter = registry.load_generative(trial.adapter)(options)
                if _admit(adapter, trial, spec, rec, cfg):
                    if prepared is None:
                        t0 = time.perf_counter()
                        adapter.prepare(spec, trial.precision, max(t.batch_size for t in trials[i:]),
                                        max(t.prompt_tokens for t in trials[i:]), max(t.output_tokens for t in trials[i:]))
                        prepared = (time.perf_counter() - t0, trial.trial_id)
                    timings["prepared"] = time.time()
                    samples = _measure_point(adapter, trial, spec, rec, ctx, prepared, trials[:i], accuracy, timings)
                    rec.status = STATUS_OK
            except Exception as e:  # noqa: BLE001 - an adapter failure is a result (unsupported or error), not a crash
                record_failure(rec, e)
                if adapter is not None and prepared is not None:  # its state is unknown now: the next point prepares afresh
                    _close(adapter)
                    adapter, prepared = None, None
            rec.peak_rss_mb = _peak_rss_mb()
            timings["trial_done"] = time.time()
            stamp_timings(rec, timings)
            yield rec, samples
    finally:
        if adapter is not None:
            _close(adapter)


def _close(adapter: "GenerativeAdapter") -> None:
    try:
        adapter.close()
    except Exception:  # noqa: BLE001 - closing must not hide the result
        pass


def _measure_point(adapter: "GenerativeAdapter", trial: "Trial", spec: LlmSpec, rec: TrialRecord, ctx: "TrialContext",
                   prepared: tuple[float, str], before: list["Trial"],
                   accuracy: dict[tuple[int, int], tuple[dict[str, Any], str]],
                   timings: dict[str, float]) -> np.ndarray:
    """The timed loop, statistics, energy and accuracy of one admitted point on a prepared adapter."""
    from hwbench.host.activity import ActivityProbe
    from hwbench.measure.generation import measure_generation
    from hwbench.measure.trial import _apply_activity, _instance_columns, apply_effective
    from hwbench.power.select import energy_columns, meter_for

    cfg = ctx.config
    rec.cold_start_s = prepared[0]
    load_before = round(os.getloadavg()[0], 2)
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
    for k, v in summarize_generation(m.calls, m.wall_s).items():
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
    group = {"prepared_by": prepared[1], "cold_start_shared": prepared[1] != trial.trial_id,
             "process_ran_before": [t.trial_id for t in before]} if before else {}
    rec.settings = settings_json({**settings, "warmup_calls": m.warmup_calls, "calls": len(m.calls),
                                  "stop_rule": {"max_rel_halfwidth": cfg.generate.max_rel_halfwidth,
                                                "min_calls": cfg.generate.min_calls, **m.rel_halfwidths},
                                  "loadavg_1m_before": load_before, "host_activity": host_activity,
                                  "kv_cache_bytes_per_value": _KV_BYTES.get(trial.precision, 4),
                                  "has_tokenizer": spec.has_tokenizer, **({"group": group} if group else {})})
    reference = reference_for(ctx, trial)
    if reference:
        p = accuracy_prompt_tokens(trial.prompt_tokens, cfg)
        key = (trial.batch_size, p)
        if key not in accuracy:
            acc = measure_accuracy(adapter, trial.batch_size, p, cfg, reference)
            if acc is not None:
                accuracy[key] = (acc, trial.trial_id)
                apply_accuracy(rec, acc)
        else:
            apply_accuracy(rec, accuracy[key][0], reused_from=accuracy[key][1])
    timings["accuracy_done"] = time.time()
    return samples
