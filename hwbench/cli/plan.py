"""`hwbench plan`: the cheapest mix of hardware for a workload file, and the routing table a scheduler loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hwbench.cli.common import Table, console, escape, print_json
from hwbench.cli.options import JsonFlag, PricesOpt, epilog, price_files
from hwbench.errors import UsageError

if TYPE_CHECKING:
    from hwbench.analyse.demand import Workload
    from hwbench.analyse.fleetplan import Baseline, PlanReport
    from hwbench.analyse.simulate import Simulation

COMMAND = dict(epilog=epilog(
    "hwbench plan examples/workload.toml --results results/",
    "hwbench plan workload.toml --capacities measured-elsewhere.csv --json",
    "hwbench plan examples/workload_mlperf.toml --results results/ --capacities examples/capacities_mlperf.csv",
    "hwbench plan workload.toml --results results/ --simulate --headroom-search --export plan.json"))


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:.4g}"


def _print_baseline(b: Baseline) -> None:
    if b.usd_per_hour is None:
        console.print(f"  {escape(b.label)}: [yellow]not possible[/yellow] ({escape(str(b.reason))})")
        return
    counts = b.to_dict()["counts"]
    fleet = ", ".join(f"{n if isinstance(n, int) else f'{n[0]}-{n[1]}'} x {k}" for k, n in (counts or {}).items())
    console.print(f"  {escape(b.label)} ({escape(fleet)}): {_money(b.usd_per_hour)}/hour; the mix saves "
                  f"[bold]{_money(b.saving_usd_per_hour)}/hour ({b.saving_pct or 0:.1f}%)[/bold]")


def _print(workload: Workload, report: PlanReport, sim: Simulation | None, history: list[dict[str, Any]]) -> None:
    p = report.plan
    t = Table(title="Capacities at each class's p99 SLO (requests/s per instance)", title_justify="left")
    for c in ("class", "instance type", "capacity rps", "source", "from"):
        t.add_column(c)
    for c in sorted(report.capacities, key=lambda c: (c.cls, -c.capacity_rps)):
        t.add_row(escape(c.cls), escape(c.instance_type), f"{c.capacity_rps:.4g}", escape(c.source), escape(c.config))
    console.print(t)
    bounds = p.autoscaling_bounds()
    t = Table(title=f"Fleet ({'autoscaling bounds over 24 hours' if len(p.hours) > 1 else 'instances'})", title_justify="left")
    for c in ("instance type / pricing", "instances", "$/hour each", "price as of", "source"):
        t.add_column(c)
    by_key = {o.key: o for o in p.options}
    for key, (lo, hi) in bounds.items():
        o = by_key[key]
        t.add_row(escape(key), str(hi) if lo == hi else f"{lo}-{hi}", f"{o.usd_per_hour:.4g}", str(o.as_of), escape(str(o.source)))
    console.print(t)
    peak = max(p.hours, key=lambda h: h.usd_per_hour)
    keys = sorted({k for r in peak.routing.values() for k in r})
    t = Table(title="Routing table (fraction of each class's requests per option)"
              + (f", peak hour {peak.hour}" if len(p.hours) > 1 else ""), title_justify="left")
    t.add_column("class")
    for k in keys:
        t.add_column(escape(k), justify="right")
    t.add_column("$/1M requests", justify="right")
    for c in workload.classes:
        route = peak.routing.get(c.name, {})
        t.add_row(escape(c.name), *[f"{route[k]:.3f}" if k in route else "" for k in keys], f"{p.class_usd_per_1m[c.name]:.4g}")
    console.print(t)
    if len(p.hours) > 1:
        console.print("  per hour: " + ", ".join(f"h{h.hour} {_money(h.usd_per_hour)}" for h in p.hours))
    energy = f" + energy {_money(p.energy_usd_per_hour)}/hour" if workload.pool.objective == "cost+energy" else ""
    console.print(f"[bold]Mixed fleet: {_money(p.usd_per_hour)}/hour[/bold]{energy} (planned to at most "
                  f"{p.max_utilisation:.0%} of each capacity; solver {p.status}, MIP gap {p.mip_gap:.2g}, {p.solve_time_s:.3f} s)")
    _print_baseline(report.homogeneous)
    _print_baseline(report.fastest)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if sim is None:
        return
    t = Table(title=f"Simulated SLO attainment (a model: Poisson arrivals, FIFO replay of measured service times, seed {sim.seed})",
              title_justify="left")
    for c in ("class", "requests", "within p99 SLO", "simulated p99 ms", "SLO ms", "verdict"):
        t.add_column(c)
    for r in sim.classes.values():
        verdict = "-" if r.meets_slo is None else "[green]holds[/green]" if r.meets_slo else "[red]FAILS[/red]"
        t.add_row(escape(r.cls), str(r.requests), "-" if r.attainment is None else f"{r.attainment:.2%}",
                  "-" if r.p99_ms is None else f"{r.p99_ms:.4g}", f"{r.slo_p99_ms:g}", verdict)
    console.print(t)
    for r in sim.classes.values():
        if r.note:
            console.print(f"  [yellow]{escape(r.cls)}:[/yellow] {escape(r.note)}")
    if len(history) > 1:
        console.print("  headroom search: " + "; ".join(
            f"{h['max_utilisation']:.0%} -> {_money(h['usd_per_hour'])}/h" + (f" ({', '.join(h['failing'])} fail)" if h["failing"] else " (all hold)")
            for h in history))
    for note in sim.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


def plan(
    workload_path: Annotated[Path, typer.Argument(metavar="WORKLOAD", help="Workload TOML: request classes and the hardware pool.")],
    results: Annotated[list[str] | None, typer.Option("--results", help="Run folders (or folders above them, or s3:// gs:// az:// file:// store URIs) to take capacities from.")] = None,
    frontier_path: Annotated[Path | None, typer.Option("--frontier", help="A frontier export (hwbench frontier --export).")] = None,
    capacities_path: Annotated[Path | None, typer.Option("--capacities", help="A capacity table (CSV or TOML) with a source per row; may join --results or --frontier.")] = None,
    prices: PricesOpt = None,
    headroom: Annotated[float | None, typer.Option("--headroom", min=0.0, max=0.99, help="Plan each instance to at most 1 - this of its capacity (overrides the pool's).")] = None,
    slice_factor: Annotated[int | None, typer.Option("--slice-factor", min=1, help="Route in slices of 1/N (Melange-style) instead of continuous fractions.")] = None,
    simulate_flag: Annotated[bool, typer.Option("--simulate", help="Replay the plan (Poisson arrivals, FIFO queues) and report SLO attainment.")] = False,
    headroom_search: Annotated[bool, typer.Option("--headroom-search", help="With --simulate: lower the planned utilisation until the replay agrees.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation.")] = 0,
    sim_requests: Annotated[int, typer.Option("--sim-requests", min=1000, help="Requests replayed per planned hour.")] = 40_000,
    export_path: Annotated[Path | None, typer.Option("--export", help="Write the versioned plan JSON a scheduler loads here.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Find the cheapest mix of instances that serves every request class at its SLO, with its routing table."""
    from hwbench.analyse.capacities import load_capacities
    from hwbench.analyse.demand import load_workload
    from hwbench.analyse.fleetplan import plan_workload
    from hwbench.analyse.planexport import export_plan, plan_document
    from hwbench.catalog.prices import load_catalog

    if headroom_search and not simulate_flag:
        raise UsageError("--headroom-search needs --simulate (it lowers the utilisation until the replay agrees)")
    workload = load_workload(workload_path)
    if headroom is not None:
        workload = dataclasses.replace(workload, pool=dataclasses.replace(workload.pool, headroom=headroom))
    table = load_capacities(workload, results=results, frontier=frontier_path, table=capacities_path)
    catalog = load_catalog(price_files(prices))
    sim, history = None, []
    if headroom_search:
        from hwbench.analyse.simulate import plan_until_simulation_agrees

        report, sim, history = plan_until_simulation_agrees(workload, table, catalog, seed=seed, requests_per_hour=sim_requests,
                                                            slice_factor=slice_factor)
    else:
        report = plan_workload(workload, table, catalog, slice_factor=slice_factor)
        if simulate_flag:
            from hwbench.analyse.simulate import simulate

            sim = simulate(workload, report.plan, report.capacities, seed=seed, requests_per_hour=sim_requests)
    doc = plan_document(workload, report, sim)
    if history:
        doc["headroom_search"] = history
    if export_path is not None:
        export_plan(doc, export_path)
    if json_out:
        print_json(doc)
        return
    _print(workload, report, sim, history)
    if export_path is not None:
        console.print(escape(f"plan exported to {export_path} (schema {doc['schema_version']}; load with hwbench.analyse.planexport.load_plan)"))
