"""Intervals: a history seen as operations that span time, and the faults around them.

A history (SPEC section 2) is a list of events; a person reads it as *intervals*:
an operation from its invoke to its completion (ok, fail or info; an invoke that never
completed is an open info), and *fault windows*: the time between a nemesis start
(start-partition, start-latency, kill, pause) and its matching stop (stop-partition,
stop-latency, start, resume), per SPEC section 7. A fault still open at the end of the
history lasts to the end.

The report, the plots and the timeline all draw from these. Pairing is tolerant: an
event that does not fit (a completion with no invoke) becomes a warning, never an error,
because a drawing problem must never hide or change a verdict.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

NEMESIS = "nemesis"
OUTCOMES = ("ok", "fail", "info")

# start f -> (stop f, window kind)
FAULT_PAIRS: dict[str, tuple[str, str]] = {
    "start-partition": ("stop-partition", "partition"),
    "start-latency": ("stop-latency", "latency"),
    "kill": ("start", "kill"),
    "pause": ("resume", "pause"),
}
_STOPS = {stop: (start, kind) for start, (stop, kind) in FAULT_PAIRS.items()}


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
class FaultWindow:
    """A nemesis fault from its start invoke to its stop completion."""

    kind: str                       # partition | latency | kill | pause | other f
    start: int
    end: int                        # ns; the end of the history when never stopped
    detail: str = ""
    closed: bool = True


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


def _short(v: Any, limit: int = 60) -> str:
    try:
        s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def as_dict(op: Any) -> dict:
    """An `Op` (checker.history) or a plain dict, as a dict of history fields."""
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
    if hasattr(raw, "has_key") and hasattr(raw, "time"):   # checker.history.Op
        return (int(raw.index), int(raw.time), raw.type, raw.process, str(raw.f),
                raw.has_key, raw.key if raw.has_key else None, raw.value, raw.node, raw.error)
    raise TypeError(f"not a history op: {type(raw).__name__}")


def pair(ops: Iterable[Any]) -> Intervals:
    """Pair invokes with completions per process, and nemesis starts with stops."""
    out = Intervals()
    open_ops: dict[Any, tuple] = {}
    open_faults: dict[str, list[tuple[int, str]]] = {}
    pending: set[str] = set()     # nemesis f whose invoke awaits its completion
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
            if typ == "invoke" or (typ == "info" and f not in pending):
                pending.add(f)
                invoke = True
            else:
                pending.discard(f)
                invoke = False
            _nemesis(op, f, invoke, t, open_faults, out)
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
    for kind, stack in open_faults.items():
        for start, detail in stack:
            out.faults.append(FaultWindow(kind, start, last_time, detail, closed=False))
    out.ops.sort(key=lambda iv: (iv.start, iv.index))
    out.faults.sort(key=lambda w: w.start)
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


def _nemesis(op: dict, f: str, invoke: bool, t: int,
             open_faults: dict[str, list[tuple[int, str]]], out: Intervals) -> None:
    """Fault windows run from a start's invoke to the matching stop's completion.

    Nemesis ops are info/info (SPEC 7): the first event of an f is its invoke, the
    next one its completion.
    """
    if f in FAULT_PAIRS:
        if invoke:
            kind = FAULT_PAIRS[f][1]
            open_faults.setdefault(kind, []).append((t, _short(op.get("value"))))
        else:  # the completion says what was applied: keep it as the detail
            kind = FAULT_PAIRS[f][1]
            stack = open_faults.get(kind)
            if stack:
                start, _ = stack[-1]
                stack[-1] = (start, _short(op.get("value"), 120))
    elif f in _STOPS and not invoke:
        kind = _STOPS[f][1]
        stack = open_faults.get(kind)
        if stack:
            start, detail = stack.pop(0)
            out.faults.append(FaultWindow(kind, start, t, detail))


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
