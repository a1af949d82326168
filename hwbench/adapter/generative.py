"""The generative adapter contract: one LLM, one device and precision, batched generation.

Like hwbench.adapter.contract's Adapter, but the unit of work is a generate call: a batch of
prompts (token ids) in, exactly `output_tokens` new tokens per sequence out (EOS ignored, so a
random-weight model still produces the requested length). The profiler keeps time: it passes
its clock, and the adapter calls it from its runtime's streaming hook as each step's tokens
become visible on the host, so TTFT, TPOT and ITL come from one clock (hwbench.adapter.tokens).

Lifecycle, driven by the worker:
    probe()                                      class-level: can it run here, and if not why
    a = Adapter(options)
    a.check(llm, precision, batch, prompt_tokens, output_tokens) -> reason or None
    a.precision_support(precision) -> PrecisionSupport
    a.prepare(llm, precision, batch_size, max_prompt_tokens, max_output_tokens)   # cold start
    a.generate(prompt_ids, output_tokens, clock) -> list[TokenTiming]           # timed by the caller
    a.prefill_logits(prompt_ids) -> np.ndarray [batch, vocab]                   # accuracy, untimed
    a.greedy_tokens(prompt_ids, n) -> np.ndarray [batch, n]                     # accuracy, untimed
    a.effective() -> Effective, a.device_memory_peak_mb(), a.close()

Registration: hwbench.adapter.registry lists generative adapters by the same user-facing names
as the others ("torch", "openvino"), in a table of their own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from hwbench.adapter.contract import AdapterOptions, Effective, Probe
from hwbench.host.isa import PrecisionSupport, host_support
from hwbench.models.llmspec import LlmSpec

if TYPE_CHECKING:
    import numpy as np

    from hwbench.adapter.kit import Placement

    from hwbench.adapter.tokens import TokenTiming

Clock = Callable[[], int]  # perf_counter_ns


class GenerativeAdapter(ABC):
    """Base class of every generation adapter. Subclasses live in device_adapters/."""

    name: ClassVar[str] = ""
    device_kind: ClassVar[str] = "cpu"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # e.g. fp32, bf16, int8 (weights), int4 (weights)
    description: ClassVar[str] = ""
    # True: one prepare() serves every point up to the batch and lengths it was given, so a worker
    # may measure several points of one precision on it (hwbench.measure.gentrial's groups)
    reuses_prepared: ClassVar[bool] = False

    def __init__(self, options: AdapterOptions | None = None) -> None:
        self.options = options or AdapterOptions()

    @classmethod
    def placement_for(cls, selector: str) -> "Placement":
        """Where an instance given `selector` (options.device) runs: picks the power meter (as Adapter's)."""
        from hwbench.adapter.kit import parse_device

        return parse_device(selector, cls.device_kind)

    @property
    def placement(self) -> "Placement":
        return self.placement_for(self.options.device)

    @classmethod
    @abstractmethod
    def probe(cls) -> Probe:
        """Can this adapter run here? Must not raise; import vendor libraries lazily inside."""

    def check(self, llm: LlmSpec, precision: str, batch_size: int, prompt_tokens: int, output_tokens: int) -> str | None:
        """Why this point cannot run (-> unsupported), or None. The base checks precision and context."""
        if precision not in self.precisions:
            return f"{self.name} does not support {precision} for generation (supports {', '.join(self.precisions)})"
        if prompt_tokens + output_tokens > llm.context_tokens:
            return (f"{prompt_tokens} prompt + {output_tokens} output tokens exceed {llm.name}'s context of "
                    f"{llm.context_tokens} tokens")
        return None

    def precision_support(self, precision: str) -> PrecisionSupport:
        """Native or emulated here; weight-only int8/int4 compute in the activation precision."""
        if self.device_kind == "cpu":
            return host_support(precision)
        return PrecisionSupport(None, f"{precision} on {self.device_kind}: native or emulated not known to hwbench")

    @abstractmethod
    def prepare(self, llm: LlmSpec, precision: str, batch_size: int, max_prompt_tokens: int, max_output_tokens: int) -> None:
        """Load/export/compile the model for this precision and batch; caches belong under options.cache_dir."""

    @abstractmethod
    def generate(self, prompt_ids: "np.ndarray", output_tokens: int, clock: Clock) -> "list[TokenTiming]":
        """Generate exactly `output_tokens` tokens greedily for each row of prompt_ids (int64, [batch, prompt]).

        start_ns is clock() just before the call into the runtime; each token's stamp is clock() when
        the runtime hands that step's tokens to the host (a streamer callback). One TokenTiming per row."""

    @abstractmethod
    def prefill_logits(self, prompt_ids: "np.ndarray") -> "np.ndarray":
        """The next-token logits after the prompt, float32 [batch, vocab], for the accuracy check."""

    @abstractmethod
    def greedy_tokens(self, prompt_ids: "np.ndarray", n: int) -> "np.ndarray":
        """The first n greedy output token ids, int64 [batch, n], for the accuracy check."""

    def effective(self) -> Effective:
        """What actually ran (precision, device, settings such as cache kind or compile)."""
        raise NotImplementedError(f"{self.name or type(self).__name__} does not implement effective() -> Effective")

    def device_memory_peak_mb(self) -> float | None:
        return None

    def close(self) -> None:
        """Release the runtime's resources."""
