"""Statistics of a generate trial: TTFT, TPOT, ITL, E2E and token throughputs, in record columns.

Definitions are vLLM's `bench serve` ones (hwbench.adapter.tokens.TokenTiming): TTFT and E2E per
sequence from its start, TPOT = (E2E - TTFT) / (output tokens - 1) per sequence, ITL every gap
between consecutive tokens pooled over sequences. Percentiles are numpy's (linear); their 95%
intervals are hwbench.measure.stats' distribution-free order-statistic ones (open -> None).

Throughputs:
- output_tokens_per_s / total_tokens_per_s: every output (prompt + output) token of the timed
  window over the window's length: the aggregate a batch delivers;
- *_per_seq: the median sequence's output (prompt + output) tokens over its own E2E;
- prefill_tokens_per_s: per call, batch x prompt tokens over the call's TTFT (the prefill), median;
- decode_tokens_per_s: per call, batch x (output - 1) tokens over first-to-last token, median.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwbench.adapter.tokens import TokenTiming
from hwbench.measure.stats import quantile_ci, unresolved_percentiles


def _pcts(values_ms: np.ndarray, prefix: str, pcts: Sequence[int], ci: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if len(values_ms) == 0:
        return {f"{prefix}_p{p}_ms": None for p in pcts}
    s = np.sort(values_ms)
    for p in pcts:
        out[f"{prefix}_p{p}_ms"] = float(np.percentile(s, p))
    if ci:
        for p in (50, 99):
            lo, hi = quantile_ci(s, p / 100.0)
            out[f"{prefix}_p{p}_ci_low_ms"], out[f"{prefix}_p{p}_ci_high_ms"] = lo, hi
    return out


def _call_span(call: Sequence[TokenTiming]) -> tuple[list[TokenTiming], int, int, int] | None:
    """(the sequences that produced tokens, the call's start, its batch's first token, its last token), in
    ns; None when no sequence produced a token. The sequences of one call run together."""
    ok = [t for t in call if t.ok and t.token_ns]
    if not ok:
        return None
    return ok, min(t.origin_ns for t in ok), max(t.token_ns[0] for t in ok), max(t.token_ns[-1] for t in ok)


def call_rates(call: Sequence[TokenTiming]) -> tuple[float | None, float | None]:
    """(prefill tokens/s, decode tokens/s) of one generate call (its sequences run together)."""
    span = _call_span(call)
    if span is None:
        return None, None
    ok, start, first, last = span
    prompt = sum(t.prompt_tokens for t in ok)
    decoded = sum(t.output_tokens - 1 for t in ok)
    prefill = prompt / ((first - start) / 1e9) if first > start else None
    decode = decoded / ((last - first) / 1e9) if last > first and decoded > 0 else None
    return prefill, decode


def summarize_generation(calls: Sequence[Sequence[TokenTiming]], wall_s: float) -> dict[str, Any]:
    """Record columns from every timed call's TokenTimings and the timed window's length (s)."""
    seqs = [t for call in calls for t in call if t.ok and t.token_ns]
    out: dict[str, Any] = {"n_samples": len(seqs), "duration_s": float(wall_s),
                           "unresolved_percentiles": unresolved_percentiles(len(seqs))}
    if not seqs:
        return out
    ttft = np.array([t.ttft_ns for t in seqs], dtype=np.float64) / 1e6
    e2e = np.array([t.e2e_ns for t in seqs], dtype=np.float64) / 1e6
    tpot = np.array([t.tpot_ns for t in seqs if t.tpot_ns is not None], dtype=np.float64) / 1e6
    itl = np.concatenate([t.itl_ns() for t in seqs]).astype(np.float64) / 1e6 if seqs else np.empty(0)
    out.update(_pcts(ttft, "ttft", (50, 90, 99), ci=True))
    out.update(_pcts(tpot, "tpot", (50, 90, 99), ci=True))
    out.update(_pcts(itl, "itl", (50, 99), ci=False))
    out.update(_pcts(e2e, "e2e", (50, 99), ci=False))
    n_out = sum(t.output_tokens for t in seqs)
    n_prompt = sum(t.prompt_tokens for t in seqs)
    out["output_tokens_per_s"] = n_out / wall_s if wall_s > 0 else None
    out["total_tokens_per_s"] = (n_out + n_prompt) / wall_s if wall_s > 0 else None
    e2e_s = e2e / 1e3
    out["output_tokens_per_s_per_seq"] = float(np.median([t.output_tokens for t in seqs] / e2e_s))
    out["total_tokens_per_s_per_seq"] = float(np.median([t.output_tokens + t.prompt_tokens for t in seqs] / e2e_s))
    rates = [call_rates(c) for c in calls]
    prefill = [p for p, _ in rates if p is not None]
    decode = [d for _, d in rates if d is not None]
    out["prefill_tokens_per_s"] = float(np.median(prefill)) if prefill else None
    out["decode_tokens_per_s"] = float(np.median(decode)) if decode else None
    return out


def call_phases_ns(call: Sequence[TokenTiming]) -> tuple[int | None, float | None]:
    """(TTFT, TPOT) of one generate call in ns: its start to its batch's first token, and the mean gap
    from the first to the last token (None with one output token). The loop's stopping statistic."""
    span = _call_span(call)
    if span is None:
        return None, None
    ok, start, first, last = span
    steps = max(len(t.token_ns) for t in ok) - 1
    return first - start, ((last - first) / steps if steps > 0 else None)


def mean_ci_rel_halfwidth(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half the width of the Student-t interval of the mean, over the mean; None below 2 values.

    Generate calls are the independent units (a call's sequences share its timings), and a slow
    point affords only a few of them: a distribution-free interval of a median needs 6 values at
    95%, a t-interval of the mean has one from 2 (wide: t = 12.7 at 2, 4.30 at 3, 2.78 at 5)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) < 2 or not np.all(np.isfinite(v)):
        return None
    mean = float(v.mean())
    if mean <= 0:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2.0, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return half / mean


def call_latency_ns(call: Sequence[TokenTiming]) -> int | None:
    """A whole call's latency: its start to its last token (the record's latency_* columns)."""
    ok = [t for t in call if t.ok and t.token_ns]
    if not ok:
        return None
    return max(t.token_ns[-1] for t in ok) - min(t.origin_ns for t in ok)
