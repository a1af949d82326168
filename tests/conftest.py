"""Shared fixtures. The tiny built-in models are exported once per test session."""

from __future__ import annotations

import pytest

from hwbench.models.spec import ModelSpec

TINY_MODELS = ("mlp-tiny", "resnet-tiny", "bert-tiny")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelSpec]:
    """name -> ModelSpec for mlp-tiny, resnet-tiny and bert-tiny, built into a session cache dir.

    The cache dir is ``spec.onnx_path.parents[2]`` for any of them. Needs torch to build.
    """
    pytest.importorskip("torch", reason="building the tiny reference models needs torch")
    from hwbench.models import resolve

    cache_dir = tmp_path_factory.mktemp("hwbench-cache")
    return {name: resolve(name, cache_dir=cache_dir) for name in TINY_MODELS}


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's real model cache (~/.cache/hwbench), and see no terminal size
    from their runner: pytest-xdist's workers set COLUMNS=80 and LINES=24, which would narrow every table
    the CLI prints to a pipe (160 columns otherwise; a test that needs another width sets COLUMNS)."""
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "hwbench-cache"))
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
