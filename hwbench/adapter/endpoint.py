"""The endpoint adapter contract: a model served over HTTP on some other machine.

An endpoint adapter is a client, not a runtime: the system under test is a server (vLLM,
SGLang, TGI, TensorRT-LLM/Triton, llama.cpp, a managed API) that hwbench cannot see or install.
The adapter sends one request and stamps what comes back; the load generator
(hwbench.measure.endpoint_load) decides when requests are sent, open-loop or closed-loop,
and keeps its own scheduling lag. What the endpoint runs on is said by the user (--instance,
--accelerator), since no probe can see it.

    async with adapter:                                  # opens the connection pool
        timing = await adapter.request(prompt, output_tokens, clock, scheduled_ns)   # -> TokenTiming
        # under load: sent = await adapter.send(...) in the window, adapter.settle(sent) after it

A failed request is data: request() never raises for what the server did (HTTP errors,
timeouts, disconnects, malformed frames); it returns a TokenTiming with ok=False and the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from hwbench.adapter.contract import Probe
from hwbench.adapter.tokens import TokenTiming

Clock = Callable[[], int]  # perf_counter_ns


class EndpointAdapter(ABC):
    """Base class of clients for served models. Subclasses live in device_adapters/."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def probe(cls) -> Probe:
        """Can the client run here (its HTTP library importable)? Must not raise."""

    @abstractmethod
    async def __aenter__(self) -> "EndpointAdapter": ...

    @abstractmethod
    async def __aexit__(self, *exc: object) -> None: ...

    @abstractmethod
    async def request(self, prompt: str, output_tokens: int, clock: Clock, scheduled_ns: int | None = None) -> TokenTiming:
        """Send one generation request and stamp each streamed token; never raises for server faults."""

    async def send(self, prompt: str, output_tokens: int, clock: Clock, scheduled_ns: int | None = None) -> object:
        """What the load generator awaits inside the measurement window: the request with as little
        work as keeps its stamps exact (e.g. stamped raw reads, unparsed); settle() makes it a
        TokenTiming after the window. It must pickle (a client process logs it as it completes).
        The default is request() itself."""
        return await self.request(prompt, output_tokens, clock, scheduled_ns)

    def settle(self, sent: object) -> TokenTiming:
        """send()'s result as a TokenTiming; a TokenTiming passes through unchanged."""
        if not isinstance(sent, TokenTiming):
            raise TypeError(f"{type(self).__name__}.send() returned a {type(sent).__name__}: override settle() too")
        return sent

    async def count_prompt_tokens(self, prompt: str) -> int | None:
        """The prompt's length in tokens as the server counts it (usage.prompt_tokens), or None."""
        return None
