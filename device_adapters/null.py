"""The null adapter: does nothing, so a trial measures the harness itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwbench.adapter import Adapter, ConcurrentRunner, Probe
from hwbench.adapter.concurrency import ThreadedRunner
from hwbench.models.spec import ModelSpec
from hwbench.precision import ALL


class NullAdapter(Adapter):
    """Runs nothing. Its latencies are the profiler's own per-call overhead."""

    name = "null"
    device_kind = "none"
    precisions = ALL
    scenarios = ("single-stream", "offline")
    description = "does nothing: measures the harness"

    @classmethod
    def probe(cls) -> Probe:
        return Probe(available=True, devices=("none",))

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        self._precision = precision
        self._inputs = inputs

    def run(self) -> None:
        pass

    def open_concurrent(self, concurrency: int) -> ConcurrentRunner:
        return ThreadedRunner(lambda slot: None, max(1, concurrency or 2))

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(v, dtype=np.float32) for v in inputs.values()]

    def effective(self) -> dict[str, Any]:
        return {"precision_effective": self._precision, "device": "none"}
