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

from hwbench.errors import ResultsError, UsageError
from hwbench.fsutil import atomic_write, atomic_write_text
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
    """A file-name-safe form of a user-given name: it can never leave its folder."""
    cleaned = _SAFE.sub("_", text).strip("._") or "x"
    return cleaned[:limit]


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
        atomic_write_text(self.run_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))

    def write_trial(self, record: TrialRecord, samples_ns: np.ndarray | None = None) -> None:
        """Latencies first, then the record: a record's presence means the trial is complete."""
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

        Crash-safe: the compacted file is renamed into place before any fragment is
        removed, and loading de-duplicates trials, so a crash in between loses nothing.
        """
        recs = load_run_records(self.run_dir)
        lats = _read_many(self.run_dir, LATENCIES, "latencies", LATENCY_SCHEMA)
        lats = lats[lats["trial_id"].isin(set(recs["trial_id"]))]
        _atomic_write_table(pa.Table.from_pandas(lats, schema=LATENCY_SCHEMA, preserve_index=False), self.run_dir / LATENCIES)
        _atomic_write_table(pa.Table.from_pandas(recs, schema=RECORD_SCHEMA, preserve_index=False), self.run_dir / RECORDS)
        for sub in ("records", "latencies"):
            for frag in (self.run_dir / sub).glob("*.parquet"):
                frag.unlink()


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
    return table.select(schema.names).cast(schema).to_pandas()


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


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{run_dir} is not a run folder (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path} is unreadable: {e}") from e


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


def load_records(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Every trial record of every run under `paths`, one DataFrame with RECORD_COLUMNS."""
    frames = [load_run_records(r) for r in find_runs(paths)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return RECORD_SCHEMA.empty_table().to_pandas()
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(subset=["run_id", "trial_id"], keep="last")[list(RECORD_COLUMNS)].reset_index(drop=True)


def load_latencies(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Raw per-batch latencies (run_id, trial_id, iteration, latency_ns) of every run under `paths`."""
    frames = [_read_many(r, LATENCIES, "latencies", LATENCY_SCHEMA) for r in find_runs(paths)]
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(subset=["run_id", "trial_id", "iteration"], keep="last").reset_index(drop=True)
