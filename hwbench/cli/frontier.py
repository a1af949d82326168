"""`hwbench frontier`: the performance/cost matrix per model, its frontier, and an SLO pick."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hwbench.cli.common import console, escape, print_json, Table
from hwbench.cli.options import JsonFlag, ModelsOpt, PricesOpt, ResultsArg, epilog, price_files, renamed_flags, split_list
from hwbench.errors import ResultsError, UsageError

if TYPE_CHECKING:  # pandas and the analysis load only when the command runs, keeping `hwbench --help` quick
    import pandas as pd

    from hwbench.analyse.frontier import Plan
    from hwbench.analyse.matrix import Matrix

FRONTIER_STYLE = "bold green"


class Objective(str, Enum):
    """hwbench.analyse.frontier.OBJECTIVES, as choices for --help and completion (pandas: not imported here)."""

    cost = "cost"
    throughput = "throughput"
    energy = "energy"


RENAMED = {"--rate": "--rate-rps"}
COMMAND = dict(cls=renamed_flags(RENAMED), epilog=epilog(
    "hwbench frontier results/",
    "hwbench frontier results/ --slo-p99-ms 50 --rate-rps 200 --export frontier.json --plot frontier.png",
    "hwbench frontier results/ --prices mine.toml --model resnet50,bert-base --objective energy"))


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except TypeError:  # pandas.NA
        return True


def _num(value: Any, fmt: str = "{:.3g}") -> str:
    return "-" if _missing(value) else fmt.format(value)


def _rate(value: Any) -> str:
    return "-" if _missing(value) else f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _precision(row: Any) -> str:
    eff = row.precision_effective
    text = str(row.precision) if _missing(eff) or eff == row.precision else f"{row.precision}→{eff}"
    failed = not _missing(row.accuracy_ok) and not bool(row.accuracy_ok)
    return text + " [red](drift)[/red]" if failed else text


def _energy(row: Any) -> str:
    text = _num(row.energy_j_per_inference)
    return text + " (est.)" if text != "-" and row.energy_estimated else text


def _price_cell(row: Any) -> str:
    """$/hour with its k/n share and how the price is known, when not plainly from the catalog."""
    text = _num(row.price_usd_per_hour, "{:.4g}")
    if text == "-":
        return text
    share = "" if row.price_share in ("1/1", None) else f" ({row.price_share})"
    basis = "" if _missing(row.price_basis) else str(row.price_basis)
    how = " (given)" if basis.startswith("given") else " (assumed)" if "assumed:" in basis else ""
    return text + share + how


UNRESOLVED_MARK = "†"
UNRESOLVED_NOTE = (f"{UNRESOLVED_MARK} p99 unresolved: fewer than the 368 samples its two-sided 95% interval needs "
                   "(the value is near the sample maximum); never used for an SLO pick")


def _p99(row: Any) -> str:
    resolved = getattr(row, "p99_resolved", True)
    return _num(row.latency_p99_ms) + ("" if resolved is None or bool(resolved) else UNRESOLVED_MARK)


def _model_table(model: str, points: pd.DataFrame, matrix: Matrix, limit: int) -> tuple[Table, int]:
    import pandas as pd

    shown = points[points["on_frontier"]]
    rest = points[~points["on_frontier"]].sort_values(["cost_usd_per_1m", "latency_p99_ms"], na_position="last")
    shown = pd.concat([shown, rest.head(max(0, limit - len(shown)))]).sort_values("latency_p99_ms", kind="stable")
    basis = ", ".join(sorted(points["frontier_basis"].unique()))
    table = Table(title=escape(f"{model}: frontier on {basis} (★)"), title_justify="left")
    for name, justify in [("", "left"), ("hardware", "left"), ("adapter", "left"), ("precision", "left"),
                          ("batch", "right"), ("scenario", "left"), ("p50 ms", "right"), ("p99 ms", "right"),
                          ("items/s", "right"), ("$/hour", "right"), ("$/1M", "right"), ("J/inf", "right"),
                          ("items/s/W", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if matrix.electricity is not None:
        table.add_column("energy $/1M", justify="right")
    for r in shown.itertuples(index=False):
        cells = ["★" if r.on_frontier else "", escape(str(r.hardware)), escape(str(r.adapter)), _precision(r),
                 str(r.batch_size), escape(str(r.scenario)), _num(r.latency_p50_ms), _p99(r), _rate(r.throughput_sps),
                 _price_cell(r), _num(r.cost_usd_per_1m), _energy(r),
                 _num(r.items_per_j) + (" (est.)" if r.energy_estimated and not _missing(r.items_per_j) else "")]
        if matrix.electricity is not None:
            cells.append(_num(r.energy_usd_per_1m))
        table.add_row(*cells, style=FRONTIER_STYLE if r.on_frontier else None)
    return table, len(points) - len(shown)


def _llm_table(model: str, points: pd.DataFrame, limit: int) -> tuple[Table, int]:
    """Generate (LLM) points: per prompt/output bucket, TTFT/TPOT p99 and $ per 1M tokens.

    A served endpoint's open-loop curve is one point, at the highest rate that met its own SLOs:
    its $ per 1M tokens is the price over the tokens/s it sustained within them."""
    import pandas as pd

    order = points.sort_values(["prompt_tokens", "output_tokens", "usd_per_1m_output_tokens"], na_position="last", kind="stable")
    shown = pd.concat([order[order["on_frontier"]], order[~order["on_frontier"]]]).head(max(limit, int(order["on_frontier"].sum())))
    shown = shown.sort_values(["prompt_tokens", "output_tokens", "usd_per_1m_output_tokens"], na_position="last", kind="stable")
    basis = ", ".join(sorted(points["frontier_basis"].unique()))
    table = Table(title=escape(f"{model}: frontier on {basis}, per prompt/output bucket (★)"), title_justify="left")
    for name, justify in [("", "left"), ("hardware", "left"), ("adapter", "left"), ("bucket", "left"), ("load", "left"),
                          ("TTFT p99 ms", "right"), ("TPOT p99 ms", "right"), ("req/s", "right"), ("out tok/s", "right"),
                          ("$/hour", "right"), ("$/1M out tok", "right"), ("$/1M tok", "right"), ("at SLO", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in shown.to_dict(orient="records"):
        served = r.get("scenario") == "server" and not _missing(r.get("offered_rps"))
        load = f"{r['offered_rps']:g}/s open" if served else f"c{r.get('concurrency') or 1} {r.get('scenario')}"
        bounds = [f"{k} {r[c]:g}" for k, c in (("TTFT", "slo_ttft_ms"), ("TPOT", "slo_tpot_ms"), ("E2E", "slo_e2e_ms"))
                  if not _missing(r.get(c))]
        at_slo = ("within " + ", ".join(bounds) + " ms") if served and bounds else "-"
        table.add_row("★" if r["on_frontier"] else "", escape(str(r["hardware"])), escape(str(r["adapter"])),
                      f"p{_num(r.get('prompt_tokens'), '{:.0f}')}/o{_num(r.get('output_tokens'), '{:.0f}')}", load,
                      _num(r.get("ttft_p99_ms")), _num(r.get("tpot_p99_ms")), _rate(r.get("throughput_sps")),
                      _rate(r.get("output_tokens_per_s")), _price_cell(pd.Series(r)), _num(r.get("usd_per_1m_output_tokens")),
                      _num(r.get("usd_per_1m_total_tokens")), escape(at_slo), style=FRONTIER_STYLE if r["on_frontier"] else None)
    return table, len(points) - len(shown)


def _left_out(matrix: Matrix) -> None:
    if len(matrix.prices_used):
        t = Table(title="Prices used (every cost above derives from these)", title_justify="left")
        for c in ("instance type", "$/hour", "basis", "as of", "source"):
            t.add_column(c)
        for r in matrix.prices_used.itertuples(index=False):
            t.add_row(escape(str(r.instance_type)), _num(r.usd_per_hour, "{:.6g}") if not _missing(r.usd_per_hour) else "from run power",
                      str(r.basis), str(r.as_of), escape(str(r.source)))
        console.print(t)
    if len(matrix.unpriced):
        t = Table(title="Left out of the cost columns (never priced by guess)", title_justify="left")
        for c in ("instance type", "points", "reason"):
            t.add_column(c)
        for r in matrix.unpriced.itertuples(index=False):
            t.add_row(escape(str(r.instance_type)), str(r.points), escape(str(r.reason)))
        console.print(t)
    measured = matrix.invalid[matrix.invalid["status"] == "ok"]
    if len(measured):
        t = Table(title=f"Measured but invalid, not in the matrix ({len(measured)})", title_justify="left")
        for c in ("model", "hardware", "adapter", "precision", "batch", "reasons"):
            t.add_column(c)
        for r in measured.head(50).itertuples(index=False):
            t.add_row(*(escape(str(v)) for v in (r.model, r.hardware, r.adapter, r.precision, r.batch_size, r.reasons)))
        console.print(t)
    not_run = matrix.invalid[matrix.invalid["status"] != "ok"]
    if len(not_run):  # one line per reason: a sweep over many points repeats the same few
        t = Table(title=f"Not measured ({len(not_run)} records: unsupported or failed)", title_justify="left")
        for c in ("records", "where", "reason"):
            t.add_column(c)
        for (status, reason), group in not_run.groupby(["status", "reasons"], sort=True):
            where = sorted({f"{r.adapter} {r.precision}" for r in group.itertuples(index=False)})
            t.add_row(str(len(group)), escape(", ".join(where[:6]) + (" ..." if len(where) > 6 else "")), escape(str(reason)))
        console.print(t)
    if len(matrix.inaccurate) and not any("--include-inaccurate" in n for n in matrix.notes):
        console.print(f"[yellow]{len(matrix.inaccurate)} point(s) failed the accuracy check and are left out "
                      "(--include-inaccurate shows them)[/yellow]")
    for note in matrix.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


def _picks(points: pd.DataFrame, models: list[str], slo_p99_ms: float, rate: float,
           max_utilisation: float) -> tuple[dict[str, Any], Plan | None]:
    from hwbench.analyse.frontier import NoFeasiblePick, pick, plan

    out: dict[str, Any] = {}
    for m in models:
        try:
            out[m] = pick(points, m, slo_p99_ms, rate, max_utilisation=max_utilisation)
        except NoFeasiblePick as e:
            out[m] = str(e)
    feasible = all(not isinstance(v, str) for v in out.values())
    the_plan = (plan(points, {m: (slo_p99_ms, rate) for m in models}, max_utilisation=max_utilisation)
                if feasible and len(models) > 1 else None)
    return out, the_plan


def _print_picks(picks: dict[str, Any], the_plan: Plan | None, slo_p99_ms: float, rate: float, max_utilisation: float) -> None:
    console.print(f"\n[bold]Cheapest within p99 <= {slo_p99_ms:g} ms at {rate:g} requests/s[/bold] "
                  f"(instances = ceil(R / capacity at the SLO), measured by a server run or modelled by a queue "
                  f"replay of the point's latencies, at most {max_utilisation:.0%} utilisation; "
                  "p99 predicted at R / instances)")
    for model, p in picks.items():
        if isinstance(p, str):
            console.print(f"  [red]{escape(p)}[/red]")
            continue
        wait = f"incl. a batching wait of {p.batching_wait_ms:.3g} ms, " if p.batching_wait_ms > 0 else ""
        console.print(
            f"  [bold]{escape(model)}[/bold]: {p.instances} x {escape(p.hardware)} ({p.adapter} {p.precision} b{p.batch_size} "
            f"{escape(p.scenario)}), p99 {p.request_latency_p99_ms:.3g} ms at {p.rate_per_instance_rps:.3g} req/s per "
            f"instance ({wait}{escape(p.capacity_source)}; capacity {p.capacity_rps:.3g} req/s per instance), "
            f"[bold]${p.fleet_usd_per_hour:.4g}/hour[/bold], ${p.cost_usd_per_1m_at_rate:.3g} per 1M at this rate, "
            f"utilisation {_num(p.utilisation, '{:.0%}')}; price {p.price_usd_per_hour:.4g} $/h as of {p.price_as_of}, "
            f"{escape(str(p.price_source))}")
        console.print(f"    [dim]{escape(p.capacity_note)}[/dim]")
    if the_plan is not None and the_plan.homogeneous_instance_type is not None:
        console.print(f"  all models: ${the_plan.total_usd_per_hour:.4g}/hour; the cheapest single instance type for all, "
                      f"{the_plan.homogeneous_instance_type}, costs ${the_plan.homogeneous_usd_per_hour:.4g}/hour: "
                      f"saving ${the_plan.saving_usd_per_hour:.4g}/hour")
    elif the_plan is not None:
        console.print("  no single instance type meets every model's SLO: the mix above is the only way")


def frontier(
    results: ResultsArg,
    prices: PricesOpt = None,
    model: ModelsOpt = None,
    slo_p99_ms: Annotated[float | None, typer.Option("--slo-p99-ms", help="p99 latency target per request (ms); needs --rate-rps.")] = None,
    rate: Annotated[float | None, typer.Option("--rate-rps", help="Request rate (requests/s) for the SLO pick.")] = None,
    objective_choice: Annotated[Objective, typer.Option("--objective", help="Second frontier objective beside p99.")] = Objective.cost,
    spot: Annotated[bool, typer.Option("--spot", help="Use spot prices where the catalog has them.")] = False,
    include_inaccurate: Annotated[bool, typer.Option("--include-inaccurate", help="Keep points that failed the accuracy check.")] = False,
    allow_mixed: Annotated[bool, typer.Option("--allow-mixed", help="Merge runs even where one model name has different hashes or shapes.")] = False,
    export_path: Annotated[Path | None, typer.Option("--export", help="Write the scheduler-ready frontier JSON here.")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Save a p99 vs $/1M plot (PNG, SVG or PDF) here; server runs' rate-latency curves go beside it (NAME.server.EXT).")] = None,
    max_utilisation: Annotated[float | None, typer.Option("--max-utilisation", help="Highest utilisation a modelled capacity may reach, above 0 and below 1 (default 0.9).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most rows per model table (frontier points always shown).")] = 30,
    json_out: JsonFlag = False,
) -> None:
    """Show the performance/cost matrix and Pareto frontier per model, and pick within an SLO."""
    objective = objective_choice.value
    from hwbench.results import store
    from hwbench.analyse.frontier import FRONTIER_SCHEMA_VERSION, export, label_capacity, mark_frontier
    from hwbench.analyse.matrix import build_matrix
    from hwbench.catalog.prices import ON_DEMAND, SPOT, load_catalog

    if (slo_p99_ms is None) != (rate is None):
        raise UsageError("--slo-p99-ms and --rate-rps go together: the batching wait depends on the request rate")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise UsageError(f"--rate-rps must be a finite rate above 0 requests/s, got {rate:g}")
    if slo_p99_ms is not None and not (math.isfinite(slo_p99_ms) and slo_p99_ms > 0):
        raise UsageError(f"--slo-p99-ms must be a finite latency above 0 ms, got {slo_p99_ms:g}")
    if max_utilisation is not None and not (0 < max_utilisation < 1):
        raise UsageError(f"--max-utilisation must be above 0 and below 1 (a full queue has no p99), got {max_utilisation:g}")
    catalog = load_catalog(price_files(prices))
    records = store.load_records(results)
    if records.empty:
        raise ResultsError(f"no trial records in {', '.join(map(str, results))}")
    price_kind = SPOT if spot else ON_DEMAND
    matrix = build_matrix(records, catalog, models=split_list(model), include_inaccurate=include_inaccurate,
                          allow_mixed=allow_mixed, price_kind=price_kind)
    if matrix.points.empty:  # nothing to rank, but say exactly why: the records are kept and listed
        if json_out:
            print_json({"points": [], "invalid": matrix.invalid.to_dict(orient="records"),
                        "inaccurate": matrix.inaccurate.to_dict(orient="records"), "notes": matrix.notes})
            return
        console.print("[yellow]no valid points to put on a frontier[/]: every record is invalid or failed its "
                      "accuracy check. Re-measure with a longer --duration-s on a quieter machine, or see below.")
        _left_out(matrix)
        return
    from hwbench.analyse.capacity import DEFAULT_MAX_UTILISATION
    from hwbench.analyse.sizing import attach_service_sketches

    cap = DEFAULT_MAX_UTILISATION if max_utilisation is None else max_utilisation
    points = mark_frontier(matrix.points, objective)
    if slo_p99_ms is not None or export_path is not None:  # the modelled capacity replays the raw latencies
        points = attach_service_sketches(points, store.load_latencies(results))
    models = sorted(points["model"].unique())
    picks, the_plan = (_picks(points, models, slo_p99_ms, rate, cap) if slo_p99_ms is not None and rate is not None
                       else ({}, None))
    electricity = None if catalog.electricity is None else vars(catalog.electricity)
    exported = 0
    if export_path is not None:
        exported = len(export(points, export_path, objective=objective, price_kind=price_kind, electricity=electricity)["points"])
    server_plot = None
    if plot_path is not None:
        from hwbench.analyse.plot import has_rate_curves, plot_frontier, plot_rate_latency

        plot_frontier(points, plot_path, title=f"hwbench frontier ({price_kind} prices)")
        if has_rate_curves(points):
            server_plot = plot_rate_latency(points, plot_path.with_name(f"{plot_path.stem}.server{plot_path.suffix}"))
    if json_out:
        print_json({
            "objective": objective, "price_kind": price_kind, "electricity": electricity,
            "points": label_capacity(points.drop(columns=["service_sketch_ms"], errors="ignore")).to_dict(orient="records"), "invalid": matrix.invalid.to_dict(orient="records"),
            "inaccurate": matrix.inaccurate.to_dict(orient="records"), "unpriced": matrix.unpriced.to_dict(orient="records"),
            "prices_used": matrix.prices_used.to_dict(orient="records"), "notes": matrix.notes,
            "picks": {m: (p if isinstance(p, str) else p.to_dict()) for m, p in picks.items()},
            "plan": the_plan.to_dict() if the_plan else None,
            "export": str(export_path) if export_path else None, "plot": str(plot_path) if plot_path else None,
            "server_plot": str(server_plot) if server_plot else None, "max_utilisation": cap,
        })
        return
    for m in models:
        mine = points[points["model"] == m]
        generate = "workload" in mine and bool((mine["workload"] == "generate").all())
        table, hidden = _llm_table(m, mine, limit) if generate else _model_table(m, mine, matrix, limit)
        console.print(table)
        if hidden:
            console.print(f"  ({hidden} more points off the frontier; --limit or --json shows them)")
    if "p99_resolved" in points and not points["p99_resolved"].fillna(True).astype(bool).all():
        console.print(escape(f"  {UNRESOLVED_NOTE}"))
    _left_out(matrix)
    if picks:
        _print_picks(picks, the_plan, slo_p99_ms or 0.0, rate or 0.0, cap)
    if export_path is not None:
        console.print(escape(f"frontier exported to {export_path}: {exported} priced points (schema {FRONTIER_SCHEMA_VERSION}; "
                             "load with hwbench.analyse.frontier.load)"))
    if plot_path is not None:
        console.print(escape(f"plot saved to {plot_path}" + (f"; rate-latency curves to {server_plot}" if server_plot else "")))
