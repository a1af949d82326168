"""`hwbench compare`: trial-by-trial ratios and a significance test between two sets of runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from hwbench.cli.common import console, escape, JsonFlag, print_json, Table
from hwbench.cli.options import epilog, renamed_flags
from hwbench.errors import UsageError

RENAMED = {"--fail-above": "--fail-above-pct", "--min-effect": "--min-effect-pct"}
COMMAND = dict(cls=renamed_flags(RENAMED), epilog=epilog(
    "hwbench compare results/RUN_A results/RUN_B",
    "hwbench compare results/base results/candidate --fail-above-pct 5   # exit 1 on a regression above 5%",
    "hwbench compare results/base results/candidate --min-effect-pct 1 --json"))


def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline run folder, or a folder above runs.")],
    candidate: Annotated[Path, typer.Argument(help="Candidate run folder, or a folder above runs.")],
    fail_above: Annotated[float | None, typer.Option("--fail-above-pct", help="Exit 1 when a significant p50 regression exceeds this many percent (finite, >= 0).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level, after Holm's correction over all trials.")] = 0.05,
    min_effect: Annotated[float, typer.Option("--min-effect-pct", help="Changes smaller than this many percent count as noise.")] = 2.0,
    json_out: JsonFlag = False,
) -> None:
    """Compare a candidate against a baseline; exit 1 on a significant regression above --fail-above-pct."""
    from hwbench.analyse.compare import IMPROVEMENT, REGRESSION, compare_runs  # pandas and scipy: only when used

    style = {REGRESSION: "bold red", IMPROVEMENT: "bold green"}
    if fail_above is not None and not (math.isfinite(fail_above) and fail_above >= 0):
        raise UsageError(f"--fail-above-pct must be a finite percentage >= 0, got {fail_above:g}")
    if not (math.isfinite(min_effect) and min_effect >= 0):
        raise UsageError(f"--min-effect-pct must be a finite percentage >= 0, got {min_effect:g}")
    if not 0 < alpha < 1:  # False for NaN too
        raise UsageError(f"--alpha must be above 0 and below 1, got {alpha:g}")
    result = compare_runs([baseline], [candidate], alpha=alpha, min_effect_pct=min_effect)
    failing = result.regressions(fail_above) if fail_above is not None else result.rows.iloc[0:0]
    if json_out:
        print_json({
            "alpha": alpha, "min_effect_pct": min_effect, "fail_above_pct": fail_above, "failed": len(failing) > 0,
            "trials": result.rows.to_dict(orient="records"), "only_baseline": result.only_baseline.to_dict(orient="records"),
            "only_candidate": result.only_candidate.to_dict(orient="records"), "notes": result.notes,
        })
    else:
        table = Table(title=escape(f"{candidate} vs {baseline} (ratios candidate/baseline; Mann-Whitney U on raw latencies)"),
                      title_justify="left")
        for c in ("model", "adapter", "precision", "batch", "scenario", "p50 ms", "p50 ×", "p99 ×", "items/s ×", "n", "p (Holm)", "verdict"):
            table.add_column(c, justify="left" if c in ("model", "adapter", "precision", "scenario", "verdict") else "right")
        for r in result.rows.itertuples(index=False):
            table.add_row(escape(str(r.model)), escape(str(r.adapter)), str(r.precision), str(r.batch_size), str(r.scenario),
                          f"{r.latency_p50_ms_base:.3g} → {r.latency_p50_ms_cand:.3g}", f"{r.p50_ratio:.3f}",
                          f"{r.p99_ratio:.3f}", f"{r.throughput_ratio:.3f}", f"{r.n_base}/{r.n_cand}",
                          "-" if r.p_adjusted != r.p_adjusted else f"{r.p_adjusted:.2g}",
                          f"{r.verdict} ({r.change_pct:+.1f}%)", style=style.get(r.verdict))
        console.print(table)
        for label, frame in (("only in the baseline", result.only_baseline), ("only in the candidate", result.only_candidate)):
            if len(frame):
                console.print(f"{len(frame)} trial(s) {label}, not compared")
        for note in result.notes:
            console.print(f"[yellow]note:[/yellow] {escape(note)}")
        if fail_above is not None:
            verdict = f"[bold red]FAIL[/bold red]: {len(failing)} significant regression(s) above {fail_above:g}%" if len(failing) \
                else f"[green]pass[/green]: no significant regression above {fail_above:g}%"
            console.print(verdict)
    if len(failing):
        raise typer.Exit(1)
