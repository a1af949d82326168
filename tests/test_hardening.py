"""Issue 16, hardening: every failure exits non-zero, no result is lost or doubled, flags are checked like files.

Each case drives the real entry point (`python -m hwbench` in a subprocess, or hwbench.cli.main()), never the
typer app: README "Exit codes" and "Bad input" list what these tests hold to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_bad_input import _env, add_model, assert_one_line_error, hwbench  # noqa: F401 (add_model: a fixture)


def _profile(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    argv = list(args)
    for flag, value in (("--adapter", "null"), ("--precision", "fp32"), ("--batch", "1"), ("--out", str(tmp / "out"))):
        if flag not in argv:
            argv += [flag, value]
    return hwbench(tmp, "profile", *argv, "--quick", "--no-accuracy", **env)


def _add_model_at(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)
    return path


# -- item 2: trial ids -------------------------------------------------------------------------


def test_two_models_that_map_to_one_trial_id_are_refused(tmp_path: Path) -> None:
    a, b = _add_model_at(tmp_path / "a b.onnx"), _add_model_at(tmp_path / "a_b.onnx")
    proc = _profile(tmp_path, f"{a},{b}")
    assert_one_line_error(proc, f"models {str(a)!r} and {str(b)!r} map to the same trial id")
    assert not list(tmp_path.glob("out/*/manifest.json"))


def test_long_model_paths_that_share_a_prefix_keep_distinct_trial_ids(tmp_path: Path) -> None:
    from hwbench.results.store import load_records

    folder = tmp_path / ("d" * 130)
    folder.mkdir()
    a, b = _add_model_at(folder / "one.onnx"), _add_model_at(folder / "two.onnx")
    proc = _profile(tmp_path, f"{a},{b}")
    assert proc.returncode == 0, proc.stderr
    df = load_records([tmp_path / "out"])
    assert sorted(df["model"]) == sorted([str(a), str(b)])  # the original names, both kept
    assert df["trial_id"].nunique() == 2 and all(len(t) <= 120 for t in df["trial_id"])


# -- item 11: smaller ones ---------------------------------------------------------------------


def test_a_repeated_dim_is_refused(tmp_path: Path, add_model: Path) -> None:
    proc = _profile(tmp_path, str(add_model), "--dim", "sequence=8", "--dim", "sequence=16")
    assert_one_line_error(proc, "--dim sequence is given twice (8 and 16)")


def test_a_missing_model_file_is_not_announced_as_prepared(tmp_path: Path) -> None:
    proc = _profile(tmp_path, str(tmp_path / "nope.onnx"))
    assert_one_line_error(proc, "model file not found")
    assert "preparing model" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("argv", "needle"), [
    (["profile", "--no-such-flag"], "no such option: --no-such-flag"),
    (["profile", "--threads", "many"], "invalid value for '--threads'"),
    (["compare"], "missing argument 'baseline'"),
    (["no-such-command"], "no such command 'no-such-command'"),
])
def test_parser_errors_are_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    proc = hwbench(tmp_path, *argv)
    assert_one_line_error(proc, needle)
    assert "Usage:" not in proc.stderr and "--help" in proc.stderr


# -- item 3: one writer per run folder ---------------------------------------------------------


def test_two_resumes_at_once_the_second_is_refused_naming_the_first(tmp_path: Path, add_model: Path) -> None:
    import time

    import pyarrow.parquet as pq

    from hwbench.results.lock import LOCK_FILE

    first = _profile(tmp_path, str(add_model), "--adapter", "faulty", "--batch", "1,2", "--timeout-s", "4",
                     HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT="raise")
    assert first.returncode == 3, first.stderr
    run = next((tmp_path / "out").iterdir())
    resume = [sys.executable, "-m", "hwbench", "profile", "--resume", str(run), "--retry-errors"]
    a = subprocess.Popen(resume, cwd=tmp_path, env=_env(tmp_path, HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT="hang@1"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while a.poll() is None and time.monotonic() < deadline:
            lock = run / LOCK_FILE
            if lock.exists() and lock.read_text().strip() == str(a.pid):
                break
            time.sleep(0.05)
        b = subprocess.run(resume, cwd=tmp_path, env=_env(tmp_path, HWBENCH_TEST_ADAPTERS="1"), capture_output=True,
                           text=True, timeout=60)
        assert a.poll() is None, "the first resume ended before the second started"
        assert_one_line_error(b, f"{run} is in use by hwbench process {a.pid}")
        a.wait(timeout=90)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 3, a.stderr.read() if a.stderr else ""  # b2 measured, b1 timed out (hang@1)
    lats = pq.read_table(run / "latencies.parquet").to_pandas()
    assert not lats.duplicated(["trial_id", "iteration"]).any()
    assert lats["trial_id"].nunique() == 1  # only the measured b2 has samples, from one attempt


# -- item 7: a full disk -----------------------------------------------------------------------


def _main(monkeypatch: pytest.MonkeyPatch, tmp: Path, *argv: str) -> int:
    """hwbench.cli.main() in this process (so a test can plant a fault in the parent); its exit code."""
    from hwbench.cli import main

    for key in ("HWBENCH_DEBUG", "HWBENCH_FAULT", "HWBENCH_TEST_ADAPTERS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp / "cache"))
    monkeypatch.setattr(sys, "argv", ["hwbench", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0)


def test_a_full_disk_is_one_line_with_the_path_and_the_resume_hint(tmp_path: Path, add_model: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from hwbench.results import store

    real_write = store.pq.write_table

    def full(table: object, where: object, **kw: object) -> None:
        where.write(b"PAR1 half a file")  # type: ignore[attr-defined]  # the disk fills mid-write
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.pq, "write_table", full)  # this process only: the worker saves its trial
    code = _main(monkeypatch, tmp_path, "profile", str(add_model), "--adapter", "null", "--precision", "fp32",
                 "--batch", "1", "--quick", "--no-accuracy", "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    run = next((tmp_path / "out").iterdir())
    assert code == 1, err
    assert len([line for line in err if line.startswith("hwbench:")]) == 1 and err[-1].startswith("hwbench: error: cannot write "), err
    assert f"cannot write {run / 'latencies.parquet'}: No space left on device" in err[-1] and f"hwbench profile --resume {run} --retry-errors" in err[-1], err
    assert not list(run.rglob("*.tmp*"))  # the half-written file is gone
    monkeypatch.setattr(store.pq, "write_table", real_write)
    assert store.load_run_records(run)["status"].tolist() == ["ok"]  # the trial is saved, in its fragment


# -- items 10 and 11: readable but malformed files ---------------------------------------------

GOLDEN_V2 = Path(__file__).parent / "fixtures" / "schema_v2_run"


def _strings_for_a_figure(run: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(run / "records.parquet")
    i = t.schema.get_field_index("throughput_sps")
    pq.write_table(t.set_column(i, pa.field("throughput_sps", pa.string()), pa.array(["fast"] * len(t))),
                   run / "records.parquet")


MALFORMED = {
    "frontier, manifest not JSON": ("frontier", lambda r: (r / "manifest.json").write_text("garbage{"),
                                    "manifest.json is unreadable"),
    "frontier, manifest a list": ("frontier", lambda r: (r / "manifest.json").write_text("[]"),
                                  "manifest.json is not a run manifest: expected a JSON object, got list"),
    "frontier, strings for a figure": ("frontier", _strings_for_a_figure,
                                       "records.parquet has columns of the wrong type (throughput_sps)"),
    "resume, manifest a list": ("resume", lambda r: (r / "manifest.json").write_text("[]"),
                                "manifest.json is not a run manifest"),
    "resume, no requested sweep": ("resume", lambda r: (r / "manifest.json").write_text('{"run_id": "r"}'),
                                   "manifest.json lacks 'requested'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_run_files_are_one_line_naming_the_file(case: str, tmp_path: Path) -> None:
    import shutil

    command, damage, needle = MALFORMED[case]
    run = tmp_path / "results" / "run"
    shutil.copytree(GOLDEN_V2, run)
    damage(run)
    argv = ["frontier", str(tmp_path / "results")] if command == "frontier" else ["profile", "--resume", str(run)]
    assert_one_line_error(hwbench(tmp_path, *argv), f"{run}/{needle}")


# -- item 6: a cache that checks itself --------------------------------------------------------


@pytest.mark.slow  # three ort-cpu int8 sweeps (the fast check of the same rule: the kit test below)
def test_a_cached_int8_model_replaced_by_garbage_is_rebuilt_once_with_a_note(tmp_path: Path, add_model: Path) -> None:
    pytest.importorskip("onnxruntime")

    def run() -> dict:
        proc = _profile(tmp_path, str(add_model), "--adapter", "ort-cpu", "--precision", "int8", "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["records"][0]

    first = run()
    if first["status"] != "ok":
        pytest.skip(f"ort-cpu int8 does not run here: {first['error']}")
    (cached,) = (tmp_path / "cache" / "ort-cpu").glob("int8-*.onnx")
    cached.write_bytes(b"garbage, not a model")
    second = run()
    assert second["status"] == "ok", second["error"]
    assert any(w.startswith(f"cached {cached.name} failed its check (20 bytes where ") and w.endswith(": rebuilt")
               for w in second["warnings"]), second["warnings"]
    third = run()  # rebuilt once: the next run trusts it again
    assert not any("failed its check" in w for w in third["warnings"]), third["warnings"]


def test_damaged_torch_weights_of_a_built_in_are_rebuilt_with_a_note(tiny_models: dict, tmp_path: Path) -> None:
    import shutil

    import torch

    from hwbench.fsutil import take_rebuilt_notes
    from hwbench.models import build_torch, resolve

    cache = tmp_path / "cache"
    shutil.copytree(tiny_models["mlp-tiny"].onnx_path.parents[2], cache)
    spec = resolve("mlp-tiny", cache_dir=cache)
    take_rebuilt_notes()
    assert spec.torch_weights is not None
    spec.torch_weights.write_bytes(b"\x80\x02garbage" * 100)  # what torch.load would reject with its own advice
    again = resolve("mlp-tiny", cache_dir=cache)
    notes = take_rebuilt_notes()
    assert len(notes) == 1 and "failed its check" in notes[0] and notes[0].endswith("rebuilt"), notes
    assert isinstance(build_torch(again), torch.nn.Module)
    resolve("mlp-tiny", cache_dir=cache)
    assert take_rebuilt_notes() == []  # once


def test_atomic_build_verifies_what_it_cached_and_rebuilds_a_bad_entry_once(tmp_path: Path) -> None:
    from hwbench.adapter.kit import atomic_build, cached
    from hwbench.fsutil import take_rebuilt_notes

    builds: list[int] = []

    def build(staged: Path) -> None:
        builds.append(1)
        staged.write_bytes(b"a derived model")

    target = tmp_path / "int8-x.onnx"
    take_rebuilt_notes()
    atomic_build(target, build)
    assert cached(target) and take_rebuilt_notes() == []
    for damage in (b"a derived modeX", b"garbage"):  # same size, other content; other size
        target.write_bytes(damage)
        assert not cached(target)
        atomic_build(target, build)
        assert target.read_bytes() == b"a derived model" and cached(target)
        (note,) = take_rebuilt_notes()
        assert note.startswith("cached int8-x.onnx failed its check (") and note.endswith("rebuilt")
    atomic_build(target, build)
    assert len(builds) == 3


# -- item 9: a huge sweep states its size and needs --yes ---------------------------------------


def test_a_huge_sweep_file_states_its_size_and_needs_yes_without_a_terminal(tmp_path: Path, add_model: Path) -> None:
    batches = ", ".join(str(b) for b in range(1, 1601))
    sweep = tmp_path / "huge.toml"
    sweep.write_text(f'models = ["{add_model}"]\nadapters = ["null"]\nprecisions = ["fp32", "fp16", "bf16", "int8"]\n'
                     f'batch_sizes = [{batches}]\nscenarios = ["single-stream", "offline"]\n')
    proc = hwbench(tmp_path, "profile", "--config", str(sweep), "--out", str(tmp_path / "out"))  # stdin: not a terminal
    assert_one_line_error(proc, "this sweep has 12800 trials, estimated ")
    assert "add --yes to run it" in proc.stderr and "preparing model" not in proc.stdout
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    missing = tmp_path / "gone.onnx"
    sweep.write_text(sweep.read_text().replace(str(add_model), str(missing)))
    past = hwbench(tmp_path, "profile", "--config", str(sweep), "--yes", "--out", str(tmp_path / "out"))
    assert_one_line_error(past, "model file not found")  # --yes: past the size check, on to the sweep


def test_sweep_size_counts_trials_and_estimates_from_the_settings() -> None:
    from hwbench.measure.session import CONFIRM_ABOVE_TRIALS, sweep_size
    from hwbench.measure.settings import SweepConfig

    cfg = SweepConfig(models=("m",), adapters=("null",), batch_sizes=tuple(range(1, CONFIRM_ABOVE_TRIALS + 1)),
                      precisions=("fp32",))
    size = sweep_size(cfg)
    assert size.trials == CONFIRM_ABOVE_TRIALS
    assert size.low_s == pytest.approx(CONFIRM_ABOVE_TRIALS * (cfg.measure.warmup_s + cfg.measure.min_duration_s))
    assert size.high_s == pytest.approx(CONFIRM_ABOVE_TRIALS * (cfg.measure.warmup_s + cfg.measure.max_duration_s))
