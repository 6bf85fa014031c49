"""Errors that the faces (CLI, web) turn into one clear line for the user."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: a file that cannot be read or makes no sense.

    ``str(err)`` is one line naming the file and the problem, e.g.
    ``"scan.sxm: truncated file (expected 262144 bytes of data, found 1200)"``. Without a path
    (an option's value, an in-memory array) it is the problem alone, e.g.
    ``"--presets: unknown preset 'stm-huge'"``.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path.name}: {problem}")
