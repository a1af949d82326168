"""The two things both registries (adapters, power meters) do with their "module:Class" tables:
read a plugin entry-point group, and import a target checking that it is the right kind of class.
Shared by all layers, like hwbench.errors."""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

T = TypeVar("T")


def entry_points(group: str) -> Any:
    """importlib.metadata's entry points of `group`, imported on first use (it costs ~25 ms,
    which `hwbench --help` need not pay)."""
    from importlib.metadata import entry_points as _entry_points

    return _entry_points(group=group)


def load_class(target: str, base: type[T], what: str) -> type[T]:
    """Import "module:Class" and return the class; TypeError when it is not a subclass of `base`.
    Import errors propagate: callers turn them into an unavailable probe or meter."""
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{target} is not an hwbench {what}")
    return cls
