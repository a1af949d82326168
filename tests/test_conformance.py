"""Every built-in adapter runs the conformance kit (hwbench.testing): the CPU ones for real on
mlp-tiny, the accelerator ones skipped with their probe's reason where the device is absent.
The worked example (examples/onnxref_adapter) runs it too, imported from the checkout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hwbench.adapter import registry
from hwbench.testing import AdapterConformance

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnxref_adapter"


class TestNull(AdapterConformance):
    adapter_name = "null"


class TestOrtCpu(AdapterConformance):
    adapter_name = "ort-cpu"


class TestOpenVino(AdapterConformance):
    adapter_name = "openvino"


class TestTorch(AdapterConformance):
    adapter_name = "torch"


class TestTensorRt(AdapterConformance):
    adapter_name = "tensorrt"


class TestOrtCuda(AdapterConformance):
    adapter_name = "ort-cuda"


class TestOrtTensorRt(AdapterConformance):
    adapter_name = "ort-trt"


class TestNeuron(AdapterConformance):
    adapter_name = "neuron"


def _example_adapter() -> type:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from hwbench_onnxref import OnnxRefAdapter
    finally:
        sys.path.remove(str(EXAMPLE))
    return OnnxRefAdapter


class TestExampleOnnxRef(AdapterConformance):
    """The example third-party adapter, not installed: imported from examples/."""

    adapter_cls = _example_adapter()


def test_every_builtin_runs_the_kit() -> None:
    covered = {c.adapter_name for c in AdapterConformance.__subclasses__() if c.__module__ == __name__}
    assert covered >= set(registry.BUILTIN), f"built-ins without a conformance class: {set(registry.BUILTIN) - covered}"


def test_unavailable_adapters_skip_with_the_probe_reason(pytester: pytest.Pytester) -> None:
    """The kit's skip message is the probe's reason, word for word."""
    pytester.makepyfile(
        """
        from hwbench.adapter import Adapter, Probe
        from hwbench.testing import AdapterConformance

        class Absent(Adapter):
            name = "absent"
            precisions = ("fp32",)

            @classmethod
            def probe(cls):
                return Probe.missing("no Absent device on this host (checked /dev/absent0)")

            def prepare(self, *a): raise AssertionError("must not be reached")
            def run(self): raise AssertionError("must not be reached")
            def infer(self, inputs): raise AssertionError("must not be reached")

        class TestAbsent(AdapterConformance):
            adapter_cls = Absent
        """
    )
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 2 and outcomes.get("failed", 0) == 0 and outcomes.get("skipped", 0) >= 10
    result.stdout.fnmatch_lines(["*no Absent device on this host (checked /dev/absent0)*"])


def test_the_kit_catches_a_broken_adapter(pytester: pytest.Pytester) -> None:
    """Each defect fails the check that owns it (a kit that cannot fail proves nothing)."""
    pytester.makepyfile(
        """
        import time
        from pathlib import Path
        from device_adapters.null import NullAdapter
        from hwbench.models.spec import InputSpec, ModelSpec
        from hwbench.adapter.concurrency import ThreadedRunner
        from hwbench.testing import AdapterConformance

        class Dropping(ThreadedRunner):
            def drain(self):
                return super().drain()[1:]  # loses a finished tag

        class Broken(NullAdapter):
            name = "broken"

            def check(self, model, precision, batch_size, scenario):
                if precision == "fp8":
                    raise RuntimeError("no fp8 table")
                return super().check(model, precision, batch_size, scenario)

            def prepare(self, *args):
                super().prepare(*args)
                self._compiled = False
                self._closed = 0

            def run(self):
                if not self._compiled:  # compiles on the first run(): outside the cold start
                    time.sleep(1.2)
                    self._compiled = True

            def open_concurrent(self, concurrency):
                return Dropping(lambda slot: None, 2)

            def device_memory_peak_mb(self):
                return -1.0

            def effective(self):
                return {"precision_effective": "fp32"}  # the untyped form of old

            def close(self):
                self._closed = getattr(self, "_closed", 0) + 1
                if self._closed > 1:
                    raise RuntimeError("closed twice")

        class TestBroken(AdapterConformance):
            adapter_cls = Broken

            @classmethod
            def build_model(cls, cache_dir):  # the null adapter reads no file: no model to build
                return ModelSpec("fake", Path("fake.onnx"), "0", (InputSpec("x", "float32", (-1, 4)),), ("y",))
        """
    )
    result = pytester.runpytest("-rf", "-p", "no:cacheprovider")
    for check in ("test_check_answers_every_point", "test_first_run_is_no_compile", "test_effective_after_prepare",
                  "test_device_memory_peak", "test_close_is_idempotent", "test_offline_runner"):
        result.stdout.fnmatch_lines([f"FAILED *::TestBroken::{check}*"])
    result.stdout.no_fnmatch_line("FAILED *::TestBroken::test_probe_answers*")
