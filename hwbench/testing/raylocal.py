"""A Ray cluster on this machine's loopback address only, for tests and the README's local walk-through.

Ray on Linux never uses 127.0.0.1 as a node's address: `ray start --node-ip-address 127.0.0.1`, an
`--address 127.0.0.1:PORT` and `ray.init(_node_ip_address="127.0.0.1")` all go through
ray._private.services.resolve_ip_for_localhost, which swaps a loopback address for the host's
interface address (here 192.0.2.2), so the node binds and advertises that; and a head whose own
address is 127.0.0.1 then looks for a local node at the interface address, which is where
`ray.init(_node_ip_address=...)` waited forever. Ray's documented switch for single-host clusters,
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (the macOS and Windows default), makes every node's address
127.0.0.1: its servers then listen on 127.0.0.1 only (measured with `ss -ltnp`, tests/test_fleet_ray.py).
With it Ray refuses `ray start --address` (a second node) and only an in-process
ray.cluster_utils.Cluster, or `ray start` launched by this module's `main` (which keeps the
loopback address Ray would swap), adds nodes.

    with loopback_only():           # before the first node starts
        cluster = Cluster(...)

    python -m hwbench.testing.raylocal start --address 127.0.0.1:6390 --num-cpus 1 --resources '{"group_b": 1}'
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def loopback_only() -> Iterator[None]:
    """Within: nodes started from this process (and their children) take 127.0.0.1 as their address."""
    import ray._private.ray_constants as constants

    saved_env, saved = os.environ.get(SWITCH), constants.ENABLE_RAY_CLUSTER
    os.environ[SWITCH] = "0"  # the children read it when they import ray
    constants.ENABLE_RAY_CLUSTER = False  # this process imported ray already: its constant is read at call time
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = saved_env


def listening(pids: Iterable[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket listening in the processes `pids`."""
    import psutil

    wanted = set(pids)
    return sorted({(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections(kind="tcp")
                   if c.status == psutil.CONN_LISTEN and c.pid in wanted})


def process_tree(root: int | None = None) -> list[int]:
    """`root` (this process by default) and all its descendants."""
    import psutil

    me = psutil.Process(root)
    return [me.pid, *(p.pid for p in me.children(recursive=True))]


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def main(argv: list[str] | None = None) -> None:
    """`ray start ARGS` that keeps a loopback --node-ip-address and --address as given (a second node on 127.0.0.1)."""
    import ray._private.services as services
    from ray.scripts.scripts import main as ray_main

    keep = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: _loopback(host) or keep(host)
    sys.argv = ["ray", *(sys.argv[1:] if argv is None else argv)]
    ray_main()


def _loopback(host: str) -> str | None:
    """`host` as a loopback IP address, or None when it is not one."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if is_loopback(host) else None
    except ValueError:
        return None


if __name__ == "__main__":
    main()
