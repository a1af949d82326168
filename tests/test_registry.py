"""The adapter registry: built-ins, lazy import, entry points, probes that never raise."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest

from hwbench.adapter import registry
from hwbench.adapter import Adapter
from hwbench.errors import UsageError


def test_builtins_are_listed_everywhere() -> None:
    names = registry.names()
    for n in ("null", "ort-cpu", "openvino", "torch", "tensorrt", "ort-cuda", "ort-trt", "neuron"):
        assert n in names
    assert "faulty" not in names  # test-only adapters need HWBENCH_TEST_ADAPTERS=1


def test_unknown_adapter_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown adapter 'nope'"):
        registry.info("nope")
    with pytest.raises(UsageError):
        registry.parse_adapters("null,nope")


def test_null_loads_and_probes() -> None:
    cls = registry.load("null")
    assert issubclass(cls, Adapter) and cls.name == "null"
    assert registry.probe("null").available


def test_vendor_modules_are_not_imported_by_the_core() -> None:
    import subprocess

    code = (
        "import sys, hwbench.cli, hwbench.measure.runner, hwbench.measure.trial, hwbench.results.store\n"
        "print(','.join(m for m in ('tensorrt', 'openvino', 'torch_neuronx', 'torch', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported by the core: {out}"


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("hwbench_test_plugin")

    class Plugin(Adapter):
        name = "plugin"

        @classmethod
        def probe(cls):  # type: ignore[override]
            raise RuntimeError("driver exploded")

        def prepare(self, *a): ...
        def run(self): ...
        def infer(self, inputs): return []

    mod.Plugin = Plugin
    monkeypatch.setitem(sys.modules, "hwbench_test_plugin", mod)
    eps = [EntryPoint("plugin", "hwbench_test_plugin:Plugin", registry.ENTRY_POINT_GROUP),
           EntryPoint("null", "hwbench_test_plugin:Plugin", registry.ENTRY_POINT_GROUP),
           EntryPoint("broken", "hwbench_missing_module:X", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    assert "plugin" in registry.names()
    assert registry.info("null").source == "builtin"  # a plugin cannot shadow a built-in
    p = registry.probe("plugin")
    assert not p.available and "driver exploded" in p.reason
    b = registry.probe("broken")
    assert not b.available and "failed to import" in b.reason
