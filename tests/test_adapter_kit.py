"""The adapter kit's shared plumbing: one cache root (``~`` expanded), atomic builds, the atomic write."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbench.adapter import AdapterOptions
from hwbench.adapter.kit import atomic_build, cache_root
from hwbench.fsutil import atomic_write_text
from hwbench.models.build import cache_root as models_cache_root


def test_one_cache_root_expands_the_home_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root(AdapterOptions(cache_dir="~/c")) == tmp_path / "c" == models_cache_root("~/c")
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "env"))
    assert cache_root(AdapterOptions()) == tmp_path / "env" == models_cache_root(None)


def test_atomic_build_publishes_once_and_leaves_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m.onnx"
    calls: list[Path] = []

    def build(staged: Path) -> None:
        calls.append(staged)
        staged.write_text("model")
        (staged.parent / "scratch.tmp").write_text("quantizer scratch")

    assert atomic_build(target, build, in_folder=True) == target and target.read_text() == "model"
    assert atomic_build(target, build) == target and len(calls) == 1  # cached: not built again
    assert sorted(p.name for p in target.parent.iterdir()) == [".m.onnx.sha256", "m.onnx"]  # + its checksum


def test_a_failed_build_publishes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "ir"

    def build(staged: Path) -> None:
        staged.mkdir()
        (staged / "model.xml").write_text("half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        atomic_build(target, build)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["doc.json"]
