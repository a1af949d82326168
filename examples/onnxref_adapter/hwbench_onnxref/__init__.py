"""An hwbench adapter for a new runtime: the ONNX reference evaluator (onnx.reference), pure Python.

A worked example of a third-party adapter package: this module, an entry point in the group
`hwbench.adapters` (pyproject.toml), and a test file that runs hwbench's conformance kit.
The evaluator is slow and exact: useful as a second opinion on a model's fp32 outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwbench.adapter import Adapter, Effective, Probe
from hwbench.adapter.kit import cpu_effective
from hwbench.errors import AdapterUnavailable
from hwbench.models.spec import ModelSpec


class OnnxRefAdapter(Adapter):
    """onnx.reference.ReferenceEvaluator on the model's ONNX file: fp32, one batch at a time."""

    name = "onnxref"
    device_kind = "cpu"
    precisions = ("fp32",)
    scenarios = ("single-stream",)
    description = "ONNX reference evaluator (pure Python, exact, slow)"

    @classmethod
    def probe(cls) -> Probe:
        try:  # vendor imports stay inside the adapter, and a failure is an answer, never an exception
            import onnx
            from onnx.reference import ReferenceEvaluator  # noqa: F401
        except Exception as e:  # noqa: BLE001
            return Probe.missing(f"onnx.reference is not importable ({type(e).__name__}: {e})", "pip install onnx")
        return Probe(available=True, devices=("CPU",), versions={"onnx": onnx.__version__})

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        from onnx.reference import ReferenceEvaluator

        self._precision = precision
        self._session: Any = ReferenceEvaluator(str(model.onnx_path))  # loading is the cold start
        self._inputs = dict(inputs)  # bound once: run() takes no arguments
        self._session.run(None, self._inputs)  # fail here, not inside the timed loop

    def run(self) -> None:
        if getattr(self, "_session", None) is None:
            raise AdapterUnavailable("onnxref: run() before prepare() or after close()")
        self._session.run(None, self._inputs)  # synchronous: the work is done when it returns

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self._session.run(None, inputs)]

    def effective(self) -> Effective:  # what ran: the host CPU, no accelerator share
        import onnx

        return cpu_effective(self._precision, {"evaluator": "onnx.reference.ReferenceEvaluator", "onnx": onnx.__version__})

    def close(self) -> None:
        self._session = None
