"""A history: the operations a test observed, in the order they happened.

An `Op` is one line of history.jsonl (SPEC section 2): an invoke, or its ok / fail /
info completion. Field names follow Jepsen. `HistoryWriter` appends ops to a
history.jsonl while a test runs, one flushed line per op, so a crashed run keeps
its history. Reading, validating, importing and exporting histories live in
`checker.formats`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
NEMESIS = "nemesis"

_ABSENT = object()


@dataclass
class Op:
    """One history event (SPEC section 2)."""

    index: int
    time: int
    type: str
    process: int | str
    f: str
    value: Any = None
    key: Any = _ABSENT
    node: str | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def has_key(self) -> bool:
        return self.key is not _ABSENT

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"index": self.index, "time": self.time, "type": self.type,
                             "process": self.process, "f": self.f}
        if self.has_key:
            d["key"] = self.key
        d["value"] = self.value
        if self.node is not None:
            d["node"] = self.node
        if self.error is not None:
            d["error"] = self.error
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


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
