"""Which cluster nodes belong to which group: a pure function of Ray's node table (ray.nodes()).

A node belongs to a group when it is alive and offers the group's resource (a custom resource, or one
Ray derives such as "accelerator_type:A10G"). Nodes are ordered by node id so that node `n` of a group
keeps its index, and so its run folder, across runs while the group's membership is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Node:
    node_id: str
    address: str
    resources: Mapping[str, float]
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def cpus(self) -> float:
        return float(self.resources.get("CPU", 0.0))

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0.0))


def alive_nodes(table: Iterable[Mapping[str, Any]]) -> list[Node]:
    """The alive nodes of a ray.nodes() table, sorted by node id."""
    out = [Node(str(n["NodeID"]), str(n.get("NodeManagerAddress", "")), dict(n.get("Resources") or {}),
                {str(k): str(v) for k, v in (n.get("Labels") or {}).items()})
           for n in table if n.get("Alive")]
    return sorted(out, key=lambda n: n.node_id)


def members(nodes: Sequence[Node], resource: str) -> list[Node]:
    return [n for n in nodes if n.resources.get(resource, 0) > 0]


def missing_message(group: str, resource: str, waited_s: float, nodes: Sequence[Node]) -> str:
    """Why a group has no node: the resource asked for and what the cluster offers instead."""
    offered = sorted({r for n in nodes for r in n.resources if not r.startswith(("node:", "object_store", "memory"))})
    return (f"group {group!r}: no alive node offers the Ray resource {resource!r} after {waited_s:g} s"
            f" (the cluster's resources: {', '.join(offered) or 'none'})")
