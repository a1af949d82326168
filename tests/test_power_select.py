"""Meter selection order, idle power, and the record's power columns."""

from __future__ import annotations

import pytest

from hwbench.host.accelerators import nvidia_problem
from hwbench.power import select
from hwbench.power.base import EnergyReading, NullMeter, PowerMeter
from hwbench.power.estimate import tdp_basis
from hwbench.power.rapl import rapl_problem
from hwbench.results.schema import POWER_METHODS, TrialRecord

NO_RAPL = rapl_problem() is not None
CPU_UNKNOWN = isinstance(tdp_basis(None), str)  # neither in the TDP table by name nor by family


def reading(energy_j: float, duration_s: float, method: str = "rapl") -> EnergyReading:
    return EnergyReading(energy_j=energy_j, duration_s=duration_s, method=method, period_ms=1.0,
                         estimated=method == "estimate-tdp", note=f"{method} test")


def test_documented_order() -> None:
    assert select.ORDER["cuda"] == ("nvml-counter", "nvml-sampled")
    assert select.ORDER["cpu"] == ("rapl", "estimate-tdp")
    assert select.ORDER["neuron"] == ("neuron",)
    assert all(m in POWER_METHODS for order in select.ORDER.values() for m in order)


def test_available_meters_lists_every_method_with_a_reason() -> None:
    rows = select.available_meters("cpu")
    assert [m for m, _ in rows] == ["rapl", "estimate-tdp"]
    if NO_RAPL:
        assert "powercap" in rows[0][1] or "RAPL" in rows[0][1] or "permission" in rows[0][1]


@pytest.mark.skipif(not (NO_RAPL and CPU_UNKNOWN), reason="this machine has RAPL or a CPU in the TDP table (by name or family)")
def test_cpu_without_counter_or_known_tdp_records_none_and_says_why() -> None:
    choice = select.select_meter("cpu")
    assert isinstance(choice.meter, NullMeter) and choice.method == "none"
    assert "rapl:" in choice.reason and "--tdp-w" in choice.reason


@pytest.mark.skipif(not NO_RAPL, reason="this machine has readable RAPL counters")
def test_cpu_with_tdp_w_ends_at_the_estimate_and_says_rapl_was_missing() -> None:
    choice = select.select_meter("cpu", tdp_w=60.0)
    assert choice.method == "estimate-tdp" and choice.meter.estimated
    assert choice.tried and choice.tried[0][0] == "rapl"
    idle = select.measure_idle_power(choice.meter, 0.2)
    assert idle is not None and idle.method == "estimate-tdp" and idle.estimated
    assert 0.0 <= (idle.avg_power_w or 0.0) <= 60.0 + 1e-9


def test_cuda_without_a_gpu_has_no_meter_and_names_nvml() -> None:
    if nvidia_problem(0) is None:
        pytest.skip("an NVIDIA GPU is present")
    choice = select.select_meter("cuda")
    assert choice.method == "none" and "NVML" in choice.reason


def test_unknown_device_kind_gets_the_null_meter() -> None:
    choice = select.select_meter("npu")
    assert isinstance(choice.meter, NullMeter) and "npu" in choice.reason
    assert select.available_meters("npu") == []


def test_a_meter_that_fails_to_build_falls_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(method: str, index: int, tdp_w: float | None):  # type: ignore[no-untyped-def]
        def build() -> PowerMeter:
            raise RuntimeError(f"{method} exploded")

        return (lambda: None), build

    monkeypatch.setattr(select, "_candidate", broken)
    choice = select.select_meter("cuda")
    assert choice.method == "none"
    assert [m for m, _ in choice.tried] == ["nvml-counter", "nvml-sampled"]
    assert "exploded" in choice.reason


class _FixedMeter(PowerMeter):
    """A meter that reports a constant power, to test idle measurement without hardware."""

    method = "rapl"

    def __init__(self, watts: float) -> None:
        self.watts = watts
        self.t0 = 0.0

    def begin(self) -> None:
        import time

        self.t0 = time.perf_counter()

    def end(self) -> EnergyReading | None:
        import time

        d = time.perf_counter() - self.t0
        return reading(self.watts * d, d)


def test_measure_idle_power_waits_and_reads() -> None:
    idle = select.measure_idle_power(_FixedMeter(30.0), 0.2)
    assert idle is not None and idle.duration_s >= 0.2
    assert idle.avg_power_w == pytest.approx(30.0)


def test_idle_power_is_not_measured_without_a_meter_or_time() -> None:
    assert select.measure_idle_power(NullMeter(), 1.0) is None
    assert select.measure_idle_power(_FixedMeter(30.0), 0.0) is None


def test_energy_above_idle() -> None:
    # 120 J in 2 s with 35 W idle: 50 J above idle
    assert select.energy_above_idle_j(120.0, 2.0, 35.0) == pytest.approx(50.0)
    assert select.energy_above_idle_j(120.0, 2.0, None) is None
    # noise can put a trial below idle: reported as is, not clipped
    assert select.energy_above_idle_j(60.0, 2.0, 35.0) == pytest.approx(-10.0)


def test_energy_columns_per_inference_and_idle() -> None:
    cols = select.energy_columns(reading(120.0, 2.0), inferences=400, idle=reading(35.0, 1.0))
    assert cols["energy_j_per_inference"] == pytest.approx(0.3)
    assert cols["avg_power_w"] == pytest.approx(60.0)
    assert cols["idle_power_w"] == pytest.approx(35.0)
    assert cols["energy_above_idle_j_per_inference"] == pytest.approx(50.0 / 400)
    assert cols["power_method"] == "rapl" and cols["power_period_ms"] == 1.0
    TrialRecord(run_id="r", trial_id="t", model="m", model_sha256="s", adapter="a", device="d",
                precision="fp32", batch_size=1, **cols)  # the keys are the record's columns


def test_estimated_idle_is_never_subtracted_from_a_measurement() -> None:
    cols = select.energy_columns(reading(120.0, 2.0, "rapl"), inferences=10, idle=reading(70.0, 1.0, "estimate-tdp"))
    assert cols["idle_power_w"] is None and cols["energy_above_idle_j_per_inference"] is None
    assert cols["energy_j_per_inference"] == pytest.approx(12.0)


def test_no_reading_gives_method_none() -> None:
    cols = select.energy_columns(None, inferences=10)
    assert cols["power_method"] == "none" and cols["energy_j_per_inference"] is None


class _EntryPoint:
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value


class PluginMeter(_FixedMeter):
    """A third-party meter for OpenVINO GPUs, registered through the entry-point group hwbench.meters."""

    method = "plugin-gpu"
    device_kinds = ("gpu",)
    opened: list[int] = []

    @classmethod
    def open(cls, index: int, tdp_w: float | None) -> PowerMeter:
        cls.opened.append(index)
        return cls(12.0)


def test_meters_plug_in_through_entry_points_and_cannot_shadow_built_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [_EntryPoint("plugin-gpu", f"{__name__}:PluginMeter"), _EntryPoint("rapl", f"{__name__}:PluginMeter")]
    monkeypatch.setattr(select, "_entry_points", lambda: eps)
    table = select.registry()
    assert table["rapl"] == select.BUILTIN["rapl"]  # the built-in wins
    assert table["plugin-gpu"] == f"{__name__}:PluginMeter"
    assert select.order("gpu") == ("plugin-gpu",) and select.order("cpu") == ("rapl", "estimate-tdp")
    choice = select.select_meter("gpu", 1)
    assert choice.method == "plugin-gpu" and isinstance(choice.meter, PluginMeter) and PluginMeter.opened == [1]


def test_every_built_in_meter_is_a_registered_power_meter() -> None:
    for name in select.BUILTIN:
        assert issubclass(select.meter_class(name), PowerMeter)
    with pytest.raises(ValueError, match="unknown power method"):
        select.meter_class("no-such-meter")
