"""The typer application every command module registers on.

Bad input (:class:`particlesnn.InputError`) raised by any command becomes one line on stderr,
``error: <file>: <problem>``, and exit status 2 -- no traceback -- whether the app is run from
the console script or from ``typer.testing.CliRunner``.

Exit statuses, the same for every command: 0 done; 1 the command ran but one or more input
files could not be processed (each named on a line of its own, the others done: ``analyze``,
``measure``, ``detect``, ``info``, ``convert``); 2 the command cannot run as asked (an unknown
option value, a missing model folder or file, an output it must not overwrite) -- click's
status for usage errors.
"""
import os
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from particlesnn.errors import InputError


class _Group(TyperGroup):
    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            sys.exit(2)


app = typer.Typer(
    name="particlesnn",
    cls=_Group,
    help="Find, outline and measure nanoparticles in scanning probe microscope images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: Width (characters) of the output when it is not a terminal (a file, a pipe, a CI log) and
#: ``COLUMNS`` is not set: rich would take 80 and cut values or drop whole columns of a table.
PIPE_WIDTH = 200


def make_console(stderr: bool = False):
    """A rich console for a command's output (``stderr`` for errors): the terminal's width, or
    :data:`PIPE_WIDTH` when the output goes to a file or a pipe."""
    from rich.console import Console

    out = Console(stderr=stderr)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=stderr, width=PIPE_WIDTH)
    return out


def say_failed(err_console, path, problem: str, alone: bool) -> None:
    """One unwrapped stderr line for an input that could not be processed: ``error:`` when it
    was the only input, ``skipped`` when the others go on."""
    word = "error:" if alone else "skipped"
    err_console.print(f"[red]{word}[/red] {Path(path).name}: {problem}", soft_wrap=True, highlight=False)
