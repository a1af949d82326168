"""Capacities at an SLO: requests/s one instance serves for a request class within its p99, each with its source.

Three sources (a table may join results or a frontier: measured here and cited from elsewhere, side
by side); a served-LLM class, with a "pP/oO" bucket or TTFT/TPOT bounds, is read off its endpoint's
measured curves instead (hwbench.analyse.llmcapacity):
- **measured**: a server-scenario record (scenario "server", columns slo_p99_ms and
  capacity_at_slo_rps) measured at an SLO no looser than the class's: the load generator found it.
- **modelled: <note>**: a batch-1 point's raw latencies, resampled as service times through a
  FIFO queue by `hwbench.analyse.capacity.modelled_capacity_rps` (a model, and labelled so).
  A frontier export has no raw latencies: its batch-1 points give full-utilisation throughput
  where the unloaded p99 meets the SLO, labelled as such; plan with headroom and --simulate.
- **given: <source>**: a user table (CSV or TOML) of class, instance_type, capacity_rps and
  source (required), for hardware measured elsewhere (vLLM bench, Triton perf_analyzer, MLPerf).

Per (class, instance type) the best configuration (adapter, precision, concurrency) wins.
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from hwbench.errors import ConfigError, ResultsError, UsageError
from hwbench.analyse.demand import Workload
from hwbench.analyse.llmcapacity import is_llm_class, llm_capacities
from hwbench.analyse.planner import Capacity

MEASURED = "measured"
SERVER = "server"


@dataclass
class CapacityTable:
    """Capacities, prices a table gave (instance_type -> (usd_per_hour, pricing, source, as_of)), and notes."""

    capacities: list[Capacity]
    given_prices: dict[tuple[str, str], tuple[float, str | None, str | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _config(row: Any) -> str:
    conc = int(row.get("concurrency") or 1)
    return (f"{row.get('adapter')} {row.get('precision')} b{int(row.get('batch_size') or 1)}"
            + (f" c{conc}" if conc > 1 else "") + f" ({row.get('scenario')})")


def _best(found: dict[tuple[str, str], Capacity], cap: Capacity) -> None:
    key = (cap.cls, cap.instance_type)
    old = found.get(key)
    if old is None or cap.capacity_rps > old.capacity_rps:
        found[key] = cap


def from_records(workload: Workload, records: pd.DataFrame, latencies: pd.DataFrame | None) -> CapacityTable:
    """Capacities from hwbench records (and their raw latencies) for the pooled instance types."""
    notes: list[str] = []
    usable = ((records["status"] == "ok") & records["valid"].fillna(False).astype(bool)
              & ~records["accuracy_ok"].eq(False).fillna(False).astype(bool))
    wanted = records["model"].isin({c.model for c in workload.classes})
    for model, group in records[wanted & ~usable].groupby("model", sort=True):
        reasons = sorted({r for rs in group["invalid_reasons"] if rs is not None for r in rs} | set(group["error"].dropna()))
        notes.append(f"{model}: {len(group)} record(s) invalid or failed, left out"
                     + (f" ({'; '.join(map(str, reasons[:2]))})" if reasons else ""))
    ok = records[usable]
    no_type = ok["instance_type"].isna() | (ok["instance_type"].astype(str) == "")
    if no_type.any():
        notes.append(f"{int(no_type.sum())} record(s) without an instance type left out (profile with --instance TYPE)")
    ok = ok[~no_type & ok["instance_type"].isin(workload.pool.instance_types)]
    samples: dict[tuple[str, str], np.ndarray] = {}
    if latencies is not None and len(latencies):
        for (run, trial), group in latencies.groupby(["run_id", "trial_id"], sort=False):
            samples[(str(run), str(trial))] = group.sort_values("iteration")["latency_ns"].to_numpy(dtype=np.float64) / 1e9
    has_server = {"capacity_at_slo_rps", "slo_p99_ms"} <= set(ok.columns)
    found: dict[tuple[str, str], Capacity] = {}
    modelled_failures: list[str] = []
    for c in workload.classes:
        mine = ok[ok["model"] == c.model]
        if is_llm_class(c):  # a served LLM's bucket, read off its endpoint curves (hwbench.analyse.llmcapacity)
            caps, more = llm_capacities(c, mine)
            notes += more
            for cap in caps:
                _best(found, cap)
            continue
        if c.bucket:
            notes.append(f"class {c.name}: results do not distinguish shape buckets; {c.bucket!r} is planned from all of {c.model}'s points")
        batch1 = mine[(mine["batch_size"] == 1) & (mine["scenario"] != SERVER)]
        service_of: dict[str, tuple[np.ndarray, int]] = {}
        for row in batch1.to_dict(orient="records"):
            s = samples.get((str(row["run_id"]), str(row["trial_id"])))
            if s is not None and len(s):
                prev = service_of.get(row["instance_type"])
                if prev is None or np.median(s) < np.median(prev[0]):
                    service_of[row["instance_type"]] = (s, int(row.get("concurrency") or 1))
        if has_server:
            server = mine[(mine["scenario"] == SERVER) & pd.to_numeric(mine["capacity_at_slo_rps"], errors="coerce").gt(0)
                          & pd.to_numeric(mine["slo_p99_ms"], errors="coerce").le(c.slo_p99_ms)]
            for row in server.to_dict(orient="records"):
                s, servers = service_of.get(row["instance_type"], (None, 1))
                _best(found, Capacity(c.name, row["instance_type"], float(row["capacity_at_slo_rps"]), MEASURED,
                                      config=_config(row) + f" at p99 <= {row['slo_p99_ms']:g} ms",
                                      j_per_request=_energy(row), servers=servers, service_s=s))
        for row in batch1.to_dict(orient="records"):
            if (c.name, row["instance_type"]) in found and found[(c.name, row["instance_type"])].source == MEASURED:
                continue  # a measured capacity beats a modelled one
            s = samples.get((str(row["run_id"]), str(row["trial_id"])))
            if s is None or not len(s):
                continue
            servers = int(row.get("concurrency") or 1)
            rps, note = _modelled(s, c.slo_p99_ms, servers)
            if not rps > 0:
                modelled_failures.append(f"{c.name} on {row['instance_type']} {_config(row)}: {note}")
                continue
            _best(found, Capacity(c.name, row["instance_type"], float(rps), f"modelled: {note}", config=_config(row),
                                  j_per_request=_energy(row), servers=servers, service_s=s))
    notes += [f"no capacity at the SLO: {m}" for m in modelled_failures[:10]]
    return CapacityTable(capacities=list(found.values()), notes=notes)


def _modelled(service_s: np.ndarray, slo_p99_ms: float, servers: int) -> tuple[float, str]:
    from hwbench.analyse.capacity import modelled_capacity_rps  # the queueing model: replay of the service times

    rps, note = modelled_capacity_rps(service_s, slo_p99_ms, servers=servers)
    return float(rps), str(note)


def _energy(row: dict[str, Any]) -> float | None:
    j = row.get("energy_j_per_inference")
    return float(j) if j is not None and isinstance(j, (int, float)) and math.isfinite(j) and j > 0 else None


def from_frontier(workload: Workload, points: pd.DataFrame) -> CapacityTable:
    """Capacities from a frontier export's batch-1 points: throughput where the unloaded p99 meets the SLO."""
    found: dict[tuple[str, str], Capacity] = {}
    pts = points[(points["batch_size"] == 1) & points["instance_type"].isin(workload.pool.instance_types)]
    for c in workload.classes:
        for row in pts[pts["model"] == c.model].to_dict(orient="records"):
            p99, thr = row.get("latency_p99_ms"), row.get("throughput_sps")
            if p99 is None or thr is None or not (p99 <= c.slo_p99_ms and thr > 0):
                continue
            note = (f"modelled: frontier throughput at full load, unloaded p99 {p99:.3g} ms <= {c.slo_p99_ms:g} ms; "
                    "no queueing (a frontier has no raw latencies): keep headroom")
            _best(found, Capacity(c.name, row["instance_type"], float(thr), note, config=_config(row),
                                  j_per_request=_energy(row)))
    return CapacityTable(capacities=list(found.values()),
                         notes=["capacities from a frontier export ignore queueing: plan with headroom (--headroom)"])


def load_capacities(workload: Workload, *, results: Iterable[Path | str] | None = None, frontier: Path | str | None = None,
                    table: Path | str | None = None) -> CapacityTable:
    """Capacities from run folders (or s3:// gs:// az:// file:// store URIs: records and raw latencies) or a
    frontier export, and/or a table of given ones: hardware measured here next to hardware cited from elsewhere.

    Where both give a capacity for the same class and instance type, the one from the results (or frontier)
    is used and a note says the given row was set aside; every capacity keeps its own source."""
    if results and frontier:
        raise UsageError("give --results DIR or --frontier F.json, not both (either may be joined by --capacities TABLE)")
    if not (results or frontier or table):
        raise UsageError("give --results DIR, --frontier F.json or --capacities TABLE (a table may join either of the others)")
    parts: list[CapacityTable] = []
    if results:
        from hwbench.results import store

        paths = [str(p) for p in results]
        records = store.load_records(paths)
        if records.empty:
            raise ResultsError(f"no trial records in {', '.join(paths)}")
        parts.append(from_records(workload, records, store.load_latencies(paths)))
    elif frontier:
        from hwbench.analyse.frontier import load

        parts.append(from_frontier(workload, load(frontier).points))
    if table:
        parts.append(from_table(workload, table))
    return merge(parts)


def merge(parts: list[CapacityTable]) -> CapacityTable:
    """One table from several, the earlier ones first: a later capacity for a (class, instance type) already
    covered is set aside with a note; prices and notes are kept from all."""
    out = CapacityTable(capacities=[])
    seen: dict[tuple[str, str], Capacity] = {}
    for part in parts:
        for cap in part.capacities:
            key = (cap.cls, cap.instance_type)
            if key in seen:
                out.notes.append(f"{cap.cls} on {cap.instance_type}: {cap.source} set aside; {seen[key].source} is used")
                continue
            seen[key] = cap
            out.capacities.append(cap)
        out.given_prices.update(part.given_prices)
        out.notes.extend(part.notes)
    return out


_COLUMNS = {"class", "instance_type", "capacity_rps", "source", "as_of", "usd_per_hour", "pricing", "j_per_request",
            "bucket", "note"}


def from_table(workload: Workload, path: Path | str) -> CapacityTable:
    """Given capacities from a CSV (header row) or TOML ([[capacity]] tables) file; `source` is required."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".toml":
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
            unknown = sorted(set(doc) - {"schema_version", "capacity"})
            if unknown:
                raise ConfigError(f"{p}: unknown top-level key {unknown[0]!r} (expected [[capacity]] tables)")
            rows = list(doc.get("capacity", []))
        else:
            with p.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ConfigError(f"capacity table {p} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, csv.Error) as e:
        raise ConfigError(f"capacity table {p} is unreadable: {e}") from e
    return _parse_rows(workload, rows, str(p))


def _parse_rows(workload: Workload, rows: Iterable[dict[str, Any]], where: str) -> CapacityTable:
    names = {c.name for c in workload.classes}
    problems: list[str] = []
    found: dict[tuple[str, str], Capacity] = {}
    prices: dict[tuple[str, str], tuple[float, str | None, str | None]] = {}
    for i, row in enumerate(rows, start=1):
        at = f"{where}: row {i}"
        row = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None}
        extra = sorted(set(row) - _COLUMNS)
        if extra:
            problems.append(f"{at}: unknown column {extra[0]!r}")
        cls, inst, source = row.get("class"), row.get("instance_type"), row.get("source")
        if cls not in names:
            problems.append(f"{at}: class {cls!r} is not in the workload ({', '.join(sorted(names))})")
            continue
        if not inst:
            problems.append(f"{at}: needs instance_type")
            continue
        if not source:
            problems.append(f"{at}: needs source (where the capacity was measured or published)")
            continue
        try:
            cap = float(row.get("capacity_rps"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            cap = math.nan
        if not (math.isfinite(cap) and cap > 0):
            problems.append(f"{at}: capacity_rps must be a number above 0, got {row.get('capacity_rps')!r}")
            continue
        if inst not in workload.pool.instance_types:
            continue  # not pooled: ignored
        as_of = row.get("as_of")
        label = f"given: {source}" + (f" (as of {as_of})" if as_of else "")
        j = row.get("j_per_request")
        _best(found, Capacity(str(cls), str(inst), cap, label, config=str(row.get("note") or ""),
                              j_per_request=float(j) if j not in (None, "") else None))
        usd = row.get("usd_per_hour")
        if usd not in (None, ""):
            try:
                usd_f = float(usd)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                usd_f = math.nan
            if not (math.isfinite(usd_f) and usd_f > 0):
                problems.append(f"{at}: usd_per_hour must be a number above 0, got {usd!r}")
                continue
            prices[(str(inst), str(row.get("pricing") or "on-demand"))] = (usd_f, str(as_of) if as_of else None, f"given: {source}")
    if problems:
        raise ConfigError(f"{len(problems)} problem{'s' if len(problems) > 1 else ''}: " + "; ".join(problems))
    return CapacityTable(capacities=list(found.values()), given_prices=prices)
