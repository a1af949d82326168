"""Bad input through the real entry point: one clear line, a non-zero exit, no traceback.

Every case runs `python -m hwbench ...` in a subprocess and checks: the documented exit
code (2), exactly one stderr line starting `hwbench: error:` (a sweep file with several
problems lists them on indented lines below it), no 'Traceback' anywhere, and that
completed results are left as they were. With HWBENCH_DEBUG=1 the traceback shows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hwbench.errors import ResultsError
from hwbench.results.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY
from hwbench.results.store import load_records

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_RUN = FIXTURES / "schema_v1_run"
CPUS = os.cpu_count() or 1


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_FAULT", "HWBENCH_TEST_ADAPTERS")}
    env.update(HWBENCH_CACHE=str(tmp / "cache"), COLUMNS="200", **extra)
    return env


def hwbench(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hwbench", *args], cwd=tmp, env=_env(tmp, **env),
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str, code: int = 2,
                          more_lines: bool = False) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert lines and lines[0].startswith("hwbench: error: "), proc.stderr
    assert sum(line.startswith("hwbench: error:") for line in lines) == 1, proc.stderr
    if not more_lines:
        assert len(lines) == 1, proc.stderr
    assert needle in proc.stderr, proc.stderr


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def add_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid one-Add ONNX model with a dynamic batch axis (no torch needed)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    path = tmp_path_factory.mktemp("model") / "add.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder holding one valid run (the golden schema-v1 fixture)."""
    folder = tmp_path / "results"
    shutil.copytree(GOLDEN_RUN, folder / "run1")
    for sub in ("records", "latencies"):  # a compacted run: git keeps no empty fragment folders
        (folder / "run1" / sub).mkdir(exist_ok=True)
    assert len(load_records([folder])) == 2
    return folder


# -- profile: models, adapters, precisions, batch sizes, output folders -----------------

PROFILE_CASES = {
    "missing model file": (["{tmp}/nope.onnx"], "model file not found"),
    "empty model file": (["{tmp}/empty.onnx"], "model file is empty"),
    "corrupt model file": (["{tmp}/corrupt.onnx"], "not a valid ONNX model"),
    "unknown model name": (["resnet5000"], "unknown model 'resnet5000'"),
    "unknown adapter": (["{model}", "--adapter", "nope"], "unknown adapter 'nope'"),
    "adapter given as a path": (["{model}", "--adapter", "./evil.py"], "unknown adapter './evil.py'"),
    "unknown precision": (["{model}", "--precision", "fp64"], "unknown precision fp64"),
    "batch 0": (["{model}", "--batch", "0"], "batch size must be positive, got 0"),
    "negative batch": (["{model}", "--batch", "-4"], "batch size must be positive, got -4"),
    "absurd batch": (["{model}", "--batch", "1000000"], "batch size 1000000 is absurd"),
    "non-integer batch": (["{model}", "--batch", "8x"], "batch size '8x' is not an integer"),
    "zero timeout": (["{model}", "--timeout-s", "0"], "--timeout-s: expected a duration in seconds above 0"),
    # flags that are also sweep keys: checked by the sweep file's model, so the same bounds
    "infinite timeout": (["{model}", "--timeout-s", "inf"], "--timeout-s: expected a duration in seconds above 0"),
    "nan timeout": (["{model}", "--timeout-s", "nan"], "--timeout-s: expected a duration in seconds above 0"),
    "timeout shorter than the measurement": (["{model}", "--timeout-s", "0.2"], "--timeout-s: 0.2 s leaves no time to measure"),
    "zero duration": (["{model}", "--duration-s", "0"], "--duration-s: expected a duration in seconds above 0"),
    "nan duration": (["{model}", "--duration-s", "nan"], "--duration-s: expected a duration in seconds above 0"),
    "zero min-iters": (["{model}", "--min-iters", "0"], "--min-iters: expected a positive integer, got 0"),
    "negative threads": (["{model}", "--threads", "-1"], "--threads: expected an integer from 0 (runtime default)"),
    "too many threads": (["{model}", "--threads", str(4 * CPUS + 1)],
                         f"--threads: expected an integer from 0 (runtime default) to {4 * CPUS} (4 x {CPUS} CPUs), "
                         f"got {4 * CPUS + 1}"),
    "too much concurrency": (["{model}", "--concurrency", str(4 * CPUS + 1)],
                             f"--concurrency: expected an integer from 0 (tuned) to {4 * CPUS} (4 x {CPUS} CPUs)"),
    "zero TDP": (["{model}", "--tdp-w", "0"], "--tdp-w: expected a power in watts above 0 and up to 5000, got 0.0"),
    "nan TDP": (["{model}", "--tdp-w", "nan"], "--tdp-w: expected a power in watts above 0 and up to 5000, got nan"),
    "zero processes": (["{model}", "--processes", "0"], "--processes: expected an integer from 1 to 64, got 0"),
    "empty batch list": (["{model}", "-b", ""], "empty batch size list"),
    "empty precision list": (["{model}", "--precision", ","], "empty precision list"),
    "empty price note": (["{model}", "--usd-per-hour", "1", "--price-note", " "], "--price-note: expected a non-empty string"),
    "negative time cap": (["{model}", "--max-duration-s", "-1"], "--max-duration-s: expected a duration in seconds above 0"),
    "infinite time cap": (["{model}", "--max-duration-s", "inf"], "--max-duration-s: expected a duration"),
    "interval target of 1": (["{model}", "--ci-target", "1"], "--ci-target: expected a relative half-width above 0 and below 1"),
    "zero interval target": (["{model}", "--ci-target", "0"], "--ci-target: expected a relative half-width"),
    "negative price": (["{model}", "--usd-per-hour", "-1"], "--usd-per-hour: expected a price in USD per hour above 0"),
    "nan price": (["{model}", "--usd-per-hour", "nan"], "--usd-per-hour: expected a price in USD per hour above 0"),
    "inf price": (["{model}", "--usd-per-hour", "inf"], "--usd-per-hour: expected a price in USD per hour above 0"),
    "zero price": (["{model}", "--usd-per-hour", "0"], "--usd-per-hour: expected a price in USD per hour above 0"),
    "price note without a price": (["{model}", "--price-note", "my lab box"], "--price-note describes a --usd-per-hour price"),
    "output under a regular file": (["{model}", "--out", "{tmp}/file.txt/sub"], "cannot write to output folder"),
    "output under /proc": (["{model}", "--out", "/proc/hwbench-test"], "cannot write to output folder"),
}


def _profile(tmp: Path, model: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "corrupt.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    (tmp / "file.txt").write_text("a regular file")
    args = [a.format(tmp=tmp, model=model) for a in argv]
    if "--adapter" not in args:
        args += ["--adapter", "null"]
    if "--out" not in args:
        args += ["--out", str(tmp / "out")]
    return hwbench(tmp, "profile", *args, "--quick", "--no-accuracy", **env)


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_profile_bad_input(case: str, tmp_path: Path, add_model: Path) -> None:
    argv, needle = PROFILE_CASES[case]
    proc = _profile(tmp_path, add_model, argv)
    assert_one_line_error(proc, needle)
    assert not list(tmp_path.glob("out/*/manifest.json"))  # nothing half-made left behind


def test_adapter_whose_import_raises_fails_the_profile(tmp_path: Path, add_model: Path) -> None:
    proc = _profile(tmp_path, add_model, ["{model}", "--adapter", "faulty"],
                    HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT="importerror")
    assert_one_line_error(proc, "faulty unavailable here: adapter module failed to import: ImportError: libfaulty.so.1",
                          code=4)  # nothing asked for could run (README, "Exit codes")
    assert not list(tmp_path.glob("out/*/manifest.json"))  # failed before any run folder was made


def test_adapter_whose_import_raises_is_reported_by_devices(tmp_path: Path) -> None:
    import json

    proc = hwbench(tmp_path, "devices", "--json", HWBENCH_TEST_ADAPTERS="1", HWBENCH_FAULT="importerror")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    faulty = {a["name"]: a for a in json.loads(proc.stdout)["adapters"]}["faulty"]
    assert faulty["available"] is False and "ImportError: libfaulty.so.1" in faulty["reason"]


# -- sweep files ---------------------------------------------------------------------------


def test_sweep_file_lists_every_problem(tmp_path: Path, add_model: Path) -> None:
    sweep = FIXTURES / "sweeps" / "many_problems.toml"
    proc = _profile(tmp_path, add_model, ["{model}", "--config", str(sweep)])
    assert_one_line_error(proc, f"hwbench: error: {sweep} has 18 problems:", more_lines=True)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 19 and all(line.startswith(f"  {sweep}: ") for line in lines[1:])
    for needle in ("batch_sizes[1]: expected a positive integer", "precisions: expected a non-empty array",
                   "threads: expected an integer", "measure.warmup_seconds: unknown key (did you mean 'warmup_s'?)"):
        assert needle in proc.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('models = ["m"]\nbatch_sizes = [1,\n', "is not valid TOML: "),
        ("batch_sizes = []\n", "batch_sizes: expected a non-empty array"),
        ("trial_timeout_s = 100000\n", "trial_timeout_s: expected a duration in seconds above 0 and up to one day"),
        ('adapters = ["my_pkg.adapters:Evil"]\n', "never from a path"),
        (None, "does not exist"),
        ('[adapter_options.torch]\ncompile_mode = "fast"\n', "adapter_options.torch.compile_mode: unknown torch compile mode 'fast'"),
        ('[adapter_options.openvino]\nnum_streams = 0\n', "adapter_options.openvino.num_streams: expected an integer from 1"),
        ("threads = 100000\n", "threads: expected an integer from 0 (runtime default) to"),
    ],
    ids=["not TOML", "empty list", "absurd value", "adapter as a path", "missing", "torch compile mode",
         "openvino streams", "threads above the cores"],
)
def test_sweep_file_single_problem(content: str | None, needle: str, tmp_path: Path, add_model: Path) -> None:
    sweep = tmp_path / "sweep.toml"
    if content is not None:
        sweep.write_text(content)
    proc = _profile(tmp_path, add_model, ["{model}", "--config", str(sweep)])
    assert_one_line_error(proc, needle)


# -- results folders -----------------------------------------------------------------------


def _truncate(results: Path) -> None:
    f = results / "run1" / "records.parquet"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _foreign(results: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2]}), results / "run1" / "records" / "other.parquet")


def _newer_schema(results: Path) -> None:
    t = pq.read_table(results / "run1" / "records.parquet")
    meta = dict(t.schema.metadata or {})
    meta[SCHEMA_VERSION_KEY] = b"99"
    pq.write_table(t.replace_schema_metadata(meta), results / "run1" / "records" / "from-the-future.parquet")


RESULTS_CASES = {
    "truncated Parquet": (_truncate, "is truncated or not a Parquet file"),
    "foreign Parquet": (_foreign, "is not an hwbench results file"),
    "newer schema": (_newer_schema, f"was written by a newer hwbench (schema 99, this one reads up to {SCHEMA_VERSION})"),
}


@pytest.mark.parametrize("case", sorted(RESULTS_CASES))
def test_results_folder_bad_files(case: str, results: Path, tmp_path: Path) -> None:
    damage, needle = RESULTS_CASES[case]
    damage(results)
    with pytest.raises(ResultsError) as info:
        load_records([results])
    assert needle in str(info.value)
    before = _digest(results)
    proc = hwbench(tmp_path, "frontier", str(results))
    assert_one_line_error(proc, needle)
    assert _digest(results) == before  # the command refused to read, and changed nothing


def test_half_written_fragment_left_by_a_kill_is_ignored(results: Path) -> None:
    """A write interrupted before its rename leaves only a temporary name, which loading skips."""
    good = results / "run1" / "records.parquet"
    (results / "run1" / "records" / ".t9.parquet.tmp").write_bytes(good.read_bytes()[:100])
    assert len(load_records([results])) == 2


@pytest.mark.parametrize(
    ("setup", "needle"),
    [("none", "is not a run folder (no manifest.json)"), ("corrupt", "manifest.json is unreadable")],
)
def test_resume_of_a_folder_that_is_not_a_run(setup: str, needle: str, results: Path, tmp_path: Path) -> None:
    run = results / "run1"
    if setup == "corrupt":
        (run / "manifest.json").write_text('{"run_id": "r1", "requested": ')
    target = run if setup == "corrupt" else tmp_path
    before = _digest(results)
    proc = hwbench(tmp_path, "profile", "--resume", str(target))
    assert_one_line_error(proc, needle)
    assert _digest(results) == before


def test_frontier_of_a_missing_folder(tmp_path: Path) -> None:
    assert_one_line_error(hwbench(tmp_path, "frontier", str(tmp_path / "nothing")), "does not exist")


# -- price files ---------------------------------------------------------------------------

PRICE_CASES = {
    "negative price": ('[instances."c7i.large"]\nprovider = "aws"\non_demand_usd_per_hour = -1.0\n'
                       'as_of = 2025-11-30\nsource = "test"\n', "is negative (-1.0)"),
    "missing price": ('[instances."my-box"]\nprovider = "aws"\nas_of = 2025-11-30\nsource = "test"\n',
                      "needs on_demand_usd_per_hour"),
    "spot above on-demand": ('[instances.x]\non_demand_usd_per_hour = 1.0\nspot_usd_per_hour = 2.0\n'
                             'as_of = 2025-11-30\nsource = "test"\n', "spot_usd_per_hour (2) is above on_demand_usd_per_hour (1)"),
    "date in the future": ('[instances.x]\non_demand_usd_per_hour = 1.0\nas_of = 2999-01-01\nsource = "test"\n',
                           "as_of 2999-01-01 is in the future"),
    "accelerator with count 0": ('[instances.x]\naccelerator = "T4"\naccelerator_count = 0\non_demand_usd_per_hour = 1.0\n'
                                 'as_of = 2025-11-30\nsource = "test"\n', "accelerator is 'T4' but accelerator_count is 0"),
    "infinite price": ('[instances.x]\non_demand_usd_per_hour = inf\nas_of = 2025-11-30\nsource = "test"\n',
                       "on_demand_usd_per_hour must be a number, got inf"),
}


@pytest.mark.parametrize("case", sorted(PRICE_CASES))
def test_price_file_bad_input(case: str, tmp_path: Path) -> None:
    content, needle = PRICE_CASES[case]
    (tmp_path / "prices.toml").write_text(content)
    assert_one_line_error(hwbench(tmp_path, "prices", "--prices", str(tmp_path / "prices.toml")), needle)


# -- the debug variable --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "exc"),
    [
        (["profile", "{model}", "--adapter", "nope"], "UsageError"),
        (["profile", "{tmp}/corrupt.onnx", "--adapter", "null"], "ModelError"),
        (["profile", "{model}", "--config", str(FIXTURES / "sweeps" / "many_problems.toml")], "SweepFileError"),
        (["profile", "{model}", "--adapter", "null", "--out", "{tmp}/file.txt/sub"], "UsageError"),
        (["profile", "--resume", "{tmp}"], "ResultsError"),
    ],
    ids=["usage", "model", "sweep file", "output folder", "results"],
)
def test_debug_variable_shows_the_traceback(argv: list[str], exc: str, tmp_path: Path, add_model: Path) -> None:
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 50)
    (tmp_path / "file.txt").write_text("a regular file")
    args = [a.format(tmp=tmp_path, model=add_model) for a in argv]
    proc = hwbench(tmp_path, *args, HWBENCH_DEBUG="1")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and exc in proc.stderr, proc.stderr
