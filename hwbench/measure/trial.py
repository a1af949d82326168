"""One trial, in-process: prepare the adapter, measure, check accuracy, build the record.

This runs inside a worker process (hwbench.measure.worker); hwbench.measure.runner owns the processes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hwbench import __version__
from hwbench.adapter import registry
from hwbench.adapter import Adapter, AdapterOptions, Effective
from hwbench.errors import UnsupportedPoint, UsageError
from hwbench.fsutil import atomic_write, take_rebuilt_notes
from hwbench.host.activity import ActivityProbe, ActivityWindow, activity_warnings
from hwbench.models.spec import ModelSpec
from hwbench.power.base import EnergyReading, PowerMeter
from hwbench.measure.profiler import Measurement, measure_offline, measure_single_stream
from hwbench.results.schema import STATUS_ERROR, STATUS_OK, STATUS_UNSUPPORTED, TrialRecord, settings_json
from hwbench.measure.settings import SweepConfig
from hwbench.measure.stats import summarize

REFERENCE_ADAPTER = "ort-cpu"
REFERENCE_PRECISION = "fp32"


@dataclass(frozen=True)
class Trial:
    """One point of a sweep."""

    model: str
    adapter: str
    precision: str
    batch_size: int
    scenario: str = "single-stream"
    workload: str = "inference"  # "generate": an LLM trial (hwbench.measure.gentrial)
    prompt_tokens: int = 0  # generate only
    output_tokens: int = 0  # generate only

    @property
    def trial_id(self) -> str:
        from hwbench.results.store import safe_name

        if self.workload == "generate":
            return safe_name(f"{self.model}__{self.adapter}__{self.precision}__b{self.batch_size}__"
                             f"p{self.prompt_tokens}__o{self.output_tokens}__generate")
        return safe_name(f"{self.model}__{self.adapter}__{self.precision}__b{self.batch_size}__{self.scenario}")

    def is_reference(self) -> bool:
        if self.workload == "generate":
            from hwbench.measure.gentrial import is_reference

            return is_reference(self)
        return self.adapter == REFERENCE_ADAPTER and self.precision == REFERENCE_PRECISION


def refuse_colliding_trials(trials: list[Trial]) -> None:
    """UsageError when two planned trials share a file-safe id (models 'a b.onnx' and 'a_b.onnx'): one
    record would overwrite the other. Records keep the original names; the id only names the files."""
    seen: dict[str, Trial] = {}
    for t in trials:
        other = seen.setdefault(t.trial_id, t)
        if other is not t and other.model != t.model:
            raise UsageError(f"models {other.model!r} and {t.model!r} map to the same trial id {t.trial_id!r} "
                             "(names are made file-safe): rename or move one of them")


@dataclass
class TrialContext:
    """What the runner hands a worker besides the trial itself."""

    run_id: str
    config: SweepConfig
    cpu_model: str
    hostname: str
    cache_dir: str
    reference_npz: str | None = None
    idle_power_w: float | None = None
    idle_power_method: str | None = None
    instance: dict[str, Any] | None = None  # the sweep's hwbench.host.instance.InstanceResolution, as a dict


def _instance_columns(ctx: TrialContext) -> dict[str, Any]:
    """instance_type and its source, a given price, and host-mismatch warnings for every record."""
    inst = ctx.instance
    if inst is None:  # no resolution (a context built by hand): the setting as given, "auto" unresolved
        given = ctx.config.instance_type
        return {"instance_type": None if given == "auto" else given,
                "instance_type_source": "given" if given and given != "auto" else None}
    return {"instance_type": inst.get("instance_type"), "instance_type_source": inst.get("source"),
            "price_usd_per_hour": inst.get("usd_per_hour"), "price_note": inst.get("price_note"),
            "warnings": list(inst.get("warnings") or [])}


def base_record(trial: Trial, spec: ModelSpec | None, ctx: TrialContext) -> TrialRecord:
    if trial.workload == "generate":  # spec is an LlmSpec (or None)
        from hwbench.measure.gentrial import generate_base_record

        return generate_base_record(trial, spec, ctx)  # type: ignore[arg-type]
    return TrialRecord(
        run_id=ctx.run_id,
        trial_id=trial.trial_id,
        model=trial.model,
        model_sha256=spec.sha256 if spec else "",
        adapter=trial.adapter,
        device=ctx.cpu_model,
        precision=trial.precision,
        batch_size=trial.batch_size,
        scenario=trial.scenario,
        input_shapes=json.dumps(spec.input_shapes(trial.batch_size)) if spec else "{}",
        host=ctx.hostname,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hwbench_version=__version__,
        **_instance_columns(ctx),
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _meter(adapter: Adapter, ctx: TrialContext) -> PowerMeter:
    """The meter of the device this adapter instance runs on (its placement: `--device cuda:1` -> GPU 1)."""
    from hwbench.power.select import meter_for

    placement = adapter.placement
    return meter_for(placement.kind, placement.meter_index, tdp_w=ctx.config.tdp_w)


def _unsupported_device(cls: type[Adapter], selector: str) -> str | None:
    """What an unsupported record names as its device: the accelerator asked for; None on a CPU."""
    try:
        kind = cls.placement_for(selector).kind
    except UsageError:
        kind = cls.device_kind
    return (selector or kind) if kind not in ("cpu", "none") else None


def apply_effective(rec: TrialRecord, eff: Effective) -> dict[str, Any]:
    """The record's identity columns from what the adapter says ran; returns the settings to record.

    The host CPU keeps the record's device (the fingerprint's CPU model); an accelerator names
    itself, its catalog name and how many of the instance's accelerators it held."""
    if not isinstance(eff, Effective):
        raise TypeError(f"effective() returned {type(eff).__name__}, not hwbench.adapter.Effective")
    rec.precision_effective = eff.precision
    if eff.device_kind not in ("cpu", "none"):
        rec.device = eff.device_name
    rec.accelerator = eff.accelerator
    rec.accelerators_used = eff.accelerators_used
    return {**eff.settings, "device_kind": eff.device_kind, "device_index": eff.device_index}


def _apply_energy(rec: TrialRecord, e: EnergyReading | None, m: Measurement, ctx: TrialContext) -> None:
    from hwbench.power.select import energy_columns

    idle = None
    if ctx.idle_power_w is not None and ctx.idle_power_method:
        idle = EnergyReading(energy_j=ctx.idle_power_w, duration_s=1.0, method=ctx.idle_power_method,
                             period_ms=None, estimated=ctx.idle_power_method == "estimate-tdp")
    for key, value in energy_columns(e, m.completed * rec.batch_size, idle).items():
        setattr(rec, key, value)
    if e is not None and e.too_short:
        rec.invalid_reasons.append(f"power window {e.duration_s:.2f} s shorter than ten meter periods")
        rec.valid = False


def _apply_activity(rec: TrialRecord, w: ActivityWindow | None, ctx: TrialContext) -> dict[str, Any] | None:
    """Host activity of the timed window onto the record; a noisy host warns, it does not invalidate."""
    if w is None:
        return None
    rec.cpu_steal_pct, rec.other_cpu_pct = w.cpu_steal_pct, w.other_cpu_pct
    ms = ctx.config.measure
    rec.warnings.extend(activity_warnings(w.cpu_steal_pct, w.other_cpu_pct, ms.max_steal_pct, ms.max_other_cpu_pct))
    return w.to_dict()


def reference_key(batch_size: int, input_index: int, output_index: int) -> str:
    """The .npz key of one reference output: shared by the reference job and every candidate."""
    return f"b{batch_size}_s{input_index}_o{output_index}"


def accuracy_inputs(spec: ModelSpec, batch_size: int, ctx_seed: int, min_items: int) -> list[dict[str, np.ndarray]]:
    """The same inputs for the reference and every candidate: enough batches for min_items items."""
    from hwbench.models.workload import make_inputs

    n = max(1, math.ceil(min_items / batch_size))
    return [make_inputs(spec, batch_size, seed=ctx_seed + i) for i in range(n)]


def _check_accuracy(adapter: Adapter, trial: Trial, spec: ModelSpec, rec: TrialRecord, ctx: TrialContext) -> None:
    acc = ctx.config.accuracy
    if not acc.enabled or trial.is_reference() or not ctx.reference_npz or adapter.placement.kind == "none":
        return
    from hwbench.measure.accuracy import compare_outputs

    with np.load(ctx.reference_npz, allow_pickle=False) as ref:
        batches = accuracy_inputs(spec, trial.batch_size, acc.seed, acc.min_items)
        reference: list[np.ndarray] = []
        candidate: list[np.ndarray] = []
        for i, inputs in enumerate(batches):
            outs = adapter.infer(inputs)
            for j, out in enumerate(outs):
                key = reference_key(trial.batch_size, i, j)
                if key not in ref:
                    return  # no reference at this batch size: accuracy not checked
                reference.append(ref[key])
                candidate.append(np.asarray(out, dtype=np.float32))
    result = compare_outputs(reference, candidate, spec.task, acc)
    rec.accuracy_ok = bool(result.ok)
    rec.acc_max_abs_err = result.max_abs_err
    rec.acc_mean_rel_err = result.mean_rel_err
    rec.acc_cosine = result.cosine
    rec.acc_top1_agreement = result.top1_agreement
    if result.reasons or result.notes:
        settings = json.loads(rec.settings)
        settings["accuracy"] = {"reasons": list(result.reasons), "notes": list(result.notes),
                                "items": sum(len(next(iter(b.values()))) for b in batches)}
        rec.settings = settings_json(settings)


def stamp_timings(rec: TrialRecord, timings: dict[str, float]) -> None:
    """Merge wall-clock stamps (time.time(), s) into the record's settings under "timings", so a
    sweep's cost outside the timed window can be broken down from data (benchmarks/sweep_cost.py)."""
    settings = json.loads(rec.settings or "{}")
    settings["timings"] = {**settings.get("timings", {}), **{k: round(v, 6) for k, v in timings.items()}}
    rec.settings = settings_json(settings)


def adapter_options(trial: Trial, ctx: TrialContext) -> AdapterOptions:
    """The trial's adapter settings, from the sweep."""
    cfg = ctx.config
    return AdapterOptions(
        device=cfg.device, threads=cfg.threads, concurrency=cfg.concurrency, cache_dir=ctx.cache_dir,
        extra={"batch_sizes": list(cfg.batch_sizes), **cfg.adapter_options.get(trial.adapter, {})},
    )


def admit(adapter: Adapter, trial: Trial, spec: ModelSpec, rec: TrialRecord, cfg: SweepConfig) -> bool:
    """Whether the point can run: False with rec marked unsupported (and why) when it cannot."""
    reason = adapter.check(spec, trial.precision, trial.batch_size, trial.scenario)
    if reason:
        rec.status, rec.error = STATUS_UNSUPPORTED, reason
    elif admit_precision(adapter, trial.precision, rec, cfg):
        return True
    rec.device = _unsupported_device(type(adapter), cfg.device) or rec.device
    return False


def admit_precision(adapter: Any, precision: str, rec: TrialRecord, cfg: SweepConfig) -> bool:
    """The host-precision gate of any adapter (classifier or generative): records whether `precision` is
    native here; False with rec marked unsupported when it is emulated and the sweep does not allow that."""
    support = adapter.precision_support(precision)
    rec.precision_native, rec.precision_note = support.native, support.note
    if support.native is False:
        if not cfg.allow_emulated:
            rec.status, rec.error = STATUS_UNSUPPORTED, (f"{support.note}: skipped; --allow-emulated "
                                               "(sweep file: allow_emulated = true) runs it anyway")
            return False
        rec.warnings.append(f"{precision} is emulated or upcast here (precision_note): its speed is not "
                            "representative of hardware that runs it natively")
    return True


def record_failure(rec: TrialRecord, e: BaseException) -> None:
    """An exception as the record's outcome: unsupported (UnsupportedPoint) or error, with where it came from."""
    if isinstance(e, UnsupportedPoint):
        rec.status, rec.error, rec.valid = STATUS_UNSUPPORTED, str(e), False
        return
    rec.status, rec.valid = STATUS_ERROR, False
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    rec.error = f"{type(e).__name__}: {e}{where}"[:2000]


def run_trial_records(trial: Trial, spec: ModelSpec, ctx: TrialContext) -> list[tuple[TrialRecord, np.ndarray | None]]:
    """Every record a trial yields: one, or for the server scenario one per offered rate
    (hwbench.measure.servertrial), each with its raw latencies."""
    if trial.scenario == "server":
        from hwbench.measure.servertrial import run_server_trial

        return run_server_trial(trial, spec, ctx)
    return [run_trial(trial, spec, ctx)]


def run_trial(trial: Trial, spec: ModelSpec, ctx: TrialContext) -> tuple[TrialRecord, np.ndarray | None]:
    """Run one trial; every outcome becomes a record (ok, unsupported or error)."""
    if trial.workload == "generate":  # spec is an LlmSpec: an LLM generating tokens
        from hwbench.measure.gentrial import run_generate_trial

        return run_generate_trial(trial, spec, ctx)  # type: ignore[arg-type]
    timings = {"trial_start": time.time()}
    rec = base_record(trial, spec, ctx)
    cfg = ctx.config
    options = adapter_options(trial, ctx)
    adapter: Adapter | None = None
    samples = None
    try:
        cls = registry.load(trial.adapter)
        adapter = cls(options)
        timings["adapter_loaded"] = time.time()
        if not admit(adapter, trial, spec, rec, cfg):
            return rec, None
        from hwbench.models.workload import make_inputs

        inputs = make_inputs(spec, trial.batch_size, seed=0)
        timings["inputs_ready"] = time.time()
        load_before = round(os.getloadavg()[0], 2)
        t0 = time.perf_counter()
        adapter.prepare(spec, trial.precision, trial.batch_size, inputs)
        rec.cold_start_s = time.perf_counter() - t0
        rec.warnings.extend(take_rebuilt_notes())  # a cached artefact that failed its check was rebuilt (cold start)
        timings["prepared"] = time.time()
        meter = _meter(adapter, ctx)
        probe = ActivityProbe()
        try:
            if trial.scenario == "offline":
                t0 = time.perf_counter()
                runner = adapter.open_concurrent(cfg.concurrency)  # may compile for throughput: cold start too
                rec.cold_start_s += time.perf_counter() - t0
                try:
                    m = measure_offline(runner, cfg.measure, meter=meter, activity=probe)
                finally:
                    runner.close()  # part of the ConcurrentRunner protocol
            else:
                m = measure_single_stream(adapter.run, cfg.measure, meter=meter, activity=probe)
        finally:
            meter.close()
        samples = m.samples_ns
        timings["measured"] = time.time()
        stats = summarize(m.samples_ns, trial.batch_size, m.wall_s, m.completed, cfg.measure, capped=m.capped,
                          stop_reason=m.stop_reason)
        for k, v in stats.items():
            if k == "warnings":
                rec.warnings.extend(v)
            else:
                setattr(rec, k, v)
        rec.warnings = list(dict.fromkeys([*_instance_columns(ctx).get("warnings", []), *(rec.warnings or [])]))
        rec.concurrency = m.concurrency
        _apply_energy(rec, m.energy, m, ctx)
        host_activity = _apply_activity(rec, m.activity, ctx)
        settings = apply_effective(rec, adapter.effective())
        rec.device_mem_peak_mb = adapter.device_memory_peak_mb()
        rec.settings = settings_json({**settings, "warmup_iters": m.warmup_iters, "capped": m.capped,
                                      "stop_checks": m.checks, "stop_check_pause_s": round(m.pause_s, 6),
                                      "loadavg_1m_before": load_before, "host_activity": host_activity})
        timings["summarized"] = time.time()
        _check_accuracy(adapter, trial, spec, rec, ctx)
        timings["accuracy_done"] = time.time()
        rec.status = STATUS_OK
    except Exception as e:  # noqa: BLE001 - an adapter failure is a result, not a crash
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


def compute_reference(spec: ModelSpec, batch_sizes: list[int], seed: int, out_npz: Path, cache_dir: str,
                      min_items: int) -> None:
    """fp32 ONNX Runtime outputs on the accuracy inputs, for every batch size, saved without pickle."""
    cls = registry.load(REFERENCE_ADAPTER)
    adapter = cls(AdapterOptions(cache_dir=cache_dir))
    arrays: dict[str, Any] = {}
    first = accuracy_inputs(spec, batch_sizes[0], seed, min_items)[0]
    adapter.prepare(spec, REFERENCE_PRECISION, batch_sizes[0], first)
    for b in batch_sizes:
        for i, inputs in enumerate(accuracy_inputs(spec, b, seed, min_items)):
            for j, out in enumerate(adapter.infer(inputs)):
                arrays[reference_key(b, i, j)] = np.asarray(out, dtype=np.float32)
    adapter.close()
    atomic_write(out_npz, lambda fh: np.savez(fh, **arrays))
