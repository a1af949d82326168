"""Options shared by several commands, defined once, and the flags' conventions.

Conventions: a list is one comma-separated value (`--dim sequence=64,vocab=1000`; a repeated
flag still adds to the list); a flag that takes a quantity names its unit (`--duration-s`,
`--rate-rps`, `--fail-above-pct`). Renamed flags keep their old spelling as a hidden alias
that prints one deprecation line on stderr (`renamed_flags`). Nothing here imports more than
typer and click: `hwbench --help` stays quick (tests/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperCommand

# -- list values ------------------------------------------------------------------------------


def split_list(values: Iterable[str] | str | None) -> list[str]:
    """Comma-separated values (from one flag, or from a repeated one) as one list, blanks dropped."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def complete_list(choices: Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """Shell completion for a comma-separated list: completes the item after the last comma
    (items already in the list are not offered again)."""
    def complete(incomplete: str) -> list[str]:
        head, _, last = incomplete.rpartition(",")
        given = set(head.split(",")) if head else set()
        prefix = f"{head}," if head else ""
        return [prefix + c for c in choices() if c.startswith(last) and c not in given]
    return complete


# -- renamed flags: the old spelling still works, with a note ----------------------------------


def rename_args(args: list[str], renamed: dict[str, str], warn: Callable[[str], None]) -> list[str]:
    """`args` with every old flag spelling (`--timeout`, `--timeout=5`) replaced by its new name;
    one note per old spelling used. Stops at `--` (what follows is never a flag)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        new = renamed.get(name)
        if new is None:
            out.append(arg)
            continue
        warn(f"hwbench: note: {name} is deprecated; use {new}")
        out.append(f"{new}{eq}{value}")
    return out


def renamed_flags(renamed: dict[str, str]) -> type[TyperCommand]:
    """A command class that accepts each old flag name in `renamed` (old -> new), hidden from --help."""
    def parse_args(self: TyperCommand, ctx: click.Context, args: list[str]) -> list[str]:
        return TyperCommand.parse_args(self, ctx, rename_args(args, renamed, lambda m: typer.echo(m, err=True)))
    return type("RenamedFlagsCommand", (TyperCommand,), {"parse_args": parse_args})


# -- options used by more than one command ------------------------------------------------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
OutDir = Annotated[str, typer.Option("--out", "-o", help="Folder (or s3:// gs:// az:// file:// store URI) that receives one run folder per invocation.")]
ResultsArg = Annotated[list[str], typer.Argument(help="Run folders, folders above them (all runs below are read), or s3:// gs:// az:// file:// store URIs.")]
PricesOpt = Annotated[
    list[str] | None,
    typer.Option("--prices", envvar="HWBENCH_PRICES", metavar="FILES",
                 help="Price files (TOML), comma-separated, merged over the built-in catalog in order "
                      "(also $HWBENCH_PRICES).")]
ModelsOpt = Annotated[list[str] | None, typer.Option("--model", metavar="NAMES", help="Only these models, comma-separated.")]


def price_files(values: list[str] | None) -> list[Path]:
    """The --prices value as paths."""
    return [Path(p) for p in split_list(values)]


def epilog(*invocations: str) -> str:
    """An 'Examples' block for a command's help, kept as written (click's \\b: no rewrapping)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in invocations)

