"""An in-process endpoint adapter with no HTTP at all, for testing the load generator itself.

Each request "answers" at once with `tokens` stamps. Two prompts misbehave on purpose, so the
multi-process client's failure handling can be tested: "raise" makes request() raise (an adapter
bug: the contract says it must not), "die" ends the whole client process at once (as a crash
would), "kill-after:PATH" creates PATH and SIGKILLs the process (as a kill from outside would).
With delay_s, each answer comes that long after its request (so requests are in flight when one
of those happens). It pickles, so it can be sent to a spawned client process.
"""

from __future__ import annotations

import asyncio
import os
import signal

from hwbench.adapter.contract import Probe
from hwbench.adapter.endpoint import Clock, EndpointAdapter
from hwbench.adapter.tokens import TokenTiming


class InstantEndpoint(EndpointAdapter):
    name = "instant"
    description = "answers at once without a server (tests only)"

    def __init__(self, tokens: int = 2, delay_s: float = 0.0) -> None:
        self.tokens = tokens
        self.delay_s = delay_s

    @classmethod
    def probe(cls) -> Probe:
        return Probe(available=True, devices=("none",), versions={})

    async def __aenter__(self) -> "InstantEndpoint":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def request(self, prompt: str, output_tokens: int, clock: Clock, scheduled_ns: int | None = None) -> TokenTiming:
        if prompt == "raise":
            raise RuntimeError("injected adapter bug")
        if prompt == "die":
            os._exit(3)
        if prompt.startswith("kill-after:"):
            open(prompt.split(":", 1)[1], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        start = clock()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        stamps = tuple(clock() for _ in range(self.tokens))
        return TokenTiming(start_ns=start, token_ns=stamps, prompt_tokens=1, scheduled_ns=scheduled_ns,
                           meta={"pid": os.getpid()})
