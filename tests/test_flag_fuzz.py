"""Fuzz the `hwbench profile` flag parser through hwbench.cli.main() (issue 16).

Random flags with hostile values (nan, inf, huge and negative numbers, blanks, commas, control
and non-ASCII characters, paths that are not there) never produce a traceback or an internal
error, never hang past a per-example alarm, and never exit 0 when a trial failed. The sweep
itself is replaced by a fake runner whose trial outcomes hypothesis draws too, so a flag set
that validates costs nothing; everything from argv to the exit code is the real code.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hwbench.measure import runner as runner_module  # noqa: E402
from hwbench.results.schema import records_table  # noqa: E402
from test_cli_analysis import record  # noqa: E402

ALARM_S = 10
HOSTILE = ["nan", "inf", "-inf", "-1", "0", "1", "2", "0.5", "1e309", "-0", "99999999999999999999", "", " ", ",",
           "1,", ",1", "1,,2", "x", "8x", "a=1", "a=", "=1", "a=1,a=2", "sequence=0", "é", "\t", "1_000", "0x10",
           "fp32", "fp64", "offline", "null", "faulty", "nope", "../x", "/proc/x", "c7i.large", "auto"]
VALUE = st.one_of(st.sampled_from(HOSTILE), st.integers(-10**6, 10**6).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=12))
FLAGS = ["--adapter", "--batch", "--precision", "--scenario", "--duration-s", "--min-iters", "--max-duration-s",
         "--ci-target", "--instance", "--usd-per-hour", "--price-note", "--threads", "--device", "--concurrency",
         "--dim", "--timeout-s", "--tdp-w", "--processes", "--config", "--resume", "--timeout", "--duration"]
VALID = {"--adapter": "null", "--batch": "1,2", "--precision": "fp32", "--scenario": "offline", "--duration-s": "0.5",
         "--min-iters": "10", "--max-duration-s": "5", "--ci-target": "0.05", "--instance": "c7i.large",
         "--usd-per-hour": "1.5", "--threads": "1", "--device": "cpu", "--concurrency": "2", "--dim": "sequence=8",
         "--timeout-s": "60", "--tdp-w": "100", "--processes": "2"}
SWITCHES = ["--quick", "--no-accuracy", "--allow-emulated", "--retry-errors", "--json", "--yes"]


class _Hang(Exception):
    pass


class FakeRunner:
    """Stands in for the sweep: every planned trial 'ran' with the outcome drawn for this example."""

    statuses: list[str] = ["ok"]

    def __init__(self, config: Any, out_dir: Path, **kwargs: Any) -> None:
        self.config, self.out_dir = config, Path(out_dir)

    def run(self) -> Any:
        recs = [record("fuzz", i, status=s, valid=s == "ok", error=None if s == "ok" else f"drawn {s}")
                for i, s in enumerate(self.statuses)]
        return runner_module.SweepResult(self.out_dir / "fuzz", records_table(recs).to_pandas())


def _main(argv: list[str]) -> tuple[int, str, str]:
    from hwbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = ["hwbench", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def fake_sweep(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    mp.setattr(runner_module, "SweepRunner", FakeRunner)
    mp.delenv("HWBENCH_DEBUG", raising=False)
    mp.setenv("HWBENCH_CACHE", str(tmp_path_factory.mktemp("fuzzcache")))
    yield tmp_path_factory.mktemp("fuzz")
    mp.undo()


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang(f"no exit within {ALARM_S} s")


PAIR = st.one_of(st.tuples(st.sampled_from(FLAGS), VALUE),  # hostile
                 st.sampled_from(sorted(VALID.items())))  # valid: so that many examples get past the checks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(PAIR, max_size=4),
       switches=st.lists(st.sampled_from(SWITCHES), max_size=3, unique=True),
       model=st.one_of(st.none(), st.just("mlp-tiny"), st.sampled_from(["nope.onnx", "", "a,b", "resnet5000"]),
                       st.text(max_size=8)),
       statuses=st.lists(st.sampled_from(["ok", "error", "unsupported"]), min_size=1, max_size=4))
def test_the_profile_parser_never_crashes_hangs_or_hides_a_failed_trial(fake_sweep: Path, pairs: list[tuple[str, str]],
                                                                      switches: list[str], model: str | None,
                                                                      statuses: list[str]) -> None:
    argv = ["profile"] + ([] if model is None else [model])
    for flag, value in pairs:
        argv += [flag, value]
    argv += [*switches, "--out", str(fake_sweep / "out")]
    FakeRunner.statuses = statuses
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ALARM_S)
    try:
        code, out, err = _main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "Traceback" not in out + err and "internal error" not in err, (argv, err)
    assert code in (0, 2, 3, 4), (argv, code, err)
    errors = [line for line in err.splitlines() if line.startswith("hwbench: error:")]
    if code == 0:
        assert "error" not in statuses, (argv, statuses)  # a failed trial never exits 0
        assert not errors, (argv, err)
    else:
        assert len(errors) == 1, (argv, err)  # one line says why
    if code == 3:
        assert "error" in statuses, (argv, statuses)
