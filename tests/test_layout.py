"""The layered layout: every old flat module path is a deprecation shim or gone, and shims re-export."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import hwbench
from hwbench._moved import MOVED, public_names

PACKAGE = Path(hwbench.__file__).parent
# Every module that sat flat in hwbench/ before the layout, with where it lives now.
OLD_FLAT = {
    "accuracy": "measure.accuracy", "adapter": "adapter.contract", "compare": "analyse.compare",
    "concurrency": "adapter.concurrency", "forkserver": "measure.forkserver", "fingerprint": "host.fingerprint", "frontier": "analyse.frontier",
    "gpu_info": "host.accelerators", "hostactivity": "host.activity", "hostcpu": "host.cpu",
    "instance": "host.instance", "isa": "host.isa", "matrix": "analyse.matrix", "models": "models.build",
    "modelspec": "models.spec", "onnx_io": "models.onnx_io", "pareto": "analyse.pareto", "plot": "analyse.plot",
    "prices": "catalog.prices", "profiler": "measure.profiler", "registry": "adapter.registry",
    "repeats": "measure.repeats", "runner": "measure.runner", "schema": "results.schema",
    "settings": "measure.settings", "stats": "measure.stats", "store": "results.store",
    "sweepfile": "measure.sweepfile", "trial": "measure.trial", "worker": "measure.worker",
    "workload": "models.workload", "zoo": "models.zoo",
}
PACKAGES_NOW = {"adapter", "models"}  # old module paths that are packages now, re-exporting


def _fresh_import(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(OLD_FLAT))
def test_old_flat_path_is_a_shim_a_package_or_gone(old: str) -> None:
    importlib.import_module("hwbench." + OLD_FLAT[old])  # the new home imports
    assert not (PACKAGE / f"{old}.py").exists(), f"hwbench/{old}.py is back: put it in its layer"
    dotted = "hwbench." + old
    if dotted in MOVED:
        assert MOVED[dotted] == "hwbench." + OLD_FLAT[old]
        with pytest.warns(DeprecationWarning, match=rf"{dotted} is deprecated: import {MOVED[dotted]}"):
            _fresh_import(dotted)
    elif old in PACKAGES_NOW:
        assert (PACKAGE / old / "__init__.py").exists()
    else:
        assert not (PACKAGE / old).exists(), f"hwbench/{old}/ is back: put it in its layer"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_shims_reexport_the_same_objects(old: str) -> None:
    with pytest.warns(DeprecationWarning):
        shim = _fresh_import(old)
    new = importlib.import_module(MOVED[old])
    names = public_names(new)
    assert names and shim.__all__ == names
    for name in names:
        assert getattr(shim, name) is getattr(new, name), name


def test_readme_paths_work() -> None:
    """The paths the README showed before the layout, used the way it used them."""
    for old in MOVED:
        sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning):
        from hwbench.store import load_latencies, load_records  # noqa: F401
        from hwbench.frontier import load, pick, plan  # noqa: F401
        from hwbench.accuracy import compare_outputs  # noqa: F401
        from hwbench.schema import TrialRecord  # noqa: F401
    from hwbench.adapter import Adapter, AdapterOptions, ConcurrentRunner, Probe
    from hwbench.adapter import contract

    assert (Adapter, AdapterOptions, ConcurrentRunner, Probe) == (
        contract.Adapter, contract.AdapterOptions, contract.ConcurrentRunner, contract.Probe)
    from hwbench.models import build, default_cache_dir, resolve

    assert (resolve, default_cache_dir) == (build.resolve, build.default_cache_dir)


def test_importing_the_models_spec_does_not_load_the_build() -> None:
    """hwbench.models re-exports lazily: the CLI and the adapter contract import models.spec only."""
    import subprocess

    code = "import sys, hwbench.models.spec; print('hwbench.models.build' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_old_path_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("hwbench.no_such_module")
