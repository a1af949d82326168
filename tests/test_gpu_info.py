"""Accelerator listing: neuron-ls parsing, summaries, and what this machine reports."""

from __future__ import annotations

import json

import pytest

from hwbench.host import accelerators as gpu_info

# In the shape `neuron-ls --json-output` prints (one object per device; memory_size in bytes,
# numa_node as a string, connected_to null on a single-device instance). Values made up.
NEURON_LS = json.dumps([
    {"neuron_device": 0, "bdf": "0000:00:1e.0", "cpu_affinity": "0-7", "numa_node": "-1", "connected_to": [1],
     "nc_count": 2, "memory_size": 34359738368, "neuroncore_ids": [0, 1], "neuron_processes": []},
    {"neuron_device": 1, "bdf": "0000:00:1f.0", "cpu_affinity": "0-7", "numa_node": "-1", "connected_to": [0],
     "nc_count": 2, "memory_size": 34359738368, "neuroncore_ids": [2, 3], "neuron_processes": []},
])


def test_parse_neuron_ls() -> None:
    devices = gpu_info.parse_neuron_ls(NEURON_LS)
    assert [d.index for d in devices] == [0, 1]
    assert all(d.kind == "neuron" and d.cores == 2 and d.memory_mb == 32 * 1024 for d in devices)


def test_parse_neuron_ls_rejects_other_shapes() -> None:
    with pytest.raises(ValueError):
        gpu_info.parse_neuron_ls('{"neuron_device": 0}')


def test_summarize_counts_identical_devices() -> None:
    a = gpu_info.AcceleratorInfo("cuda", 0, "NVIDIA H100 80GB HBM3", 81559.0, "570.86", "9.0")
    b = gpu_info.AcceleratorInfo("cuda", 1, "NVIDIA H100 80GB HBM3", 81559.0, "570.86", "9.0")
    c = gpu_info.AcceleratorInfo("neuron", 0, "AWS Neuron device", 32768.0, cores=2)
    rows = gpu_info.summarize([a, b, c])
    assert [(r["name"], r["count"]) for r in rows] == [("NVIDIA H100 80GB HBM3", 2), ("AWS Neuron device", 1)]
    assert rows[0]["driver"] == "570.86" and rows[0]["compute_capability"] == "9.0"
    assert rows[1]["cores_per_device"] == 2


def test_this_machine_reports_what_it_has() -> None:
    found = gpu_info.list_accelerators()
    if gpu_info.nvidia_problem(0) is None or gpu_info.neuron_problem() is None:
        assert found, "a device is usable but none was listed"
    else:
        assert found == []


def test_missing_driver_is_named() -> None:
    problem = gpu_info.nvidia_problem(0)
    if problem is None:
        pytest.skip("an NVIDIA GPU is present")
    assert "libcuda.so.1" in problem or "NVML" in problem


def test_missing_neuron_device_is_named() -> None:
    problem = gpu_info.neuron_problem()
    if problem is None:
        pytest.skip("a Neuron device is present")
    assert "/dev/neuron" in problem


def test_gpu_memory_of_a_process_is_unknown_not_zero_without_nvml() -> None:
    if gpu_info.nvml_problem(0) is None:
        pytest.skip("NVML works here")
    assert gpu_info.process_gpu_memory_mb(1) is None


@pytest.mark.gpu
def test_real_gpus_are_listed_with_memory_and_driver() -> None:
    problem = gpu_info.nvidia_problem(0)
    if problem:
        pytest.skip(problem)
    gpus = gpu_info.nvidia_gpus()
    assert gpus and all(g.memory_mb and g.driver and g.compute_capability for g in gpus)
