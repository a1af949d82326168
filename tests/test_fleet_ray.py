"""hwbench fleet on a real local multi-node Ray cluster (ray.cluster_utils.Cluster), one per module.

Fake node groups are custom resources (group_a on two nodes, group_b on one). The store is a
file:// folder or a moto S3 server on 127.0.0.1 (an emulator; started before the cluster so that
its fake keys reach every node, as a real node's provider chain would). Tiny model, null adapter,
tiny durations. The node-loss test removes a node mid-sweep and re-runs to resume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the fleet tests need the fleet extra (pip install 'hwbench[fleet]')")
pytest.importorskip("moto", reason="the fleet tests need the fleet extra (pip install 'hwbench[fleet]')")

from hwbench.fleet.driver import run_fleet  # noqa: E402
from hwbench.fleet.spec import parse_fleet  # noqa: E402
from hwbench.results.store import load_records  # noqa: E402
from hwbench.testing.s3emu import MotoServer  # noqa: E402

SWEEP = {"models": ["mlp-tiny"], "adapters": ["null"], "precisions": ["fp32"], "batch_sizes": [1, 2],
         "idle_power_s": 0, "trial_timeout_s": 60, "accuracy": {"enabled": False},
         "measure": {"warmup_s": 0.02, "warmup_min_iters": 1, "min_duration_s": 0.05, "max_duration_s": 0.2,
                     "min_iters": 5}}
OBJ = 80 * 2**20


def fleet(name: str, groups: dict[str, str], batches: list[int] | None = None, timeout_s: float = 20) -> Any:
    sweep = {**SWEEP, "batch_sizes": batches or SWEEP["batch_sizes"]}
    return parse_fleet({"name": name, "node_timeout_s": timeout_s, "sweeps": {"s": sweep},
                        "groups": {g: {"resource": r, "sweep": "s", "instance_type": f"{g}.large"}
                                   for g, r in groups.items()}})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An S3 emulator, then a head (no CPU) plus three nodes: group_a x2, group_b x1."""
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    cache = tmp_path_factory.mktemp("fleet-cache")
    raytmp = tempfile.mkdtemp(prefix="hwray", dir="/tmp")
    with MotoServer() as s3:
        os.environ.update(s3.env())
        os.environ.update({"HWBENCH_CACHE": str(cache), "RAY_TMPDIR": raytmp})
        s3.create_bucket("fleet")
        from hwbench.models import resolve

        resolve("mlp-tiny", cache_dir=cache)  # built once here; the nodes read it from the cache
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                "object_store_memory": OBJ})
        nodes = {"a1": cluster.add_node(num_cpus=1, resources={"group_a": 1}, object_store_memory=OBJ),
                 "a2": cluster.add_node(num_cpus=1, resources={"group_a": 1}, object_store_memory=OBJ),
                 "b1": cluster.add_node(num_cpus=1, resources={"group_b": 1}, object_store_memory=OBJ)}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            yield {"cluster": cluster, "nodes": nodes, "s3": s3}
        finally:
            ray.shutdown()
            cluster.shutdown()
            os.environ.clear()
            os.environ.update(saved)
            shutil.rmtree(raytmp, ignore_errors=True)


def test_two_groups_end_to_end_into_s3_and_a_rerun_adds_nothing(env: dict[str, Any]) -> None:
    f = fleet("e2e", {"a": "group_a", "b": "group_b"})
    res = run_fleet(f, "s3://fleet/runs")
    assert res.complete, (res.missing, [o.error for o in res.outcomes])
    assert [(o.job.group, o.job.index) for o in res.outcomes] == [("a", 0), ("b", 0)]
    df = load_records("s3://fleet/runs")
    assert sorted(df.run_id.unique()) == ["e2e-a-0", "e2e-b-0"]
    assert len(df) == 4 and (df.status == "ok").all()
    assert set(df[df.run_id == "e2e-a-0"].instance_type) == {"a.large"}
    info = json.loads(env["s3"].filesystem().open_input_stream("fleet/runs/e2e-b-0/fleet.json").read())
    assert info["attempts"][-1]["ray_node_id"] == res.outcomes[1].job.node_id and info["resource"] == "group_b"
    again = run_fleet(f, "s3://fleet/runs")
    assert [o.summary["measured_now"] for o in again.outcomes] == [0, 0]
    assert all(o.summary["resumed"] for o in again.outcomes)
    assert len(load_records("s3://fleet/runs")) == 4


def test_a_group_without_a_node_is_reported_by_its_resource(env: dict[str, Any], tmp_path: Path) -> None:
    f = fleet("ghost", {"a": "group_a", "gpu": "accelerator_type:A10G"}, batches=[1])
    t0 = time.monotonic()
    res = run_fleet(f, f"file://{tmp_path}", node_timeout_s=1.0)
    assert time.monotonic() - t0 < 60
    assert set(res.missing) == {"gpu"} and "accelerator_type:A10G" in res.missing["gpu"]
    assert "group_a" in res.missing["gpu"]  # says what the cluster offers instead
    assert not res.complete and [o.job.group for o in res.outcomes] == ["a"] and res.outcomes[0].error is None


def test_all_nodes_runs_every_node_of_a_group(env: dict[str, Any], tmp_path: Path) -> None:
    res = run_fleet(fleet("spread", {"a": "group_a"}, batches=[1]), str(tmp_path), all_nodes=True)
    assert res.complete
    assert [o.job.run_id for o in res.outcomes] == ["spread-a-0", "spread-a-1"]
    assert len({o.job.node_id for o in res.outcomes}) == 2
    assert len(load_records([tmp_path])) == 2


def test_cli_end_to_end_with_cluster_auto(env: dict[str, Any], tmp_path: Path) -> None:
    ff = tmp_path / "fleet.toml"
    ff.write_text(
        'name = "cli"\nnode_timeout_s = 20\n[sweeps.s]\nmodels = ["mlp-tiny"]\nadapters = ["null"]\n'
        'precisions = ["fp32"]\nbatch_sizes = [1]\nidle_power_s = 0\naccuracy = { enabled = false }\n'
        'measure = { warmup_s = 0.02, min_duration_s = 0.05, max_duration_s = 0.2, min_iters = 5 }\n'
        '[groups.b]\nresource = "group_b"\ninstance_type = "m7i.large"\nsweep = "s"\n')
    res = subprocess.run([sys.executable, "-m", "hwbench", "fleet", "profile", str(ff), "--cluster", "auto",
                          "--store", f"file://{tmp_path}/store"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RAY_ADDRESS": env["cluster"].address, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "combined results" in res.stdout and "m7i.large" in res.stdout
    assert len(load_records(f"file://{tmp_path}/store")) == 1


def _stored(store: Path, run: str) -> int:
    folder = store / run / "records"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def test_a_node_lost_mid_sweep_loses_only_unfinished_trials_and_a_rerun_resumes(env: dict[str, Any], tmp_path: Path) -> None:
    cluster, nodes = env["cluster"], env["nodes"]
    f = fleet("lost", {"b": "group_b"}, batches=[1, 2, 3, 4, 5, 6])
    out: dict[str, Any] = {}
    th = threading.Thread(target=lambda: out.update(res=run_fleet(f, str(tmp_path))))
    th.start()
    deadline = time.monotonic() + 60
    while _stored(tmp_path, "lost-b-0") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stored(tmp_path, "lost-b-0") >= 2, "no trial reached the store in time"
    cluster.remove_node(nodes.pop("b1"))
    th.join(60)
    assert not th.is_alive()
    lost = out["res"].outcomes[0]
    assert lost.error is not None and "node lost" in lost.error
    before = load_records([tmp_path])
    kept = len(before)
    assert 2 <= kept < 6 and before.trial_id.is_unique
    nodes["b2"] = cluster.add_node(num_cpus=1, resources={"group_b": 1}, object_store_memory=OBJ)
    cluster.wait_for_nodes()
    res = run_fleet(f, str(tmp_path))
    assert res.complete, [o.error for o in res.outcomes]
    assert res.outcomes[0].summary["resumed"] and res.outcomes[0].summary["measured_now"] == 6 - kept
    after = load_records([tmp_path])
    assert len(after) == 6 and after.trial_id.is_unique
    merged = before.merge(after, on="trial_id", suffixes=("_0", "_1"))
    assert (merged.started_at_0 == merged.started_at_1).all()  # kept trials were not measured again
    info = json.loads((tmp_path / "lost-b-0" / "fleet.json").read_text())
    assert len(info["attempts"]) == 2 and info["attempts"][1]["resumed"]
