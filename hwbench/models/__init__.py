"""The models layer: what a model is (spec), how it is built or loaded (build, zoo, onnx_io),
and the inputs it is fed (workload).

hwbench.models re-exports hwbench.models.build's public functions, loaded on first use:
importing hwbench.models.spec (which the adapter contract and the CLI do) must not pay for
the build machinery.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_torch", "cache_root", "default_cache_dir", "export_onnx", "list_builtin", "resolve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hwbench.models import build

        return getattr(build, name)
    raise AttributeError(f"module 'hwbench.models' has no attribute {name!r}")
