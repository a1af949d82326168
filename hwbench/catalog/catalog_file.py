"""Write a dated catalog file that hwbench.catalog.prices reads back: what `hwbench prices update` produces.

The price-list parsers (aws_offers, azure_retail) turn a cloud's public price list into an
`Update`: entries in the catalog's own field names, the entries left out with the reason, and
where the prices come from. `render` writes it as TOML (schema_version 1); `write_catalog`
checks the text with the catalog's own loader before anything is written, so a generated file
is held to the same rules as a hand-written one (no future dates, spot above on-demand refused...).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hwbench.catalog.prices import PRICE_SCHEMA_VERSION, check_document
from hwbench.errors import ConfigError

# the order fields are written in (any others after, sorted)
_ORDER = ("provider", "region", "accelerator", "accelerator_count", "vcpus", "cpu_vendor", "cpu_family",
          "on_demand_usd_per_hour", "as_of", "source", "reserved_usd_per_hour", "reserved_term",
          "spot_usd_per_hour", "spot_as_of", "spot_source", "note")


@dataclass
class Update:
    """What one price list gave: entries by instance name, and what was left out (with why)."""

    provider: str
    as_of: str  # ISO date the prices were observed (published, or retrieved)
    source: str  # the price list: URL or file, and its date
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "name: reason"
    header: list[str] = field(default_factory=list)  # comment lines for the file's top


def read_json(path: Path) -> Any:
    """One JSON file, or a one-line ConfigError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"price list {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"price list {path} is not readable JSON: {e}") from e


def positive_usd(text: Any) -> float | None:
    """A price as the lists give it ("0.0765000000" or 0.0765): a finite number above 0, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is a JSON string


def _key(name: str) -> str:
    return json.dumps(name)


def render(update: Update) -> str:
    """The catalog text: a commented header, then one [instances."NAME"] table per entry, sorted."""
    lines = [f"# {line}" if line else "#" for line in update.header]
    lines += ["", f"schema_version = {PRICE_SCHEMA_VERSION}"]
    for name in sorted(update.entries):
        entry = update.entries[name]
        lines += ["", f"[instances.{_key(name)}]"]
        keys = [k for k in _ORDER if k in entry] + sorted(k for k in entry if k not in _ORDER)
        for k in keys:
            v = entry[k]
            if k in ("as_of", "spot_as_of"):
                v = dt.date.fromisoformat(str(v))
            lines.append(f"{k} = {_value(v)}")
    return "\n".join(lines) + "\n"


def write_catalog(update: Update, out: Path) -> str:
    """Check the rendered catalog with the loader, then write it to `out`; returns the text."""
    if not update.entries:
        reasons = "; ".join(update.skipped[:5]) or "the price list has no matching instances"
        raise ConfigError(f"{out}: no instance could be priced from the price list ({reasons})")
    text = render(update)
    check_document(tomllib.loads(text), str(out))
    Path(out).write_text(text, encoding="utf-8")
    return text


def summary(update: Update, out: Path, shown: int = 10) -> Iterable[str]:
    """Lines for the command to print: what was written, and what was left out."""
    yield f"wrote {len(update.entries)} {update.provider} instance prices as of {update.as_of} to {out}"
    yield f"source: {update.source}"
    if update.skipped:
        yield f"left out {len(update.skipped)}:"
        for line in update.skipped[:shown]:
            yield f"  {line}"
        if len(update.skipped) > shown:
            yield f"  ... and {len(update.skipped) - shown} more"
