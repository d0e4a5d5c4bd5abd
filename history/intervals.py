"""Intervals: a history seen as operations that span time, and the faults around them.

A history (SPEC section 2) is a list of events; a person reads it as *intervals*:
an operation from its invoke to its completion (ok, fail or info; an invoke that never
completed is an open info), and *fault windows* (history.faults).

The report, the plots and the timeline all draw from these. Pairing is tolerant: an
event that does not fit (a completion with no invoke) becomes a warning, never an error,
because a drawing problem must never hide or change a verdict.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable

from history.faults import NEMESIS, FaultPairing, FaultWindow, short as _short, target_of

OUTCOMES = ("ok", "fail", "info")


@dataclass
class Interval:
    """One client operation: invoke .. completion (end is None when it never completed)."""

    index: int                      # history index of the invoke
    process: Any
    f: str
    start: int                      # ns since the test started
    end: int | None                 # ns, None = never completed (counts as info)
    outcome: str                    # "ok" | "fail" | "info"
    key: Any = None
    has_key: bool = False
    invoke_value: Any = None
    value: Any = None               # the completion's value (a read's result)
    error: str | None = None
    node: str | None = None
    completion_index: int | None = None

    @property
    def latency_ns(self) -> int | None:
        return None if self.end is None else self.end - self.start

    def describe(self, with_key: bool = True) -> str:
        """A short one-line text: `write 3`, `read -> 4`, `cas [1, 2]`."""
        if self.f == "read":
            shown = f"read -> {_short(self.value)}" if self.outcome == "ok" else "read"
        else:
            shown = f"{self.f} {_short(self.invoke_value)}"
        if self.has_key and with_key:
            shown = f"{shown} (key {_short(self.key)})"
        return shown


@dataclass
class Intervals:
    ops: list[Interval] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    nemesis_events: list[dict] = field(default_factory=list)
    end_time: int = 0
    warnings: list[str] = field(default_factory=list)

    def by_index(self) -> dict[int, Interval]:
        """Map both the invoke and the completion index to their interval."""
        out: dict[int, Interval] = {}
        for iv in self.ops:
            out[iv.index] = iv
            if iv.completion_index is not None:
                out[iv.completion_index] = iv
        return out


def as_dict(op: Any) -> dict:
    """An `Op` (history.ops) or a plain dict, as a dict of history fields."""
    if isinstance(op, dict):
        return op
    to_dict = getattr(op, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"not a history op: {type(op).__name__}")


def _fields(raw: Any, pos: int) -> tuple:
    """(index, time, type, process, f, has_key, key, value, node, error) of an event."""
    if isinstance(raw, dict):
        return (int(raw.get("index", pos)), int(raw.get("time", 0)), raw.get("type"),
                raw.get("process"), str(raw.get("f")), "key" in raw, raw.get("key"),
                raw.get("value"), raw.get("node"), raw.get("error"))
    if hasattr(raw, "has_key") and hasattr(raw, "time"):   # history.ops.Op
        return (int(raw.index), int(raw.time), raw.type, raw.process, str(raw.f),
                raw.has_key, raw.key if raw.has_key else None, raw.value, raw.node, raw.error)
    raise TypeError(f"not a history op: {type(raw).__name__}")


def pair(ops: Iterable[Any]) -> Intervals:
    """Pair invokes with completions per process, and nemesis starts with stops."""
    out = Intervals()
    open_ops: dict[Any, tuple] = {}
    faults = FaultPairing()
    last_time = 0
    for pos, raw in enumerate(ops):
        try:
            ev = _fields(raw, pos)
        except (TypeError, ValueError) as e:
            out.warnings.append(f"history event {pos}: cannot draw it ({e})")
            continue
        index, t, typ, proc, f = ev[:5]
        if t > last_time:
            last_time = t
        if proc == NEMESIS:
            op = as_dict(raw)
            out.nemesis_events.append(op)
            faults.add(typ, f, t, op.get("value"), target_of(op))
            continue
        if typ == "invoke":
            if proc in open_ops:
                prev = open_ops[proc]
                out.warnings.append(f"op {prev[0]}: process {proc} invoked again "
                                    f"at op {index} before completing; drawn as info")
                _close(out, prev, None)
            open_ops[proc] = ev
        elif typ in OUTCOMES:
            inv = open_ops.pop(proc, None)
            if inv is None:
                out.warnings.append(f"op {index}: a {typ} completion with no invoke "
                                    f"(process {proc}); not drawn")
                continue
            _close(out, inv, ev)
        else:
            out.warnings.append(f"op {index}: unknown type {typ!r}; not drawn")
    for inv in open_ops.values():
        _close(out, inv, None)
    out.end_time = last_time
    out.faults = faults.finish(last_time)
    out.ops.sort(key=lambda iv: (iv.start, iv.index))
    return out


def _close(out: Intervals, inv: tuple, comp: tuple | None) -> None:
    out.ops.append(Interval(
        index=inv[0], process=inv[3], f=inv[4], start=inv[1],
        end=None if comp is None else comp[1],
        outcome="info" if comp is None else comp[2],
        key=inv[6], has_key=inv[5], invoke_value=inv[7],
        value=None if comp is None else comp[7],
        error=(comp[9] if comp is not None and comp[9] else None) or inv[9],
        node=(comp[8] if comp is not None and comp[8] else None) or inv[8],
        completion_index=None if comp is None else comp[0],
    ))


def availability(iv: Intervals) -> dict:
    """Share of client ops that completed ok, invoked inside vs outside fault windows."""
    merged: list[list[int]] = []
    for a, b in sorted((w.start, w.end) for w in iv.faults):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    starts = [a for a, _ in merged]
    windows = merged

    def inside(t: int) -> bool:
        k = bisect.bisect_right(starts, t) - 1
        return k >= 0 and t <= merged[k][1]

    counts = {"during_faults": [0, 0], "outside_faults": [0, 0]}
    for op in iv.ops:
        slot = counts["during_faults" if windows and inside(op.start) else "outside_faults"]
        slot[1] += 1
        slot[0] += op.outcome == "ok"
    return {k: {"ok": ok, "total": total, "ratio": (ok / total) if total else None}
            for k, (ok, total) in counts.items()}
