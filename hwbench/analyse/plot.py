"""The frontier plot: p99 latency against $ per 1M inferences, log axes, one panel per model.

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
