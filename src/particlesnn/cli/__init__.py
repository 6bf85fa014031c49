"""Command-line face of particlesnn.

Each command lives in its own module under ``particlesnn.cli`` and registers itself on the
shared :data:`app`. Bad input (:class:`particlesnn.InputError`) becomes one line on stderr
and exit status 2; no traceback (the exit statuses: :mod:`particlesnn.cli._app`).
"""
from __future__ import annotations

import sys

from particlesnn.cli._app import app
from particlesnn.errors import InputError

# Importing registers the commands on `app` (order = order in --help).
from particlesnn.cli import (  # noqa: E402,F401
    io_cmds,
    synth_cmd,
    detect_cmd,
    analyze_cmd,
    evaluate_cmd,
    serve_cmd,
    dataset_cmd,
)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
