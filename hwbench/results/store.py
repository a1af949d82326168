"""Run folders: durable per-trial fragments, compaction, and loading many runs at once.

A run folder holds:
    manifest.json            the environment fingerprint and the sweep, requested and effective
    records/<trial>.parquet   one fragment per completed trial (written to a temporary name,
    latencies/<trial>.parquet fsynced, then renamed: a trial is either whole or absent)
    records.parquet           the compacted records, written at the end of a sweep
    latencies.parquet         the compacted raw latencies
Loading reads the compacted files and any fragments, keeping each trial once, so a
folder left by a run killed at any moment loads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hwbench.errors import HwbenchError, ResultsError, StorageError, UsageError
from hwbench.fsutil import atomic_write, atomic_write_text, publish
from hwbench.results.schema import (
    LATENCY_SCHEMA,
    RECORD_COLUMNS,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    TrialRecord,
    migrate_records,
    record_from_row,
    records_table,
)

MANIFEST = "manifest.json"
RECORDS = "records.parquet"
LATENCIES = "latencies.parquet"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, limit: int = 120) -> str:
    """A file-name-safe form of a user-given name: it can never leave its folder. A name longer than
    `limit` keeps a hash of the whole name, so two long names that share a prefix stay distinct."""
    cleaned = _SAFE.sub("_", text).strip("._") or "x"
    if len(cleaned) <= limit:
        return cleaned
    return f"{cleaned[:limit - 9]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def _atomic_write(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Whole or absent: hwbench.fsutil's atomic write (kept under this name for this module's callers)."""
    atomic_write(target, write)


def _atomic_write_table(table: pa.Table, target: Path) -> None:
    _atomic_write(target, lambda fh: pq.write_table(table, fh))


def ensure_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written there, or raise UsageError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".hwbench-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to output folder {folder}: {e.strerror or e}") from e


class RunWriter:
    """Writes one run folder. Every completed trial is durable as soon as write_trial returns."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        ensure_writable(self.run_dir)
        for sub in ("records", "latencies"):
            (self.run_dir / sub).mkdir(exist_ok=True)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        try:
            atomic_write_text(self.run_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))
        except OSError as e:
            raise storage_error(e, self.run_dir) from e

    def write_trial(self, record: TrialRecord, samples_ns: np.ndarray | None = None) -> None:
        """Latencies first, then the record: a record's presence means the trial is complete.
        StorageError (one line, the path, the resume hint) when the folder cannot take them."""
        try:
            self._write_trial(record, samples_ns)
        except OSError as e:
            raise storage_error(e, self.run_dir) from e

    def _write_trial(self, record: TrialRecord, samples_ns: np.ndarray | None) -> None:
        name = safe_name(record.trial_id) + ".parquet"
        samples = np.asarray(samples_ns if samples_ns is not None else [], dtype=np.int64)
        lat = pa.table(
            {
                "run_id": pa.array([record.run_id] * len(samples), pa.string()),
                "trial_id": pa.array([record.trial_id] * len(samples), pa.string()),
                "iteration": pa.array(np.arange(len(samples), dtype=np.int64)),
                "latency_ns": pa.array(samples),
            },
            schema=LATENCY_SCHEMA,
        )
        _atomic_write_table(lat, self.run_dir / "latencies" / name)
        _atomic_write_table(records_table([record]), self.run_dir / "records" / name)

    def completed_trial_ids(self, include_errors: bool = True) -> set[str]:
        """Trials with a saved record; with include_errors=False, those that ended in error don't count."""
        if not has_records(self.run_dir):
            return set()
        df = load_run_records(self.run_dir)
        if not include_errors:
            df = df[df["status"] != "error"]
        return set(df["trial_id"]) | set(df["capacity_search"].dropna())  # a server trial: its rate records

    def compact(self) -> None:
        """Merge fragments into records.parquet / latencies.parquet, then remove the fragments.

        Idempotent by trial key, so a crash at any step and a later compaction (a resume) keep each
        trial exactly once: a trial with a record fragment takes its record and its samples from the
        fragments only (they are newer than the compacted file: a retried trial), and any other trial
        from the compacted files only. A latency fragment without its record fragment is a trial cut
        short by a kill, ignored. Each file is staged, then renamed into place; the fragments go only
        after both compacted files are in place, records first; a staged file a crash left is removed
        at the next compaction. Call it holding the run's lock (hwbench.results.lock).
        """
        try:
            self._compact()
        except OSError as e:
            raise storage_error(e, self.run_dir) from e

    def _compact(self) -> None:
        run = self.run_dir
        for stale in [*run.glob(".*.tmp*"), *run.glob("records/.*.tmp*"), *run.glob("latencies/.*.tmp*")]:
            stale.unlink(missing_ok=True)
        _step("stale staged files removed")
        rec_frags = sorted((run / "records").glob("*.parquet")) if (run / "records").is_dir() else []
        lat_frags = {p.name: p for p in (run / "latencies").glob("*.parquet")} if (run / "latencies").is_dir() else {}
        empty = lambda schema: schema.empty_table().to_pandas()  # noqa: E731
        old_recs = _read_table(run / RECORDS, RECORD_SCHEMA) if (run / RECORDS).exists() else empty(RECORD_SCHEMA)
        old_lats = _read_table(run / LATENCIES, LATENCY_SCHEMA) if (run / LATENCIES).exists() else empty(LATENCY_SCHEMA)
        new_recs, new_lats = [], []
        for frag in rec_frags:
            rec = _read_table(frag, RECORD_SCHEMA)
            new_recs.append(rec)
            if frag.name in lat_frags:
                lat = _read_table(lat_frags[frag.name], LATENCY_SCHEMA)
                new_lats.append(lat[lat["trial_id"].isin(set(rec["trial_id"]))])
        fresh = set(pd.concat(new_recs)["trial_id"]) if new_recs else set()
        fresh_lats = set(pd.concat(new_lats)["trial_id"]) if new_lats else set()
        recs = pd.concat([old_recs[~old_recs["trial_id"].isin(fresh)], *new_recs], ignore_index=True)
        recs = recs.drop_duplicates(subset=["run_id", "trial_id"], keep="last")
        lats = pd.concat([old_lats[~old_lats["trial_id"].isin(fresh_lats)], *new_lats], ignore_index=True)
        lats = lats[lats["trial_id"].isin(set(recs["trial_id"]))]
        lats = lats.drop_duplicates(subset=["run_id", "trial_id", "iteration"], keep="last")
        _step("read")
        for table, target in ((pa.Table.from_pandas(lats, schema=LATENCY_SCHEMA, preserve_index=False), run / LATENCIES),
                              (pa.Table.from_pandas(recs, schema=RECORD_SCHEMA, preserve_index=False), run / RECORDS)):
            staged = _stage(table, target)
            _step(f"{target.name} staged")
            publish(staged, target)
            _step(f"{target.name} in place")
        for frag in [*rec_frags, *lat_frags.values()]:
            frag.unlink(missing_ok=True)
            _step(f"{frag.parent.name}/{frag.name} removed")


def _step(name: str) -> None:
    """A boundary between two steps of compaction: tests replace this to crash there (tests/test_hardening.py)."""


def _stage(table: pa.Table, target: Path) -> Path:
    """`table` written and fsynced under a temporary name beside `target` (renamed into place by the caller)."""
    staged = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        with open(staged, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as e:
        staged.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(target)  # a failed write() names no file: the message names the one being written
        raise
    return staged


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_error(e: OSError, run_dir: Path) -> HwbenchError:
    """An OSError while writing a run folder as one line naming the path; for a full disk, how to finish."""
    where = e.filename or run_dir
    if e.errno in _NO_ROOM:
        return StorageError(f"cannot write {where}: {e.strerror or e} (no room on the device); completed trials are "
                            f"saved: free space, then finish with `hwbench profile --resume {run_dir} --retry-errors`")
    return StorageError(f"cannot write {where}: {e.strerror or e}; completed trials are saved: "
                        f"`hwbench profile --resume {run_dir} --retry-errors` finishes the run")


def _check_version(path: Path, meta: dict[bytes, bytes] | None) -> int:
    if not meta or SCHEMA_VERSION_KEY not in meta:
        raise ResultsError(f"{path} is not an hwbench results file (no schema version in its metadata)")
    try:
        v = int(meta[SCHEMA_VERSION_KEY])
    except ValueError:
        raise ResultsError(f"{path} has an unreadable schema version {meta[SCHEMA_VERSION_KEY]!r}") from None
    if v > SCHEMA_VERSION:
        raise ResultsError(
            f"{path} was written by a newer hwbench (schema {v}, this one reads up to {SCHEMA_VERSION}); upgrade hwbench"
        )
    return v


def _read_table(path: Path, schema: pa.Schema) -> pd.DataFrame:
    try:
        pf = pq.ParquetFile(path)
        version = _check_version(path, pf.schema_arrow.metadata)
        table = pf.read()
        if version < SCHEMA_VERSION and schema is RECORD_SCHEMA:
            table = migrate_records(table, version)
    except ResultsError:
        raise
    except (OSError, pa.ArrowException, ValueError) as e:
        raise ResultsError(f"{path} is truncated or not a Parquet file ({type(e).__name__}: {e})") from e
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ResultsError(f"{path} lacks columns {', '.join(missing[:5])}")
    try:
        return table.select(schema.names).cast(schema).to_pandas()
    except (pa.ArrowException, ValueError, TypeError) as e:  # a column of the wrong type, e.g. strings for a figure
        wrong = [f.name for f in schema if not table.schema.field(f.name).type.equals(f.type)]
        raise ResultsError(f"{path} has columns of the wrong type ({', '.join(wrong[:5]) or '?'}): {e}") from e


def _read_many(run_dir: Path, compacted: str, sub: str, schema: pa.Schema) -> pd.DataFrame:
    frames = []
    if (run_dir / compacted).exists():
        frames.append(_read_table(run_dir / compacted, schema))
    for frag in sorted((run_dir / sub).glob("*.parquet")) if (run_dir / sub).is_dir() else []:
        frames.append(_read_table(frag, schema))
    if not frames:
        return schema.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def as_dicts(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts, with missing values as None (never NaN)."""
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    for row in rows:
        for key in ("invalid_reasons", "unresolved_percentiles", "warnings"):
            if key in row and row[key] is not None:
                row[key] = list(row[key])
    return rows


def read_trial_record(run_dir: Path, trial_id: str) -> TrialRecord | None:
    """The record of one trial, from its fragment or the compacted file."""
    frag = Path(run_dir) / "records" / (safe_name(trial_id) + ".parquet")
    df = _read_table(frag, RECORD_SCHEMA) if frag.exists() else load_run_records(Path(run_dir))
    rows = as_dicts(df[df["trial_id"] == trial_id])
    return record_from_row(rows[-1]) if rows else None


def read_search_records(run_dir: Path, search: str) -> list[TrialRecord]:
    """The records of one server-scenario trial (capacity_search == its trial id), in the order measured."""
    df = load_run_records(Path(run_dir))
    return [record_from_row(r) for r in as_dicts(df[df["capacity_search"] == search].sort_values("trial_id"))]


def has_records(run_dir: Path) -> bool:
    return (run_dir / RECORDS).exists() or any((run_dir / "records").glob("*.parquet"))


def load_run_records(run_dir: Path) -> pd.DataFrame:
    df = _read_many(Path(run_dir), RECORDS, "records", RECORD_SCHEMA)
    return df.drop_duplicates(subset=["run_id", "trial_id"], keep="last").reset_index(drop=True)


def read_manifest(run_dir: Path, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """A run's manifest: a JSON object (with the `require`d keys), else ResultsError naming the file."""
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{run_dir} is not a run folder (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path} is unreadable: {e}") from e
    if not isinstance(manifest, dict):
        raise ResultsError(f"{path} is not a run manifest: expected a JSON object, got {type(manifest).__name__}")
    lacking = [k for k in require if k not in manifest]
    if lacking:
        raise ResultsError(f"{path} lacks {', '.join(map(repr, lacking))}: not a complete run manifest")
    return manifest


def find_runs(paths: Iterable[Path | str]) -> list[Path]:
    """Run folders at or below each path."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ResultsError(f"{p} does not exist")
        if (p / MANIFEST).is_file():
            runs.append(p)
        elif p.is_dir():
            runs.extend(sorted(m.parent for m in p.rglob(MANIFEST)))
        else:
            raise ResultsError(f"{p} is not a run folder")
    runs = list(dict.fromkeys(runs))
    if not runs:
        raise ResultsError(f"no hwbench runs found under {', '.join(map(str, paths))}")
    return runs


def _as_list(paths: Iterable[Path | str] | Path | str) -> list[Path | str]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def load_records(paths: Iterable[Path | str] | Path | str, *, models: list[str] | None = None,
                 since: str | None = None, until: str | None = None,
                 schema_versions: list[int] | None = None) -> pd.DataFrame:
    """Every trial record of every run under `paths` (folders, or s3:// gs:// az:// file:// URIs), one
    DataFrame with RECORD_COLUMNS. The filters are pushed down to the Parquet scan (hwbench.results.scan):
    `models`, `since` <= started_at < `until` (ISO 8601 UTC), `schema_versions` (as written)."""
    from hwbench.results import consolidate, scan

    listings = scan.locations_of(_as_list(paths))  # one listing per target, for the check and the load
    for listing in listings:  # a local run whose manifest is not one is refused, not quietly used
        if not listing.location.atomic_rename:
            continue
        _, changed = consolidate.split_runs(listing, consolidate.read_index(listing))
        for run in changed:  # a consolidated run's manifest was checked then, and is unchanged since
            read_manifest(Path(run), require=("run_id",))
    return scan.load_listed(listings, scan.Filters(models, since, until, schema_versions))


def load_latencies(paths: Iterable[Path | str] | Path | str) -> pd.DataFrame:
    """Raw per-batch latencies (run_id, trial_id, iteration, latency_ns) of every run under `paths`."""
    from hwbench.results.scan import load_latencies as scan_latencies

    return scan_latencies(_as_list(paths))
