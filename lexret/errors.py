"""User-facing errors.

A :class:`LexretError` is a problem with the user's input or set-up, not a bug: the CLI prints
its message (which names the problem and the fix) without a traceback and exits non-zero.
"""

from __future__ import annotations


class LexretError(Exception):
    """An error caused by input or configuration, with a message that says how to fix it."""

    exit_code = 2


class InputError(LexretError):
    """Bad input data: a file, a line or an item that cannot be used."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class IndexMismatchError(LexretError):
    """The index was built with another model, vocabulary or scale than the query side."""


class IndexIntegrityError(LexretError):
    """The index folder is incomplete or damaged."""
