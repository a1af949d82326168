"""Store consolidation (hwbench.results.consolidate) and the lean frame (hwbench.results.frame), issue 15 item 4.

The run folders stay the truth: whatever happens to them after a consolidation (a new run, a resumed
one, its compaction, a deleted one) a load gives exactly what reading the folders gives, each trial
once. A crash is injected at every step of consolidation (its `step` hook), as tests/test_store_crash.py
does for a run folder's compaction. The same holds through s3:// on moto (an S3 emulator on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hwbench.results import consolidate, scan
from hwbench.results.consolidate import FOLDER, INDEX
from hwbench.results.frame import lean_frame
from hwbench.results.schema import RECORD_SCHEMA, SCHEMA_VERSION, TrialRecord, records_table
from hwbench.results.store import RunWriter, load_records

GOLDEN = Path(__file__).parent / "fixtures" / "schema_v1_run"
KEYS = ["run_id", "trial_id"]


class _Crash(BaseException):
    """Stands for the process dying at a step boundary (not an Exception: nothing may catch it)."""


def rec(run: str, n: int, **kw) -> TrialRecord:
    base = dict(run_id=run, trial_id=f"{run}-{n}", model=f"m{n % 3}", model_sha256="s", adapter="null", device="cpu",
                precision="fp32", batch_size=n, started_at=f"2026-06-{1 + n % 27:02d}T00:00:00+00:00",
                latency_p50_ms=float(n), invalid_reasons=["noisy"] if n % 2 else [], warnings=[])
    base.update(kw)
    return TrialRecord(**base)


def write_run(root: Path, run: str, trials: range, compact: bool = True) -> RunWriter:
    w = RunWriter(root / run)
    w.write_manifest({"run_id": run})
    for n in trials:
        w.write_trial(rec(run, n), np.arange(3))
    if compact:
        w.compact()
    return w


def raw(target: str | Path) -> pd.DataFrame:
    """What the run folders hold, read without the consolidated file."""
    listing = scan.list_runs(str(target))
    table = scan.read_raw(listing, listing.runs)
    return lean_frame([table], RECORD_SCHEMA)


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with each text column in the storage `to_pandas` gives (a lean frame may hold a low-cardinality
    one as shared Python strings: same dtype name and missing value, other storage)."""
    default = pa.array([], pa.large_string()).to_pandas().dtype
    return df.astype({c: default for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)})


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = plain(a).sort_values(KEYS).reset_index(drop=True)
    b = plain(b).sort_values(KEYS).reset_index(drop=True)
    assert list(a.columns) == list(b.columns) and a.dtypes.equals(b.dtypes)
    lists = [c for c in a.columns if a[c].dtype == object]
    pd.testing.assert_frame_equal(a.drop(columns=lists), b.drop(columns=lists))
    for c in lists:
        norm = lambda s: [list(x) if isinstance(x, np.ndarray) else x for x in s]  # noqa: E731
        assert norm(a[c]) == norm(b[c]), c


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    write_run(root, "r1", range(6))
    write_run(root, "r2", range(4))
    write_run(root, "nested/r3", range(3), compact=False)  # fragments only: an interrupted run
    return root


def test_consolidation_is_idempotent_and_loads_what_the_folders_hold(store: Path) -> None:
    before = load_records(store)
    first = consolidate.consolidate(str(store))
    assert (first.runs, first.rows) == (3, 13)
    same(load_records(store), before)
    second = consolidate.consolidate(str(store))
    assert second.rows == 13 and second.file != first.file and first.file in second.removed
    files = sorted(p.name for p in (store / FOLDER).iterdir())
    assert files == sorted([INDEX, Path(second.file).name])  # one rows file: the old one went
    same(load_records(store), before)
    listing = scan.list_runs(str(store))
    covered, stale = consolidate.split_runs(listing, consolidate.read_index(listing))
    assert len(covered) == 3 and stale == []  # every run comes from the consolidated file


def test_runs_changed_after_consolidation_come_from_their_folders_without_duplicates(store: Path) -> None:
    consolidate.consolidate(str(store))
    write_run(store, "r4", range(2))  # new
    w = RunWriter(store / "r1")
    w.write_trial(rec("r1", 1, latency_p50_ms=99.0), np.arange(3))  # r1-1 retried: its fragment is newer
    w.write_trial(rec("r1", 7), np.arange(3))  # one more trial
    shutil.rmtree(store / "r2")  # deleted
    df = load_records(store)
    same(df, raw(store))
    assert not df.duplicated(KEYS).any() and len(df) == 7 + 3 + 2
    assert df.set_index("trial_id").loc["r1-1", "latency_p50_ms"] == 99.0
    assert "r2" not in set(df.run_id)
    w.compact()  # the fragments merge into records.parquet: a changed file again, still read from the folder
    same(load_records(store), raw(store))


def test_a_crash_at_every_step_of_consolidation_loses_nothing(store: Path) -> None:
    truth = raw(store)
    seen: list[str] = []
    consolidate.consolidate(str(store), step=seen.append)
    assert seen == ["read", "rows file written", "index in place", "old files removed"]
    write_run(store, "r5", range(2))  # so the next consolidation has something new to cover
    truth = raw(store)
    for at in seen:
        def crash(name: str, at: str = at) -> None:
            if name == at:
                raise _Crash(at)

        with pytest.raises(_Crash):
            consolidate.consolidate(str(store), step=crash)
        same(load_records(store), truth)  # after the crash: every record once
    done = consolidate.consolidate(str(store))
    same(load_records(store), truth)
    assert sorted(p.name for p in (store / FOLDER).iterdir()) == sorted([INDEX, Path(done.file).name])


def _no_folder_reads(*args: object, **kwargs: object) -> None:
    raise AssertionError("a covered run was read from its folder")


def test_filters_and_schema_migration_through_the_consolidated_file(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(GOLDEN, store / "v1run")
    before = load_records(store)
    v1_rows = len(load_records(store / "v1run"))
    consolidate.consolidate(str(store))
    monkeypatch.setattr(scan, "_scan", _no_folder_reads)  # every filter below is served by the consolidated file
    same(load_records(store), before)
    assert len(load_records(store, schema_versions=[1])) == v1_rows > 0
    assert set(load_records(store, schema_versions=[SCHEMA_VERSION]).run_id) == {"r1", "r2", "nested/r3"}
    same(load_records(store, models=["m1"]), before[before.model == "m1"])
    since = load_records(store, since="2026-06-03", until="2026-06-05")
    assert sorted(since.trial_id) == sorted(before[(before.started_at >= "2026-06-03")
                                                   & (before.started_at < "2026-06-05")].trial_id)


def test_an_index_naming_a_missing_file_or_another_schema_falls_back_to_the_folders(store: Path) -> None:
    truth = raw(store)
    done = consolidate.consolidate(str(store))
    Path(done.file).unlink()  # a concurrent consolidation removed it
    same(load_records(store), truth)
    consolidate.consolidate(str(store))
    index = store / FOLDER / INDEX
    doc = json.loads(index.read_text())
    index.write_text(json.dumps({**doc, "schema_version": SCHEMA_VERSION + 1}))  # a newer hwbench's
    same(load_records(store), truth)


def test_a_run_folder_is_refused_and_a_store_lock_is_taken(store: Path) -> None:
    from hwbench.errors import RunLocked, UsageError
    from hwbench.results.lock import RunLock

    with pytest.raises(UsageError, match="one run folder"):
        consolidate.consolidate(str(store / "r1"))
    with RunLock(store):
        with pytest.raises(RunLocked):
            consolidate.consolidate(str(store))


def test_lean_frame_equals_to_pandas_and_shares_empty_columns() -> None:
    recs = [rec("r", n, warnings=["w"] if n == 2 else [], precision_native=None if n else True) for n in range(5)]
    recs[3].invalid_reasons = [""]  # not the same as no reason
    table = records_table(recs)
    lean, plain = lean_frame([table], RECORD_SCHEMA), table.to_pandas()
    same(lean, plain)
    assert lean["invalid_reasons"].map(list).tolist() == [[], ["noisy"], [], [""], []]
    empty = [c for c in RECORD_SCHEMA.names if table[c].null_count == len(table) and plain[c].dtype == np.float64]
    assert len(empty) > 20 and np.shares_memory(lean[empty[0]].to_numpy(), lean[empty[1]].to_numpy())
    lean.loc[0, empty[0]] = 1.0  # copy-on-write: the write does not reach the other shared columns
    assert lean[empty[0]].iloc[0] == 1.0 and lean[empty[1]].isna().all()
    dict_part = table.set_column(table.schema.get_field_index("model"), "model",
                                 table["model"].dictionary_encode())  # as the consolidated file is read
    same(lean_frame([dict_part, table.slice(0, 2)], RECORD_SCHEMA), pa.concat_tables([table, table.slice(0, 2)]).to_pandas())


def test_the_cli_compacts_a_store(store: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "hwbench", "store", "compact", str(store)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 0, res.stderr
    assert "13 record(s) of 3 run(s)" in res.stdout
    assert (store / FOLDER / INDEX).is_file()


def test_through_s3_on_the_emulator(store: Path) -> None:
    pytest.importorskip("moto", reason="the S3 tests need the fleet extra (pip install 'hwbench[fleet]')")
    from pyarrow import fs

    from hwbench.testing.s3emu import MotoServer

    with MotoServer() as s3, s3.exported():
        s3.create_bucket("cons")
        fs.copy_files(str(store), "cons/st", source_filesystem=fs.LocalFileSystem(),
                      destination_filesystem=s3.filesystem())
        uri = "s3://cons/st"
        truth = load_records(uri)
        assert consolidate.consolidate(uri).rows == 13
        same(load_records(uri), truth)
        write_run(store, "r6", range(2))
        fs.copy_files(str(store / "r6"), "cons/st/r6", source_filesystem=fs.LocalFileSystem(),
                      destination_filesystem=s3.filesystem())
        df = load_records(uri)
        assert len(df) == 15 and "r6" in set(df.run_id) and not df.duplicated(KEYS).any()


def test_the_rows_file_leaves_out_empty_columns_and_loads_the_same(store: Path) -> None:
    """A compaction reads the folders as a load does (empty columns left out, text dictionary-encoded) and
    writes only the columns holding a value, as plain text; the load from it is the load from the folders."""
    import pyarrow.parquet as pq

    expected = raw(store)
    done = consolidate.consolidate(str(store))
    index = json.loads((store / FOLDER / INDEX).read_text())
    written = pq.read_schema(store / FOLDER / index["file"])
    assert "latency_p50_ms" in written.names and "ttft_p50_ms" not in written.names  # held a value / never did
    assert "ttft_p50_ms" in index["empty"] and "adapter" in index["dictionary"]  # one value in 13 rows
    assert not any(pa.types.is_dictionary(t) for t in written.types)
    assert done.rows == len(expected) == 13
    same(load_records([store]), expected)
