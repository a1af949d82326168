"""The flag conventions (hwbench.cli.options): comma-separated lists, units in names with the old
spellings kept as noted aliases, choices and defaults in --help, examples under every command.

Behaviour is checked through the real entry point (`python -m hwbench`); the cheap paths
(a refusal before any measurement) keep these tests quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwbench.cli.options import rename_args, split_list
from hwbench.measure.settings import MeasureSettings, SweepConfig

COMMANDS = ("devices", "models", "profile", "frontier", "prices", "compare")


def hwbench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HWBENCH_DEBUG", "HWBENCH_PRICES")}
    env.update(HWBENCH_CACHE=str(cwd / "cache"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "hwbench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_rename_args_maps_old_spellings_and_leaves_the_rest() -> None:
    notes: list[str] = []
    out = rename_args(["m", "--timeout", "5", "--duration=2", "-b", "1", "--", "--timeout"],
                      {"--timeout": "--timeout-s", "--duration": "--duration-s"}, notes.append)
    assert out == ["m", "--timeout-s", "5", "--duration-s=2", "-b", "1", "--", "--timeout"]
    assert notes == ["hwbench: note: --timeout is deprecated; use --timeout-s",
                     "hwbench: note: --duration is deprecated; use --duration-s"]


def test_split_list_takes_one_comma_separated_value_or_a_repeated_flag() -> None:
    assert split_list(["a=1,b=2", " c=3 ,", ""]) == ["a=1", "b=2", "c=3"]
    assert split_list("x,y") == ["x", "y"] and split_list(None) == []


@pytest.mark.parametrize(("old", "new"), [("--timeout", "--timeout-s"), ("--duration", "--duration-s"),
                                          ("--max-duration", "--max-duration-s")])
def test_profile_old_flag_names_still_work_with_one_note(old: str, new: str, tmp_path: Path) -> None:
    proc = hwbench(tmp_path, "profile", "mlp-tiny", "--adapter", "null", old, "0", "--out", str(tmp_path / "out"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[0] == f"hwbench: note: {old} is deprecated; use {new}", proc.stderr
    assert lines[1].startswith(f"hwbench: error: {new}: expected a duration in seconds above 0"), proc.stderr
    assert len(lines) == 2 and not list(tmp_path.glob("out/*"))


@pytest.mark.parametrize("argv", [["--dim", "sequence=64,vocab=0"], ["--dim", "sequence=64", "--dim", "vocab=0"]])
def test_dim_is_comma_separated_and_the_repeated_form_still_adds(argv: list[str], tmp_path: Path) -> None:
    proc = hwbench(tmp_path, "profile", "mlp-tiny", "--adapter", "null", *argv, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "hwbench: error: --dim vocab: must be positive"


def test_prices_is_comma_separated(tmp_path: Path) -> None:
    for name, usd in (("a", 1.5), ("b", 2.5)):
        (tmp_path / f"{name}.toml").write_text(f'[instances."box-{name}"]\non_demand_usd_per_hour = {usd}\n'
                                               'as_of = 2026-01-01\nsource = "a test quote"\n')
    proc = hwbench(tmp_path, "prices", "--prices", f"{tmp_path / 'a.toml'},{tmp_path / 'b.toml'}", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [Path(f).name for f in doc["files"]] == ["a.toml", "b.toml"]
    by_name = {p["name"]: p["on_demand_usd_per_hour"] for p in doc["instances"]}
    assert by_name["box-a"] == 1.5 and by_name["box-b"] == 2.5


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_frontier_rate_must_be_finite_and_the_old_name_still_works(value: str, tmp_path: Path) -> None:
    proc = hwbench(tmp_path, "frontier", str(tmp_path), "--slo-p99-ms", "50", "--rate", value)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines == ["hwbench: note: --rate is deprecated; use --rate-rps",
                     f"hwbench: error: --rate-rps must be a finite rate above 0 requests/s, got {float(value):g}"]


def test_help_lists_choices_defaults_from_the_settings_and_examples(tmp_path: Path) -> None:
    profile = hwbench(tmp_path, "profile", "--help")
    assert profile.returncode == 0, profile.stderr
    text = " ".join(profile.stdout.split())  # click folds long lines
    m, s = MeasureSettings(), SweepConfig()
    assert f"(default {m.min_duration_s:g})" in text and f"(default {m.max_duration_s:g};" in text
    assert f"(default {s.trial_timeout_s:g})" in text and f"(default {','.join(s.precisions)})" in text
    assert "fp32,tf32,fp16,bf16,int8,fp8" in text and "single-stream,offline" in text.replace("single- stream", "single-stream")
    for old in ("--timeout ", "--duration ", "--max-duration "):
        assert old not in text  # the old spellings are hidden
    frontier = hwbench(tmp_path, "frontier", "--help")
    assert "<cost|throughput|energy>" in frontier.stdout and "--rate-rps" in frontier.stdout
    for command in COMMANDS:
        out = hwbench(tmp_path, command, "--help").stdout
        examples = [line for line in out.splitlines() if line.strip().startswith("hwbench ")]
        assert "Examples:" in out and len(examples) >= 2, (command, out)


def test_frontier_unknown_objective_is_refused_with_the_choices(tmp_path: Path) -> None:
    proc = hwbench(tmp_path, "frontier", str(tmp_path), "--objective", "speed")
    assert proc.returncode == 2 and "'speed' is not one of 'cost', 'throughput', 'energy'" in proc.stderr, proc.stderr


def test_cli_copies_of_library_constants_match() -> None:
    """The CLI keeps pandas and pydantic out of `--help`, so it names two constants again: they must agree."""
    from hwbench.analyse.frontier import OBJECTIVES
    from hwbench.cli.frontier import Objective
    from hwbench.cli.profile import MAX_PROCESSES
    from hwbench.measure import sweepfile

    assert tuple(o.value for o in Objective) == tuple(OBJECTIVES)
    assert MAX_PROCESSES == sweepfile.MAX_PROCESSES


def _complete(cwd: Path, words: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "_HWBENCH_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    code = "import sys; sys.argv[0] = 'hwbench'; from hwbench.cli import main; main()"  # as the console script
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_shell_completion_of_choices_and_list_items(tmp_path: Path) -> None:
    """Through main(), named `hwbench` as the console script is (click's completion variable follows the name)."""
    proc = _complete(tmp_path, "hwbench profile --precision fp32,b")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fp32,bf16"]
    objective = _complete(tmp_path, "hwbench frontier x --objective e")
    assert objective.stdout.split() == ["energy"], objective.stderr
    adapters = _complete(tmp_path, "hwbench profile --adapter null,").stdout.split()
    assert "null,ort-cpu" in adapters and "null,null" not in adapters
