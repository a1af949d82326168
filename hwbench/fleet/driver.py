"""The fleet driver: connect to Ray, find each group's nodes, run one task per (group, node), gather.

Each task is pinned to its node (NodeAffinitySchedulingStrategy, not soft) and asks for the node's
whole CPU and GPU share and its group resource, so nothing else Ray schedules shares the node while
it measures. Tasks are never retried by Ray (max_retries=0): a task pinned to a node that is gone
would otherwise wait forever; a lost node is reported, and re-running the command resumes its run
folder from the store. A group with no node after the fleet's node_timeout_s is reported by the
resource it asked for, and the other groups run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwbench.errors import UsageError
from hwbench.fleet.nodes import Node, alive_nodes, members, missing_message
from hwbench.fleet.spec import Fleet
from hwbench.fleet.task import ENDPOINT_ENV, NodeJob, ProgressBoard, run_node

POLL_S = 0.5
Progress = Callable[[dict[str, dict[str, Any]]], None]


@dataclass
class TaskOutcome:
    job: NodeJob
    summary: dict[str, Any] | None = None
    error: str | None = None  # why the task ended without a summary (node lost, sweep failed)


@dataclass
class FleetResult:
    outcomes: list[TaskOutcome] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # group -> why it has no node

    @property
    def complete(self) -> bool:
        return not self.missing and all(o.error is None for o in self.outcomes)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("hwbench fleet needs Ray: pip install 'hwbench[fleet]'") from None
    return ray


def connect(cluster: str) -> None:
    """Join the cluster at `cluster` ('auto': the one `ray start` runs here, or RAY_ADDRESS; 'ray://HEAD:10001')."""
    ray = _ray()
    if ray.is_initialized():
        return
    if cluster != "auto" and not cluster.startswith("ray://"):
        raise UsageError(f"--cluster takes auto or ray://HEAD:PORT, got {cluster!r}")
    try:
        ray.init(address=cluster, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"cannot join the Ray cluster at {cluster}: {e}") from e


def wait_for_groups(fleet: Fleet, list_nodes: Callable[[], list[Node]], timeout_s: float | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, list[Node]], dict[str, str]]:
    """Each group's alive nodes, waiting up to `timeout_s` for groups with none; (found, missing)."""
    timeout = fleet.node_timeout_s if timeout_s is None else timeout_s
    start = time.monotonic()
    while True:
        nodes = list_nodes()
        found = {g.name: members(nodes, g.resource) for g in fleet.groups}
        waited = time.monotonic() - start
        if all(found.values()) or waited >= timeout:
            missing = {g.name: missing_message(g.name, g.resource, round(waited, 1), nodes)
                       for g in fleet.groups if not found[g.name]}
            return {k: v for k, v in found.items() if v}, missing
        sleep(POLL_S)


def plan_jobs(fleet: Fleet, found: dict[str, list[Node]], store: str, all_nodes: bool, env: dict[str, str]) -> list[NodeJob]:
    """One job per (group, node): the group's first node, or every node with `all_nodes`."""
    jobs = []
    for g in fleet.groups:
        for i, node in enumerate(found.get(g.name, [])[: None if all_nodes else 1]):
            jobs.append(NodeJob(group=g.name, index=i, resource=g.resource, instance_type=g.instance_type,
                                node_id=node.node_id, labels=dict(node.labels), config=g.sweep.to_dict(),
                                store=store, run_id=fleet.run_id(g.name, i), env=env))
    return jobs


def _describe(e: BaseException) -> str:
    name = type(e).__name__
    text = str(e).strip().splitlines()
    last = next((line for line in reversed(text) if line.strip()), "")
    if "NodeDied" in name or "WorkerCrashed" in name or "Unschedulable" in name or "ActorDied" in name:
        return f"node lost ({name}): its unfinished trials run when the command is re-run"
    return f"{name}: {last[:300]}"


def run_fleet(fleet: Fleet, store: str, *, cluster: str = "auto", all_nodes: bool = False,
              on_progress: Progress | None = None, node_timeout_s: float | None = None) -> FleetResult:
    """Profile every group of `fleet` on the cluster, results into `store`; what ran, what failed, what is missing."""
    import os

    from hwbench.results.uri import open_location

    open_location(store)  # a bad URI fails here, before anything is scheduled
    ray = _ray()
    connect(cluster)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    found, missing = wait_for_groups(fleet, lambda: alive_nodes(ray.nodes()), node_timeout_s)
    env = {k: os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)}
    jobs = plan_jobs(fleet, found, store, all_nodes, env)
    here = ray.get_runtime_context().get_node_id()
    board = ray.remote(num_cpus=0)(ProgressBoard).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
    task = ray.remote(run_node)
    nodes = {n.node_id: n for ns in found.values() for n in ns}
    refs = {}
    for job in jobs:
        node = nodes[job.node_id]
        refs[task.options(
            num_cpus=node.cpus, num_gpus=node.gpus, resources={job.resource: node.resources[job.resource]},
            scheduling_strategy=NodeAffinitySchedulingStrategy(job.node_id, soft=False),
            max_retries=0, name=f"hwbench-fleet:{job.key}",
        ).remote(job, board)] = job
    result = FleetResult(missing=missing)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            for ref in done:
                try:
                    result.outcomes.append(TaskOutcome(refs[ref], summary=ray.get(ref)))
                except Exception as e:  # a Ray error (node lost, task failed): reported per node
                    result.outcomes.append(TaskOutcome(refs[ref], error=_describe(e)))
            if on_progress is not None:
                try:
                    on_progress(ray.get(board.snapshot.remote(), timeout=5))
                except Exception:  # the view is best effort; the results are in the store
                    pass
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.kill(board)
    result.outcomes.sort(key=lambda o: (o.job.group, o.job.index))
    return result
