"""The generate workload's timed loop: warm-up calls, then whole generate calls until a minimum
count and a minimum duration are both reached and the calls' TTFT and TPOT are pinned (or the
time cap), every TokenTiming kept.

A generate call lasts from milliseconds (llama-tiny) to seconds (a 1024-token prompt on a CPU), so
the loop counts calls, not items, and its stopping rule is GenerateSettings', not the p50 rule of
hwbench.measure.profiler: past min_calls and min_duration_s it stops once the 95% t-intervals of
the mean per-call TTFT and TPOT (hwbench.measure.genstats.mean_ci_rel_halfwidth) are both within
+-max_rel_halfwidth (10%) of their means, so a steady slow point stops at 3 calls and a noisy one
runs on until it is pinned or capped (max_rel_halfwidth = 0: stop at the minimums). 10%, not 5%:
a 135M model's calls vary by 5-10% from call to call on a 2-vCPU VM with nothing else running
(measured, README), and +-5% would take 10-20 calls of up to 14 s each per point. Each call gets fresh prompts (a runtime with a prefix cache must not
see a repeated prompt: MEASURED.md, OpenVINO GenAI); they are drawn before the call's clock
starts. The power meter and the host-activity probe bracket the timed window, as the profiler's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hwbench.adapter.tokens import TokenTiming
from hwbench.measure.genstats import call_phases_ns, mean_ci_rel_halfwidth
from hwbench.measure.settings import GenerateSettings

if TYPE_CHECKING:
    from hwbench.adapter.generative import GenerativeAdapter
    from hwbench.host.activity import ActivityProbe, ActivityWindow
    from hwbench.power.base import EnergyReading, PowerMeter

FIRST_TOKEN_ID = 3  # ids 0-2 are pad/bos/eos in the built-ins' config: prompts avoid them
STOP_MINIMUMS = "minimums-reached"  # max_rel_halfwidth = 0: the minimums alone
STOP_TIGHT = "interval-tight"  # the minimums, and TTFT's and TPOT's intervals within +-max_rel_halfwidth
STOP_TIME_CAP = "time-cap"


@dataclass
class GenMeasurement:
    calls: list[list[TokenTiming]]  # one list per timed call, one TokenTiming per sequence
    wall_s: float  # the timed window: first call's start to last call's end
    warmup_calls: int
    stop_reason: str
    energy: "EnergyReading | None" = None
    activity: "ActivityWindow | None" = None
    call_ns: list[int] = field(default_factory=list)  # each call's wall time (start to return)
    rel_halfwidths: dict[str, float | None] = field(default_factory=dict)  # per-call TTFT/TPOT mean: 95% t-interval


def phase_halfwidths(calls: list[list[TokenTiming]]) -> dict[str, float | None]:
    """The relative half-widths of the mean per-call TTFT and TPOT (TPOT absent with one output token)."""
    phases = [call_phases_ns(c) for c in calls]
    out = {"ttft": mean_ci_rel_halfwidth([p[0] for p in phases if p[0] is not None])}
    tpots = [p[1] for p in phases if p[1] is not None]
    if tpots:
        out["tpot"] = mean_ci_rel_halfwidth(tpots)
    return out


def random_prompts(vocab_size: int, batch_size: int, prompt_tokens: int, seed: int) -> np.ndarray:
    """Seeded random token ids, int64 [batch, prompt]: the prompts of a model without a tokenizer."""
    low = FIRST_TOKEN_ID if vocab_size > FIRST_TOKEN_ID + 1 else 0
    rng = np.random.default_rng(seed)
    return rng.integers(low, vocab_size, size=(batch_size, prompt_tokens), dtype=np.int64)


def measure_generation(adapter: "GenerativeAdapter", vocab_size: int, batch_size: int, prompt_tokens: int,
                       output_tokens: int, settings: GenerateSettings, meter: "PowerMeter | None" = None,
                       activity: "ActivityProbe | None" = None, seed: int = 0) -> GenMeasurement:
    """Warm up, then time generate calls until min_calls, min_duration_s and the interval rule (or max_duration_s)."""
    clock = time.perf_counter_ns
    call_seed = seed
    for _ in range(settings.warmup_calls):
        adapter.generate(random_prompts(vocab_size, batch_size, prompt_tokens, call_seed), output_tokens, clock)
        call_seed += 1
    min_s = settings.min_duration_s
    if meter is not None:
        min_s = max(min_s, meter.min_window_s())
    min_ns, cap_ns = int(min_s * 1e9), int(max(settings.max_duration_s, min_s) * 1e9)
    calls: list[list[TokenTiming]] = []
    call_ns: list[int] = []
    if activity is not None:
        activity.begin()
    if meter is not None:
        meter.begin()
    prompts = random_prompts(vocab_size, batch_size, prompt_tokens, call_seed)
    t0 = clock()
    reason = STOP_MINIMUMS
    target = settings.max_rel_halfwidth
    while True:
        c0 = clock()
        timings = adapter.generate(prompts, output_tokens, clock)
        c1 = clock()
        calls.append(list(timings))
        call_ns.append(c1 - c0)
        elapsed = c1 - t0
        if len(calls) >= settings.min_calls and elapsed >= min_ns:
            if target <= 0:
                break
            widths = phase_halfwidths(calls)
            if all(w is not None and w <= target for w in widths.values()):
                reason = STOP_TIGHT
                break
        if elapsed >= cap_ns:
            reason = STOP_TIME_CAP
            break
        call_seed += 1
        prompts = random_prompts(vocab_size, batch_size, prompt_tokens, call_seed)  # fresh: no prefix-cache hits
    wall_ns = clock() - t0
    energy = meter.end() if meter is not None else None
    window = activity.end() if activity is not None else None
    return GenMeasurement(calls, wall_ns / 1e9, settings.warmup_calls, reason, energy, window, call_ns,
                          phase_halfwidths(calls))
