"""Compare two sets of runs trial by trial, with a significance test on the raw latencies.

Trials match on (model hash, adapter, precision, batch size, scenario, concurrency). For
each match: the candidate/baseline ratios of p50, p99 and throughput from the records,
and a two-sided Mann-Whitney U test on the raw per-batch latency samples. The p-values
are Holm-adjusted over all matched trials, since testing many trials at once would
otherwise flag some by chance. Samples within one run are not independent (drift,
bursts), so the test alone overstates confidence; a change is only called a regression
or an improvement when it is significant AND larger than `min_effect_pct`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from hwbench.errors import ResultsError, UsageError

MATCH_KEY = ("model_sha256", "adapter", "precision", "batch_size", "scenario", "concurrency")
REGRESSION = "regression"
IMPROVEMENT = "improvement"
SAME = "no change"
UNTESTED = "untested"


@dataclass
class Comparison:
    """The matched trials and what could not be matched."""

    rows: pd.DataFrame  # one per matched trial: key, ratios, p_value, p_adjusted, change_pct, verdict
    only_baseline: pd.DataFrame
    only_candidate: pd.DataFrame
    alpha: float
    min_effect_pct: float
    notes: list[str] = field(default_factory=list)

    def regressions(self, above_pct: float = 0.0) -> pd.DataFrame:
        """Significant regressions whose p50 got slower by more than `above_pct` percent."""
        r = self.rows
        return r[(r["verdict"] == REGRESSION) & (r["change_pct"] > above_pct)]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def _usable(records: pd.DataFrame, side: str) -> tuple[pd.DataFrame, list[str]]:
    ok = records[(records["status"] == "ok") & records["latency_p50_ms"].notna()]
    if ok.empty:
        raise ResultsError(f"the {side} has no successful trials to compare")
    ok = ok.sort_values("started_at", kind="stable")
    dup = ok.duplicated(list(MATCH_KEY), keep="last")
    notes = [f"{side}: {int(dup.sum())} trial(s) repeat a key (several runs or devices); the latest is compared"] if dup.any() else []
    return ok[~dup], notes


def _samples(latencies: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    if latencies.empty:
        return {}
    return {key: g.to_numpy(dtype=np.int64) for key, g in latencies.groupby(["run_id", "trial_id"])["latency_ns"]}


def compare_frames(base: pd.DataFrame, cand: pd.DataFrame, base_lat: pd.DataFrame, cand_lat: pd.DataFrame, *,
                   alpha: float = 0.05, min_effect_pct: float = 2.0) -> Comparison:
    """Compare records (RECORD_COLUMNS) and raw latencies (run_id, trial_id, iteration, latency_ns)."""
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be between 0 and 1, got {alpha}")
    if min_effect_pct < 0:
        raise UsageError(f"the minimum effect must be >= 0 %, got {min_effect_pct}")
    base, notes = _usable(base, "baseline")
    cand, more = _usable(cand, "candidate")
    notes += more
    keep = list(MATCH_KEY) + ["model", "run_id", "trial_id", "valid", "latency_p50_ms", "latency_p99_ms", "throughput_sps",
                              "precision_effective", "device"]
    merged = base[keep].merge(cand[keep], on=list(MATCH_KEY), suffixes=("_base", "_cand"), how="outer", indicator=True)
    only_b = merged[merged["_merge"] == "left_only"]
    only_c = merged[merged["_merge"] == "right_only"]
    both = merged[merged["_merge"] == "both"].reset_index(drop=True)
    if both.empty:
        raise ResultsError("the baseline and the candidate have no trial in common (same model hash, adapter, precision, batch size)")
    from scipy.stats import mannwhitneyu  # imported here: scipy.stats costs about 1 s to import

    sb, sc = _samples(base_lat), _samples(cand_lat)
    p_values = np.full(len(both), np.nan)
    n_base = np.zeros(len(both), dtype=np.int64)
    n_cand = np.zeros(len(both), dtype=np.int64)
    for i, row in enumerate(both.itertuples(index=False)):
        a = sb.get((row.run_id_base, row.trial_id_base))
        b = sc.get((row.run_id_cand, row.trial_id_cand))
        n_base[i] = 0 if a is None else a.size
        n_cand[i] = 0 if b is None else b.size
        if a is not None and b is not None and a.size >= 3 and b.size >= 3:
            p_values[i] = mannwhitneyu(b, a, alternative="two-sided").pvalue
    ratio = lambda col: both[f"{col}_cand"].astype(float) / both[f"{col}_base"].astype(float)  # noqa: E731
    p50_ratio = ratio("latency_p50_ms")
    adjusted = holm(p_values)
    change = (p50_ratio - 1.0) * 100.0
    significant = adjusted < alpha
    verdict = np.where(np.isnan(adjusted), UNTESTED,
                       np.where(significant & (change > min_effect_pct), REGRESSION,
                                np.where(significant & (change < -min_effect_pct), IMPROVEMENT, SAME)))
    rows = both[list(MATCH_KEY) + ["model_base", "latency_p50_ms_base", "latency_p50_ms_cand", "latency_p99_ms_base",
                                   "latency_p99_ms_cand", "throughput_sps_base", "throughput_sps_cand",
                                   "valid_base", "valid_cand"]].rename(columns={"model_base": "model"})
    rows = rows.assign(p50_ratio=p50_ratio, p99_ratio=ratio("latency_p99_ms"), throughput_ratio=ratio("throughput_sps"),
                       change_pct=change, n_base=n_base, n_cand=n_cand, p_value=p_values, p_adjusted=adjusted, verdict=verdict)
    untested = int((verdict == UNTESTED).sum())
    if untested:
        notes.append(f"{untested} trial(s) lack raw latency samples (3 or more a side) and were not tested")
    invalid = int((~rows["valid_base"].fillna(False).astype(bool) | ~rows["valid_cand"].fillna(False).astype(bool)).sum())
    if invalid:
        notes.append(f"{invalid} matched trial(s) are INVALID on one side (for example unstable); read them with care")
    cols = ["model", "adapter", "precision", "batch_size", "scenario"]
    return Comparison(rows=rows.reset_index(drop=True), only_baseline=only_b.rename(columns={"model_base": "model"})[cols],
                      only_candidate=only_c.rename(columns={"model_cand": "model"})[cols], alpha=alpha,
                      min_effect_pct=min_effect_pct, notes=notes)


def compare_runs(baseline: Iterable[str], candidate: Iterable[str], *, alpha: float = 0.05,
                 min_effect_pct: float = 2.0) -> Comparison:
    """Load both sides from run folders (or folders above them) and compare them."""
    from hwbench.results import store

    base_paths, cand_paths = list(baseline), list(candidate)
    return compare_frames(store.load_records(base_paths), store.load_records(cand_paths),
                          store.load_latencies(base_paths), store.load_latencies(cand_paths),
                          alpha=alpha, min_effect_pct=min_effect_pct)
