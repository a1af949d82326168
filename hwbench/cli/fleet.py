"""`hwbench fleet profile`: run the fleet file's sweeps on a Ray cluster's nodes, results into one store.

The command parses flags, shows each node's progress and prints one combined table; scheduling is
hwbench.fleet.driver, the node side hwbench.fleet.task (README, "Fleet profiling")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hwbench.cli.common import console, err_console, print_json, real_console, Table
from hwbench.cli.options import JsonFlag, epilog

EXIT_INCOMPLETE = 3  # README, "Exit codes": a group without a node, or a node lost mid-sweep
app = typer.Typer(help="Profile a whole cluster through Ray, results on one store.", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None)
COMMAND = dict(epilog=epilog(
    "hwbench fleet profile examples/fleet.toml --cluster auto --store file:///data/hwbench",
    "hwbench fleet profile fleet.toml --cluster ray://head:10001 --store s3://bucket/hwbench --all-nodes"))


def _view(snapshot: dict[str, dict[str, Any]]) -> Any:
    t = Table(title="fleet: per node", show_lines=False)
    for col in ("group/node", "ray node", "run", "done", "state", "current"):
        t.add_column(col)
    for key in sorted(snapshot):
        s = snapshot[key]
        total = s.get("total")
        t.add_row(key, str(s.get("node_id", ""))[:12], str(s.get("run_id", "")),
                  f"{s.get('done', 0)}/{total if total is not None else '?'}", str(s.get("state", "")),
                  str(s.get("current") or ""))
    return t


def _fmt(v: Any) -> str:
    return "-" if v is None or v != v else f"{v:.3g}"


def _combined(records: Any) -> Any:
    t = Table(title="fleet: combined results")
    for col in ("instance", "host", "model", "adapter", "precision", "batch", "status", "p50 ms", "p99 ms", "samples/s"):
        t.add_column(col)
    for r in records.sort_values(["instance_type", "host", "model", "adapter", "precision", "batch_size"]).itertuples():
        t.add_row(str(r.instance_type), str(r.host), r.model, r.adapter, r.precision, str(r.batch_size), r.status,
                  _fmt(r.latency_p50_ms), _fmt(r.latency_p99_ms), _fmt(r.throughput_sps))
    return t


def profile(
    fleet_file: Annotated[Path, typer.Argument(help="The fleet file (TOML): groups, instance types, sweeps.")],
    store: Annotated[str, typer.Option("--store", help="Where every node's run folder goes: a folder or an "
                                       "s3:// gs:// az:// file:// URI (credentials: the standard provider chain).")],
    cluster: Annotated[str, typer.Option("--cluster", help="auto (the local `ray start` cluster or RAY_ADDRESS), "
                                         "or ray://HEAD:10001.")] = "auto",
    all_nodes: Annotated[bool, typer.Option("--all-nodes", help="Run on every node of each group (node-to-node "
                                            "spread), not one per group.")] = False,
    node_timeout_s: Annotated[float | None, typer.Option("--node-timeout-s", help="Wait this long for a group's "
                                                         "first node (default: the fleet file's node_timeout_s).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Run each group's sweep on its node(s), one Ray task per node, into one store; re-running resumes."""
    from hwbench.errors import ResultsError, UsageError
    from hwbench.fleet.driver import run_fleet
    from hwbench.fleet.spec import load_fleet
    from hwbench.results.store import load_records

    if node_timeout_s is not None and not node_timeout_s > 0:
        raise UsageError(f"--node-timeout-s must be above 0, got {node_timeout_s:g}")
    fleet = load_fleet(fleet_file)
    if json_out:
        result = run_fleet(fleet, store, cluster=cluster, all_nodes=all_nodes, node_timeout_s=node_timeout_s)
    else:
        from rich.live import Live

        with Live(_view({}), console=real_console(err_console), refresh_per_second=2, transient=False) as live:
            result = run_fleet(fleet, store, cluster=cluster, all_nodes=all_nodes, node_timeout_s=node_timeout_s,
                               on_progress=lambda snap: live.update(_view(snap)))
    run_ids = [o.job.run_id for o in result.outcomes]
    try:
        records = load_records(store)
        records = records[records["run_id"].isin(run_ids)]
    except ResultsError:
        records = None
    problems = [f"{o.job.key} ({o.job.node_id[:12]}): {o.error}" for o in result.outcomes if o.error]
    problems += list(result.missing.values())
    if json_out:
        print_json({"store": store, "nodes": [{"group": o.job.group, "index": o.job.index, "ray_node_id": o.job.node_id,
                                               "labels": o.job.labels, "run_id": o.job.run_id, "error": o.error,
                                               "summary": o.summary} for o in result.outcomes],
                    "missing_groups": result.missing, "records": [] if records is None else records.to_dict("records")})
    else:
        if records is not None and len(records):
            console.print(_combined(records))
        for o in result.outcomes:
            if o.summary:
                console.print(f"{o.job.key}: {o.summary['records']} record(s) in {store.rstrip('/')}/{o.job.run_id}"
                              f" ({o.summary['measured_now']} measured now"
                              + (", resumed" if o.summary["resumed"] else "") + ")")
    for p in problems:
        err_console.print(f"[yellow]fleet:[/] {p}")
    if problems:
        raise typer.Exit(EXIT_INCOMPLETE)
