"""The hwbench command line. This module only wires commands; each lives in its own module."""

from __future__ import annotations

import os
import sys

import typer

from hwbench import __version__
from hwbench.errors import HwbenchError

DEBUG_ENV = "HWBENCH_DEBUG"

app = typer.Typer(
    name="hwbench",
    help="Measure where each model should run, and what it costs there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports rich.markdown, markdown-it and pygments, about
    # a third of `hwbench --help` on a 2-core host (0.52 s against 0.74 s in one interleaved run
    # under load); the tables the commands print still use rich.
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hwbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version."),
) -> None:
    """hwbench: profile models on every device you have, then find the cheapest place to run them."""


def _register() -> None:
    from hwbench.cli import compare, devices, fleet, frontier, models, plan, prices, profile, storecmd

    app.command("devices", **devices.COMMAND)(devices.devices)
    app.command("models", **models.COMMAND)(models.models)
    app.command("profile", **profile.COMMAND)(profile.profile)
    app.command("frontier", **frontier.COMMAND)(frontier.frontier)
    app.add_typer(prices.app, name="prices", **prices.COMMAND)  # `prices` and `prices update`
    app.command("compare", **compare.COMMAND)(compare.compare)
    app.command("plan", **plan.COMMAND)(plan.plan)
    fleet.app.command("profile", **fleet.COMMAND)(fleet.profile)
    app.add_typer(fleet.app, name="fleet")
    storecmd.app.command("compact", **storecmd.COMMAND)(storecmd.compact)
    app.add_typer(storecmd.app, name="store")


_register()


COMPLETE_ENV = "_HWBENCH_COMPLETE"  # eval "$(_HWBENCH_COMPLETE=source_bash hwbench)" (zsh, fish: source_zsh, ...)


def _enable_completion() -> None:
    """Typer registers its bash/zsh/fish classes only with add_completion=True, which would add two
    options to every help page; completion works without them once the classes are registered."""
    try:
        from typer._completion_classes import completion_init
    except ImportError:  # a typer without it: completion is unavailable, the command still runs
        return
    completion_init()


def parser_error(e: Exception) -> str:
    """A click usage error as one line: the problem and where the help is (click prints a usage box)."""
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    message = " ".join(message.split())
    ctx = getattr(e, "ctx", None)
    path = ctx.command_path if ctx is not None else "hwbench"
    message = message.rstrip(".")
    return f"{message[:1].lower()}{message[1:]} (see '{path} --help')"


def main() -> None:
    """Entry point: run the app, mapping known errors to one line and an exit code (README, "Exit codes").

    With standalone_mode=False click returns the code of a `typer.Exit` instead of raising it:
    the returned value is the command's exit status and must reach sys.exit.
    """
    if os.environ.get(COMPLETE_ENV):  # a shell asks for completions: register typer's shell classes, only then
        _enable_completion()
    try:
        code = app(standalone_mode=False)
    except HwbenchError as e:
        if os.environ.get(DEBUG_ENV):
            raise
        typer.echo(f"hwbench: error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("hwbench: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("hwbench: interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as e:  # usage errors from the command-line parser: one line, as every error
        typer.echo(f"hwbench: error: {parser_error(e)}", err=True)
        sys.exit(getattr(e, "exit_code", 2) or 2)
    except Exception as e:  # anything unexpected: one line, traceback on demand
        if os.environ.get(DEBUG_ENV):
            raise
        typer.echo(f"hwbench: internal error: {type(e).__name__}: {e} (set {DEBUG_ENV}=1 for the traceback)", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
