"""The Pareto functions against an O(n^2) oracle written from the definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwbench.analyse.pareto import MAX, MIN, dominates, pareto_mask, pareto_mask_by


def oracle(values: np.ndarray, senses: list[str]) -> list[bool]:
    """A point is on the frontier when it has no NaN and no other complete point dominates it."""
    complete = [not np.isnan(v).any() for v in values]
    return [
        complete[i] and not any(complete[j] and dominates(values[j], values[i], senses) for j in range(len(values)) if j != i)
        for i in range(len(values))
    ]


# small integer grids make ties and duplicates common, which is where sweeps go wrong
cell = st.one_of(st.integers(0, 6).map(float), st.just(float("nan")))


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, str]]:
    k = draw(st.integers(1, 4))
    n = draw(st.integers(0, 40))
    rows = draw(st.lists(st.lists(cell, min_size=k, max_size=k), min_size=n, max_size=n))
    senses = draw(st.lists(st.sampled_from([MIN, MAX]), min_size=k, max_size=k))
    cols = [f"o{i}" for i in range(k)]
    df = pd.DataFrame(rows, columns=cols, dtype=float) if n else pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    df["group"] = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    return df, dict(zip(cols, senses))


@settings(max_examples=300, deadline=None)
@given(frames())
def test_pareto_mask_matches_oracle(case: tuple[pd.DataFrame, dict[str, str]]) -> None:
    df, objectives = case
    expected = oracle(df[list(objectives)].to_numpy(), list(objectives.values()))
    assert pareto_mask(df, objectives).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(frames())
def test_grouped_mask_matches_oracle_per_group(case: tuple[pd.DataFrame, dict[str, str]]) -> None:
    df, objectives = case
    got = pareto_mask_by(df, objectives, "group")
    for _, rows in df.groupby("group").groups.items():
        sub = df.loc[rows]
        expected = oracle(sub[list(objectives)].to_numpy(), list(objectives.values()))
        assert got[df.index.get_indexer(rows)].tolist() == expected


def test_hand_example_latency_vs_cost() -> None:
    df = pd.DataFrame({
        "p99": [10.0, 5.0, 20.0, 5.0, 8.0, 10.0],
        "cost": [1.0, 3.0, 0.5, 3.0, 4.0, 1.0],
    })
    # row 4 is beaten by row 1 (faster and cheaper); rows 1/3 and 0/5 are duplicates, all kept
    assert pareto_mask(df, {"p99": MIN, "cost": MIN}).tolist() == [True, True, True, True, False, True]


def test_maximised_objective_and_nan() -> None:
    df = pd.DataFrame({"p99": [1.0, 2.0, np.nan, 3.0], "thr": [10.0, 30.0, 99.0, 20.0]})
    assert pareto_mask(df, {"p99": MIN, "thr": MAX}).tolist() == [True, True, False, False]


def test_bad_sense_is_refused() -> None:
    with pytest.raises(ValueError, match="sense"):
        pareto_mask(pd.DataFrame({"a": [1.0]}), {"a": "lowest"})


def test_large_grouped_input_matches_ungrouped_per_group() -> None:
    rng = np.random.default_rng(7)
    n = 20000
    df = pd.DataFrame({"g": rng.integers(0, 50, n), "x": rng.integers(0, 300, n).astype(float),
                       "y": rng.integers(0, 300, n).astype(float)})
    got = pareto_mask_by(df, {"x": MIN, "y": MIN}, "g")
    for g, sub in df.groupby("g"):
        assert got[sub.index.to_numpy()].tolist() == pareto_mask(sub, {"x": MIN, "y": MIN}).tolist(), g
