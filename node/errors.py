"""Errors an operator of the node can act on.

A `BadConfig` is a bad flag, a bad cluster file, or a data directory the node cannot
use. `raftcheck node` prints it as one line, ``FILE:LINE: FIELD: message``, and exits
with code 254 (docs/spec.md section 3); it never becomes a traceback. The node keeps
its own error type so that it imports nothing of the test side.
"""

from __future__ import annotations


class BadConfig(Exception):
    """Bad usage, configuration or data directory: one line, exit code 254."""

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
