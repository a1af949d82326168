"""The sweep runner: plans trials, runs each in an isolated worker process, keeps every result.

Each trial runs in a fresh process (hwbench.measure.worker, forked by hwbench.measure.forkserver or a
fresh interpreter; started and watched by hwbench.measure.workerproc). A worker that crashes, is
killed for memory or outlives its timeout becomes a status=error record with the cause; the sweep
goes on. Every completed trial is durable when its worker exits; `resume` completes a run without
redoing them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from hwbench import __version__

from hwbench.adapter import registry
from hwbench.adapter import Probe
from hwbench.adapter.kit import Placement
from hwbench.errors import AdapterUnavailable, UsageError
from hwbench.fsutil import take_rebuilt_notes
from hwbench.host.fingerprint import host_fingerprint
from hwbench.measure.forkserver import ForkServer, ForkServerError
from hwbench.models.spec import ModelSpec
from hwbench.results.schema import SCHEMA_VERSION, STATUS_ERROR, STATUS_OK, STATUS_UNSUPPORTED
from hwbench.measure.settings import SweepConfig
from hwbench.results.schema import TrialRecord
from hwbench.results.lock import RunLock
from hwbench.results.store import (RunWriter, ensure_writable, load_run_records, read_manifest, read_search_records,
                                   read_trial_record, safe_name)
from hwbench.measure.trial import REFERENCE_ADAPTER, Trial, TrialContext, base_record, refuse_colliding_trials
from hwbench.measure.worker import JOB_REFERENCE, JOB_TRIAL
from hwbench.measure.workerproc import WorkerOutcome, _tail, run_worker

Event = Callable[[str, dict[str, Any]], None]


@dataclass
class SweepResult:
    run_dir: Path
    records: pd.DataFrame
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return safe_name(f"{stamp}-{os.uname().nodename}-{uuid.uuid4().hex[:6]}", limit=80)


def plan(config: SweepConfig, adapters: list[str]) -> list[Trial]:
    """models x adapters x precisions x batch sizes x scenarios, in a stable order
    (generate: models x adapters x prompt x output lengths x precisions x batch sizes). A server-scenario
    request is one item (batch size 1); its batches are the dynamic batcher's (config.server.max_batch)."""
    if config.workload == "generate":
        return [Trial(model=m, adapter=a, precision=p, batch_size=b, scenario="generate", workload="generate",
                      prompt_tokens=pt, output_tokens=ot)
                for m in config.models for a in adapters for pt in config.prompt_tokens for ot in config.output_tokens
                for p in config.precisions for b in config.batch_sizes]
    return [
        Trial(model=m, adapter=a, precision=p, batch_size=b, scenario=s)
        for m in config.models
        for a in adapters
        for s in config.scenarios
        for p in config.precisions
        for b in (config.batch_sizes if s != "server" else (1,))
    ]


class SweepRunner:
    """Runs a sweep into one run folder under `out_dir` (or resumes `resume_dir`)."""

    def __init__(
        self,
        config: SweepConfig,
        out_dir: Path,
        on_event: Event | None = None,
        resume_dir: Path | None = None,
        explicit_adapters: bool = True,
        retry_errors: bool = False,
    ) -> None:
        self.retry_errors = retry_errors
        self.config = config
        self.on_event = on_event or (lambda kind, data: None)
        self.explicit_adapters = explicit_adapters
        if resume_dir is not None:
            self.run_dir = Path(resume_dir)
            self.run_id = str(read_manifest(self.run_dir, require=("run_id",))["run_id"])
        else:
            self.run_id = new_run_id()
            self.run_dir = Path(out_dir) / self.run_id
            ensure_writable(Path(out_dir))  # fail fast, before any model is exported
        self.notes: list[str] = []
        self._probes: dict[str, Probe] = {}

    @property
    def generate(self) -> bool:
        """LLMs: generative adapters and LlmSpecs (hwbench.measure.gentrial)."""
        return self.config.workload == "generate"

    def _probe(self, name: str) -> Probe:
        """Each adapter is probed once per sweep (a probe may import a runtime or open a device)."""
        if name not in self._probes:
            self._probes[name] = registry.probe_generative(name) if self.generate else registry.probe(name)
        return self._probes[name]

    def _emit(self, kind: str, **data: Any) -> None:
        self.on_event(kind, data)

    # -- preparation --------------------------------------------------------------
    def _adapters(self) -> tuple[list[str], dict[str, str]]:
        """Adapters to run and, for unavailable ones that were asked for by name, why not."""
        names = list(self.config.adapters) or list(registry.GENERATIVE_DEFAULTS if self.generate else registry.CPU_DEFAULTS)
        run, missing = [], {}
        for name in names:
            probe = self._probe(name)
            if probe.available:
                run.append(name)
            elif self.explicit_adapters and self.config.adapters:
                missing[name] = f"{name} unavailable here: {probe.reason}" + (
                    f" ({probe.install_hint})" if probe.install_hint else ""
                )
                run.append(name)
            else:
                self.notes.append(f"skipped {name}: {probe.reason}")
        return run, missing

    def _resolve_models(self) -> dict[str, ModelSpec]:
        from hwbench.models import resolve

        if self.generate:
            from hwbench.measure.gentrial import resolve_llms

            for name in self.config.models:
                self._emit("model", name=name)
            return resolve_llms(self.config, self._cache_dir())  # type: ignore[return-value]

        from hwbench.models.build import BY_NAME

        specs = {}
        for name in self.config.models:
            builtin = name.strip().lower() in BY_NAME
            if builtin or Path(name).expanduser().is_file():  # a missing file is reported by resolve, not "prepared"
                self._emit("model", name=name, builtin=builtin)
            specs[name] = resolve(name, cache_dir=self._cache_dir(), dims=self.config.dims or None)
        self.notes.extend(n for n in take_rebuilt_notes() if n not in self.notes)  # a damaged cache entry, rebuilt
        return specs

    def _cache_dir(self) -> Path:
        from hwbench.models import cache_root

        return cache_root()

    def _placement(self, adapter: str) -> Placement | None:
        """Where `adapter` runs with this sweep's --device (None: a selector it cannot take)."""
        try:
            if self.generate:
                return registry.load_generative(adapter).placement_for(self.config.device)
            return registry.load(adapter).placement_for(self.config.device)
        except UsageError:
            return None
        except Exception:  # noqa: BLE001 - a generative module that does not import (its probe says why)
            if self.generate:
                return None
            raise

    def _idle_power(self, adapters: list[str]) -> dict[str, tuple[float | None, str | None]]:
        """Idle power per device the available `adapters` run on (keyed 'cpu', 'cuda:1'...), with
        the meter their trials use: torch on cuda:1 gets GPU 1's idle power, not the CPU's."""
        placements = {p.label: p for p in (self._placement(a) for a in adapters) if p is not None}
        out: dict[str, tuple[float | None, str | None]] = {}
        if self.config.idle_power_s <= 0:
            return out
        from hwbench.power.select import measure_idle_power, meter_for

        for label in sorted(placements):
            p = placements[label]
            meter = meter_for(p.kind, p.meter_index, tdp_w=self.config.tdp_w)
            try:
                reading = measure_idle_power(meter, self.config.idle_power_s)
            finally:
                meter.close()
            out[label] = (reading.avg_power_w, reading.method) if reading else (None, None)
        return out

    def _reference(self, spec: ModelSpec, trials: list[Trial]) -> str | None:
        if not self.config.accuracy.enabled or not any(not t.is_reference() for t in trials):
            return None
        if self.generate:
            from hwbench.measure.gentrial import reference_job

            job = reference_job(self, spec, trials)  # type: ignore[arg-type]
            if job is None:
                return None
            if not Path(job["out_npz"]).exists():
                self._emit("reference", model=spec.name)
                outcome = self._spawn(job, f"reference-{safe_name(spec.name)}")
                if outcome.cause or not Path(job["out_npz"]).exists():
                    self.notes.append(f"accuracy not checked for {spec.name}: reference failed ({outcome.cause}) "
                                      f"{outcome.stderr_tail[-300:]}")
                    return None
            return job["out_npz"]
        if not self._probe(REFERENCE_ADAPTER).available:
            self.notes.append("accuracy not checked: the fp32 reference needs onnxruntime")
            return None
        out = self.run_dir / "reference" / f"{safe_name(spec.name)}-{spec.sha256[:16]}.npz"
        if out.exists():
            return str(out)
        out.parent.mkdir(exist_ok=True)
        job = {
            "kind": JOB_REFERENCE, "model_spec": spec.to_json(), "batch_sizes": sorted({t.batch_size for t in trials}),
            "seed": self.config.accuracy.seed, "min_items": self.config.accuracy.min_items, "out_npz": str(out), "cache_dir": str(self._cache_dir()),
        }
        self._emit("reference", model=spec.name)
        outcome = self._spawn(job, f"reference-{safe_name(spec.name)}")
        if outcome.cause or not out.exists():
            self.notes.append(f"accuracy not checked for {spec.name}: reference failed ({outcome.cause}) {outcome.stderr_tail[-300:]}")
            return None
        return str(out)

    def _spawn(self, job: dict[str, Any], name: str, timeout_s: float | None = None) -> Any:
        jobs = self.run_dir / "jobs"
        logs = self.run_dir / "logs"
        jobs.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        job_path = jobs / f"{name}.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        import psutil

        limit = self.config.memory_limit_mb or 0.9 * psutil.virtual_memory().total / 2**20
        server = self._fork_server(logs)
        try:
            return run_worker(job_path, logs / f"{name}.log", timeout_s or self.config.trial_timeout_s, limit, server)
        except ForkServerError as e:  # spawn every later worker; this one too if the server forked nothing
            self._close_server(f"worker server failed ({e}); workers start as fresh interpreters")
            if not e.clean:
                return WorkerOutcome(None, None, f"worker server failed: {e}", None, _tail(logs / f"{name}.log"))
            return run_worker(job_path, logs / f"{name}.log", timeout_s or self.config.trial_timeout_s, limit)

    def _fork_server(self, logs: Path) -> ForkServer | None:
        """The sweep's worker server, started on first use; None when disabled or it cannot start."""
        from hwbench.measure import forkserver

        if getattr(self, "_server", None) is None and not getattr(self, "_server_failed", False) and forkserver.enabled():
            try:
                self._server = ForkServer(str(self.run_dir), str(logs / "forkserver.log"))
            except (ForkServerError, OSError) as e:
                self._server_failed = True
                self.notes.append(f"worker server unavailable ({e}); workers start as fresh interpreters")
        return getattr(self, "_server", None)

    def _close_server(self, note: str | None = None) -> None:
        server, self._server = getattr(self, "_server", None), None
        if note:
            self._server_failed = True
            self.notes.append(note)
        if server is not None:
            server.close()

    def _manifest(self, adapters: list[str], specs: dict[str, ModelSpec], idle: dict[str, Any], fp: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "hwbench_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "instance_type": self.instance.get("instance_type"),
            "instance": self.instance,
            "host": fp,
            "requested": self.config.to_dict(),
            "adapters": {a: {"probe": self._probe(a).__dict__, "source": (registry.generative_info(a) if self.generate
                                                                        else registry.info(a)).source} for a in adapters},
            "models": {n: {"sha256": s.sha256, "path": str(s.path), "workload": "generate", "context_tokens": s.context_tokens,
                           "random_weights": s.random_weights, "has_tokenizer": s.has_tokenizer, "parameters": s.parameters}
                       for n, s in specs.items()} if self.generate else {
                n: {"sha256": s.sha256, "onnx_path": str(s.onnx_path), "family": s.family, "task": s.task, "dims": s.dims,
                    "input_shapes": {str(b): s.input_shapes(b) for b in self.config.batch_sizes}}
                for n, s in specs.items()
            },
            "idle_power": {k: {"avg_power_w": v[0], "method": v[1]} for k, v in idle.items()},
            "notes": self.notes,
        }

    # -- the sweep ----------------------------------------------------------------
    def run(self) -> SweepResult:
        """The whole sweep, holding the run folder's lock (hwbench.results.lock) from before the first
        trial is chosen to after the last write: a second `--resume` of the folder is refused."""
        self._lock = RunLock(self.run_dir)
        if self.run_dir.is_dir():  # a resumed run: refuse at once, before any model is prepared
            self._lock.acquire()
        try:
            return self._run()
        finally:
            self._lock.release()

    def _run(self) -> SweepResult:
        fp = host_fingerprint()
        self.instance = self._resolve_instance(fp)
        adapters, missing = self._adapters()
        if not adapters:
            raise AdapterUnavailable("no adapter can run here; see `hwbench devices`")
        if all(a in missing for a in adapters):  # nothing asked for can run: say why, exit non-zero
            raise AdapterUnavailable("; ".join(missing[a] for a in adapters))
        refuse_colliding_trials(plan(self.config, adapters))
        specs = self._resolve_models()
        self.writer = RunWriter(self.run_dir)
        self._lock.acquire()
        idle = self._idle_power([a for a in adapters if a not in missing])
        self.writer.write_manifest(self._manifest(adapters, specs, idle, fp))
        import psutil

        busy = psutil.cpu_percent(interval=0.5)  # other processes, now (the load average lags by minutes)
        if busy > 25.0:
            self.notes.append(f"this machine is busy ({busy:.0f}% of {os.cpu_count()} CPUs in use before the sweep): "
                              "timings will be noisy and records may be flagged unstable; compare ratios measured in one run")
        trials = plan(self.config, adapters)
        done = self.writer.completed_trial_ids(include_errors=not self.retry_errors)
        todo = [t for t in trials if t.trial_id not in done]
        self._emit("start", total=len(trials), todo=len(todo), run_dir=str(self.run_dir), notes=list(self.notes))
        references = {name: self._reference(spec, [t for t in todo if t.model == name]) for name, spec in specs.items()}
        interrupted = False
        try:
            for group in self._groups(todo, missing):
                left = self._run_group(group, specs, references, idle, fp) if len(group) > 1 else group
                for trial in left:
                    self._emit("trial_start", trial=trial)
                    record = self._run_one(trial, specs[trial.model], missing, references, idle, fp)
                    self._emit("trial_done", trial=trial, record=record)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            shutil.rmtree(self.run_dir / "parts", ignore_errors=True)  # parts of unfinished trials: redone in full
            self._close_server()
            self.writer.compact()
            manifest = read_manifest(self.run_dir)
            manifest["notes"] = self.notes
            manifest["completed_at" if not interrupted else "interrupted_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.writer.write_manifest(manifest)
        return SweepResult(self.run_dir, load_run_records(self.run_dir), interrupted, self.notes)

    def _groups(self, todo: list[Trial], missing: dict[str, str]) -> list[list[Trial]]:
        """Generate: the points of one (model, adapter, precision) share a worker where the adapter allows."""
        if not self.generate or self.config.processes > 1:
            return [[t] for t in todo]
        from hwbench.measure.gentrial import group_trials

        return group_trials(todo, lambda a: a not in missing and registry.load_generative(a).reuses_prepared)

    def _run_group(self, group: list[Trial], specs: dict[str, Any], references: dict[str, str | None],
                   idle: dict[str, Any], fp: dict[str, Any]) -> list[Trial]:
        from hwbench.measure.gentrial import run_group

        return run_group(self, group, self._context(group[0].adapter, references, group[0], idle, fp), specs[group[0].model])

    def _resolve_instance(self, fp: dict[str, Any]) -> dict[str, Any]:
        """The run's instance type, its source and any given price, once per sweep (hwbench.host.instance)."""
        from dataclasses import asdict

        from hwbench.host.fingerprint import cpu_identity
        from hwbench.host.instance import read_dmi, resolve_instance
        from hwbench.catalog.prices import load_builtin

        c = self.config
        vcpus = int(fp.get("cores_logical") or fp.get("cpu_affinity") or 1)  # the machine's vCPUs, as an instance counts them
        res = resolve_instance(c.instance_type, load_builtin(), cpu_identity(), vcpus, read_dmi(),
                               usd_per_hour=c.usd_per_hour, price_note=c.price_note)
        self.notes.extend(n for n in res.notes if n not in self.notes)
        return asdict(res)

    def _context(self, adapter: str, references: dict[str, str | None], trial: Trial, idle: dict[str, Any], fp: dict[str, Any]) -> TrialContext:
        placement = self._placement(adapter)
        idle_w, idle_method = idle.get(placement.label, (None, None)) if placement else (None, None)
        return TrialContext(
            run_id=self.run_id, config=self.config, cpu_model=fp["cpu_model"], hostname=fp["hostname"],
            cache_dir=str(self._cache_dir()), reference_npz=references.get(trial.model),
            idle_power_w=idle_w, idle_power_method=idle_method, instance=self.instance,
        )

    def _run_one(self, trial: Trial, spec: ModelSpec, missing: dict[str, str], references: dict[str, str | None],
                 idle: dict[str, Any], fp: dict[str, Any]) -> TrialRecord:
        if trial.adapter in missing:  # its module may not even import: no context from it
            stub = TrialContext(run_id=self.run_id, config=self.config, cpu_model=fp["cpu_model"],
                                hostname=fp["hostname"], cache_dir=str(self._cache_dir()), instance=self.instance)
            rec = base_record(trial, spec, stub)
            rec.status, rec.error = STATUS_UNSUPPORTED, missing[trial.adapter]
            self.writer.write_trial(rec)
            return rec
        ctx = self._context(trial.adapter, references, trial, idle, fp)
        ctx_dict = {k: v for k, v in ctx.__dict__.items() if k != "config"}
        job = {
            "kind": JOB_TRIAL, "run_dir": str(self.run_dir), "model_spec": spec.to_json(),
            "trial": trial.__dict__, "config": self.config.to_dict(), "context": ctx_dict,
            "workload": self.config.workload,
        }
        if self.config.processes > 1:
            return self._run_processes(trial, spec, ctx, job)
        outcome = self._spawn(job, trial.trial_id)
        done = read_trial_record(self.run_dir, trial.trial_id)
        if done is None and trial.scenario == "server":  # one record per rate, sharing capacity_search
            points = read_search_records(self.run_dir, trial.trial_id)
            for point in points:
                self._emit("server_point", trial=trial, record=point)
            done = points[-1] if points else None
        if done is not None:  # the worker saved a whole record: a crash or hang after that loses nothing
            if outcome.cause is not None:
                self.notes.append(f"{trial.trial_id}: the worker failed after saving its result ({outcome.cause}); result kept")
            return done
        rec = base_record(trial, spec, ctx)
        rec.status, rec.valid = STATUS_ERROR, False
        cause = outcome.cause or "worker finished without writing a record"
        rec.error = f"{cause}; last output: {outcome.stderr_tail}" if outcome.stderr_tail else cause
        rec.peak_rss_mb = outcome.peak_rss_mb
        self.writer.write_trial(rec)
        return rec

    def _run_processes(self, trial: Trial, spec: ModelSpec, ctx: TrialContext, job: dict[str, Any]) -> TrialRecord:
        """--processes N: N fresh workers one after another, each into a part folder; one merged record saved."""
        from hwbench.measure import repeats

        n = self.config.processes
        root = repeats.parts_root(self.run_dir, trial.trial_id)
        shutil.rmtree(root, ignore_errors=True)  # an attempt killed part-way: start the trial afresh
        parts: list[TrialRecord] = []
        samples: list[Any] = []
        for i in range(1, n + 1):
            part = repeats.part_dir(self.run_dir, trial.trial_id, i)
            outcome = self._spawn({**job, "part_dir": str(part), "process": i}, f"{trial.trial_id}.p{i}")
            rec, lat = repeats.read_part(part, trial.trial_id)
            if rec is not None and outcome.cause is not None:
                self.notes.append(f"{trial.trial_id}: process {i} failed after saving its result ({outcome.cause}); result kept")
            if rec is not None and rec.status == STATUS_UNSUPPORTED and i == 1:
                final, pooled = rec, None  # the point cannot run: once is enough to know
                break
            if rec is None or rec.status != STATUS_OK:
                if rec is None:
                    cause = outcome.cause or "worker finished without writing a record"
                    cause = f"{cause}; last output: {outcome.stderr_tail}" if outcome.stderr_tail else cause
                else:
                    cause = rec.error or rec.status
                base = base_record(trial, spec, ctx)
                base.peak_rss_mb = outcome.peak_rss_mb
                final, pooled = repeats.failed(base, parts, samples, n, i, cause)
                break
            parts.append(rec)
            samples.append(lat)
        else:
            final, pooled = repeats.merge(parts, samples, self.config.measure)
        self.writer.write_trial(final, pooled)
        shutil.rmtree(root, ignore_errors=True)
        return final
