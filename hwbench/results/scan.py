"""Loading many run folders at once, bounded by bytes, not by file count: one listing, one pyarrow dataset.

A load of a thousand run folders (`load_listed`, behind hwbench.results.store.load_records; on a disk
or an object store) lists the tree once, checks each Parquet file's schema version from its footer
(fetched in parallel on an object store; the dataset scan reuses the parsed footer), then reads every file as one pyarrow.dataset with the filters pushed down to the
Parquet row groups: model, a time range on `started_at`, schema versions. Files written under an
older schema are read in their own pass and migrated with schema.MIGRATIONS' defaults. A trial
kept twice (a compacted file and a fragment left by a crash in between) is kept once, the
fragment's copy, as in hwbench.results.store. A folder is a run folder when it holds manifest.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
CONSOLIDATED_INDEX = "_consolidated/index.json"  # hwbench.results.consolidate
FOOTER_THREADS = 16  # footers read at once: on an object store each is a round trip or two
SCAN_FILES = 128  # files scanned together, their parsed footers held meanwhile
ALWAYS_READ = ("run_id", "trial_id", "model", "started_at")  # keys and filtered columns: read even when empty
AS_IS = ("trial_id", "started_at")  # text a load reads undictionaried: unique per row / compared by the time filter


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
    stats: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # Parquet path -> (size, mtime_ns)
    index: str | None = None  # the store's consolidated index (hwbench.results.consolidate), if any


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
    files_info = [i for i in infos if i.type == fs.FileType.File]
    paths = [i.path for i in files_info]
    stats = {i.path: (i.size, i.mtime_ns) for i in files_info if i.path.endswith((".parquet", "/" + MANIFEST))}
    index_path = f"{root}/{CONSOLIDATED_INDEX}"
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
    return RunListing(loc, runs, files, stats, index_path if index_path in set(paths) else None)


def table_files(listing: RunListing, compacted: str, sub: str, runs: Sequence[str] | None = None) -> list[str]:
    """Each run's compacted file, then its fragments in name order: later copies of a trial win."""
    out = []
    for run in listing.runs if runs is None else runs:
        names = listing.files.get(run, [])
        if compacted in names:
            out.append(f"{run}/{compacted}")
        out.extend(f"{run}/{n}" for n in sorted(n for n in names if n.startswith(sub + "/")))
    return out


def _migrations_after(version: int) -> dict[str, Any]:
    """The columns added since `version`, with the default its rows take."""
    return {n: d for v in range(version + 1, SCHEMA_VERSION + 1) for n, d in MIGRATIONS.get(v, {}).items()}


def _clash(found: pa.DataType, expected: pa.DataType) -> bool:
    """A column whose values cannot be read as the schema's type: text where a number belongs, or the reverse."""
    if pa.types.is_dictionary(found):  # text read dictionary-encoded (a load's read options)
        found = found.value_type
    text = (pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_binary(found))
    number = (pa.types.is_integer(found) or pa.types.is_floating(found) or pa.types.is_boolean(found))
    want_number = pa.types.is_integer(expected) or pa.types.is_floating(expected) or pa.types.is_boolean(expected)
    want_text = pa.types.is_string(expected) or pa.types.is_large_string(expected)
    return (text and want_number) or (number and want_text)


def _holding(meta: Any) -> set[str]:
    """The flat columns holding at least one value in a Parquet file, from its footer's null counts (no data
    read). A column chunk without statistics counts as holding values; a nested column's leaf (a list's
    element: its null count does not tell an empty list from a null) is not a name of the schema, and the
    caller reads those columns anyway."""
    out: set[str] = set()
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        rows = group.num_rows
        for j in range(group.num_columns):
            col = group.column(j)
            name = col.path_in_schema
            if name in out:
                continue
            stats = col.statistics
            if stats is None or not stats.has_null_count or stats.null_count < rows:
                out.add(name)
    return out


def _versions(fragments: list[Any], schema: pa.Schema, holding: bool = False,
              remote: bool = True) -> list[tuple[int, set[str] | None]]:
    """Each file's schema version from its footer, checked: ResultsError names a bad file; with `holding`, also
    the columns holding a value in it (_holding). The footer parsed here stays with its fragment, so the scan
    does not read it again. Footers on an object store (`remote`) are fetched FOOTER_THREADS at a time; on a
    disk one after another (each is a local read: threads would only contend for the interpreter)."""

    accepted: list[pa.Schema] = []  # physical schemas already checked (a store's files mostly share a few)

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
        if any(phys.equals(a, check_metadata=True) for a in accepted):
            return v  # the same columns, types and version as a file checked before
        added = set(_migrations_after(v)) if schema is RECORD_SCHEMA else set()
        found = dict(zip(phys.names, phys.types))
        missing = [n for n in schema.names if n not in found and n not in added]
        if missing:
            raise ResultsError(f"{path} lacks columns {', '.join(missing[:5])}")
        wrong = [f.name for f in schema if f.name in found and _clash(found[f.name], f.type)]
        if wrong:
            raise ResultsError(f"{path} has columns of the wrong type ({', '.join(wrong[:5])}): expected "
                               f"{', '.join(str(schema.field(n).type) for n in wrong[:5])}")
        if len(accepted) < 8:
            accepted.append(phys)
        return v

    if len(fragments) < 4 or not remote:
        versions = [one(f) for f in fragments]
    else:
        with ThreadPoolExecutor(FOOTER_THREADS) as pool:
            versions = list(pool.map(one, fragments))
    if not holding:
        return [(v, None) for v in versions]
    out = []
    for frag, v in zip(fragments, versions):
        try:
            out.append((v, _holding(frag.metadata)))
        except (OSError, pa.ArrowException, ValueError) as e:
            raise ResultsError(f"{frag.path} is truncated or not a Parquet file ({type(e).__name__}: {e})") from e
    return out


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


def _lean_read() -> tuple[pa.Schema, Any]:
    """The record schema and Parquet format a load reads with: text columns dictionary-encoded (as Parquet
    stores them: no decoding to one string per row; hwbench.results.frame shares their values), but AS_IS."""
    coded = [f.name for f in RECORD_SCHEMA if pa.types.is_string(f.type) and f.name not in AS_IS]
    schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in coded else f
                        for f in RECORD_SCHEMA], metadata=RECORD_SCHEMA.metadata)
    return schema, ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=coded))


def _lean_columns(checked: list[tuple[int, set[str] | None]]) -> list[str]:
    """The record columns worth reading from files whose footers said `checked`: those holding a value in
    any of them, the keys and filtered columns, the list columns, and the columns a migration fills."""
    holding = set().union(*(h for _, h in checked if h is not None)) | set(ALWAYS_READ)
    holding |= {f.name for f in RECORD_SCHEMA if pa.types.is_list(f.type)}
    for v in {v for v, _ in checked}:
        holding |= {n for n, default in _migrations_after(v).items() if default is not None}
    return [n for n in RECORD_SCHEMA.names if n in holding]


def _scan(listing: RunListing, paths: list[str], schema: pa.Schema, expr: Any, wanted: set[int] | None,
          origin: bool = False, lean: bool = False) -> list[pa.Table]:
    """`paths` on the listing's filesystem as tables with `schema`, one per schema version (older first, file
    order within), migrated. With `origin`, each row also says its run folder and the version it was written under.
    With `lean` (records, for a load), only the columns some file holds a value in are read (their footers
    say which: a thousand files' empty columns cost nothing), text dictionary-encoded (_lean_read).
    The files go SCAN_FILES at a time: a parsed footer is held until its file is read (some 350 kB for a
    record file's 130 columns), so a thousand files must not all be held at once."""
    read_schema, fmt = _lean_read() if lean else (schema, ds.ParquetFileFormat())
    filesystem = listing.location.fs
    by_version: dict[int, list[pa.Table]] = {}
    for start in range(0, len(paths), SCAN_FILES):
        fragments = list(ds.dataset(paths[start:start + SCAN_FILES], schema=read_schema, format=fmt,
                                    filesystem=filesystem).get_fragments())
        checked = _versions(fragments, schema, holding=lean, remote=not listing.location.atomic_rename)
        columns = _lean_columns(checked) if lean else None
        for v in sorted({v for v, _ in checked}):
            if wanted is not None and v not in wanted:
                continue
            chosen = [f for f, (fv, _) in zip(fragments, checked) if fv == v]
            try:
                data = ds.FileSystemDataset(chosen, read_schema, fmt, filesystem)
                if origin:
                    table = _with_origin(listing, data, chosen, expr, v, columns)
                else:
                    table = data.to_table(columns=columns, filter=expr)
            except (OSError, pa.ArrowException) as e:
                raise ResultsError(f"cannot read results at {listing.location.display()}: {e}") from e
            by_version.setdefault(v, []).append(
                _migrate(table, v) if v < SCHEMA_VERSION and schema is RECORD_SCHEMA else table)
        del fragments, checked
    return [_concat(by_version[v]) for v in sorted(by_version)]


def _with_origin(listing: RunListing, data: Any, chosen: list[Any], expr: Any, version: int,
                 columns: list[str] | None = None) -> pa.Table:
    """`data` read with two more columns: each row's run folder (relative) and `version`, in file order
    (`columns` only, when given)."""
    from hwbench.results.consolidate import RUN_DIR, VERSION, relative

    order = {f.path: i for i, f in enumerate(chosen)}
    tagged = sorted(((order[t.fragment.path], i, t.record_batch) for i, t in
                     enumerate(ds.Scanner.from_dataset(data, columns=columns, filter=expr).scan_batches())),
                    key=lambda x: x[:2])
    batches = []
    for pos, _, batch in tagged:
        run = relative(listing, chosen[pos].path.rsplit("/records", 1)[0])
        n = batch.num_rows
        batches.append(batch.append_column(RUN_DIR, pa.array([run] * n, pa.string()))
                       .append_column(VERSION, pa.array([version] * n, pa.int16())))
    base = data.schema if columns is None else pa.schema([data.schema.field(c) for c in columns])
    schema = base.append(pa.field(RUN_DIR, pa.string())).append(pa.field(VERSION, pa.int16()))
    return pa.Table.from_batches(batches, schema=schema)


def _wanted(filters: Filters | None) -> set[int] | None:
    return set(filters.schema_versions) if filters is not None and filters.schema_versions is not None else None


def read_tables(listings: Iterable[RunListing], compacted: str, sub: str, schema: pa.Schema,
                keys: Sequence[str], filters: Filters | None = None) -> pa.Table:
    """Every file of `listings` as one Arrow table with `schema`, filtered, each `keys` once (the last copy)."""
    expr = filters.expression() if filters is not None and schema is RECORD_SCHEMA else None
    parts: list[pa.Table] = []
    for listing in listings:
        paths = table_files(listing, compacted, sub)
        if paths:
            parts.extend(_scan(listing, paths, schema, expr, _wanted(filters)))
    if not parts:
        return schema.empty_table()
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return keep_last(table, keys)


def read_raw(listing: RunListing, runs: Sequence[str], origin: bool = False, lean: bool = False) -> pa.Table:
    """The records of `runs` read from their folders (no consolidated file), each trial once. With `lean`,
    as a load reads them (_scan): the columns no file holds a value in left out, text dictionary-encoded."""
    paths = table_files(listing, "records.parquet", "records", runs)
    parts = _scan(listing, paths, RECORD_SCHEMA, None, None, origin, lean=lean) if paths else []
    if not parts:
        table = RECORD_SCHEMA.empty_table()
        if origin:
            from hwbench.results.consolidate import RUN_DIR, VERSION

            table = table.append_column(RUN_DIR, pa.array([], pa.string())).append_column(VERSION, pa.array([], pa.int16()))
        return table
    return keep_last(_concat(parts), ("run_id", "trial_id"))


def record_parts(listings: Iterable[RunListing], filters: Filters | None = None) -> list[pa.Table]:
    """Every record under `listings` as Arrow tables, each (run_id, trial_id) once: first the consolidated
    rows of the runs that have not changed since (hwbench.results.consolidate; some columns left out as
    empty, text maybe dictionary-encoded), then everything else read from the run folders (it wins)."""
    from hwbench.results import consolidate

    expr = filters.expression() if filters is not None else None
    wanted = _wanted(filters)
    fast: list[pa.Table] = []
    slow: list[pa.Table] = []
    for listing in listings:
        index = consolidate.read_index(listing)
        covered, raw = consolidate.split_runs(listing, index)
        if covered and index is not None:
            try:
                fast.append(consolidate.read_consolidated(listing, index, covered, expr, wanted))
            except (OSError, pa.ArrowException):  # gone (a concurrent consolidation): the folders are the truth
                raw = list(listing.runs)
        paths = table_files(listing, "records.parquet", "records", raw)
        if paths:
            slow.extend(_scan(listing, paths, RECORD_SCHEMA, expr, wanted, lean=True))
    keys = ("run_id", "trial_id")
    raw_table = keep_last(_concat(slow), keys) if slow else None
    parts = [*fast, *([raw_table] if raw_table is not None else [])]
    if len(fast) > 1:  # several consolidated stores: one run may be in two; the last copy wins, as for folders
        mask = last_mask(pa.concat_tables([pa.table({k: p[k].cast(pa.string()) for k in keys}) for p in parts]), keys)
        if mask is not None:
            out, at = [], 0
            for p in parts:
                out.append(p.filter(mask.slice(at, p.num_rows)))
                at += p.num_rows
            return out
    elif fast and raw_table is not None and raw_table.num_rows:
        parts[0] = _without(fast[0], raw_table, keys)
    return parts


def _concat(parts: list[pa.Table]) -> pa.Table:
    """`parts` as one table; parts read from different places may hold different columns (the missing ones null)."""
    if len(parts) == 1:
        return parts[0]
    same = all(p.schema.equals(parts[0].schema) for p in parts[1:])
    return pa.concat_tables(parts) if same else pa.concat_tables(parts, promote_options="default")


def decoded(col: Any) -> Any:
    """A dictionary-encoded column decoded (differing dictionaries cannot be grouped or hashed together)."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _without(table: pa.Table, newer: pa.Table, keys: Sequence[str]) -> pa.Table:
    """`table` without the rows whose keys `newer` also has (the consolidated rows a folder's copy replaces)."""
    run_ids = pc.unique(decoded(newer["run_id"]))
    cand = pc.is_in(table["run_id"].cast(pa.string()), value_set=run_ids)
    if not pc.any(cand).as_py():
        return table
    sep = "\x00"
    joined = lambda t: pc.binary_join_element_wise(*[t[k].cast(pa.string()) for k in keys], sep)  # noqa: E731
    drop = pc.and_(cand, pc.is_in(joined(table), value_set=joined(newer).combine_chunks()))
    return table.filter(pc.invert(drop))


def keep_last(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Each `keys` combination once: its last row. Cheap when there are no duplicates (the usual case)."""
    mask = last_mask(table, keys)
    return table if mask is None else table.filter(mask)


def last_mask(table: pa.Table, keys: Sequence[str]) -> pa.Array | None:
    """A mask keeping each `keys` combination's last row, in table order; None when no row repeats.
    Each key column becomes integer codes (its distinct values numbered), the codes one int64 per row, and
    a sort of those finds the repeats: no hashing of text per row beyond numbering each column once."""
    n = table.num_rows
    if n < 2:
        return None
    combined = np.zeros(n, dtype=np.int64)
    span = 1
    for k in keys:
        codes, distinct = _codes(table[k])
        span *= distinct + 1
        if span >= 2**62:  # too many combinations for one int64: let Arrow group them
            return _last_mask_grouped(table, keys)
        combined = combined * (distinct + 1) + codes
    rev_first = np.unique(combined[::-1], return_index=True)[1]
    if len(rev_first) == n:
        return None
    keep = np.zeros(n, dtype=bool)
    keep[n - 1 - rev_first] = True
    return pa.array(keep)


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """`col`'s values numbered 1..distinct (0 for a null) in one int64 array, and the number of distinct values.
    One array, one dictionary: encoding chunk by chunk would give each chunk its own, costly to unify."""
    coded = pc.dictionary_encode(decoded(col).combine_chunks())
    return pc.fill_null(coded.indices.cast(pa.int64()), -1).to_numpy() + 1, len(coded.dictionary)


def _last_mask_grouped(table: pa.Table, keys: Sequence[str]) -> pa.Array | None:
    idx = pa.array(range(table.num_rows), pa.int64())
    last = pa.table({**{k: decoded(table[k]) for k in keys}, "_i": idx}).group_by(list(keys), use_threads=False).aggregate(
        [("_i", "max")])
    if last.num_rows == table.num_rows:
        return None
    keep = np.zeros(table.num_rows, dtype=bool)
    keep[last["_i_max"].to_numpy()] = True
    return pa.array(keep)


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


def load_listed(listings: list[RunListing], filters: Filters | None = None) -> pd.DataFrame:
    """Every trial record of locations already listed (locations_of), filtered, one DataFrame in RECORD_SCHEMA
    order (hwbench.results.frame: empty columns shared, so a million records cost what they hold)."""
    from hwbench.results.frame import lean_frame

    parts = record_parts(listings, filters)
    parts[:] = [p.select([n for n in RECORD_SCHEMA.names if n in p.column_names]) for p in parts]  # no name left
    return lean_frame(parts, RECORD_SCHEMA)  # it empties `parts` (the only reference) as it converts: the peak is about the frame


def load_latencies(paths: Iterable[Any]) -> pd.DataFrame:
    """Raw per-batch latencies of every run under `paths` (folders or URIs)."""
    table = read_tables(locations_of(paths), "latencies.parquet", "latencies", LATENCY_SCHEMA,
                        ("run_id", "trial_id", "iteration"))
    return to_frame(table)
