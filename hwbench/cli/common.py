"""Shared CLI pieces: consoles, the --json option, and JSON output."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console


def _width(stream: Any) -> int | None:
    """A terminal's own width; 160 columns (or $COLUMNS) when writing to a file or a pipe, so logs
    of `make demo` and CI keep whole table rows instead of 80-column folds."""
    if stream.isatty():
        return None
    try:
        return max(80, int(os.environ.get("COLUMNS", "160")))
    except ValueError:
        return 160


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become null, numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (no rich markup, no wrapping)."""
    typer.echo(json.dumps(_clean(obj), indent=2, default=str))
