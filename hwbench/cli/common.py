"""Shared CLI pieces: consoles and JSON output (the shared options: hwbench.cli.options)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console

from hwbench.jsonsafe import json_safe


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

from hwbench.cli.options import JsonFlag  # noqa: E402,F401  (defined with the other shared options)


_clean = json_safe  # the one JSON cleaner (hwbench.jsonsafe)


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (no rich markup, no wrapping)."""
    typer.echo(json.dumps(_clean(obj), indent=2, default=str))
