"""A history: the operations a test observed, in the order they happened.

An `Op` is one line of history.jsonl (docs/spec.md section 2): an invoke, or its ok /
fail / info completion. Field names follow Jepsen. `history.writer.HistoryWriter`
appends ops while a test runs; `history.formats` reads, validates and exports them;
`history.importers` reads Jepsen's and Porcupine's histories.
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
NEMESIS = "nemesis"

_ABSENT = object()


@dataclass(slots=True)
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


class _NoExtra(dict):
    """The empty `Op.extra` that every op read without extra fields shares (a
    million-op history would otherwise hold a million empty dicts): it refuses
    changes, and copies and pickles as a plain empty dict."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this op's extra fields are shared and read-only; "
                        "give the op its own dict (dataclasses.replace(op, extra={...}))")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple:
        return (dict, ())


NO_EXTRA: dict = _NoExtra()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while: reading or checking a
    history of millions of ops makes millions of objects, none of them garbage,
    and each full collection would walk them all (a 1,000,000-op check spent most
    of its time there). Nested uses are fine; the collector's state is restored."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
