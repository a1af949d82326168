"""`hwbench store compact STORE`: consolidate a store's run folders into one file, so loads stop paying per file.

The work is hwbench.results.consolidate; this module parses the argument and prints what it did
(README, "Results on object storage")."""

from __future__ import annotations

from typing import Annotated

import typer

from hwbench.cli.common import console, print_json
from hwbench.cli.options import JsonFlag, epilog

app = typer.Typer(help="Maintain a results store (a folder or URI above run folders).", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None)
COMMAND = dict(epilog=epilog("hwbench store compact results/", "hwbench store compact s3://bucket/hwbench"))


def compact(
    store: Annotated[str, typer.Argument(help="The store: a folder above run folders, or an s3:// gs:// az:// "
                                         "file:// URI (credentials: the standard provider chain).")],
    json_out: JsonFlag = False,
) -> None:
    """Copy every run's records into one consolidated file (the run folders stay the truth); safe to re-run."""
    from hwbench.results.consolidate import consolidate

    done = consolidate(store)
    if json_out:
        print_json({"store": store, "runs": done.runs, "records": done.rows, "file": done.file, "removed": done.removed})
        return
    console.print(f"consolidated {done.rows} record(s) of {done.runs} run(s) into {done.file}"
                  + (f" ({len(done.removed)} older file(s) removed)" if done.removed else ""), soft_wrap=True,
                  markup=False)
