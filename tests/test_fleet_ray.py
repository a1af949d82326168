"""hwbench fleet on a real local multi-node Ray cluster (ray.cluster_utils.Cluster), one per module.

Fake node groups are custom resources (group_a on two nodes, group_b on one). The store is a
file:// folder or a moto S3 server on 127.0.0.1 (an emulator; started before the cluster so that
its fake keys reach every node, as a real node's provider chain would). Tiny model, null adapter,
tiny durations (a 4-input Relu ONNX model). The node-loss test removes a node mid-sweep and re-runs to resume.
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
from hwbench.testing.raylocal import is_loopback, listening, loopback_only, process_tree  # noqa: E402
from hwbench.testing.s3emu import MotoServer  # noqa: E402

SWEEP = {"models": [], "adapters": ["null"], "precisions": ["fp32"], "batch_sizes": [1, 2],
         "idle_power_s": 0, "trial_timeout_s": 60, "accuracy": {"enabled": False},
         "measure": {"warmup_s": 0.02, "warmup_min_iters": 1, "min_duration_s": 0.05, "max_duration_s": 0.2,
                     "min_iters": 5}}
OBJ = 80 * 2**20


def tiny_onnx(path: Path) -> Path:
    """x[batch, 4] -> relu: built with onnx.helper in milliseconds (no torch export)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


MODEL: list[str] = []  # the tiny model's path, set by the module fixture


def fleet(name: str, groups: dict[str, str], batches: list[int] | None = None, timeout_s: float = 20) -> Any:
    sweep = {**SWEEP, "models": MODEL, "batch_sizes": batches or SWEEP["batch_sizes"]}
    return parse_fleet({"name": name, "node_timeout_s": timeout_s, "sweeps": {"s": sweep},
                        "groups": {g: {"resource": r, "sweep": "s", "instance_type": f"{g}.large"}
                                   for g, r in groups.items()}})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An S3 emulator, then a head (no CPU) plus three nodes: group_a x2, group_b x1, all on 127.0.0.1 only."""
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    cache = tmp_path_factory.mktemp("fleet-cache")
    raytmp = tempfile.mkdtemp(prefix="hwray", dir="/tmp")
    with MotoServer() as s3, loopback_only():
        os.environ.update(s3.env())
        # TMPDIR: the nodes' staging folders (a lost node leaves its own) stay in pytest's temporary tree
        os.environ.update({"HWBENCH_CACHE": str(cache), "RAY_TMPDIR": raytmp,
                           "TMPDIR": str(tmp_path_factory.mktemp("fleet-staging"))})
        s3.create_bucket("fleet")
        MODEL[:] = [str(tiny_onnx(cache / "tiny.onnx"))]
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


def test_the_cluster_listens_on_the_loopback_address_only(env: dict[str, Any]) -> None:
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    sockets = listening(process_tree())  # the head, the nodes and their workers all descend from this process
    assert len({pid for _, _, pid in sockets}) >= 5, sockets  # GCS, four raylets, the agents...
    assert [s for s in sockets if not is_loopback(s[0])] == []


def test_two_groups_all_nodes_into_s3_and_a_rerun_adds_nothing(env: dict[str, Any]) -> None:
    f = fleet("e2e", {"a": "group_a", "b": "group_b"})
    res = run_fleet(f, "s3://fleet/runs", all_nodes=True)
    assert res.complete, (res.missing, [o.error for o in res.outcomes])
    assert [(o.job.group, o.job.index) for o in res.outcomes] == [("a", 0), ("a", 1), ("b", 0)]
    assert len({o.job.node_id for o in res.outcomes}) == 3
    df = load_records("s3://fleet/runs")
    assert sorted(df.run_id.unique()) == ["e2e-a-0", "e2e-a-1", "e2e-b-0"]
    assert len(df) == 6 and (df.status == "ok").all() and not df.duplicated(["run_id", "trial_id"]).any()
    assert set(df[df.run_id == "e2e-a-1"].instance_type) == {"a.large"}
    assert set(df[df.run_id == "e2e-b-0"].instance_type) == {"b.large"}
    info = json.loads(env["s3"].filesystem().open_input_stream("fleet/runs/e2e-b-0/fleet.json").read())
    assert info["attempts"][-1]["ray_node_id"] == res.outcomes[2].job.node_id and info["resource"] == "group_b"
    again = run_fleet(f, "s3://fleet/runs", all_nodes=True)
    assert [o.summary["measured_now"] for o in again.outcomes] == [0, 0, 0]
    assert all(o.summary["resumed"] for o in again.outcomes)
    assert len(load_records("s3://fleet/runs")) == 6


def test_cli_with_cluster_auto_reports_a_group_without_a_node_by_its_resource(env: dict[str, Any], tmp_path: Path) -> None:
    ff = tmp_path / "fleet.toml"
    ff.write_text(
        f'name = "cli"\nnode_timeout_s = 1\n[sweeps.s]\nmodels = ["{MODEL[0]}"]\nadapters = ["null"]\n'
        'precisions = ["fp32"]\nbatch_sizes = [1]\nidle_power_s = 0\naccuracy = { enabled = false }\n'
        'measure = { warmup_s = 0.02, min_duration_s = 0.05, max_duration_s = 0.2, min_iters = 5 }\n'
        '[groups.b]\nresource = "group_b"\ninstance_type = "m7i.large"\nsweep = "s"\n'
        '[groups.gpu]\nresource = "accelerator_type:A10G"\nsweep = "s"\n')
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "hwbench", "fleet", "profile", str(ff), "--cluster", "auto",
                          "--store", f"file://{tmp_path}/store"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RAY_ADDRESS": env["cluster"].address, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 3, res.stderr[-2000:]  # incomplete: one group has no node
    assert time.monotonic() - t0 < 120
    assert "accelerator_type:A10G" in res.stderr and "group_b" in res.stderr  # what is missing, what is offered
    assert "combined results" in res.stdout and "m7i.large" in res.stdout
    df = load_records(f"file://{tmp_path}/store")
    assert len(df) == 1 and df.run_id.tolist() == ["cli-b-0"]


def _stored(store: Path, run: str) -> int:
    folder = store / run / "records"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def test_a_node_lost_mid_sweep_loses_only_unfinished_trials_and_a_rerun_resumes(env: dict[str, Any], tmp_path: Path) -> None:
    cluster, nodes = env["cluster"], env["nodes"]
    f = fleet("lost", {"b": "group_b"}, batches=[1, 2, 3, 4])
    out: dict[str, Any] = {}
    th = threading.Thread(target=lambda: out.update(res=run_fleet(f, str(tmp_path))))
    th.start()
    deadline = time.monotonic() + 60
    while _stored(tmp_path, "lost-b-0") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stored(tmp_path, "lost-b-0") >= 1, "no trial reached the store in time"
    cluster.remove_node(nodes.pop("b1"))
    th.join(60)
    assert not th.is_alive()
    lost = out["res"].outcomes[0]
    assert lost.error is not None and "node lost" in lost.error
    before = load_records([tmp_path])
    kept = len(before)
    assert 1 <= kept < 4 and before.trial_id.is_unique
    nodes["b2"] = cluster.add_node(num_cpus=1, resources={"group_b": 1}, object_store_memory=OBJ)
    cluster.wait_for_nodes()
    res = run_fleet(f, str(tmp_path))
    assert res.complete, [o.error for o in res.outcomes]
    assert res.outcomes[0].summary["resumed"] and res.outcomes[0].summary["measured_now"] == 4 - kept
    after = load_records([tmp_path])
    assert len(after) == 4 and after.trial_id.is_unique
    merged = before.merge(after, on="trial_id", suffixes=("_0", "_1"))
    assert (merged.started_at_0 == merged.started_at_1).all()  # kept trials were not measured again
    info = json.loads((tmp_path / "lost-b-0" / "fleet.json").read_text())
    assert len(info["attempts"]) == 2 and info["attempts"][1]["resumed"]
