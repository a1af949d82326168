"""Host activity: /proc/stat and /proc/self/stat parsed from fakes, the window's arithmetic, the probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwbench.host.activity import (
    ActivityProbe,
    Snapshot,
    activity_warnings,
    parse_proc_stat,
    parse_self_stat,
    read_governor,
    read_turbo,
    window,
)
from hwbench.measure.profiler import measure_single_stream
from hwbench.measure.settings import MeasureSettings

#                 user nice system idle iowait irq softirq steal guest guest_nice
STAT_BEGIN = "cpu  1000 10 300 8000 50 0 40 100 0 0\ncpu0 500 5 150 4000 25 0 20 50 0 0\nintr 1 2 3\n"
STAT_END = "cpu  1300 10 400 8400 50 0 50 190 7 0\ncpu0 650 5 200 4200 25 0 25 95 7 0\nintr 4 5 6\n"
# deltas: user 300, system 100, idle 400, softirq 10, steal 90 -> total 900, busy 410


def _self_stat(utime: int, stime: int, comm: str = "python3") -> str:
    return (f"4242 ({comm}) R 1 4242 4242 0 -1 4194304 100 0 0 0 {utime} {stime} 0 0 20 0 3 0 71766 "
            "3133440 363 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")


def _fake_root(tmp: Path, stat: str, self_stat: str) -> Path:
    (tmp / "proc/self").mkdir(parents=True, exist_ok=True)
    (tmp / "proc/stat").write_text(stat)
    (tmp / "proc/self/stat").write_text(self_stat)
    return tmp


def test_parse_proc_stat_reads_the_aggregate_line_only() -> None:
    cpu = parse_proc_stat(STAT_BEGIN)
    assert cpu == {"user": 1000, "nice": 10, "system": 300, "idle": 8000, "iowait": 50, "irq": 0, "softirq": 40,
                   "steal": 100}
    assert parse_proc_stat("cpu0 1 2 3 4\n") is None  # no aggregate line
    assert parse_proc_stat("cpu 1 2 x 4 5\n") is None
    assert parse_proc_stat("") is None
    assert parse_proc_stat("cpu 1 2 3 4\n")["steal"] == 0  # an old kernel without the steal field


def test_parse_self_stat_counts_fields_after_the_command_name() -> None:
    assert parse_self_stat(_self_stat(120, 30)) == 150
    assert parse_self_stat(_self_stat(7, 8, comm="a) (b c")) == 15  # a command name with ') (' and spaces
    assert parse_self_stat("garbage") is None
    assert parse_self_stat("1 (x) R 1 2") is None


def test_window_steal_and_other_cpu_are_shares_of_all_cpu_time(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, STAT_BEGIN, _self_stat(100, 50))
    clock = iter([10.0, 12.5])
    probe = ActivityProbe(root, clock=lambda: next(clock))
    probe.begin()
    (root / "proc/stat").write_text(STAT_END)
    (root / "proc/self/stat").write_text(_self_stat(250, 80))  # own: +180 ticks
    w = probe.end()
    assert w is not None
    assert w.total_ticks == 900 and w.window_s == pytest.approx(2.5)
    assert w.cpu_steal_pct == pytest.approx(100 * 90 / 900)
    assert w.own_cpu_pct == pytest.approx(100 * 180 / 900)
    assert w.other_cpu_pct == pytest.approx(100 * (410 - 180) / 900)
    assert w.governor is None and w.turbo is None  # no sysfs in the fake root


def test_counter_going_backwards_gives_none_not_a_crash() -> None:
    begin = Snapshot(parse_proc_stat(STAT_END), 300, 0.0)
    end = Snapshot(parse_proc_stat(STAT_BEGIN), 100, 1.0)  # every counter went down (a restored VM...)
    w = window(begin, end)
    assert w.cpu_steal_pct is None and w.other_cpu_pct is None and w.own_cpu_pct is None and w.total_ticks is None
    # only this process's counter went backwards: steal is still known, other CPU use is not
    w = window(Snapshot(parse_proc_stat(STAT_BEGIN), 300, 0.0), Snapshot(parse_proc_stat(STAT_END), 100, 1.0))
    assert w.cpu_steal_pct == pytest.approx(10.0) and w.other_cpu_pct is None
    # no time passed: no division by zero
    same = Snapshot(parse_proc_stat(STAT_BEGIN), 1, 0.0)
    assert window(same, same).cpu_steal_pct is None


def test_other_cpu_is_clamped_when_own_ticks_exceed_busy_ticks() -> None:
    # own and system counters are sampled separately: own may run a tick ahead
    w = window(Snapshot(parse_proc_stat(STAT_BEGIN), 0, 0.0), Snapshot(parse_proc_stat(STAT_END), 415, 1.0))
    assert w.other_cpu_pct == 0.0


def test_missing_files_give_none(tmp_path: Path) -> None:
    probe = ActivityProbe(tmp_path)  # nothing under it
    assert probe.end() is None  # end() without begin()
    probe.begin()
    w = probe.end()
    assert w is not None
    assert (w.cpu_steal_pct, w.other_cpu_pct, w.own_cpu_pct, w.governor, w.turbo) == (None, None, None, None, None)
    # /proc/stat present but /proc/self/stat missing: steal known, other CPU use not
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text(STAT_BEGIN)
    probe.begin()
    (tmp_path / "proc/stat").write_text(STAT_END)
    w = probe.end()
    assert w.cpu_steal_pct == pytest.approx(10.0) and w.other_cpu_pct is None


def test_governor_and_turbo_from_a_fake_sysfs(tmp_path: Path) -> None:
    cpu = tmp_path / "sys/devices/system/cpu"
    for i, gov in enumerate(["performance", "performance", "powersave"]):
        (cpu / f"cpu{i}/cpufreq").mkdir(parents=True)
        (cpu / f"cpu{i}/cpufreq/scaling_governor").write_text(gov + "\n")
    assert read_governor(tmp_path) == "performance x2, powersave x1"
    (cpu / "cpu2/cpufreq/scaling_governor").write_text("performance\n")
    assert read_governor(tmp_path) == "performance"
    assert read_turbo(tmp_path) is None
    (cpu / "cpufreq").mkdir()
    (cpu / "cpufreq/boost").write_text("1\n")
    assert read_turbo(tmp_path) == "on"
    (cpu / "intel_pstate").mkdir()
    (cpu / "intel_pstate/no_turbo").write_text("1\n")  # intel_pstate wins where both exist
    assert read_turbo(tmp_path) == "off"
    assert read_governor(tmp_path / "nowhere") is None


def test_warnings_only_at_or_above_the_thresholds() -> None:
    assert activity_warnings(None, None, 2.0, 10.0) == []
    assert activity_warnings(1.9, 9.9, 2.0, 10.0) == []
    w = activity_warnings(4.12, 23.0, 2.0, 10.0)
    assert w == ["noisy host: 4.1% of CPU time stolen by the hypervisor during the window",
                 "noisy host: other processes used 23.0% of the CPUs during the window"]


def test_real_probe_sees_this_process_burn_cpu() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat on this system")
    probe = ActivityProbe()
    probe.begin()
    start = sum(os.times()[:2])
    while sum(os.times()[:2]) - start < 0.2:  # 0.2 s of this process's CPU time, however busy the host is
        pass
    w = probe.end()
    assert w is not None and w.own_cpu_pct is not None and w.own_cpu_pct > 0
    for v in (w.cpu_steal_pct, w.other_cpu_pct, w.own_cpu_pct):
        assert 0.0 <= v <= 100.0


class _CountingProbe:
    """A probe that records when it is called relative to the timed calls."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def begin(self) -> None:
        self.events.append("begin")

    def end(self) -> str:
        self.events.append("end")
        return "window"


def test_profiler_snapshots_only_outside_the_timed_loop() -> None:
    probe = _CountingProbe()
    calls = []
    m = measure_single_stream(lambda: calls.append(probe.events.copy()),
                              MeasureSettings(warmup_s=0.0, warmup_min_iters=2, min_duration_s=0.0, min_iters=50),
                              activity=probe)  # type: ignore[arg-type]
    assert probe.events == ["begin", "end"] and m.activity == "window"
    assert calls[0] == [] and calls[1] == [] and all(c == ["begin"] for c in calls[2:])  # warm-up before begin
    assert len(calls) - 2 == m.completed


def test_profile_table_shows_warnings_as_footnotes_and_material_steal() -> None:
    from rich.console import Console

    from hwbench.cli.profile import render_summary
    from hwbench.results.schema import TrialRecord

    def row(batch: int, steal: float, warnings: list[str]) -> dict:
        rec = TrialRecord(run_id="r", trial_id=f"t{batch}", model="m", model_sha256="", adapter="null", device="cpu",
                          precision="fp32", batch_size=batch, valid=True, cpu_steal_pct=steal, warnings=warnings)
        return rec.to_row()

    noisy = "noisy host: 4.1% of CPU time stolen by the hypervisor during the window"
    console = Console(record=True, width=200)
    for item in render_summary([row(1, 4.1, [noisy]), row(2, 0.3, [])]):
        console.print(item)
    text = console.export_text()
    assert f"[1] {noisy}" in text and "steal 4%" in text
    lines = [line for line in text.splitlines() if line.startswith("│ null")]
    assert "1,steal 4%" in lines[0] and lines[1].rstrip("│ ").endswith("ok")
