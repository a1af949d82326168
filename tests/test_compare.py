"""`compare`: a planted regression is found, noise is not, and the Holm correction holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hwbench.analyse.compare import IMPROVEMENT, REGRESSION, SAME, UNTESTED, compare_frames, compare_runs, holm
from hwbench.errors import ResultsError, UsageError
from hwbench.results.schema import TrialRecord
from hwbench.results.store import RunWriter


def trial(run: str, batch: int, samples_ms: np.ndarray | None, **kw: Any) -> TrialRecord:
    p50 = float(np.median(samples_ms)) if samples_ms is not None else 10.0
    p99 = float(np.percentile(samples_ms, 99)) if samples_ms is not None else 12.0
    base: dict[str, Any] = dict(run_id=run, trial_id=f"{run}-b{batch}", model="mlp", model_sha256="d" * 64, adapter="ort-cpu",
                                device="cpu", precision="fp32", batch_size=batch, valid=True, latency_p50_ms=p50,
                                latency_p99_ms=p99, throughput_sps=batch * 1000.0 / p50, started_at="2026-01-01T00:00:00Z")
    base.update(kw)
    return TrialRecord(**base)


def write_run(folder: Path, run: str, slowdown: dict[int, float], seed: int, n: int = 400) -> Path:
    """A run of three batch sizes with ~3% noise; `slowdown` multiplies a batch size's latencies."""
    rng = np.random.default_rng(seed)
    writer = RunWriter(folder / run)
    writer.write_manifest({"run_id": run, "host": {"hostname": "test"}})
    for batch in (1, 4, 16):
        samples_ms = rng.normal(2.0 * batch, 0.06 * batch, n) * slowdown.get(batch, 1.0)
        writer.write_trial(trial(run, batch, samples_ms), (samples_ms * 1e6).astype(np.int64))
    writer.compact()
    return folder / run


def test_planted_regression_is_found_and_noise_is_not(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", "r-base", {}, seed=1)
    cand = write_run(tmp_path / "cand", "r-cand", {4: 1.20, 16: 0.90}, seed=2)
    result = compare_runs([str(base)], [str(cand)])
    verdicts = dict(zip(result.rows["batch_size"], result.rows["verdict"]))
    assert verdicts == {1: SAME, 4: REGRESSION, 16: IMPROVEMENT}
    row = result.rows.set_index("batch_size").loc[4]
    assert row["p50_ratio"] == pytest.approx(1.20, abs=0.02)
    assert row["throughput_ratio"] == pytest.approx(1 / 1.20, abs=0.02)
    assert row["p_adjusted"] < 1e-6 and row["n_base"] == row["n_cand"] == 400
    assert list(result.regressions(10.0)["batch_size"]) == [4]
    assert result.regressions(25.0).empty


def test_untested_without_samples_and_unmatched_trials() -> None:
    base = pd.DataFrame([trial("a", 1, None).to_row(), trial("a", 2, None).to_row()])
    cand = pd.DataFrame([trial("b", 1, None, latency_p50_ms=30.0).to_row(), trial("b", 8, None).to_row()])
    empty = pd.DataFrame(columns=["run_id", "trial_id", "iteration", "latency_ns"])
    result = compare_frames(base, cand, empty, empty)
    assert result.rows["verdict"].tolist() == [UNTESTED]  # a 3x slowdown, but nothing to test it on: never a failure
    assert result.regressions(0.0).empty
    assert result.only_baseline["batch_size"].tolist() == [2] and result.only_candidate["batch_size"].tolist() == [8]
    assert any("not tested" in n for n in result.notes)


def test_nothing_in_common_and_bad_options() -> None:
    base = pd.DataFrame([trial("a", 1, None).to_row()])
    cand = pd.DataFrame([trial("b", 1, None, model_sha256="e" * 64).to_row()])
    empty = pd.DataFrame(columns=["run_id", "trial_id", "iteration", "latency_ns"])
    with pytest.raises(ResultsError, match="no trial in common"):
        compare_frames(base, cand, empty, empty)
    with pytest.raises(UsageError, match="alpha"):
        compare_frames(base, base, empty, empty, alpha=2.0)


def test_holm_by_hand() -> None:
    # sorted p: 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (monotone)
    assert holm(np.array([0.04, 0.01, np.nan, 0.02])).tolist()[:2] == pytest.approx([0.04, 0.03])
    adjusted = holm(np.array([0.04, 0.01, np.nan, 0.02]))
    assert np.isnan(adjusted[2]) and adjusted[3] == pytest.approx(0.04)
