"""Pareto frontiers: pure DataFrame-in, mask-out functions (after paretoset).

A point dominates another when it is at least as good on every objective and strictly
better on one. The frontier is the set of points no other point dominates; equal points
do not dominate each other, so duplicates on the frontier are all kept. Rows with a
missing (NaN) objective cannot be compared and are never on the frontier.

`objectives` maps a column to "min" or "max".
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

MIN = "min"
MAX = "max"


def _matrix(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """The objectives as a float matrix oriented so that smaller is better in every column."""
    if not objectives:
        raise ValueError("at least one objective is needed")
    cols = []
    for column, sense in objectives.items():
        if sense not in (MIN, MAX):
            raise ValueError(f"objective {column!r}: sense must be 'min' or 'max', got {sense!r}")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        cols.append(values if sense == MIN else -values)
    return np.column_stack(cols) if cols else np.empty((len(df), 0))


def _mask_2d(x: np.ndarray, y: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Non-dominated mask for two minimised objectives, per group, by one sort and a sweep.

    Sorted by (group, x), a point is on the frontier when its y is the least y among the
    points of its group at its x, and below every y seen at a strictly smaller x.
    """
    n = len(x)
    mask = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(~(np.isnan(x) | np.isnan(y)))
    if idx.size == 0:
        return mask
    by_x = idx[np.argsort(x[idx])]
    g = group[by_x]
    if g.size and g.min() >= 0 and g.max() < 2**16:
        g = g.astype(np.uint16)  # numpy sorts 16-bit integers stably by radix: much faster
    order = by_x[np.argsort(g, kind="stable")]  # stable: x order kept within each group
    xs, ys, gs = x[order], y[order], group[order]
    new_group = np.r_[True, gs[1:] != gs[:-1]]
    new_block = new_group | np.r_[True, xs[1:] != xs[:-1]]  # a block: one group, one x
    block_start = np.flatnonzero(new_block)
    block_id = np.cumsum(new_block) - 1
    block_min = np.minimum.reduceat(ys, block_start)
    block_group_start = new_group[block_start]
    # least y over all earlier blocks of the same group: a cumulative minimum restarted per group
    group_id = np.cumsum(block_group_start) - 1
    shifted = np.r_[np.inf, block_min[:-1]]
    shifted[block_group_start] = np.inf
    prev_best = _grouped_cummin(shifted, group_id)
    on = (ys == block_min[block_id]) & (ys < prev_best[block_id])
    mask[order[on]] = True
    return mask


def _grouped_cummin(values: np.ndarray, group_id: np.ndarray) -> np.ndarray:
    """Cumulative minimum that restarts at each group (groups are contiguous)."""
    return pd.Series(values).groupby(group_id, sort=False).cummin().to_numpy()


def _mask_nd(costs: np.ndarray) -> np.ndarray:
    """Non-dominated mask for any number of minimised objectives, O(n x frontier size)."""
    n = costs.shape[0]
    mask = np.zeros(n, dtype=bool)
    ok = ~np.isnan(costs).any(axis=1)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return mask
    # visiting points in lexicographic order means no later point can dominate an earlier one
    order = idx[np.lexsort(costs[idx].T[::-1])]
    front: list[int] = []
    front_costs = np.empty((0, costs.shape[1]))
    for i in order:
        c = costs[i]
        if front:
            dominated = np.all(front_costs <= c, axis=1) & np.any(front_costs < c, axis=1)
            if dominated.any():
                continue
        front.append(i)
        front_costs = np.vstack([front_costs, c])
    mask[np.array(front, dtype=int)] = True
    return mask


def pareto_mask(df: pd.DataFrame, objectives: Mapping[str, str]) -> np.ndarray:
    """Boolean mask of the rows of `df` on the Pareto frontier of `objectives`."""
    costs = _matrix(df, objectives)
    if costs.shape[1] <= 2:  # one objective: the sweep with y = x keeps the ties at the minimum
        return _mask_2d(costs[:, 0], costs[:, -1], np.zeros(len(df), dtype=np.int64))
    return _mask_nd(costs)


def pareto_mask_by(df: pd.DataFrame, objectives: Mapping[str, str], by: str | Sequence[str]) -> np.ndarray:
    """The frontier computed separately within each group of `by` (for example per model)."""
    keys = [by] if isinstance(by, str) else list(by)
    if len(df) == 0:
        return np.zeros(0, dtype=bool)
    group = df.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    costs = _matrix(df, objectives)
    if costs.shape[1] <= 2:
        return _mask_2d(costs[:, 0], costs[:, -1], group)
    mask = np.zeros(len(df), dtype=bool)
    for rows in pd.Series(np.arange(len(df))).groupby(group).indices.values():
        sub = df.iloc[rows]
        mask[rows] = pareto_mask(sub, objectives)
    return mask


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """Whether point a dominates point b (the plain definition, for oracles and docs)."""
    better_or_equal = True
    strictly_better = False
    for va, vb, sense in zip(a, b, senses):
        if sense == MAX:
            va, vb = -va, -vb
        if va > vb:
            better_or_equal = False
        elif va < vb:
            strictly_better = True
    return better_or_equal and strictly_better
