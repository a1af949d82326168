"""The performance/cost matrix: one row per (model, hardware, adapter, precision, batch, scenario).

Only valid records (status ok, valid true) enter; invalid ones are kept apart with their
reasons, and points whose accuracy check failed are left out unless asked for. Each point is
priced from the catalog by its instance type, charged k/n of the instance when it used k of
n accelerators; a point whose instance type the catalog does not know is reported and left
without cost, never priced by guess. Every price carries its date and source.

A record that carries its own price (`hwbench profile --usd-per-hour X --price-note TEXT`) is
priced from that figure, whatever its instance type, with the basis "given: TEXT" and the
run's date. A record whose instance type was ASSUMED (`--instance auto` on a host that does
not say what it is) is priced from the catalog, and its basis says so; a record left without
an instance type by `--instance auto` is listed as unpriced with the reason it carries.

    cost_usd_per_1m   = $/hour / (throughput_sps x 3600) x 10^6   (at full utilisation)
    energy_usd_per_1m = J/inference x 10^6 / 3.6e6 J/kWh x $/kWh

Generate (LLM) points also get $ and J per 1M output and total tokens (hwbench.analyse.llmcost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from hwbench.errors import ResultsError, UsageError
from hwbench.analyse.llmcost import LLM_COLUMNS, add_llm_costs
from hwbench.catalog.prices import ON_DEMAND, SPOT, Electricity, PriceCatalog
from hwbench.analyse.server import SERVER, SERVER_COLUMNS, collapse_server_rows

ESTIMATED_POWER = "estimate-tdp"
J_PER_KWH = 3.6e6
POINT_KEY = ("model", "model_sha256", "hardware", "adapter", "precision", "batch_size", "scenario", "concurrency",
             "prompt_tokens", "output_tokens")  # the last two: generate points (None for inference)
_KEEP = (
    "run_id", "trial_id", "model", "model_sha256", "adapter", "device", "precision", "precision_effective",
    "batch_size", "scenario", "concurrency", "latency_p50_ms", "latency_p99_ms", "throughput_sps",
    "accuracy_ok", "energy_j_per_inference", "avg_power_w", "power_method", "accelerator",
    "accelerators_used", "instance_type", "host", "instance_type_source", "price_usd_per_hour", "price_note", "started_at",
    "unresolved_percentiles", *SERVER_COLUMNS, *LLM_COLUMNS,
)
# schema 2 and 3: absent from hand-built frames
_OPTIONAL = ("instance_type_source", "price_usd_per_hour", "price_note", "unresolved_percentiles", *SERVER_COLUMNS, *LLM_COLUMNS)
GIVEN_SOURCE = "--usd-per-hour (given for the machine at run time)"


@dataclass
class Matrix:
    """The analysable points plus everything left out, each with the reason why."""

    points: pd.DataFrame
    invalid: pd.DataFrame  # model, hardware, adapter, precision, batch_size, scenario, status, reasons
    inaccurate: pd.DataFrame  # valid points whose accuracy check failed (left out unless included)
    unpriced: pd.DataFrame  # instance_type (or host), reason, points: left out of the cost columns
    prices_used: pd.DataFrame  # instance_type, usd_per_hour, basis, as_of, source, origin
    electricity: Electricity | None = None
    price_kind: str = ON_DEMAND
    notes: list[str] = field(default_factory=list)


def cost_usd_per_1m(usd_per_hour: np.ndarray | float, throughput_sps: np.ndarray | float) -> np.ndarray:
    """Dollars per million inferences at full utilisation; NaN where either input is missing or zero."""
    hourly = np.asarray(usd_per_hour, dtype=float)
    thr = np.asarray(throughput_sps, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hourly / (thr * 3600.0) * 1e6
    return np.where(thr > 0, out, np.nan)


def energy_usd_per_1m(j_per_inference: np.ndarray | float, usd_per_kwh: float) -> np.ndarray:
    """Electricity dollars per million inferences."""
    return np.asarray(j_per_inference, dtype=float) * 1e6 / J_PER_KWH * usd_per_kwh


def _text_column(series: pd.Series) -> np.ndarray:
    """A string column as an object array with None for missing and empty values."""
    values = series.to_numpy(dtype=object, na_value=None)
    return np.where(values == "", None, values)


def group_ids(df: pd.DataFrame, cols: Iterable[str], extra: np.ndarray | None = None) -> np.ndarray:
    """Dense integer ids of the distinct combinations of `cols` (missing is a value of its own).

    Each column is factorised on its own and the codes combined, which on a million rows is
    several times faster than grouping on the string columns together.
    """
    combined = np.zeros(len(df), dtype=np.int64) if extra is None else pd.factorize(extra)[0].astype(np.int64)
    span = 1 if extra is None else int(combined.max(initial=0)) + 1  # combined < span
    for col in cols:
        codes, uniques = pd.factorize(df[col], use_na_sentinel=False)
        if span * (len(uniques) + 1) >= 2**62:  # densify before the mixed-radix number could overflow
            combined = pd.factorize(combined)[0].astype(np.int64)
            span = int(combined.max(initial=0)) + 1
        combined = combined * (len(uniques) + 1) + codes
        span *= len(uniques) + 1
    return pd.factorize(combined)[0].astype(np.int64)


def _first_rows(ids: np.ndarray) -> np.ndarray:
    """The row of each id's first appearance."""
    return np.flatnonzero(~pd.Series(ids).duplicated().to_numpy())


def hardware_codes(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """A code per row and the labels 'instance_type or host | device | accelerator', built once per distinct combination.

    The host only counts when no instance type was recorded: two machines of one instance
    type with the same device are the same hardware.
    """
    has_type = df["instance_type"].notna() & (df["instance_type"] != "")
    keyed = pd.DataFrame({"instance_type": df["instance_type"], "host": df["host"].where(~has_type, None),
                          "device": df["device"], "accelerator": df["accelerator"]})
    cols = list(keyed.columns)
    codes = group_ids(keyed, cols)
    first = _first_rows(codes)  # ids are numbered in order of first appearance
    labels = []
    for inst, host, device, acc in zip(*(_text_column(keyed[c].iloc[first]) for c in cols)):
        label = f"{inst or host or '?'} | {device or '?'}"
        labels.append(f"{label} | {acc}" if acc else label)
    return codes, labels


def hardware_key(df: pd.DataFrame) -> pd.Series:
    """The identity of the hardware each record ran on, as a categorical column."""
    codes, labels = hardware_codes(df)
    return pd.Series(pd.Categorical.from_codes(codes, categories=_dedup(labels)), index=df.index)


def _dedup(labels: list[str]) -> list[str]:
    """Two combinations can print alike (an empty string and a missing value); keep labels unique."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def check_merge(records: pd.DataFrame, allow_mixed: bool = False) -> list[str]:
    """Refuse to merge runs where one model name means different models; return notes when allowed.

    A name must carry one model hash, and at each batch size one set of input shapes.
    """
    problems: list[str] = []
    first = _first_rows(group_ids(records, ["model", "model_sha256"]))
    pairs = records[["model", "model_sha256"]].iloc[first]
    pairs = pairs[pairs["model_sha256"].fillna("") != ""]
    for model, values in pairs.groupby("model", sort=True)["model_sha256"]:
        if len(values) > 1:
            mine = records.loc[records["model"] == model, ["model_sha256", "run_id"]].drop_duplicates()
            runs = mine.groupby("model_sha256", sort=True)["run_id"].unique()
            where = "; ".join(f"{sha[:12]} in run {', '.join(map(str, r[:3]))}" for sha, r in runs.items())
            problems.append(f"model {model!r} has {len(values)} different hashes ({where})")
    first = _first_rows(group_ids(records, ["model", "batch_size", "input_shapes"]))
    shapes = records[["model", "batch_size", "input_shapes"]].iloc[first]
    shapes = shapes[~shapes["input_shapes"].fillna("{}").isin(["", "{}"])]
    for (model, batch), values in shapes.groupby(["model", "batch_size"], sort=True)["input_shapes"]:
        if len(values) > 1:
            problems.append(f"model {model!r} at batch {batch} has {len(values)} different input shapes "
                            f"({' vs '.join(map(str, values.iloc[:2]))})")
    if problems and not allow_mixed:
        raise ResultsError("refusing to merge runs: " + "; ".join(problems) + "; pass --allow-mixed to merge them anyway")
    return [f"merged despite a mismatch (--allow-mixed): {p}" for p in problems]


def _price_table(instance_types: Iterable[str], catalog: PriceCatalog, price_kind: str) -> pd.DataFrame:
    """One row per instance type seen: the whole instance's price, or why there is none."""
    rows = []
    for name in instance_types:
        price = catalog.get(name)
        row: dict[str, object] = {"instance_type": name, "reason": None, "accelerator_count": 0,
                                  "usd_per_hour": np.nan, "capital_usd_per_hour": np.nan, "kw_cost_usd": np.nan,
                                  "power_from_run": False, "basis": None, "as_of": None, "source": None, "origin": None}
        if price is None:
            row["reason"] = "instance type not in the price catalog (add it with --prices FILE)"
        else:
            row.update(accelerator_count=price.accelerator_count, basis=price.basis if price.tco else price_kind,
                       as_of=price.as_of, source=price.source, origin=price.origin)
            if price.tco is not None and price.tco.power_w is None:
                t = price.tco
                row.update(power_from_run=True, capital_usd_per_hour=t.capital_usd / (t.lifetime_years * 8760),
                           kw_cost_usd=t.pue * t.usd_per_kwh)
            else:
                hourly = price.usd_per_hour(price_kind)
                if hourly is None:
                    row["reason"] = f"no {price_kind} price for {name} in the catalog"
                else:
                    row["usd_per_hour"] = hourly
        rows.append(row)
    return pd.DataFrame(rows, columns=["instance_type", "reason", "accelerator_count", "usd_per_hour",
                                       "capital_usd_per_hour", "kw_cost_usd", "power_from_run", "basis",
                                       "as_of", "source", "origin"])


def _lookup(table: pd.DataFrame, column: str, codes: np.ndarray, fill: object) -> np.ndarray:
    """Per-point values of a per-instance-type column; `fill` where the type is unknown (code -1)."""
    column_values = table[column].to_numpy()
    values = np.append(column_values, np.array([fill], dtype=column_values.dtype if fill is not None else object))
    return values[codes]  # the last slot holds the fill


def _categorical(slots: np.ndarray, labels: list[object]) -> pd.Categorical:
    """labels[slot] for each point, stored once per distinct text; None labels are missing values."""
    label_codes, uniques = pd.factorize(np.asarray(labels, dtype=object), use_na_sentinel=True)
    return pd.Categorical.from_codes(label_codes[slots], categories=pd.Index(list(uniques), dtype=object))


def _apply_prices(points: pd.DataFrame, catalog: PriceCatalog, price_kind: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Add the price columns; return the points, the unpriced summary and the prices used."""
    inst_codes, inst_names = pd.factorize(points["instance_type"], use_na_sentinel=True)
    names = [str(n) for n in inst_names]
    table = _price_table(names, catalog, price_kind)
    empty = np.array([n == "" for n in names] + [True])  # an empty string counts as no instance type
    codes = np.where(empty[inst_codes], len(names), inst_codes)  # len(names): the fill slot of _lookup
    count = _lookup(table, "accelerator_count", codes, 0).astype(float)
    used = pd.to_numeric(points["accelerators_used"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad_share = (count > 0) & ~np.isnan(used) & ((used <= 0) | (used > count))
    share = np.where((count > 0) & ~np.isnan(used) & ~bad_share, used / np.maximum(count, 1), 1.0)
    # on-prem TCO priced from the run's own power: the capital is shared, the measured power is the run's
    from_run = _lookup(table, "power_from_run", codes, False).astype(bool)
    power_w = pd.to_numeric(points["avg_power_w"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        run_priced = (_lookup(table, "capital_usd_per_hour", codes, np.nan).astype(float) * share
                      + power_w / 1000 * _lookup(table, "kw_cost_usd", codes, np.nan).astype(float))
    hourly = np.where(from_run, run_priced, _lookup(table, "usd_per_hour", codes, np.nan).astype(float) * share)
    reason = _lookup(table, "reason", codes, "no instance type recorded (profile with --instance TYPE)")
    reason = np.where(bad_share, "accelerators used exceed the instance's count", reason)
    no_power = from_run & np.isnan(power_w) & pd.isna(reason)
    reason = np.where(no_power, "its TCO price needs the run's measured power, and the run has none", reason)
    priced = pd.isna(reason)
    hourly = np.where(priced, hourly, np.nan)
    slot = np.where(priced, codes, len(names))  # unpriced points show no price text
    estimated_power = from_run & (points["power_method"].to_numpy(dtype=object) == ESTIMATED_POWER)
    basis_slot = np.where(priced & from_run, len(names) + 1 + estimated_power, slot)
    basis_labels = list(table["basis"]) + [None, "tco + the run's measured power", "tco + the run's estimated power"]
    share_pair = np.where(count > 0, np.where(np.isnan(used), count, used) * 1000 + count, 0).astype(np.int64)
    pair_codes, pairs = pd.factorize(share_pair)
    label_codes, share_labels = pd.factorize(np.array([f"{p // 1000}/{p % 1000}" if p else "1/1" for p in pairs] or ["1/1"], dtype=object))
    source_text = _text_column(points["instance_type_source"].astype(object))
    given = pd.to_numeric(points["price_usd_per_hour"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    is_given = np.isfinite(given) & (given > 0)
    not_resolved = ~is_given & (codes == len(names)) & np.array([isinstance(t, str) and t.startswith("not priced")
                                                                  for t in source_text], dtype=bool)
    if is_given.any() or not_resolved.any():
        reason = np.where(not_resolved, source_text, reason)
        reason = np.where(is_given, None, reason)
        hourly = np.where(is_given, given, hourly)
        priced = pd.isna(reason)
        slot = np.where(priced & ~is_given, codes, len(names))
        basis_slot = np.where(is_given, len(names), basis_slot)
    thr = pd.to_numeric(points["throughput_sps"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    out = points.assign(
        price_usd_per_hour=hourly,
        price_share=pd.Categorical.from_codes(label_codes[pair_codes], categories=pd.Index(share_labels, dtype=object)),
        price_basis=_categorical(basis_slot, basis_labels),
        price_as_of=_categorical(slot, list(table["as_of"]) + [None]),
        price_source=_categorical(slot, list(table["source"]) + [None]),
        cost_usd_per_1m=cost_usd_per_1m(hourly, thr),
    )
    out = _label_given_and_assumed(out, is_given, priced, source_text, price_kind)
    missing = out.loc[~priced, ["instance_type", "host"]].assign(reason=reason[~priced])
    no_type = missing["instance_type"].isna() | (missing["instance_type"] == "")
    missing["instance_type"] = missing["instance_type"].where(~no_type, "(host " + missing["host"].astype("str") + ")")
    unpriced = missing.groupby(["instance_type", "reason"], sort=True).size().reset_index(name="points")
    seen = {names[c] for c in np.unique(codes[priced & ~is_given])}
    prices_used = table[table["instance_type"].isin(seen)][["instance_type", "usd_per_hour", "basis", "as_of", "source", "origin"]]
    if is_given.any():
        mine = out.loc[is_given, ["instance_type", "host", "price_usd_per_hour", "price_basis", "price_as_of"]].astype(object)
        label = mine["instance_type"].where(mine["instance_type"].notna() & (mine["instance_type"] != ""), "(host " + mine["host"].astype(str) + ")")
        rows = pd.DataFrame({"instance_type": label, "usd_per_hour": given[is_given], "basis": mine["price_basis"],
                             "as_of": mine["price_as_of"], "source": GIVEN_SOURCE, "origin": "record"}).drop_duplicates()
        prices_used = pd.concat([prices_used, rows], ignore_index=True)
    return out, unpriced, prices_used.reset_index(drop=True)


def _label_given_and_assumed(out: pd.DataFrame, is_given: np.ndarray, priced: np.ndarray, source_text: np.ndarray,
                             price_kind: str) -> pd.DataFrame:
    """Price text for points priced from a given figure ("given: NOTE") or an assumed instance type.

    Only touched when such points exist, so a catalog-only matrix keeps its compact columns.
    """
    assumed = priced & ~is_given & np.array([isinstance(t, str) and t.startswith("assumed") for t in source_text], dtype=bool)
    if not (is_given.any() or assumed.any()):
        return out
    basis = np.array(out["price_basis"].astype(object).to_numpy(), dtype=object)  # writable copies
    as_of = np.array(out["price_as_of"].astype(object).to_numpy(), dtype=object)
    source = np.array(out["price_source"].astype(object).to_numpy(), dtype=object)
    if is_given.any():
        notes = out["price_note"].astype(object).to_numpy()[is_given]
        basis[is_given] = [f"given: {n}" if isinstance(n, str) and n.strip() else "given" for n in notes]
        as_of[is_given] = [str(t)[:10] if isinstance(t, str) and t else None for t in out["started_at"].to_numpy(dtype=object)[is_given]]
        source[is_given] = GIVEN_SOURCE
    if assumed.any():
        basis[assumed] = [f"{b}; {t}" for b, t in zip(basis[assumed], source_text[assumed])]
    return out.assign(price_basis=pd.Categorical(basis), price_as_of=pd.Categorical(as_of), price_source=pd.Categorical(source))


def _reasons(frame: pd.DataFrame) -> pd.Series:
    joined = frame["invalid_reasons"].map(lambda r: "; ".join(r) if r is not None and len(r) else "")
    status_ok = frame["status"] == "ok"
    err = frame["error"].fillna("").astype("str")
    return joined.where(status_ok, frame["status"].astype("str") + (": " + err).where(err != "", ""))


def _latest_per_point(frame: pd.DataFrame, rows: np.ndarray, hardware: np.ndarray) -> np.ndarray:
    """Of `rows`, one per point key: where a key repeats (several runs), the latest started_at wins."""
    gid = group_ids(frame, [c for c in POINT_KEY if c != "hardware"], extra=hardware)[rows]
    repeated = pd.Series(gid).duplicated(keep=False).to_numpy()
    if not repeated.any():
        return rows
    rep = pd.DataFrame({"gid": gid[repeated], "t": frame["started_at"].to_numpy(dtype=object)[rows[repeated]],
                        "row": rows[repeated]})
    latest = rep.sort_values(["gid", "t"], kind="stable").drop_duplicates("gid", keep="last")["row"].to_numpy()
    return np.sort(np.concatenate([rows[~repeated], latest]))


def build_matrix(records: pd.DataFrame, catalog: PriceCatalog, *, models: Iterable[str] = (),
                 include_inaccurate: bool = False, allow_mixed: bool = False, price_kind: str = ON_DEMAND) -> Matrix:
    """Turn result records (RECORD_COLUMNS) into the priced matrix and its left-out lists.

    Written for a million rows: the wide string columns are copied once, for the kept points.
    """
    if price_kind not in (ON_DEMAND, SPOT):
        raise UsageError(f"price kind must be {ON_DEMAND} or {SPOT}, got {price_kind!r}")
    if len(records) == 0:
        raise ResultsError("no trial records to analyse")
    wanted = list(dict.fromkeys(models))
    if wanted:
        present = set(records["model"].unique())
        unknown = [m for m in wanted if m not in present]
        if unknown:
            raise UsageError(f"no results for model {', '.join(unknown)}; the results hold {', '.join(sorted(present))}")
        records = records[records["model"].isin(wanted)]
    records = records.reset_index(drop=True)
    missing_cols = [c for c in _OPTIONAL if c not in records.columns]
    if missing_cols:
        records = records.assign(**{c: None for c in missing_cols})
    notes = check_merge(records, allow_mixed)
    hw_codes, hw_labels = hardware_codes(records)
    hw_labels = _dedup(hw_labels)
    ok = ((records["status"] == "ok") & records["valid"].fillna(False).astype(bool)).to_numpy()
    bad = records.loc[~ok, ["model", "adapter", "precision", "batch_size", "scenario", "status", "invalid_reasons", "error"]]
    invalid = bad.assign(hardware=np.asarray(hw_labels, dtype=object)[hw_codes[~ok]], reasons=_reasons(bad))
    invalid = invalid[["model", "hardware", "adapter", "precision", "batch_size", "scenario", "status", "reasons"]].reset_index(drop=True)
    wrong = ok & records["accuracy_ok"].eq(False).fillna(False).astype(bool).to_numpy()
    inaccurate = records.loc[wrong, ["model", "adapter", "precision", "batch_size", "scenario"]].assign(
        hardware=np.asarray(hw_labels, dtype=object)[hw_codes[wrong]]).reset_index(drop=True)
    keep = ok if include_inaccurate else ok & ~wrong
    if include_inaccurate and wrong.any():
        notes.append(f"{int(wrong.sum())} point(s) failed the accuracy check and are included (--include-inaccurate)")
    rows, curves = np.flatnonzero(keep), {}
    if (records["scenario"].to_numpy(dtype=object)[rows] == SERVER).any():  # one point per rate-latency curve
        config = group_ids(records, [c for c in POINT_KEY if c != "hardware"] + ["run_id"], extra=hw_codes)
        rows, curves = collapse_server_rows(records, rows, config)
    rows = _latest_per_point(records, rows, hw_codes)
    points = records.loc[rows, list(_KEEP)].reset_index(drop=True)
    points["rate_curve"] = pd.Series([curves.get(int(r)) for r in rows], dtype=object)
    if curves:  # a server point's throughput is the rate it achieved within its SLO
        achieved = pd.to_numeric(points["achieved_rps"], errors="coerce")
        points["throughput_sps"] = achieved.where((points["scenario"] == SERVER) & achieved.notna(), points["throughput_sps"])
    points["hardware"] = pd.Categorical.from_codes(hw_codes[rows], categories=hw_labels)
    points, unpriced, prices_used = _apply_prices(points, catalog, price_kind)
    energy = pd.to_numeric(points["energy_j_per_inference"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    unresolved = points.pop("unresolved_percentiles").to_numpy(dtype=object)
    points = points.assign(
        # a time-capped point with fewer than 368 samples has an open p99 interval: shown, never used for an SLO
        p99_resolved=np.fromiter((u is None or "p99" not in list(u) for u in unresolved), dtype=bool, count=len(unresolved)),
        energy_estimated=points["power_method"].to_numpy(dtype=object) == ESTIMATED_POWER,
        # perf per watt: (items/s) / W = items per joule
        items_per_j=np.divide(1.0, energy, out=np.full_like(energy, np.nan), where=energy > 0),
        energy_usd_per_1m=energy_usd_per_1m(energy, catalog.electricity.usd_per_kwh) if catalog.electricity else np.nan,
    )
    points = add_llm_costs(points)  # $ and J per 1M output / total tokens (generate points; NaN elsewhere)
    notes.extend(_precision_notes(points))
    notes.extend(_assumption_notes(points))
    return Matrix(points=points, invalid=invalid, inaccurate=inaccurate, unpriced=unpriced, prices_used=prices_used,
                  electricity=catalog.electricity, price_kind=price_kind, notes=notes)


def _precision_notes(points: pd.DataFrame) -> list[str]:
    """Say so when a model's points differ in effective precision (allowed, but not like for like)."""
    combos = points[["model", "precision", "precision_effective"]].iloc[
        _first_rows(group_ids(points, ["model", "precision", "precision_effective"]))]
    eff = combos["precision_effective"].astype(object).where(combos["precision_effective"].notna(), combos["precision"].astype(object))
    per_model = eff.groupby(combos["model"].to_numpy()).unique()
    return [f"{model}: points differ in precision ({', '.join(sorted(map(str, p)))}); compare accuracy as well as speed"
            for model, p in per_model.items() if len(p) > 1]


def _assumption_notes(points: pd.DataFrame) -> list[str]:
    """One note per distinct assumed instance type: the price is only as good as the assumption."""
    src = points["instance_type_source"].astype(object)
    assumed = src.map(lambda t: isinstance(t, str) and t.startswith("assumed")).to_numpy(dtype=bool)
    priced = pd.to_numeric(points["price_usd_per_hour"], errors="coerce").notna().to_numpy()
    counts = src[assumed & priced].value_counts(sort=False)
    return [f"{n} point(s) priced by an ASSUMED instance type ({text}): measure on the instance itself, "
            "or pass --instance TYPE / --usd-per-hour X, to price this machine for certain"
            for text, n in sorted(counts.items())]
