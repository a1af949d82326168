"""Loading many run folders at once, bounded by bytes, not by file count: one listing, one pyarrow dataset.

`load_records` of a thousand run folders (on a disk or an object store) lists the tree once, checks
each Parquet file's schema version from its footer (read in parallel; the dataset scan reuses the
parsed footer), then reads every file as one pyarrow.dataset with the filters pushed down to the
Parquet row groups: model, a time range on `started_at`, schema versions. Files written under an
older schema are read in their own pass and migrated with schema.MIGRATIONS' defaults. A trial
kept twice (a compacted file and a fragment left by a crash in between) is kept once, the
fragment's copy, as in hwbench.results.store. A folder is a run folder when it holds manifest.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from hwbench.errors import ResultsError
from hwbench.results.schema import (
    LATENCY_SCHEMA,
    MIGRATIONS,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
)
from hwbench.results.uri import Location, open_location

MANIFEST = "manifest.json"
FOOTER_THREADS = 16  # footers read at once: on an object store each is a round trip or two


@dataclass(frozen=True)
class Filters:
    """Row filters pushed down to the Parquet scan. None: no filter on that column.
    `since`/`until` bound `started_at` (ISO 8601 UTC text compares in time order): since <= t < until."""

    models: Sequence[str] | None = None
    since: str | None = None
    until: str | None = None
    schema_versions: Sequence[int] | None = None

    def expression(self) -> Any:
        expr = None
        parts = []
        if self.models is not None:
            parts.append(ds.field("model").isin(list(self.models)))
        if self.since is not None:
            parts.append(ds.field("started_at") >= self.since)
        if self.until is not None:
            parts.append(ds.field("started_at") < self.until)
        for p in parts:
            expr = p if expr is None else expr & p
        return expr


@dataclass
class RunListing:
    """The files of every run folder found at one location, from a single recursive listing."""

    location: Location
    runs: list[str]  # run folder paths on location.fs, sorted
    files: dict[str, list[str]]  # run folder -> Parquet files under it, with their folder ("records/x.parquet")


def list_runs(target: str | Any) -> RunListing:
    """One listing of `target` (a run folder, a folder above runs, or a URI); ResultsError if it has no run."""
    from pyarrow import fs

    loc = open_location(target)
    try:
        top = loc.fs.get_file_info(loc.root)
    except OSError as e:
        raise ResultsError(f"cannot read {loc.display()}: {e}") from e
    if top.type == fs.FileType.NotFound and loc.atomic_rename:
        raise ResultsError(f"{target} does not exist")
    if top.type == fs.FileType.File:
        raise ResultsError(f"{target} is not a run folder")
    try:
        infos = loc.fs.get_file_info(fs.FileSelector(loc.root, recursive=True, allow_not_found=True))
    except OSError as e:
        raise ResultsError(f"cannot list {loc.display()}: {e}") from e
    root = loc.root.rstrip("/")
    paths = [i.path for i in infos if i.type == fs.FileType.File]
    runs = sorted({p[: -len(MANIFEST) - 1] for p in paths if p.endswith("/" + MANIFEST)})
    run_set = set(runs)
    files: dict[str, list[str]] = {r: [] for r in runs}
    for p in paths:
        if not p.endswith(".parquet"):
            continue
        head, _, name = p.rpartition("/")
        if head in run_set:
            files[head].append(name)
        else:
            parent, _, sub = head.rpartition("/")
            if parent in run_set:
                files[parent].append(f"{sub}/{name}")
    if root in run_set:
        runs = [root]  # a run folder given itself: runs nested in it are not its own
    return RunListing(loc, runs, files)


def table_files(listing: RunListing, compacted: str, sub: str) -> list[str]:
    """Each run's compacted file, then its fragments in name order: later copies of a trial win."""
    out = []
    for run in listing.runs:
        names = listing.files.get(run, [])
        if compacted in names:
            out.append(f"{run}/{compacted}")
        out.extend(f"{run}/{n}" for n in sorted(n for n in names if n.startswith(sub + "/")))
    return out


def _added_after(version: int) -> set[str]:
    return {name for v in range(version + 1, SCHEMA_VERSION + 1) for name in MIGRATIONS.get(v, {})}


def _clash(found: pa.DataType, expected: pa.DataType) -> bool:
    """A column whose values cannot be read as the schema's type: text where a number belongs, or the reverse."""
    text = (pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_binary(found))
    number = (pa.types.is_integer(found) or pa.types.is_floating(found) or pa.types.is_boolean(found))
    want_number = pa.types.is_integer(expected) or pa.types.is_floating(expected) or pa.types.is_boolean(expected)
    want_text = pa.types.is_string(expected) or pa.types.is_large_string(expected)
    return (text and want_number) or (number and want_text)


def _versions(fragments: list[Any], schema: pa.Schema) -> list[int]:
    """Each file's schema version from its footer, checked: ResultsError names a bad file. The footer
    parsed here stays with its fragment, so the scan does not read it again."""

    def one(frag: Any) -> int:
        path = frag.path
        try:
            phys = frag.physical_schema
        except (OSError, pa.ArrowException, ValueError) as e:
            raise ResultsError(f"{path} is truncated or not a Parquet file ({type(e).__name__}: {e})") from e
        meta = phys.metadata or {}
        if SCHEMA_VERSION_KEY not in meta:
            raise ResultsError(f"{path} is not an hwbench results file (no schema version in its metadata)")
        try:
            v = int(meta[SCHEMA_VERSION_KEY])
        except ValueError:
            raise ResultsError(f"{path} has an unreadable schema version {meta[SCHEMA_VERSION_KEY]!r}") from None
        if v > SCHEMA_VERSION:
            raise ResultsError(f"{path} was written by a newer hwbench (schema {v}, this one reads up to "
                               f"{SCHEMA_VERSION}); upgrade hwbench")
        added = _added_after(v) if schema is RECORD_SCHEMA else set()
        missing = [n for n in schema.names if n not in phys.names and n not in added]
        if missing:
            raise ResultsError(f"{path} lacks columns {', '.join(missing[:5])}")
        wrong = [n for n in schema.names if n in phys.names and _clash(phys.field(n).type, schema.field(n).type)]
        if wrong:
            raise ResultsError(f"{path} has columns of the wrong type ({', '.join(wrong[:5])}): expected "
                               f"{', '.join(str(schema.field(n).type) for n in wrong[:5])}")
        return v

    if len(fragments) < 4:
        return [one(f) for f in fragments]
    with ThreadPoolExecutor(FOOTER_THREADS) as pool:
        return list(pool.map(one, fragments))


def _migrate(table: pa.Table, version: int) -> pa.Table:
    """Rows of an older schema read against the current one: its added columns take their defaults."""
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for name, default in MIGRATIONS.get(v, {}).items():
            if default is None:
                continue  # already null
            i = table.schema.get_field_index(name)
            typ = table.schema.field(name).type
            table = table.set_column(i, name, pa.array([default] * table.num_rows, type=typ))
    return table


def read_tables(listings: Iterable[RunListing], compacted: str, sub: str, schema: pa.Schema,
                keys: Sequence[str], filters: Filters | None = None) -> pa.Table:
    """Every file of `listings` as one Arrow table with `schema`, filtered, each `keys` once (the last copy)."""
    fmt = ds.ParquetFileFormat()
    expr = filters.expression() if filters is not None and schema is RECORD_SCHEMA else None
    wanted = set(filters.schema_versions) if filters is not None and filters.schema_versions is not None else None
    parts: list[pa.Table] = []
    for listing in listings:
        paths = table_files(listing, compacted, sub)
        if not paths:
            continue
        filesystem = listing.location.fs
        fragments = list(ds.dataset(paths, schema=schema, format=fmt, filesystem=filesystem).get_fragments())
        versions = _versions(fragments, schema)
        # one pass per version, older first, in file order within it: a newer copy of a trial wins
        for v in sorted(set(versions)):
            if wanted is not None and v not in wanted:
                continue
            chosen = [f for f, fv in zip(fragments, versions) if fv == v]
            try:
                data = ds.FileSystemDataset(chosen, schema, fmt, filesystem)
                table = data.to_table(filter=expr)
            except (OSError, pa.ArrowException) as e:
                raise ResultsError(f"cannot read results at {listing.location.display()}: {e}") from e
            parts.append(_migrate(table, v) if v < SCHEMA_VERSION and schema is RECORD_SCHEMA else table)
    if not parts:
        return schema.empty_table()
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return keep_last(table, keys)


def keep_last(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Each `keys` combination once: its last row. Cheap when there are no duplicates (the usual case)."""
    if table.num_rows < 2:
        return table
    idx = pa.array(range(table.num_rows), pa.int64())
    last = pa.table({**{k: table[k] for k in keys}, "_i": idx}).group_by(list(keys), use_threads=False).aggregate(
        [("_i", "max")])
    if last.num_rows == table.num_rows:
        return table
    kept = pc.take(last["_i_max"], pc.array_sort_indices(last["_i_max"]))  # in table order
    return table.take(kept)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A DataFrame of `table`, freeing Arrow buffers as columns convert (a lower memory peak)."""
    return table.to_pandas(split_blocks=True, self_destruct=True)


def locations_of(paths: Iterable[Any]) -> list[RunListing]:
    """One listing per path or URI; ResultsError when none of them holds a run."""
    paths = list(paths)
    listings = [list_runs(p) for p in paths]
    if not any(lst.runs for lst in listings):
        raise ResultsError(f"no hwbench runs found under {', '.join(map(str, paths))}")
    return listings


def load_records(paths: Iterable[Any], filters: Filters | None = None) -> pd.DataFrame:
    """Every trial record under `paths` (folders or URIs), filtered, one DataFrame in RECORD_SCHEMA order."""
    table = read_tables(locations_of(paths), "records.parquet", "records", RECORD_SCHEMA, ("run_id", "trial_id"), filters)
    return to_frame(table.select(RECORD_SCHEMA.names))


def load_latencies(paths: Iterable[Any]) -> pd.DataFrame:
    """Raw per-batch latencies of every run under `paths` (folders or URIs)."""
    table = read_tables(locations_of(paths), "latencies.parquet", "latencies", LATENCY_SCHEMA,
                        ("run_id", "trial_id", "iteration"))
    return to_frame(table)
