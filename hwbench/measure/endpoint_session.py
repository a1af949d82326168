"""Profile a served model over HTTP: `hwbench profile http://HOST:PORT/v1 --adapter openai ...`.

Per (prompt length, output length) bucket, each load point is one record: a closed loop at a
fixed concurrency, or an open loop at a rate (Poisson, or gamma with --burstiness). With SLOs
(--slo-ttft-ms, --slo-tpot-ms, --slo-e2e-ms, or a named MLPerf preset), a capacity search finds
the highest rate at which the p99s meet them (bracketing by doubling, then bisection), and
every record of the search carries the capacity and its bracket. Goodput is the rate of
requests that met every per-request bound (DistServe; vLLM's --goodput).

The endpoint runs on a machine hwbench cannot see: what it runs on is what the user says
(--instance, --accelerator), recorded as given. Energy is not measured (power_method "none").
"""

from __future__ import annotations

import json
import math
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from hwbench import __version__
from hwbench.adapter.endpoint import EndpointAdapter
from hwbench.errors import UsageError
from hwbench.measure.arrivals import ArrivalProcess
from hwbench.measure.endpoint_load import LoadResult, run_load
from hwbench.measure.endpoint_spread import auto_processes, server_is_local
from hwbench.measure.prompts import synthetic_prompt, tokenizer_prompt, words_for
from hwbench.results.schema import SCHEMA_VERSION, TrialRecord, settings_json

# Named SLO presets, given: MLPerf Inference's latency constraints for Llama 3.1 8B (v5.1,
# https://mlcommons.org/2025/09/small-llm-inference-5-1), as quoted in hwbench issue 14 on
# 2026-12-01; the page's table was not re-read here, so check it before relying on a preset.
SLO_PRESETS: dict[str, dict[str, float]] = {
    "llama3.1-8b-server": {"ttft_ms": 2000.0, "tpot_ms": 100.0},
    "llama3.1-8b-interactive": {"ttft_ms": 500.0, "tpot_ms": 30.0},
}
MAX_FAILED_FRACTION = 0.01  # a load point with more failed requests than this does not meet an SLO
CALIBRATION_WORDS = 200
SEARCH_STEPS = 4  # bisection steps after the bracket: the bracket shrinks 16-fold


@dataclass(frozen=True)
class EndpointConfig:
    """What to send, how hard, and the bounds to meet (validated on construction)."""

    url: str
    served_model: str
    api: str = "chat"
    prompt_tokens: tuple[int, ...] = (128,)
    output_tokens: tuple[int, ...] = (128,)
    concurrency: tuple[int, ...] = ()  # closed-loop points
    rates_rps: tuple[float, ...] = ()  # open-loop points
    burstiness: float = 1.0
    requests: int = 32  # per load point (open loop: at least this many, and at least duration_s of arrivals)
    duration_s: float = 0.0
    warmup_requests: int = 2
    seed: int = 0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    slo_e2e_ms: float | None = None
    instance: str | None = None
    accelerator: str | None = None
    tokenizer: str | None = None
    client_processes: int | None = None  # open loop: None = endpoint_spread.auto_processes(rate); closed loop: None = 1

    def __post_init__(self) -> None:
        if not self.concurrency and not self.rates_rps and not self.has_slo:
            object.__setattr__(self, "concurrency", (1,))
        for name, values in (("--prompt-tokens", self.prompt_tokens), ("--output-tokens", self.output_tokens),
                             ("--concurrency", self.concurrency)):
            for v in values:
                if not (isinstance(v, int) and 1 <= v <= 1_000_000):
                    raise UsageError(f"{name} values must be whole numbers from 1 to 1,000,000, got {v!r}")
        for v in self.rates_rps:
            ArrivalProcess(v, self.burstiness)  # raises a UsageError naming the bound
        if self.client_processes is not None and not (isinstance(self.client_processes, int) and 1 <= self.client_processes <= 256):
            raise UsageError(f"--client-processes must be a whole number from 1 to 256, got {self.client_processes!r}")
        if not (1 <= self.requests <= 1_000_000):
            raise UsageError(f"--requests must be from 1 to 1,000,000, got {self.requests}")
        if not (math.isfinite(self.duration_s) and 0 <= self.duration_s <= 86_400):
            raise UsageError(f"--duration-s must be a finite number of seconds from 0 to 86400, got {self.duration_s!r}")
        for name, v in (("--slo-ttft-ms", self.slo_ttft_ms), ("--slo-tpot-ms", self.slo_tpot_ms), ("--slo-e2e-ms", self.slo_e2e_ms)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise UsageError(f"{name} must be a finite latency above 0 ms, got {v!r}")

    @property
    def has_slo(self) -> bool:
        return any(v is not None for v in (self.slo_ttft_ms, self.slo_tpot_ms, self.slo_e2e_ms))

    def public_url(self) -> str:
        """The URL without credentials or query: what a record may keep."""
        p = urlsplit(self.url)
        host = p.hostname or ""
        netloc = f"{host}:{p.port}" if p.port else host
        return urlunsplit((p.scheme, netloc, p.path, "", ""))


CLOSED_LOOP_BUSY_PCT = 90.0  # a one-process closed loop above this share of a core may be client-bound


def preset(name: str) -> dict[str, float]:
    if name not in SLO_PRESETS:
        raise UsageError(f"unknown SLO preset {name!r}; known: {', '.join(SLO_PRESETS)}")
    return SLO_PRESETS[name]


@dataclass
class PointResult:
    record: TrialRecord
    meets: bool | None  # None without SLOs


@dataclass
class EndpointRun:
    run_dir: Path
    records: list[TrialRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Prompts:
    """Fresh prompts of about n tokens (a prefix cache must not serve a repeat)."""

    def __init__(self, client_factory: Callable[[], EndpointAdapter], cfg: EndpointConfig, notes: list[str]) -> None:
        self.cfg = cfg
        self.tokenizer = None
        self.ratio = 1.0
        self.counter = 0
        if cfg.tokenizer:
            try:
                from transformers import AutoTokenizer  # type: ignore[import-not-found]
            except ImportError as e:
                raise UsageError(f"--tokenizer needs transformers ({e}): pip install 'hwbench[llm]'") from None
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer, local_files_only=True)
            except (OSError, ValueError) as e:
                raise UsageError(f"--tokenizer {cfg.tokenizer}: not a tokenizer folder ({str(e)[:120]})") from None
            self.source = f"random token ids of the tokenizer in {cfg.tokenizer}, decoded"
            return
        import asyncio

        async def count() -> int | None:
            async with client_factory() as c:
                return await c.count_prompt_tokens(synthetic_prompt(CALIBRATION_WORDS, seed=-1 % 2**32))

        counted = asyncio.run(count())
        if counted:
            self.ratio = counted / CALIBRATION_WORDS
            self.source = (f"synthetic text, calibrated: the server counted {counted} tokens for {CALIBRATION_WORDS} "
                           f"words ({self.ratio:.3f} tokens/word, chat template included)")
        else:
            self.source = "synthetic text, uncalibrated (the server reports no usage): assumed 1 token per word"
            notes.append("the endpoint reports no usage.prompt_tokens: prompt lengths are approximate")

    def make(self, tokens: int, n: int) -> list[str]:
        out = []
        for _ in range(n):
            self.counter += 1
            seed = self.cfg.seed * 1_000_003 + self.counter
            if self.tokenizer is not None:
                out.append(tokenizer_prompt(self.tokenizer, tokens, seed))
            else:
                out.append(synthetic_prompt(words_for(tokens, self.ratio), seed))
        return out


def _per_request_ok(cfg: EndpointConfig, t: Any) -> bool:
    """Did this request meet every per-request bound (goodput)?"""
    if not t.ok or t.ttft_ns is None:
        return False
    if cfg.slo_ttft_ms is not None and t.ttft_ns / 1e6 > cfg.slo_ttft_ms:
        return False
    if cfg.slo_tpot_ms is not None and t.tpot_ns is not None and t.tpot_ns / 1e6 > cfg.slo_tpot_ms:
        return False
    if cfg.slo_e2e_ms is not None and t.e2e_ns / 1e6 > cfg.slo_e2e_ms:
        return False
    return True


def _set(rec: TrialRecord, **values: Any) -> None:
    """Set the columns this schema has (the generation and server blocks are both v3)."""
    for k, v in values.items():
        if hasattr(rec, k):
            setattr(rec, k, v)


def instance_of(cfg: EndpointConfig) -> tuple[str | None, str | None]:
    """What the endpoint is priced as: --instance as given; else, from --accelerator alone, the cheapest
    catalog type with that accelerator and count, labelled an assumption with its basis (or why none)."""
    if cfg.instance:
        return cfg.instance, "given"
    if cfg.accelerator:
        from hwbench.catalog.prices import load_builtin
        from hwbench.host.instance import assume_for_accelerator

        return assume_for_accelerator(load_builtin(), cfg.accelerator)
    return None, None


def build_record(cfg: EndpointConfig, run_id: str, lr: LoadResult, prompt_tokens: int, output_tokens: int,
                 describe: dict[str, Any], prompt_source: str, host: str,
                 instance: tuple[str | None, str | None]) -> PointResult:
    """One load point's record: generation metrics, load health, SLO verdict; `instance` is
    instance_of(cfg), worked out once per run."""
    from hwbench.measure.genstats import summarize_generation

    open_loop = lr.mode == "open-loop"
    point = f"r{lr.offered_rps:g}" if open_loop else f"c{lr.concurrency}"
    trial_id = f"{cfg.served_model}__openai__p{prompt_tokens}__o{output_tokens}__{point}"
    scenario = "server" if open_loop else ("single-stream" if lr.concurrency == 1 else "offline")
    rec = TrialRecord(run_id=run_id, trial_id=trial_id, model=cfg.served_model, model_sha256="", adapter="openai",  # weights unseen
                      device=cfg.accelerator or "remote endpoint (given: unknown)", precision="served",
                      batch_size=1, scenario=scenario, concurrency=lr.concurrency or 1,
                      instance_type=instance[0], host=host, hwbench_version=__version__,
                      started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      settings=settings_json({**describe, "mode": lr.mode, "prompt_source": prompt_source,
                                              "prompt_tokens_requested": prompt_tokens,
                                              "client_processes": lr.processes, "event_loop": lr.event_loop,
                                              "client_cpu_pct_per_process": [None if c != c else round(c, 1) for c in lr.client_cpu_pct_per_process],
                                              "sched_lag_p99_ms_per_process": [None if v is None else round(v, 3)
                                                                               for v in lr.lag_p99_ms_per_process]}))
    rec.instance_type_source = instance[1]
    stats = summarize_generation([[t] for t in lr.completed], lr.wall_s)
    for k, v in stats.items():
        if hasattr(rec, k):
            setattr(rec, k, v)
    failed = lr.failed
    reasons = Counter((t.error or "?").split(" after ")[0] for t in failed)
    counted = [t for t in lr.completed if "chunks" in t.meta]
    reported = [t.meta.get("prompt_tokens_reported") for t in lr.completed if t.meta.get("prompt_tokens_reported")]
    good = sum(_per_request_ok(cfg, t) for t in lr.timings) if cfg.has_slo else None
    _set(rec, workload="generate", prompt_tokens=int(np.median(reported)) if reported else prompt_tokens,
         output_tokens=output_tokens, prompt_source=prompt_source, offered_rps=lr.offered_rps,
         achieved_rps=lr.achieved_rps, burstiness=cfg.burstiness if open_loop else None,
         sched_lag_p99_ms=lr.lag_p99_ms, requests_timed_out=sum("timeout" in (t.error or "") for t in failed),
         requests_failed=len(failed), failure_reasons=[f"{n} x {r}" for r, n in reasons.most_common()],
         client_cpu_pct=lr.client_cpu_pct, endpoint_url=cfg.public_url(), served_model=cfg.served_model,
         goodput_rps=(good / lr.wall_s if good is not None and lr.wall_s > 0 else None),
         slo_ttft_ms=cfg.slo_ttft_ms, slo_tpot_ms=cfg.slo_tpot_ms, slo_e2e_ms=cfg.slo_e2e_ms,
         usage_mismatch=len(counted))
    rec.throughput_sps = lr.achieved_rps
    rec.status = "ok" if lr.completed else "error"
    if not lr.completed:
        rec.error = f"every request failed: {failed[0].error if failed else 'none sent'}"
    reasons_invalid = []
    lag = lr.lag_problem()
    if lag:
        reasons_invalid.append(lag)
    if failed:
        reasons_invalid.append(f"{len(failed)} of {len(lr.timings)} requests failed ({'; '.join(rec.failure_reasons[:3]) if hasattr(rec, 'failure_reasons') else ''})")
    short = [t for t in lr.completed if t.output_tokens < output_tokens]
    if short:
        rec.warnings = [*rec.warnings, f"{len(short)} answer(s) shorter than {output_tokens} tokens (the server stopped "
                        "at EOS; --ignore-eos asks vLLM/SGLang not to)"]
    if lr.mode == "closed-loop" and lr.processes == 1 and lr.client_cpu_pct >= CLOSED_LOOP_BUSY_PCT:
        rec.warnings = [*rec.warnings, f"the client used {lr.client_cpu_pct:.0f}% of a core driving concurrency "
                        f"{lr.concurrency}: it may be what limits this point; --client-processes N spreads the workers"]
    if counted:
        rec.warnings = [*rec.warnings, f"{len(counted)} answer(s) where usage.completion_tokens differs from the chunks "
                        "received (a chunk may carry several tokens): TPOT uses the server's count"]
    rec.invalid_reasons = reasons_invalid
    rec.valid = rec.status == "ok" and not reasons_invalid
    meets = None
    if cfg.has_slo:
        p99 = {"ttft": stats.get("ttft_p99_ms"), "tpot": stats.get("tpot_p99_ms"), "e2e": stats.get("e2e_p99_ms")}
        bounds = {"ttft": cfg.slo_ttft_ms, "tpot": cfg.slo_tpot_ms, "e2e": cfg.slo_e2e_ms}
        meets = bool(lr.completed) and len(failed) <= MAX_FAILED_FRACTION * len(lr.timings) and not lag and all(
            b is None or (p99[k] is not None and p99[k] <= b) for k, b in bounds.items())
    return PointResult(rec, meets)


def _score(cfg: EndpointConfig, rec: TrialRecord) -> float | None:
    """The worst p99 over its bound (1.0 = exactly at the SLO): what the capacity search interpolates."""
    ratios = []
    for col, bound in (("ttft_p99_ms", cfg.slo_ttft_ms), ("tpot_p99_ms", cfg.slo_tpot_ms), ("e2e_p99_ms", cfg.slo_e2e_ms)):
        value = getattr(rec, col, None)
        if bound is not None and value is not None:
            ratios.append(value / bound)
    return max(ratios) if ratios else None


def run_endpoint_profile(cfg: EndpointConfig, client_factory: Callable[[], EndpointAdapter], out_dir: Path,
                         describe: dict[str, Any], progress: Callable[[str], None] | None = None,
                         max_search_rates: int = 8) -> EndpointRun:
    """Every bucket x load point, then (with SLOs) a capacity search per bucket; records land as they finish."""
    from hwbench.measure.capacity import RatePoint, search_capacity
    from hwbench.measure.runner import new_run_id
    from hwbench.results.store import RunWriter, ensure_writable

    say = progress or (lambda _msg: None)
    run_id = new_run_id()
    run_dir = Path(out_dir) / run_id
    ensure_writable(Path(out_dir))
    writer = RunWriter(run_dir)
    out = EndpointRun(run_dir)
    host = socket.gethostname()
    instance = instance_of(cfg)
    if instance[1] and instance[1] != "given":
        out.notes.append(f"instance type {instance[1]}")
    manifest: dict[str, Any] = {
        "run_id": run_id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hwbench_version": __version__, "schema_version": SCHEMA_VERSION, "instance_type": instance[0],
        "instance": {"instance_type": instance[0], "source": instance[1], "accelerator": cfg.accelerator},
        "host": {"hostname": host, "role": "load-generating client; the endpoint runs elsewhere"},
        "requested": {k: v for k, v in cfg.__dict__.items() if k != "url"} | {"url": cfg.public_url()},
        "endpoint": describe, "notes": out.notes,
    }
    writer.write_manifest(manifest)
    prompts = _Prompts(client_factory, cfg, out.notes)

    def point(p: int, o: int, *, rate: float | None = None, conc: int | None = None, search: str | None = None) -> PointResult:
        texts = prompts.make(p, cfg.warmup_requests)
        if texts:  # warm-up: connections, the server's first-call costs; not recorded
            run_load(client_factory(), texts, o, concurrency=min(len(texts), conc or 1))
        if rate is not None:
            offsets = ArrivalProcess(rate, cfg.burstiness, seed=cfg.seed).offsets_for(cfg.duration_s, min_count=cfg.requests)
            lr = run_load(client_factory(), prompts.make(p, len(offsets)), o, offsets_s=offsets, offered_rps=rate,
                          processes=cfg.client_processes or auto_processes(rate, server_local=server_is_local(cfg.url)))
        else:
            lr = run_load(client_factory(), prompts.make(p, cfg.requests), o, concurrency=conc,
                          processes=min(cfg.client_processes or 1, conc or 1))
        result = build_record(cfg, run_id, lr, p, o, describe, prompts.source, host, instance)
        if search:
            _set(result.record, capacity_search=search)
        writer.write_trial(result.record)
        out.records.append(result.record)
        r = result.record
        say(f"p{p}/o{o} {'rate ' + format(rate, 'g') + '/s' if rate is not None else 'concurrency ' + str(conc)}: "
            f"TTFT p99 {getattr(r, 'ttft_p99_ms', None) or float('nan'):.1f} ms, TPOT p99 "
            f"{getattr(r, 'tpot_p99_ms', None) or float('nan'):.2f} ms, {lr.achieved_rps:.2f} req/s, "
            f"{len(lr.failed)} failed" + ("" if result.meets is None else (", meets the SLO" if result.meets else ", misses the SLO")))
        return result

    try:
        for p in cfg.prompt_tokens:
            for o in cfg.output_tokens:
                first: PointResult | None = None
                for c in cfg.concurrency:
                    res = point(p, o, conc=c)
                    first = first or res
                for rate in cfg.rates_rps:
                    point(p, o, rate=rate)
                if not cfg.has_slo:
                    continue
                if first is None:
                    first = point(p, o, conc=1)
                e2e = getattr(first.record, "e2e_p50_ms", None)
                start = 1000.0 / e2e if e2e else 1.0  # one request at a time: where an open loop first queues
                key = f"{cfg.served_model}__p{p}__o{o}__slo"

                def measure(rate: float, p: int = p, o: int = o, key: str = key) -> Any:
                    res = point(p, o, rate=rate, search=key)
                    score = _score(cfg, res.record)
                    return RatePoint(rate, bool(res.meets), None if score is None else 100.0 * score)

                cap = search_capacity(measure, 100.0, start, max_rates=max_search_rates)
                for rec in out.records:
                    if getattr(rec, "capacity_search", None) == key:
                        _set(rec, capacity_at_slo_rps=cap.capacity_rps, capacity_lo_rps=cap.lo_rps, capacity_hi_rps=cap.hi_rps)
                        writer.write_trial(rec)
                if cap.note:
                    out.notes.append(f"p{p}/o{o}: {cap.note}")
                say(f"p{p}/o{o}: capacity at the SLO {cap.capacity_rps if cap.capacity_rps is not None else 'none'} req/s "
                    f"(bracket {cap.lo_rps} .. {cap.hi_rps})")
    finally:
        manifest["notes"] = out.notes
        manifest["completed_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        writer.write_manifest(manifest)
        writer.compact()
    return out


def as_json(run: EndpointRun) -> dict[str, Any]:
    from dataclasses import asdict

    return {"run_dir": str(run.run_dir), "notes": run.notes, "records": [json.loads(json.dumps(asdict(r), default=str)) for r in run.records]}
