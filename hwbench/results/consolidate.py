"""Store consolidation: the records of many run folders copied into one Parquet file, a cache of them.

Loading a store costs about one round of work per file (a footer, a schema check, a scan setup),
so a thousand run folders cost a thousand rounds however small each is. `consolidate` copies every
run's records (migrated to the current schema, each trial once) into one file under the store's
root, with an index that says, for each run folder it covers, which of its record files it read:
name, size and modification time.

    STORE/_consolidated/index.json                    written last: the commit
    STORE/_consolidated/records-<stamp>-<id>.parquet  the rows, with _run_dir and _schema_version

The run folders stay the source of truth, untouched. A load takes a covered run's rows from the
consolidated file only while the run's record files are still exactly the ones the index lists; a
run that changed since (a resumed sweep, its compaction, a retried trial) or that is new is read from
its folder, and a deleted run is dropped. Each run's rows so come from one place: no duplicates, no
loss, whatever the run folders' writers (several machines) did after consolidating.

Crash safety: the rows file is written whole under a new name, then the index is put in one step
(rename on a disk, one PUT on an object store); a crash before that leaves an unreferenced file that
loading ignores and the next consolidation removes. Files the new index does not name are removed
only after it is in place. A reader that finds the index naming a file that is gone (a concurrent
consolidation removed it) reads the run folders instead. On a local disk it runs under the store's
lock (hwbench.results.lock); object stores have no lock, and two concurrent consolidations each
publish a complete index, the last one winning.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hwbench.errors import ResultsError, UsageError
from hwbench.results.scan import decoded
from hwbench.results.schema import RECORD_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY

FOLDER = "_consolidated"
INDEX = "index.json"
FORMAT = 1
RUN_DIR = "_run_dir"  # which run folder a row came from (relative to the store's root)
VERSION = "_schema_version"  # the schema version the row was written under (the schema_versions filter)
ROW_GROUP = 128 * 1024
FILTERED = ("model", "started_at")  # columns the load filters name (hwbench.results.scan.Filters): always read
DICTIONARY_MAX = 0.05  # a text column with at most this share of distinct values is read dictionary-encoded


def fingerprint(listing: Any, run: str) -> list[list[Any]]:
    """The manifest, then the record files of `run`, as [name, size, mtime_ns]: what the index compares against."""
    out = [["manifest.json", *listing.stats.get(f"{run}/manifest.json", (None, None))]]  # a new manifest: checked again
    for name in listing.files.get(run, []):
        if name == "records.parquet" or name.startswith("records/"):
            size, mtime = listing.stats.get(f"{run}/{name}", (None, None))
            out.append([name, size, mtime])
    return sorted(out)


def relative(listing: Any, run: str) -> str:
    root = listing.location.root.rstrip("/")
    return run[len(root) + 1:] if run.startswith(root + "/") else run


@dataclass
class Index:
    """A parsed index.json: the rows file, the runs it covers (relative path -> fingerprint), its columns."""

    path: str  # the rows file, on the listing's filesystem
    runs: dict[str, list[list[Any]]]
    empty: list[str]  # columns with no value in any row
    dictionary: list[str]  # low-cardinality text columns, read dictionary-encoded
    rows: int


def read_index(listing: Any) -> Index | None:
    """The store's index if it is there and usable by this hwbench, else None (then the run folders are read)."""
    loc = listing.location
    if listing.index is None or len(listing.runs) == 1 and listing.runs[0] == loc.root.rstrip("/"):
        return None
    try:
        with loc.fs.open_input_stream(listing.index) as src:
            doc = json.loads(src.read().decode("utf-8"))
        if doc.get("format") != FORMAT or doc.get("schema_version") != SCHEMA_VERSION:
            return None  # another hwbench's: the run folders are the truth, read them
        return Index(loc.join(FOLDER, str(doc["file"])), {str(k): v for k, v in doc["runs"].items()},
                     list(doc.get("empty", [])), list(doc.get("dictionary", [])), int(doc.get("rows", 0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def split_runs(listing: Any, index: Index | None) -> tuple[list[str], list[str]]:
    """(runs whose rows the consolidated file holds as they are now, runs to read from their folders)."""
    if index is None:
        return [], list(listing.runs)
    covered, raw = [], []
    for run in listing.runs:
        (covered if index.runs.get(relative(listing, run)) == fingerprint(listing, run) else raw).append(run)
    return covered, raw


def _empty_columns(table: pa.Table) -> list[str]:
    """The record columns with no value in `table`: absent (a lean read leaves them out) or all null."""
    return [f.name for f in RECORD_SCHEMA if f.name not in table.column_names or table[f.name].null_count == table.num_rows]


def _dictionary_columns(table: pa.Table, empty: Sequence[str]) -> list[str]:
    """The text columns with few distinct values (at most DICTIONARY_MAX of the rows): loads read them
    dictionary-encoded. One column decoded at a time, so the count costs one column's memory."""
    out = []
    for f in RECORD_SCHEMA:
        if pa.types.is_string(f.type) and table.num_rows and f.name not in empty:
            if pc.count_distinct(decoded(table[f.name])).as_py() <= max(1, DICTIONARY_MAX * table.num_rows):
                out.append(f.name)
    return out


def _write_rows(table: pa.Table, empty: Sequence[str], meta: dict[bytes, bytes]) -> bytes:
    """The consolidated rows file: `table` without its `empty` columns, text as plain strings (a load asks
    for the index's dictionary columns encoded again), zstd, ROW_GROUP rows per group. Written one row group
    at a time, so only one group's decoded text is held beside the table."""
    keep = [n for n in table.column_names if n not in empty]
    table = table.select(keep)
    schema = pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                        for f in table.schema], metadata=meta)
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for start in range(0, max(table.num_rows, 1), ROW_GROUP):
            part = table.slice(start, ROW_GROUP)
            writer.write_table(pa.table([decoded(c) for c in part.columns], schema=schema), row_group_size=ROW_GROUP)
    return sink.getvalue().to_pybytes()


@dataclass
class Consolidated:
    """What `consolidate` did: the runs and rows in the new file, the files it removed."""

    runs: int
    rows: int
    file: str
    removed: list[str]


def consolidate(target: str, step: Any = None) -> Consolidated:
    """Copy every run's records under `target` (a folder or URI above run folders) into one consolidated
    file and publish its index; idempotent (a second call rewrites the same rows). `step(name)` is
    called between steps (the crash tests replace it)."""
    from hwbench.results import scan
    from hwbench.results.remote import put_bytes

    step = step or (lambda name: None)
    listing = scan.list_runs(target)
    loc = listing.location
    if not listing.runs:
        raise ResultsError(f"no hwbench runs found under {target}")
    if listing.runs == [loc.root.rstrip("/")]:
        raise UsageError(f"{target} is one run folder: consolidate the store above run folders, not a run")
    lock = store_lock(loc)
    with lock if lock is not None else _Null():
        listing = scan.list_runs(target)  # again, under the lock
        prints = {relative(listing, r): fingerprint(listing, r) for r in listing.runs}  # before reading: never newer
        if loc.atomic_rename:  # as a load checks a local run's manifest (hwbench.results.store.load_records)
            from pathlib import Path

            from hwbench.results.store import read_manifest

            for run in listing.runs:
                read_manifest(Path(run), require=("run_id",))
        table = scan.read_raw(listing, listing.runs, origin=True, lean=True)  # empty columns left out
        step("read")
        empty = _empty_columns(table)
        dictionary = _dictionary_columns(table, empty)
        meta = {**(RECORD_SCHEMA.metadata or {}), SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        name = f"records-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        rows = table.num_rows
        data = _write_rows(table, empty, meta)
        del table
        put_bytes(loc, loc.join(FOLDER, name), data)
        del data
        step("rows file written")
        doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "file": name, "rows": rows,
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "empty": empty, "dictionary": dictionary, "runs": prints}
        put_bytes(loc, loc.join(FOLDER, INDEX), json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))
        step("index in place")
        removed = _remove_others(loc, keep=name)
        step("old files removed")
    return Consolidated(len(prints), rows, loc.display(loc.join(FOLDER, name)), removed)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def store_lock(loc: Any) -> Any:
    """The store's lock on a local disk (the run-folder lock, on the store's root); None on an object store."""
    from pathlib import Path

    from hwbench.results.lock import RunLock

    if not loc.atomic_rename:
        return None
    Path(loc.root).mkdir(parents=True, exist_ok=True)
    return RunLock(Path(loc.root))


def _remove_others(loc: Any, keep: str) -> list[str]:
    """Rows files (and staged leftovers) in the consolidated folder other than `keep`."""
    from pyarrow import fs

    removed = []
    try:
        infos = loc.fs.get_file_info(fs.FileSelector(loc.join(FOLDER), allow_not_found=True))
    except OSError:
        return removed
    for info in infos:
        base = info.path.rpartition("/")[2]
        if info.type == fs.FileType.File and base != INDEX and base != keep and (
                base.startswith("records-") or base.startswith(".")):
            try:
                loc.fs.delete_file(info.path)
                removed.append(loc.display(info.path))
            except OSError:
                pass  # left for the next consolidation; loading ignores unreferenced files
    return removed


def read_consolidated(listing: Any, index: Index, covered: Sequence[str], expr: Any,
                      versions: Sequence[int] | None) -> pa.Table:
    """The covered runs' rows from the consolidated file, filtered; the empty columns left out, the
    low-cardinality text columns dictionary-encoded. OSError/ArrowException when the file is gone."""
    import pyarrow.dataset as ds

    fields = []
    for f in RECORD_SCHEMA:
        if f.name in index.empty and f.name not in FILTERED:
            continue
        fields.append(pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in index.dictionary else f)
    schema = pa.schema([*fields, pa.field(RUN_DIR, pa.string()), pa.field(VERSION, pa.int16())])
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(index.dictionary)))
    data = ds.dataset([index.path], schema=schema, format=fmt, filesystem=listing.location.fs)
    rels = [relative(listing, r) for r in covered]
    parts = [] if expr is None else [expr]
    if len(rels) < len(index.runs):
        parts.append(ds.field(RUN_DIR).isin(rels))
    if versions is not None:
        parts.append(ds.field(VERSION).isin(list(versions)))
    where = None
    for p in parts:
        where = p if where is None else where & p
    return data.to_table(columns=[f.name for f in fields], filter=where)
