"""Power meters: counter arithmetic on counter sequences, the estimate meter for real,
RAPL on a fake powercap tree, neuron-monitor report parsing, and NVML's absence here.

The counter sequences below are hand-made in the shape of real reads (no RAPL, NVML or
Neuron telemetry exists on the machines these tests were written on): RAPL package
counters in microjoules wrapping at max_energy_range_uj = 262143328850 (the range Intel
packages commonly report), NVML's millijoule counter, and power traces in watts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbench.host.accelerators import nvidia_problem
from hwbench.power import estimate, neuron_monitor, nvml, rapl

RAPL_RANGE_UJ = 262_143_328_850


# -- counter arithmetic -------------------------------------------------------------------------
def test_counter_delta_without_wrap() -> None:
    assert rapl.counter_delta(1_000, 4_500, RAPL_RANGE_UJ) == 3_500


def test_counter_delta_across_one_wrap() -> None:
    # 2 J before the wrap, 3 J after it
    assert rapl.counter_delta(RAPL_RANGE_UJ - 2_000_000, 3_000_000, RAPL_RANGE_UJ) == 5_000_000


def test_counter_going_backwards_without_a_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="backwards"):
        rapl.counter_delta(5_000, 4_000, None)


def test_energy_from_samples_with_a_wrap_in_the_middle() -> None:
    # a 10 s window at ~100 W, read every 2.5 s; the counter wraps between reads 2 and 3
    samples = [
        RAPL_RANGE_UJ - 510_000_000,
        RAPL_RANGE_UJ - 260_000_000,
        RAPL_RANGE_UJ - 10_000_000,
        240_000_000,
        490_000_000,
    ]
    assert rapl.energy_from_counter_samples(samples, RAPL_RANGE_UJ) == pytest.approx(1000.0)


def test_energy_from_samples_needs_two_reads() -> None:
    assert rapl.energy_from_counter_samples([123], RAPL_RANGE_UJ) == 0.0


def test_two_wraps_between_reads_are_undercounted_which_is_why_the_meter_guards() -> None:
    # one full lap plus 1 J cannot be told from 1 J: the meter samples every WRAP_GUARD_S
    assert rapl.energy_from_counter_samples([0, 1_000_000], RAPL_RANGE_UJ) == pytest.approx(1.0)
    assert rapl.WRAP_GUARD_S * 2_000 < RAPL_RANGE_UJ / 1e6  # even at 2 kW one guard period < one lap


def test_update_period_is_the_median_gap_between_changes() -> None:
    # polled every 0.25 ms, the counter steps every ~1 ms (one late step)
    times = [i * 0.00025 for i in range(21)]
    values = [0, 0, 0, 0, 61, 61, 61, 61, 122, 122, 122, 122, 122, 183, 183, 183, 183, 244, 244, 244, 244]
    assert rapl.counter_update_period_ms(times, values) == pytest.approx(1.0)


def test_update_period_unknown_without_two_changes() -> None:
    assert rapl.counter_update_period_ms([0.0, 0.1, 0.2], [5, 5, 6]) is None


def test_trapezoid_energy_of_a_power_trace() -> None:
    # 100 W for 1 s, ramp to 300 W over 1 s, 300 W for 1 s: 100 + 200 + 300 J
    assert nvml.trapezoid_energy_j([0.0, 1.0, 2.0, 3.0], [100.0, 100.0, 300.0, 300.0]) == pytest.approx(600.0)


def test_trapezoid_rejects_mismatched_traces() -> None:
    with pytest.raises(ValueError):
        nvml.trapezoid_energy_j([0.0, 1.0], [1.0])


@pytest.mark.parametrize(
    ("cc", "window"),
    [((7, 0), None), ((8, 0), None), ((8, 6), 1000.0), ((8, 9), 1000.0), ((9, 0), 1000.0), (None, None)],
)
def test_nvml_power_is_a_one_second_average_from_ampere_except_ga100(cc: tuple[int, int] | None, window: float | None) -> None:
    assert nvml.power_average_window_ms(cc) == window


def test_nvml_selector_follows_cuda_visible_devices() -> None:
    assert nvml.nvml_selector(0, None) == 0
    assert nvml.nvml_selector(1, "2,3") == 3
    assert nvml.nvml_selector(0, "GPU-1234-abcd") == "GPU-1234-abcd"
    with pytest.raises(ValueError):
        nvml.nvml_selector(2, "0,1")


# -- RAPL on a fake powercap tree ---------------------------------------------------------------
def _zone(root: Path, zone: str, name: str, energy_uj: int, max_range: int = RAPL_RANGE_UJ) -> Path:
    d = root / zone
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_rapl_counts_packages_and_dram_but_not_core_or_psys(tmp_path: Path) -> None:
    _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    _zone(tmp_path, "intel-rapl:0:0", "core", 10)
    _zone(tmp_path, "intel-rapl:0:1", "dram", 10)
    _zone(tmp_path, "intel-rapl:1", "psys", 10)
    assert [d.name for d in rapl.discover_domains(tmp_path)] == ["package-0", "dram"]


def test_rapl_meter_sums_domains_across_a_wrap(tmp_path: Path) -> None:
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", RAPL_RANGE_UJ - 1_000_000)
    dram = _zone(tmp_path, "intel-rapl:0:1", "dram", 5_000_000)
    meter = rapl.RaplMeter(rapl.discover_domains(tmp_path), guard_s=60.0)
    meter._period_ms, meter._period_measured = 1.0, True  # the fake counter never ticks by itself
    meter.begin()
    (pkg / "energy_uj").write_text("4000000\n")  # +5 J across the wrap
    (dram / "energy_uj").write_text("6500000\n")  # +1.5 J
    reading = meter.end()
    meter.close()
    assert reading is not None
    assert reading.energy_j == pytest.approx(6.5)
    assert reading.method == "rapl" and not reading.estimated
    assert "package-0+dram" in reading.note


def test_rapl_problem_when_powercap_is_missing(tmp_path: Path) -> None:
    assert "no " in (rapl.rapl_problem(tmp_path / "absent") or "")


def test_rapl_problem_reports_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _zone(tmp_path, "intel-rapl:0", "package-0", 10)

    def denied(self: rapl.RaplDomain) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rapl.RaplDomain, "read_uj", denied)
    reason = rapl.rapl_problem(tmp_path) or ""
    assert "permission denied" in reason and "root" in reason


# -- the TDP estimate, for real ------------------------------------------------------------------
def test_cpu_names_normalise_to_the_table_key() -> None:
    assert estimate.normalize_cpu_name("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz") == "intel xeon platinum 8480+"
    assert estimate.normalize_cpu_name("AMD EPYC 9654 96-Core Processor") == "amd epyc 9654"
    assert estimate.lookup_tdp("Intel(R) Xeon(R) Platinum 8480+").tdp_w == 350.0  # type: ignore[union-attr]
    assert estimate.lookup_tdp("Intel(R) Xeon(R) Platinum 8480") is None  # no '+': another SKU
    assert estimate.lookup_tdp("Intel(R) Xeon(R) Platinum 8488C") is None  # AWS custom: no vendor TDP


def test_every_table_entry_names_a_vendor_source() -> None:
    for entry in estimate.TDP_TABLE:
        assert entry.source.startswith(("Intel ARK", "AMD product page")) and "https://" in entry.source
        assert entry.tdp_w > 0 and entry.threads >= entry.cores > 0


def test_utilisation_from_two_cpu_times_snapshots() -> None:
    before = {"user": 100.0, "nice": 0.0, "system": 20.0, "idle": 500.0, "iowait": 5.0, "irq": 0.0,
              "softirq": 1.0, "steal": 0.0, "guest": 0.0, "guest_nice": 0.0}
    # 2 CPUs over 1 s: 1.2 s user, 0.3 s system, 0.4 s idle, 0.1 s stolen by the hypervisor
    after = dict(before, user=101.2, system=20.3, idle=500.4, steal=0.1)
    assert estimate.utilisation(before, after) == pytest.approx(1.5 / 2.0)


def test_utilisation_does_not_count_guest_time_twice() -> None:
    before = {"user": 0.0, "idle": 0.0, "guest": 0.0}
    after = {"user": 1.0, "idle": 1.0, "guest": 0.5}  # guest is already inside user
    assert estimate.utilisation(before, after) == pytest.approx(0.5)


def test_estimate_formula() -> None:
    assert estimate.estimate_energy_j(350.0, 2 / 112, 0.5, 10.0) == pytest.approx(31.25)


def test_tdp_basis_unknown_processor_gives_a_reason() -> None:
    reason = estimate.tdp_basis(None, cpu_name="Intel(R) Xeon(R) Processor")
    assert isinstance(reason, str) and "--tdp-w" in reason


def test_tdp_basis_from_the_table_scales_by_visible_threads() -> None:
    basis = estimate.tdp_basis(None, cpu_name="Intel(R) Xeon(R) Platinum 8480+", logical_cpus=2)
    assert isinstance(basis, estimate.TdpBasis)
    assert basis.tdp_w == 350.0 and basis.share == pytest.approx(2 / 112)
    assert "Intel ARK" in basis.source


def test_user_tdp_wins_and_is_labelled() -> None:
    basis = estimate.tdp_basis(45.0, cpu_name="Intel(R) Xeon(R) Platinum 8480+")
    assert isinstance(basis, estimate.TdpBasis) and basis.tdp_w == 45.0 and basis.share == 1.0
    assert "user-supplied" in basis.source
    assert isinstance(estimate.tdp_basis(-1.0), str)


def test_estimate_meter_runs_here_and_is_labelled_an_estimate() -> None:
    meter = estimate.EstimateTdpMeter(estimate.TdpBasis(tdp_w=40.0, share=1.0, source="--tdp-w (user-supplied)"))
    meter.begin()
    total = sum(i * i for i in range(300_000))  # keep a CPU busy for a moment
    reading = meter.end()
    assert total > 0 and reading is not None
    assert reading.method == "estimate-tdp" and reading.estimated
    assert reading.note.startswith("ESTIMATE") and "--tdp-w" in reading.note
    assert 0.0 <= reading.energy_j <= 40.0 * reading.duration_s + 1e-9
    assert reading.period_ms == estimate.tick_period_ms()


def test_estimate_meter_flags_a_window_shorter_than_ten_ticks() -> None:
    meter = estimate.EstimateTdpMeter(estimate.TdpBasis(tdp_w=40.0, share=1.0, source="test"))
    meter.begin()
    reading = meter.end()
    assert reading is not None and reading.too_short


def test_end_without_begin_reads_nothing() -> None:
    assert estimate.EstimateTdpMeter(estimate.TdpBasis(1.0, 1.0, "t")).end() is None


# -- neuron-monitor reports ----------------------------------------------------------------------
DOCUMENTED_REPORT = (
    '{"neuron_runtime_data": [], "system_data": {"neuron_hw_counters": {"period": 1.03, "neuron_devices": '
    '[{"neuron_device_index": 0, "mem_ecc_corrected": 0, "mem_ecc_uncorrected": 0, "sram_ecc_uncorrected": 0}], '
    '"error": ""}, "memory_info": {"period": 1.0, "memory_total_bytes": 1, "memory_used_bytes": 1, "error": ""}}, '
    '"instance_info": {"instance_type": "inf2.xlarge", "error": ""}, '
    '"neuron_hardware_info": {"neuron_device_count": 1, "neuroncore_per_device_count": 2, "error": ""}}'
)


def test_documented_report_parses_and_has_no_power() -> None:
    report = neuron_monitor.parse_report(DOCUMENTED_REPORT)
    assert report is not None
    assert neuron_monitor.hardware_info(report) == {"neuron_device_count": 1, "neuroncore_per_device_count": 2}
    assert neuron_monitor.device_power_w(report, 0) is None


def test_only_a_field_labelled_in_watts_is_read_as_power() -> None:
    report = {"system_data": {"device_power": {"period": 1.0, "error": "", "neuron_devices": [
        {"neuron_device_index": 0, "power_utilization": 55.0, "power_mw": 42_500},
        {"neuron_device_index": 1, "power_w": 40.0},
    ]}}}
    assert neuron_monitor.device_power_w(report, 0) == (42.5, 1.0, "system_data.device_power.power_mw")
    assert neuron_monitor.device_power_w(report, 1) == (40.0, 1.0, "system_data.device_power.power_w")
    assert neuron_monitor.device_power_w(report, 2) is None


def test_non_json_lines_are_skipped() -> None:
    assert neuron_monitor.parse_report("level=info msg=starting") is None
    assert neuron_monitor.parse_report("") is None


def test_energy_from_reports_counts_only_the_window() -> None:
    # reports every 1 s at 40 W then 60 W; window from 10.5 s to 12.5 s
    reports = [(10.0, 40.0, 1.0), (11.0, 40.0, 1.0), (12.0, 60.0, 1.0), (13.0, 60.0, 1.0)]
    energy, covered = neuron_monitor.energy_from_reports(reports, 10.5, 12.5)
    assert covered == pytest.approx(2.0)
    assert energy == pytest.approx(0.5 * 40 + 1.0 * 60 + 0.5 * 60)


def test_monitor_config_uses_documented_keys() -> None:
    cfg = neuron_monitor.monitor_config(1.0)
    assert cfg["period"] == "1s" and {"type": "neuron_hw_counters"} in cfg["system_metrics"]


def test_neuron_meter_unavailable_here_says_why() -> None:
    if neuron_monitor.neuron_tool("neuron-monitor") is not None:
        pytest.skip("neuron-monitor is installed here")
    assert "neuron-monitor not found" in (neuron_monitor.neuron_meter_problem() or "")


# -- NVML on this machine --------------------------------------------------------------------------
def test_nvml_meters_say_what_is_missing() -> None:
    problem = nvidia_problem(0)
    if problem is None:
        pytest.skip("an NVIDIA GPU is present")
    assert "NVML" in (nvml.counter_problem(0) or "") and "NVML" in (nvml.sampled_problem(0) or "")


@pytest.mark.gpu
def test_nvml_meters_on_a_real_gpu() -> None:
    problem = nvml.counter_problem(0)
    if problem:
        pytest.skip(problem)
    for meter in (nvml.NvmlCounterMeter(0), nvml.NvmlSampledMeter(0)):
        meter.begin()
        __import__("threading").Event().wait(1.5)
        reading = meter.end()
        meter.close()
        assert reading is not None and reading.energy_j > 0 and not reading.estimated
        assert 5.0 < (reading.avg_power_w or 0) < 2000.0  # an idle-to-busy board, not a unit slip


def test_nvml_sampled_meter_integrates_a_fake_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampling thread and trapezoid integration, with a device that always draws 100 W."""
    import time

    class FakeDevice:
        name, compute_capability = "Fake GPU", (9, 0)

        def __init__(self, cuda_index: int = 0) -> None:
            self.closed = False

        def power_w(self) -> float:
            return 100.0

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(nvml, "_NvmlDevice", FakeDevice)
    meter = nvml.NvmlSampledMeter(0, sample_period_s=0.01)
    meter.begin()
    time.sleep(0.3)
    reading = meter.end()
    meter.close()
    assert reading is not None and reading.method == "nvml-sampled" and not reading.estimated
    assert reading.duration_s >= 0.29
    assert reading.energy_j == pytest.approx(100.0 * reading.duration_s, rel=1e-9)
    assert meter.end() is None  # no window open
