"""The frontier plot (p99 latency against $ per 1M inferences, log axes, one panel per model) and
the server scenario's rate-latency curves (p99 and p50 against offered rate, the SLO, the capacity).

One colour per hardware, one marker per precision, the frontier drawn as a step line, and
labelled points. Drawn with the Agg canvas directly, so no display (and no pyplot state)
is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hwbench.errors import UsageError
from hwbench.analyse.pareto import MIN, pareto_mask

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MAX_LABELS = 40  # per panel; beyond this only frontier points are labelled


def plot_frontier(points: pd.DataFrame, path: Path | str, *, title: str = "") -> Path:
    """Save the plot of the priced points of the matrix to `path`; the step line is each model's p99-vs-cost frontier."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cost = pd.to_numeric(points["cost_usd_per_1m"], errors="coerce")
    p99 = pd.to_numeric(points["latency_p99_ms"], errors="coerce")
    shown = points[(cost > 0) & (p99 > 0)]
    if shown.empty:
        raise UsageError("nothing to plot: no point has both a price and a p99 latency (are the instance types priced?)")
    models = sorted(shown["model"].unique())
    cols = min(2, len(models))
    rows = math.ceil(len(models) / cols)
    fig = Figure(figsize=(7.5 * cols, 5.5 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    hardware = sorted(shown["hardware"].unique())
    cmap = colormaps["tab10" if len(hardware) <= 10 else "tab20"]
    colour = {hw: cmap(i % cmap.N) for i, hw in enumerate(hardware)}
    precisions = sorted(shown["precision"].astype(str).unique())
    marker = {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(precisions)}
    for n, model in enumerate(models):
        ax = fig.add_subplot(rows, cols, n + 1)
        mine = shown[shown["model"] == model]
        for (hw, prec), g in mine.groupby(["hardware", "precision"], sort=True):
            ax.scatter(g["cost_usd_per_1m"], g["latency_p99_ms"], c=[colour[hw]], marker=marker[str(prec)],
                       s=36, alpha=0.85, edgecolors="none", label=f"{hw}, {prec}")
        front = mine[pareto_mask(mine, {"cost_usd_per_1m": MIN, "latency_p99_ms": MIN})].sort_values("cost_usd_per_1m")
        if len(front):
            ax.step(front["cost_usd_per_1m"], front["latency_p99_ms"], where="post", color="black", lw=1.2,
                    label="frontier")
        label_rows = mine if len(mine) <= MAX_LABELS else front
        for r in label_rows.itertuples(index=False):
            ax.annotate(f"{r.adapter} {r.precision} b{r.batch_size}", (r.cost_usd_per_1m, r.latency_p99_ms),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("$ per 1M inferences (full utilisation)")
        ax.set_ylabel("p99 latency per batch (ms)")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    out = Path(path)
    try:
        fig.savefig(out, dpi=120)
    except OSError as e:
        raise UsageError(f"cannot write plot {out}: {e.strerror or e}") from e
    except ValueError as e:  # an unknown file extension
        raise UsageError(f"cannot write plot {out}: {e}") from e
    return out


def has_rate_curves(points: pd.DataFrame) -> bool:
    """Whether any point carries a server run's rate-latency curve."""
    return "rate_curve" in points and any(isinstance(c, list) and c for c in points["rate_curve"])


def plot_rate_latency(points: pd.DataFrame, path: Path | str) -> Path:
    """Save the server runs' measured curves: p99 and p50 against offered rate, the SLO line and the capacity, per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not has_rate_curves(points):
        raise UsageError("nothing to plot: no server-scenario records (hwbench profile --scenario server)")
    shown = points[[isinstance(c, list) and bool(c) for c in points["rate_curve"]]]
    models = sorted(shown["model"].unique())
    cols = min(2, len(models))
    rows = math.ceil(len(models) / cols)
    fig = Figure(figsize=(7.5 * cols, 5.0 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for n, model in enumerate(models):
        ax = fig.add_subplot(rows, cols, n + 1)
        slos = set()
        for i, r in enumerate(shown[shown["model"] == model].itertuples(index=False)):
            curve = sorted(r.rate_curve, key=lambda p: p.get("offered_rps") or 0.0)
            rate = [p.get("offered_rps") for p in curve]
            colour = f"C{i % 10}"
            label = f"{r.hardware}, {r.adapter} {r.precision}"
            ax.plot(rate, [p.get("latency_p99_ms") for p in curve], "o-", color=colour, label=f"{label}: p99")
            ax.plot(rate, [p.get("latency_p50_ms") for p in curve], "s--", color=colour, alpha=0.6, ms=4, label=f"{label}: p50")
            capacity = getattr(r, "capacity_at_slo_rps", None)
            if capacity is not None and capacity == capacity and capacity > 0:
                ax.axvline(capacity, color=colour, ls=":", lw=1.2, label=f"capacity at the SLO: {capacity:.3g} req/s")
            slo = getattr(r, "slo_p99_ms", None)
            if slo is not None and slo == slo and slo not in slos:
                slos.add(slo)
                ax.axhline(slo, color="black", ls="-.", lw=1.0, label=f"SLO p99 {slo:g} ms")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (requests/s, open-loop Poisson arrivals)")
        ax.set_ylabel("latency from scheduled arrival (ms, measured)")
        ax.set_title(f"{model}: server scenario")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    out = Path(path)
    try:
        fig.savefig(out, dpi=120)
    except OSError as e:
        raise UsageError(f"cannot write plot {out}: {e.strerror or e}") from e
    except ValueError as e:
        raise UsageError(f"cannot write plot {out}: {e}") from e
    return out
