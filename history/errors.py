"""Errors that a user can act on.

A `BadInput` is bad usage or bad input (a malformed history line, a bad flag, a bad
config file). The CLI prints it as one line, ``FILE:LINE: FIELD: message``, and exits
with code 254 (SPEC section 3). It never becomes a traceback.
"""

from __future__ import annotations


class BadInput(Exception):
    """Bad usage or bad input: reported as one line, exit code 254."""

    def __init__(self, message: str, file: str | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"
