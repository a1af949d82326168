"""One generated sequence's timing, and the per-request LLM metrics derived from it.

The definitions are vLLM's `bench serve` ones (benchmarks/serve.py, "ttft", "tpot", "itl", "e2el"):

- TTFT: time to first token, from the request's start (its scheduled arrival under open-loop
  load, its submission otherwise) to the first output token;
- TPOT: time per output token after the first, (E2E - TTFT) / (output tokens - 1);
  undefined for a one-token output. AIPerf calls the same quantity "inter token latency";
- ITL: every gap between consecutive output tokens (pooled over requests by the summariser);
- E2E: start to the last token.

Both in-process generation adapters and the HTTP client produce a TokenTiming per sequence;
the summariser turns a trial's list of them into record fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TokenTiming:
    """Clock stamps (perf_counter_ns) of one sequence. token_ns[i] is when output token i was
    seen; a chunk that carried k tokens stamps k entries with the same time."""

    start_ns: int
    token_ns: tuple[int, ...]
    prompt_tokens: int
    ok: bool = True
    error: str | None = None  # why the request failed; its stamps so far are kept
    scheduled_ns: int | None = None  # open-loop arrival time; start_ns is when it was actually issued
    meta: dict[str, object] = field(default_factory=dict)  # e.g. the server's usage counts
    counted_tokens: int | None = None  # output tokens as the server counted them (usage), when known

    @property
    def output_tokens(self) -> int:
        """The output's length in tokens: the server's count when it gave one (a streamed chunk may
        carry several tokens, e.g. merged multi-byte UTF-8), else one per stamp."""
        return self.counted_tokens if self.counted_tokens is not None else len(self.token_ns)

    @property
    def origin_ns(self) -> int:
        """Where latency starts: the scheduled arrival when there is one (queueing counts)."""
        return self.scheduled_ns if self.scheduled_ns is not None else self.start_ns

    @property
    def ttft_ns(self) -> int | None:
        return self.token_ns[0] - self.origin_ns if self.token_ns else None

    @property
    def e2e_ns(self) -> int | None:
        return self.token_ns[-1] - self.origin_ns if self.token_ns else None

    @property
    def tpot_ns(self) -> float | None:
        """(E2E - TTFT) / (n - 1) with n the output's token count; None below two tokens."""
        n = self.output_tokens
        if n < 2 or len(self.token_ns) < 2:  # one stamp (a non-streamed answer) says nothing per token
            return None
        return (self.token_ns[-1] - self.token_ns[0]) / (n - 1)

    def itl_ns(self) -> np.ndarray:
        """The gaps between consecutive tokens (n - 1 of them; zeros where a chunk held several)."""
        return np.diff(np.asarray(self.token_ns, dtype=np.int64))

    @property
    def schedule_lag_ns(self) -> int | None:
        """Actual minus scheduled issue time: the load generator's own lateness."""
        return None if self.scheduled_ns is None else self.start_ns - self.scheduled_ns
