"""Old flat module paths that users import (README examples), kept working with a DeprecationWarning.

hwbench.store, hwbench.schema, hwbench.frontier and hwbench.accuracy moved into layer
subpackages. Each old path is served by this import hook as a thin module that re-exports the
new module's public names and warns, naming the new path. The hook stands in for files at the
old paths on purpose: a file left at a moved module's old path stops git's rename detection
from carrying other branches' edits of that module over to its new path.

(hwbench.adapter and hwbench.models kept their paths: they are packages now, and re-export.)
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "hwbench.accuracy": "hwbench.measure.accuracy",
    "hwbench.frontier": "hwbench.analyse.frontier",
    "hwbench.schema": "hwbench.results.schema",
    "hwbench.store": "hwbench.results.store",
}


def public_names(module: ModuleType) -> list[str]:
    """The names a shim re-exports: the module's __all__, else its public non-module globals."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, ModuleType)]
    return list(names)


class _MovedModuleFinder:
    """A meta path finder and loader for the old paths in MOVED (and nothing else)."""

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, cls(), origin=f"moved to {MOVED[fullname]}")

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        new_path = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} is deprecated: import {new_path} instead", DeprecationWarning,
                      stacklevel=2)  # the importer: warnings skips the import machinery's frames
        target = importlib.import_module(new_path)
        names = public_names(target)
        module.__dict__.update({n: getattr(target, n) for n in names})
        module.__all__ = names
        module.__doc__ = f"Deprecated alias of {new_path}: re-exports its public names."


def install() -> None:
    """Put the finder first on sys.meta_path, once (hwbench/__init__.py calls it). First: it answers
    only for the old paths in MOVED, and must win over a stale file or editable-install finder."""
    if not any(f is _MovedModuleFinder for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder)
