"""The null adapter: does nothing, so a trial measures the harness itself."""

from __future__ import annotations

from hwbench.adapter.kit import NullBase


class NullAdapter(NullBase):
    """Runs nothing. Its latencies are the profiler's own per-call overhead (see hwbench.adapter.kit.NullBase)."""

    name = "null"
    description = "does nothing: measures the harness"
