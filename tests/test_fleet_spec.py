"""The fleet file, node-group matching and job planning: pure code, no Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwbench.errors import ConfigError
from hwbench.fleet.driver import plan_jobs, wait_for_groups
from hwbench.fleet.nodes import Node, alive_nodes, members
from hwbench.fleet.spec import load_fleet, parse_fleet

EXAMPLE = Path(__file__).parents[1] / "examples" / "fleet.toml"
SWEEP = {"models": ["mlp-tiny"], "adapters": ["null"], "batch_sizes": [1]}


def doc(**kw):
    base = {"name": "f", "sweeps": {"s": SWEEP}, "groups": {"a": {"resource": "group_a", "sweep": "s"}}}
    base.update(kw)
    return base


def test_the_example_fleet_file_loads() -> None:
    f = load_fleet(EXAMPLE)
    assert [(g.name, g.resource, g.instance_type) for g in f.groups] == [
        ("a", "group_a", "c7i.large"), ("b", "group_b", "m7i.large")]
    assert f.groups[1].sweep.instance_type == "m7i.large"  # the group's instance type prices its records
    assert f.run_id("a", 0) == "example-a-0"


@pytest.mark.parametrize("bad, match", [
    ({"groups": {"a": {"resource": "r", "sweep": "nope"}}}, "no sweep named 'nope'"),
    ({"name": "has space"}, "letters, digits"),
    ({"groups": {"a": {"resource": "r", "sweep": "s", "colour": "red"}}}, "colour"),
    ({"sweeps": {"s": {**SWEEP, "batch_sizes": [0]}}}, "batch_sizes"),
    ({"node_timeout_s": 0}, "node_timeout_s"),
    ({"groups": {}}, "groups"),
])
def test_fleet_file_problems_are_reported(bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_fleet(doc(**bad))


def test_a_sweep_from_a_file_relative_to_the_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "sw.toml").write_text('models = ["mlp-tiny"]\nadapters = ["null"]\nbatch_sizes = [4]\n')
    (tmp_path / "fleet.toml").write_text('name = "x"\n[sweeps.s]\nfile = "sw.toml"\n'
                                         '[groups.a]\nresource = "r"\nsweep = "s"\n')
    assert load_fleet(tmp_path / "fleet.toml").groups[0].sweep.batch_sizes == (4,)
    with pytest.raises(ConfigError, match="does not exist"):
        load_fleet(tmp_path / "missing.toml")


TABLE = [
    {"NodeID": "bb", "Alive": True, "Resources": {"CPU": 4.0, "group_a": 1.0}, "Labels": {"zone": "z1"}},
    {"NodeID": "aa", "Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0, "group_a": 1.0}},
    {"NodeID": "cc", "Alive": False, "Resources": {"CPU": 2.0, "group_a": 1.0}},
    {"NodeID": "dd", "Alive": True, "Resources": {"CPU": 8.0, "group_b": 1.0}},
]


def test_groups_are_alive_nodes_offering_the_resource_in_node_id_order() -> None:
    nodes = alive_nodes(TABLE)
    assert [n.node_id for n in members(nodes, "group_a")] == ["aa", "bb"]
    assert members(nodes, "accelerator_type:A10G") == []


def test_one_node_per_group_or_all_nodes_with_the_whole_share() -> None:
    f = parse_fleet(doc(groups={"a": {"resource": "group_a", "sweep": "s"}, "b": {"resource": "group_b", "sweep": "s"}}))
    found = {"a": members(alive_nodes(TABLE), "group_a"), "b": members(alive_nodes(TABLE), "group_b")}
    one = plan_jobs(f, found, "s3://b/p", False, {})
    assert [(j.group, j.index, j.node_id) for j in one] == [("a", 0, "aa"), ("b", 0, "dd")]
    every = plan_jobs(f, found, "s3://b/p", True, {"AWS_REGION": "eu-west-1"})
    assert [j.run_id for j in every] == ["f-a-0", "f-a-1", "f-b-0"]
    assert every[1].labels == {"zone": "z1"} and every[1].env == {"AWS_REGION": "eu-west-1"}


def test_a_missing_group_is_reported_after_the_timeout_naming_its_resource() -> None:
    f = parse_fleet(doc(groups={"a": {"resource": "group_a", "sweep": "s"},
                                "gpu": {"resource": "accelerator_type:A10G", "sweep": "s"}}))
    calls = []
    nodes = alive_nodes(TABLE)
    found, missing = wait_for_groups(f, lambda: calls.append(1) or nodes, timeout_s=0.05, sleep=lambda s: None)
    assert [n.node_id for n in found["a"]] == ["aa", "bb"] and "gpu" not in found
    assert "accelerator_type:A10G" in missing["gpu"] and "group_a" in missing["gpu"]
    assert len(calls) >= 2  # it polled until the timeout


def test_a_node_that_joins_while_waiting_is_found() -> None:
    f = parse_fleet(doc())
    tables = iter([[], [], TABLE])
    found, missing = wait_for_groups(f, lambda: alive_nodes(next(tables)), timeout_s=60, sleep=lambda s: None)
    assert not missing and [n.node_id for n in found["a"]] == ["aa", "bb"]


def test_node_share() -> None:
    n = Node("x", "", {"CPU": 3.0, "GPU": 2.0})
    assert (n.cpus, n.gpus) == (3.0, 2.0)
