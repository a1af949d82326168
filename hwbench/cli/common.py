"""Shared CLI pieces: consoles and JSON output (the shared options: hwbench.cli.options)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import typer

from hwbench.jsonsafe import json_safe

if TYPE_CHECKING:
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


class _LazyConsole:
    """A rich Console made on first use: `hwbench --help` never needs rich (about 40 ms to import)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None
        self._made_for: tuple[int, int | None] | None = None

    def _get(self) -> Console:
        """The Console for the current stream and width: made again when either changed since the last
        use (an embedding program or a test runner swaps sys.stdout and sets $COLUMNS per invocation;
        a Console kept from the first one would keep its width)."""
        stream = sys.stderr if self._stderr else sys.stdout
        made_for = (id(stream), _width(stream))
        if self._console is None or made_for != self._made_for:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, width=made_for[1])
            self._made_for = made_for
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __enter__(self) -> Console:  # dunders skip __getattr__: rich's Live and Progress use these
        return self._get().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._get().__exit__(*exc)


def real_console(c: Any) -> Console:
    """The rich Console behind a lazy one, for libraries that need the object itself (rich Progress)."""
    return c._get() if isinstance(c, _LazyConsole) else c


def Table(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - stands in for rich.table.Table
    """rich.table.Table, imported when a table is first made (not for --help)."""
    from rich.table import Table as _Table

    return _Table(*args, **kwargs)


def escape(text: str) -> str:
    """rich.markup.escape, imported on first use."""
    from rich.markup import escape as _escape

    return _escape(text)


console: Console = _LazyConsole(stderr=False)  # type: ignore[assignment]
err_console: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]

from hwbench.cli.options import JsonFlag  # noqa: E402,F401  (defined with the other shared options)


_clean = json_safe  # the one JSON cleaner (hwbench.jsonsafe)


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (no rich markup, no wrapping)."""
    typer.echo(json.dumps(_clean(obj), indent=2, default=str))
