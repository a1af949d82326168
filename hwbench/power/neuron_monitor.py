"""Neuron device energy from neuron-monitor's JSON report stream (method 'neuron').

Fields relied on, from the Neuron Monitor User Guide (neuron-monitor, aws-neuronx-tools):
- neuron-monitor -c CONFIG prints one complete JSON report per line on stdout whenever a
  metric group updates; CONFIG is JSON with a root "period" ("1s") and a "system_metrics"
  list of {"type": GROUP}.
- Every report carries "neuron_hardware_info" with "neuron_device_count",
  "neuroncore_per_device_count" and "error"; system groups live under "system_data",
  each with "period" (the actual captured period, in seconds) and "error".
- Per-device entries in system groups are objects with "neuron_device_index".

What is NOT there: the documented groups (neuroncore_counters, execution_stats, memory_used,
neuron_runtime_vcpu_usage, neuron_hw_counters, vcpu_usage, memory_info) carry no power
figure. The driver's sysfs file neuron_device/neuronN/stats/power/utilization is a
percentage of an unpublished maximum, refreshed every 60 s, so hwbench does not turn it
into watts. This meter therefore accepts only a per-device field that the report itself
labels as power in watts (a key containing "power" ending in "_w" or "_watts", or "_mw"
for milliwatts, inside a system group whose name contains "power"). Its probe runs
neuron-monitor once and reports it unavailable when no such field appears, which is the
case for every neuron-monitor release documented at the time of writing.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from hwbench.host.accelerators import neuron_problem, neuron_tool
from hwbench.power.base import EnergyReading, PowerMeter

REPORT_PERIOD_S = 1.0
SYSTEM_GROUPS: tuple[str, ...] = ("neuron_hw_counters", "vcpu_usage", "memory_info")


def monitor_config(period_s: float = REPORT_PERIOD_S) -> dict[str, Any]:
    """The neuron-monitor configuration hwbench runs with."""
    return {"period": f"{period_s:g}s", "system_metrics": [{"type": g} for g in SYSTEM_GROUPS]}


def parse_report(line: str) -> dict[str, Any] | None:
    """One report from one line of neuron-monitor's stdout; None for blank or non-JSON lines."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        report = json.loads(line)
    except json.JSONDecodeError:
        return None
    return report if isinstance(report, dict) else None


def hardware_info(report: dict[str, Any]) -> dict[str, int]:
    """Device and NeuronCore counts from the always-present neuron_hardware_info object."""
    info = report.get("neuron_hardware_info") or {}
    return {
        k: int(info[k]) for k in ("neuron_device_count", "neuroncore_per_device_count") if isinstance(info.get(k), int)
    }


def _watts(key: str, value: Any) -> float | None:
    k = key.lower()
    if "power" not in k or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if k.endswith("_mw"):
        return float(value) / 1000.0
    if k.endswith("_w") or k.endswith("_watts"):
        return float(value)
    return None


def device_power_w(report: dict[str, Any], device_index: int) -> tuple[float, float, str] | None:
    """(watts, averaging period in s, field) for one device if the report labels its power in watts."""
    for group_name, group in (report.get("system_data") or {}).items():
        if "power" not in group_name.lower() or not isinstance(group, dict) or group.get("error"):
            continue
        period = group.get("period")
        for entries in group.values():
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict) or entry.get("neuron_device_index") != device_index:
                    continue
                for key, value in entry.items():
                    w = _watts(key, value)
                    if w is not None and isinstance(period, (int, float)) and period > 0:
                        return w, float(period), f"system_data.{group_name}.{key}"
    return None


def energy_from_reports(reports: Sequence[tuple[float, float, float]], t0: float, t1: float) -> tuple[float, float]:
    """(energy J, seconds covered) in [t0, t1] from (arrival time, watts, period s) reports.

    A report arriving at t with period p says the device averaged `watts` over [t - p, t];
    each contributes watts x the overlap of that interval with the window.
    """
    energy = covered = 0.0
    for t, watts, period in reports:
        overlap = max(0.0, min(t, t1) - max(t - period, t0))
        energy += watts * overlap
        covered += overlap
    return energy, covered


class NeuronMonitorMeter(PowerMeter):
    """Device power from a running neuron-monitor, integrated over the window."""

    method = "neuron"
    estimated = False

    @classmethod
    def problem(cls, index: int, tdp_w: float | None) -> str | None:
        return neuron_meter_problem(index)

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> PowerMeter:
        return cls(index)

    def __init__(self, device_index: int = 0, period_s: float = REPORT_PERIOD_S) -> None:
        tool = neuron_tool("neuron-monitor")
        if tool is None:
            raise FileNotFoundError("neuron-monitor not found")
        self.device_index = device_index
        self._period_s = period_s
        fd, self._config_path = tempfile.mkstemp(prefix="hwbench-neuron-monitor-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(monitor_config(period_s), f)
        self._proc = subprocess.Popen(
            [tool, "-c", self._config_path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._reports: list[tuple[float, float, float]] = []
        self._field = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="hwbench-neuron-monitor", daemon=True)
        self._reader.start()
        self._t0: float | None = None

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:  # blocks on the pipe: no polling
            report = parse_report(line)
            found = device_power_w(report, self.device_index) if report else None
            if found:
                with self._lock:
                    self._reports.append((time.perf_counter(), found[0], found[1]))
                    self._field = found[2]

    @property
    def period_ms(self) -> float | None:
        return self._period_s * 1000.0

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def end(self) -> EnergyReading | None:
        if self._t0 is None:
            return None
        t1 = time.perf_counter()
        # the report covering the window's end arrives up to one period later
        threading.Event().wait(self._period_s * 1.5)
        with self._lock:
            reports = list(self._reports)
        t0, self._t0 = self._t0, None
        energy, covered = energy_from_reports(reports, t0, t1)
        duration = t1 - t0
        if covered <= 0:
            return None
        return EnergyReading(
            energy_j=energy * duration / covered,
            duration_s=duration,
            method=self.method,
            period_ms=self.period_ms,
            estimated=False,
            note=f"neuron-monitor {self._field}, device {self.device_index}, {covered / duration:.0%} of window covered",
            too_short=duration < 10 * self._period_s,
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reader.join(timeout=5)
        try:
            os.unlink(self._config_path)
        except OSError:
            pass


def neuron_meter_problem(device_index: int = 0, timeout_s: float = 5.0) -> str | None:
    """Why the 'neuron' meter cannot measure here, or None when neuron-monitor reports watts."""
    tool = neuron_tool("neuron-monitor")
    if tool is None:
        return "neuron-monitor not found (install aws-neuronx-tools)"
    problem = neuron_problem()
    if problem:
        return problem
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(monitor_config(), f)
    try:
        proc = subprocess.Popen([tool, "-c", f.name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = _first_line(proc, timeout_s)
        finally:
            proc.terminate()
            proc.wait(timeout=5)
    finally:
        os.unlink(f.name)
    report = parse_report(line or "")
    if report is None:
        return f"neuron-monitor printed no report within {timeout_s:g} s"
    if device_power_w(report, device_index) is None:
        groups = ", ".join(sorted((report.get("system_data") or {}).keys())) or "none"
        return f"neuron-monitor's report has no power in watts (system groups: {groups})"
    return None


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str | None:
    """The first stdout line of `proc`, read in a helper thread so that a silent tool cannot hang us."""
    box: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        box.append(proc.stdout.readline())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout_s)
    return box[0] if box else None
