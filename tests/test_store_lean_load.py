"""A store's load reads lean (issue 15 item 4): only the columns some file holds a value in (the footers'
null counts say which), text dictionary-encoded and held as one Python str per distinct value, the files
a batch at a time. The frame must be exactly what the per-file path (hwbench.results.store's own reader,
file by file, then pandas) gives, once cast to plain types, and analyser-style pandas work on it
(fillna with a new value, where, string concatenation, groupby, comparisons) must give the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hwbench.results import frame, scan
from hwbench.results.schema import RECORD_SCHEMA, TrialRecord
from hwbench.results.store import RunWriter, load_records, load_run_records

GOLDEN = Path(__file__).parent / "fixtures" / "schema_v1_run"
KEYS = ["run_id", "trial_id"]


def rec(run: str, n: int, **kw) -> TrialRecord:
    base = dict(run_id=run, trial_id=f"t{n}", model=f"m{n % 3}", model_sha256="s", adapter="null", device="cpu",
                precision="fp32" if n % 4 else None, batch_size=n, started_at=f"2026-06-{1 + n % 27:02d}T00:00:00+00:00",
                latency_p50_ms=float(n), invalid_reasons=["noisy"] if n % 2 else [], warnings=[],
                host="h1" if n % 5 else "h2", instance_type=None if n % 3 else "c7i.large")
    base.update(kw)
    return TrialRecord(**base)


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """Text in the storage `to_pandas` gives, lists as Python lists, rows in key order."""
    default = pa.array([], pa.large_string()).to_pandas().dtype
    df = df.astype({c: default for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)})
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = [list(x) if isinstance(x, np.ndarray) else x for x in df[c]]
    return df.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(params=["as configured", "every text column shared"])
def share(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small store's text columns are too varied to share (SHARE_MAX): the second run shares them all."""
    if request.param != "as configured":
        monkeypatch.setattr(frame, "SHARE_MAX", 1.0)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    for r, (trials, compact) in {"r1": (range(40), True), "r2": (range(7), True), "r3": (range(5), False)}.items():
        w = RunWriter(root / r)
        w.write_manifest({"run_id": r})
        for n in trials:
            w.write_trial(rec(r, n, processes=2 if r == "r2" else 1), np.arange(3))
        if compact:
            w.compact()
    w = RunWriter(root / "r2")  # a retried trial: its fragment beside the compacted file, the fragment wins
    w.write_trial(rec("r2", 3, latency_p50_ms=99.0, error="retried"), np.arange(3))
    shutil.copytree(GOLDEN, root / "v1run")  # schema 1: migrated (workload "inference", processes 1...)
    return root


def per_file(root: Path) -> pd.DataFrame:
    """The old path: each run folder read file by file through the store's reader, then concatenated."""
    runs = sorted(p.parent for p in root.rglob("manifest.json"))
    return pd.concat([load_run_records(r) for r in runs], ignore_index=True)


def test_the_lean_load_gives_what_the_per_file_path_gives(store: Path, share: None) -> None:
    lean, old = load_records(store), per_file(store)
    assert len(lean) == 40 + 7 + 5 + len(load_run_records(store / "v1run"))
    assert list(lean.columns) == RECORD_SCHEMA.names
    a, b = plain(lean), plain(old)
    # numeric columns empty everywhere come back float64 NaN, as pandas shows an integer column with nulls
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert [str(t) for t in a.dtypes] == [str(t) for t in b.astype(a.dtypes.to_dict()).dtypes]
    assert lean.loc[(lean.run_id == "r2") & (lean.trial_id == "t3"), "latency_p50_ms"].tolist() == [99.0]


def test_analyser_style_pandas_work_is_unchanged(store: Path, share: None) -> None:
    lean, old = load_records(store), per_file(store)
    lean, old = lean.sort_values(KEYS).reset_index(drop=True), old.sort_values(KEYS).reset_index(drop=True)
    for df in (lean, old):
        assert df["host"].dtype == old["host"].dtype or str(df["host"].dtype) == str(old["host"].dtype)
    ops = {
        "fillna new": lambda d: d["instance_type"].fillna("(none)").tolist(),
        "where new": lambda d: d["instance_type"].where(d["instance_type"].notna(), "(host " + d["host"] + ")").tolist(),
        "concat": lambda d: (d["model"] + "/" + d["adapter"]).tolist(),
        "compare": lambda d: (d["precision"] == "fp32").tolist(),
        "groupby": lambda d: d.groupby(["host", "model"])["latency_p50_ms"].sum().to_dict(),
        "groupby nulls": lambda d: d.groupby("precision", dropna=False).size().to_dict(),
        "isin": lambda d: d["model"].isin(["m1"]).tolist(),
        "str": lambda d: d["model"].str.upper().tolist(),
        "assign": lambda d: d.assign(host=lambda x: x["host"].where(x["host"] != "h2", "other"))["host"].tolist(),
        "unique": lambda d: sorted(map(str, d["model"].unique())),
        "isna": lambda d: d["precision"].isna().tolist(),
    }
    for name, op in ops.items():
        assert op(lean) == op(old), name
    lean.loc[0, "host"] = "written"  # a write to a shared-string column touches that cell only
    assert (lean["host"] == "written").sum() == 1


def test_low_cardinality_text_shares_one_string_per_value(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame, "SHARE_MAX", 1.0)
    df = load_records(store)
    hosts = df["host"].to_numpy(dtype=object)
    assert len({id(h) for h in hosts if isinstance(h, str)}) == len(set(h for h in hosts if isinstance(h, str)))
    trials = df["trial_id"].astype(str).tolist()  # unique per run: decoded as is
    assert sorted(trials) == sorted(per_file(store)["trial_id"].astype(str).tolist())


def test_only_columns_holding_a_value_are_read(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[list[str]] = []
    real = scan._lean_columns

    def spy(checked):
        read.append(real(checked))
        return read[-1]

    monkeypatch.setattr(scan, "_lean_columns", spy)
    df = load_records(store)
    assert read
    cols = set().union(*map(set, read))
    assert {"latency_p50_ms", "host", "error", "invalid_reasons"} <= cols
    assert "ttft_p50_ms" not in cols and "offered_rps" not in cols  # empty in every file: not read
    assert df["ttft_p50_ms"].isna().all() and df["offered_rps"].isna().all()


def test_a_file_without_statistics_is_read_whole(tmp_path: Path) -> None:
    """No null counts in the footer: nothing can be skipped, every value still comes back."""
    run = tmp_path / "store" / "r"
    w = RunWriter(run)
    w.write_manifest({"run_id": "r"})
    for n in range(3):
        w.write_trial(rec("r", n, ttft_p50_ms=float(n) if n == 2 else None), np.arange(3))
    w.compact()
    table = pq.read_table(run / "records.parquet")
    pq.write_table(table, run / "records.parquet", write_statistics=False)
    df = load_records(tmp_path / "store")
    assert sorted(df["ttft_p50_ms"].dropna().tolist()) == [2.0]


def test_many_files_go_in_batches_and_duplicates_across_batches_keep_the_last(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "SCAN_FILES", 2)
    root = tmp_path / "store"
    w = RunWriter(root / "r")
    w.write_manifest({"run_id": "r"})
    for n in range(5):
        w.write_trial(rec("r", n), np.arange(3))
    w.compact()
    for n in (1, 4):  # retried after compaction: the fragments are newer
        w.write_trial(rec("r", n, latency_p50_ms=100.0 + n), np.arange(3))
    w2 = RunWriter(root / "q")
    w2.write_manifest({"run_id": "q"})
    w2.write_trial(rec("q", 0, offered_rps=5.0), np.arange(3))  # a column only this batch holds
    df = load_records(root).sort_values(KEYS)
    assert len(df) == 6
    assert df.set_index("trial_id").loc[["t1", "t4"]].query("run_id == 'r'")["latency_p50_ms"].tolist() == [101.0, 104.0]
    assert df["offered_rps"].dropna().tolist() == [5.0]


def test_a_load_lists_each_location_once(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = scan.list_runs
    monkeypatch.setattr(scan, "list_runs", lambda target: calls.append(str(target)) or real(target))
    other = tmp_path / "other"
    shutil.copytree(store / "r1", other / "r1")
    assert len(load_records([store, other])) == len(load_records(store))  # a copy of r1: the same run, kept once
    assert calls.count(str(store)) == 2 and calls.count(str(other)) == 1  # two loads of `store`, one of `other`
