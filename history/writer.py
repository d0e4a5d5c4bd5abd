"""The history writer: a test's operations appended to history.jsonl as they happen.

One flushed line per op, so a run that crashes keeps its history up to the crash.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, IO

from history.ops import _ABSENT, Op


class HistoryWriter:
    """Appends ops to a history.jsonl while a test runs (thread-safe).

    `index` is assigned here, in append order; `time` is nanoseconds since the
    writer was created, from a monotonic clock. Every line is flushed at once.
    """

    def __init__(self, path: Path | str, start_ns: int | None = None) -> None:
        self.path = Path(path)
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._start = time.monotonic_ns() if start_ns is None else start_ns
        self.ops: list[Op] = []

    def now(self) -> int:
        return time.monotonic_ns() - self._start

    def append(self, type: str, process: int | str, f: str, value: Any = None,
               key: Any = _ABSENT, node: str | None = None,
               error: str | None = None, **extra: Any) -> Op:
        with self._lock:
            op = Op(index=len(self.ops), time=self.now(), type=type, process=process,
                    f=f, value=value, key=key, node=node, error=error, extra=extra)
            self.ops.append(op)
            self._file.write(op.to_json() + "\n")
            self._file.flush()
            return op

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> "HistoryWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
