"""Frozen settings for a sweep: what the user asked for. Building one has no side effects.

The CLI builds a SweepConfig from flags, or from a sweep file (hwbench.measure.sweepfile)
with flags on top. The run manifest saves both this (requested) and what each
adapter reports as effective.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MeasureSettings:
    """The timed loop's stopping rule: both a minimum count and a minimum duration, then a tight p50.

    Past both minimums the loop stops once the p50's 95% interval has a relative
    half-width of at most target_p50_rel_halfwidth, or at max_duration_s / max_iters.
    """

    warmup_s: float = 0.5
    warmup_min_iters: int = 5
    min_duration_s: float = 2.0
    min_iters: int = 100
    max_iters: int = 1_000_000  # a cap for trivially fast calls (the null adapter)
    max_duration_s: float = 10.0  # per-trial cap on the timed window (stops a slow or noisy point)
    target_p50_rel_halfwidth: float = 0.01  # stop once the p50's 95% interval is within +-1%
    max_cv: float = 0.10  # above: invalid (unstable)
    min_samples_for_p99: int = 100  # below: invalid (p99 is only the maximum)
    # Host activity in the timed window (hwbench.host.activity): at or above these, the record
    # gets a warning (not invalid by itself): a noisy host explains a noisy point.
    max_steal_pct: float = 2.0  # CPU time stolen by the hypervisor, % of all CPU time
    max_other_cpu_pct: float = 10.0  # busy CPU time of other processes, % of all CPUs

    @classmethod
    def quick(cls) -> "MeasureSettings":
        """For CI and smoke runs: short, and honest that it is (records flagged invalid when too short).

        A loose interval target (+-5%) and a 3 s cap: a quick run does not chase a 1% p50.
        """
        return cls(warmup_s=0.1, warmup_min_iters=2, min_duration_s=0.3, min_iters=20, max_duration_s=3.0,
                   target_p50_rel_halfwidth=0.05)


@dataclass(frozen=True)
class AccuracySettings:
    """Drift thresholds for non-fp32 points against the fp32 ONNX Runtime reference."""

    enabled: bool = True
    min_cosine: float = 0.99
    min_top1_agreement: float = 0.90
    max_mean_rel_err: float = 0.10
    min_items: int = 32  # items compared (whole batches at the trial's batch size): one flip in 32 is 0.97
    seed: int = 1234


@dataclass(frozen=True)
class GenerateSettings:
    """The generate workload's timed loop (hwbench.measure.generation): whole generate calls, each
    seconds long, so a count of calls and a duration, not the per-item stopping rule above."""

    warmup_calls: int = 1  # untimed calls first (allocator, caches, lazy compilation)
    min_calls: int = 3  # timed calls at least...
    min_duration_s: float = 2.0  # ...and at least this long...
    max_rel_halfwidth: float = 0.10  # ...and the mean call TTFT's and TPOT's 95% t-intervals within +-10% (0: off)
    max_duration_s: float = 120.0  # per-trial cap on the timed window (a long prompt on a slow CPU)
    greedy_tokens: int = 16  # accuracy: the first N greedy tokens compared with fp32's
    accuracy_prompt_tokens: int = 64  # accuracy: prompt length (at most the trial's)

    @classmethod
    def quick(cls) -> "GenerateSettings":
        return cls(warmup_calls=1, min_calls=2, min_duration_s=0.2, max_duration_s=20.0, greedy_tokens=8,
                   accuracy_prompt_tokens=16)


WORKLOADS: tuple[str, ...] = ("inference", "generate")


@dataclass(frozen=True)
class ServerSettings:
    """The server scenario (hwbench.measure.servertrial): open-loop load per rate, dynamic batching,
    LoadGen-style validity, and the capacity search at a p99 SLO.

    Each rate point issues requests for at least min_duration_s AND min_queries (LoadGen's two
    minimums, far shorter than LoadGen's 600 s so that a search takes minutes), capped at
    max_duration_s of schedule (a point cut short of min_queries is invalid). Early stopping
    claims a p99 bound at 0.99 confidence only from 459 queries: set min_queries to 460 or more
    for a claim at every point. Without rates_rps, slo_p99_ms searches the rate axis, and the rate
    it finds is then confirmed (hwbench.measure.capacity.confirm_capacity) by a full-length point of
    confirm_min_queries queries (valid from min_queries), capped at confirm_max_duration_s, stepping down by
    confirm_step up to confirm_tries times; confirm_tries = 0 keeps the short search's rate unconfirmed.
    """

    rates_rps: tuple[float, ...] = ()  # rates to measure; empty: search (needs slo_p99_ms)
    slo_p99_ms: float | None = None  # the p99 bound a rate must meet to count toward capacity
    burstiness: float = 1.0  # gamma shape of the gaps: 1 = Poisson (hwbench.measure.arrivals)
    max_batch: int = 8  # dynamic batching: at most this many requests per batch (1: none)
    max_queue_delay_ms: float = 0.0  # how long the oldest queued request may wait for a batch to fill
    min_duration_s: float = 2.0
    min_queries: int = 300
    max_duration_s: float = 30.0
    drain_s: float = 2.0  # after the last arrival, how long queued requests may still be served
    max_queue: int = 0  # queued requests beyond this are dropped; 0: unbounded
    max_sched_lag_ms: float = 1.0  # issuer lag p99 above this AND above 10% of the latency p99: invalid
    warmup_s: float = 0.5
    max_rates: int = 8  # the search's budget of rate points
    rel_tol: float = 0.1  # the search stops once hi / lo <= 1 + rel_tol
    seed: int = 0  # the arrival schedule's seed (each rate point draws from seed + its index)
    confirm_tries: int = 2  # full-length points that may confirm the search's capacity (0: no confirmation)
    confirm_step: float = 0.85  # each failed confirmation tries this fraction of the rate before
    confirm_min_queries: int = 460  # early stopping can claim a p99 bound (at 0.99) from 459 queries
    confirm_max_duration_s: float = 240.0

    def problem(self, scenarios: tuple[str, ...] | list[str], processes: int, trial_timeout_s: float | None) -> tuple[str, str] | None:
        """(the sweep key at fault, why) when a sweep with these scenarios cannot run the server scenario; else None."""
        if "server" not in scenarios:
            return None
        if not self.rates_rps and self.slo_p99_ms is None:
            return ("scenarios", "the server scenario needs rates (--rate-rps, sweep file server.rates_rps) or an SLO "
                                 "to search capacity at (--slo-p99-ms, server.slo_p99_ms)")
        if processes > 1:
            return ("processes", "the server scenario runs in one process (a capacity search is one sequence of "
                                 "rates); drop --processes")
        rates = len(self.rates_rps) or self.max_rates
        worst = rates * (self.max_duration_s + self.drain_s) + self.warmup_s
        if not self.rates_rps:
            worst += self.confirm_tries * (self.confirm_max_duration_s + self.drain_s)
        if trial_timeout_s is not None and worst >= trial_timeout_s:
            return ("trial_timeout_s", f"{trial_timeout_s:g} s may not hold the server scenario's {rates} rate points "
                                       f"of up to {self.max_duration_s:g} + {self.drain_s:g} s each and its confirmation ({worst:g} s in "
                                       "all): raise it or lower server.max_duration_s / max_rates / confirm_tries")
        return None


@dataclass(frozen=True)
class SweepConfig:
    """models x adapters x precisions x batch sizes x scenarios, plus how to measure them."""

    models: tuple[str, ...] = ("resnet50",)
    adapters: tuple[str, ...] = ()  # empty: every available CPU default adapter
    precisions: tuple[str, ...] = ("fp32", "bf16", "int8")
    batch_sizes: tuple[int, ...] = (1, 8)
    scenarios: tuple[str, ...] = ("single-stream",)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    accuracy: AccuracySettings = field(default_factory=AccuracySettings)
    dims: dict[str, int] = field(default_factory=dict)  # non-batch dynamic dims, e.g. {"sequence": 128}
    instance_type: str | None = None  # a type, "auto" (detect, else assume; hwbench.host.instance), or None
    usd_per_hour: float | None = None  # a price given for this machine (priced as "given: price_note")
    price_note: str | None = None
    trial_timeout_s: float = 900.0
    threads: int = 0  # 0: runtime default
    device: str = ""  # adapter device selector
    concurrency: int = 0  # offline scenario: 0 = adapter tunes it
    tdp_w: float | None = None  # for the estimate-tdp meter when the processor is not in the table
    idle_power_s: float = 1.0  # idle power measurement before a sweep (0 disables)
    memory_limit_mb: float = 0.0  # per-worker RSS limit; 0: 90% of physical memory
    allow_emulated: bool = False  # run precisions the device only emulates (hwbench.host.isa); default: unsupported
    processes: int = 1  # fresh worker processes per trial, run one after another; samples pooled
    # per adapter name, settings only that adapter understands (sweep file [adapter_options.NAME]),
    # passed to it as AdapterOptions.extra: torch compile_mode / channels_last, openvino num_streams
    adapter_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the generate workload (LLMs): trials over prompt x output lengths as well; see GenerateSettings
    workload: str = "inference"
    prompt_tokens: tuple[int, ...] = (128,)
    output_tokens: tuple[int, ...] = (128,)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    server: ServerSettings = field(default_factory=ServerSettings)  # the server scenario's load and search

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepConfig":
        d = dict(d)
        d["measure"] = MeasureSettings(**d.get("measure", {}))
        d["accuracy"] = AccuracySettings(**d.get("accuracy", {}))
        d["generate"] = GenerateSettings(**d.get("generate", {}))
        server = dict(d.get("server", {}))
        server["rates_rps"] = tuple(server.get("rates_rps", ()))
        d["server"] = ServerSettings(**server)
        for k in ("models", "adapters", "precisions", "batch_sizes", "scenarios", "prompt_tokens", "output_tokens"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)
