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
import sys

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
