"""`hwbench fleet profile` end to end against a cluster started the way a user starts one: `ray start`.

A head (`ray start --head`, group_a) and a second node (`python -m hwbench.testing.raylocal start`,
which is `ray start` keeping the loopback address, group_b) on 127.0.0.1 only, the CLI driving a
two-group fleet into a folder, then `hwbench store compact` on it. The Ray processes are stopped by
their ids (never `ray stop`: it would stop any other cluster on a shared host). Slow (about a minute
of Ray start-up): `make test-slow`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the fleet tests need the fleet extra (pip install 'hwbench[fleet]')")
psutil = pytest.importorskip("psutil")

from hwbench.results.store import load_records  # noqa: E402
from hwbench.testing.raylocal import SWITCH, is_loopback, listening  # noqa: E402
from hwbench.testing.s3emu import free_port  # noqa: E402

pytestmark = pytest.mark.slow
RAY = Path(sys.executable).with_name("ray")


def _ray_pids(tmp: Path) -> list[int]:
    """Every process of this test's Ray session: its command line names the session's temporary folder."""
    pids = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any(str(tmp) in part for part in (p.info["cmdline"] or [])):
            pids.add(p.info["pid"])
            pids.update(c.pid for c in p.children(recursive=True))
    return sorted(pids)


def _stop(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, alive = psutil.wait_procs([p for p in map(_proc, pids) if p is not None], timeout=10)
    for p in alive:
        p.kill()


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def test_fleet_profile_on_a_ray_start_cluster_on_loopback(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    ray_tmp = Path("/tmp") / f"hwrs{os.getpid()}"  # short: Ray's socket paths must fit in 107 bytes
    model = tmp_path / "tiny.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'name = "rs"\nnode_timeout_s = 30\n[sweeps.s]\nmodels = ["{model}"]\nadapters = ["null"]\n'
        'precisions = ["fp32"]\nbatch_sizes = [1, 2]\nidle_power_s = 0\naccuracy = { enabled = false }\n'
        'measure = { warmup_s = 0.02, min_duration_s = 0.05, max_duration_s = 0.2, min_iters = 5 }\n'
        '[groups.a]\nresource = "group_a"\ninstance_type = "c7i.large"\nsweep = "s"\n'
        '[groups.b]\nresource = "group_b"\ninstance_type = "m7i.large"\nsweep = "s"\n')
    port = free_port()
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "HWBENCH_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.getcwd(), "TMPDIR": str(tmp_path)}
    try:
        head = subprocess.run([str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                               "--num-cpus", "1", "--resources", '{"group_a": 1}', "--include-dashboard=false",
                               "--disable-usage-stats"], env={**env, SWITCH: "0"}, capture_output=True, text=True,
                              timeout=120)
        assert head.returncode == 0, head.stderr[-2000:]
        node = subprocess.run([sys.executable, "-m", "hwbench.testing.raylocal", "start", "--address",
                               f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                               "--resources", '{"group_b": 1}', "--disable-usage-stats"],
                              env={**env, SWITCH: "1"}, capture_output=True, text=True, timeout=120)
        assert node.returncode == 0, node.stderr[-2000:]
        assert "Local node IP: 127.0.0.1" in head.stdout + head.stderr
        assert "Local node IP: 127.0.0.1" in node.stdout + node.stderr
        sockets = listening(_ray_pids(ray_tmp))
        assert sockets and [s for s in sockets if not is_loopback(s[0])] == []
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "hwbench", "fleet", "profile", str(fleet), "--cluster", "auto",
                              "--store", f"file://{tmp_path}/store"], capture_output=True, text=True, timeout=300,
                             env={**env, SWITCH: "0", "RAY_ADDRESS": f"127.0.0.1:{port}"})
        assert res.returncode == 0, res.stderr[-3000:]
        assert time.monotonic() - t0 < 300
        df = load_records(tmp_path / "store")
        assert sorted(df.run_id.unique()) == ["rs-a-0", "rs-b-0"] and len(df) == 4 and (df.status == "ok").all()
        assert set(df[df.run_id == "rs-b-0"].instance_type) == {"m7i.large"}
        compact = subprocess.run([sys.executable, "-m", "hwbench", "store", "compact", str(tmp_path / "store")],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert compact.returncode == 0 and "4 record(s) of 2 run(s)" in compact.stdout, compact.stderr
    finally:
        _stop(_ray_pids(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
