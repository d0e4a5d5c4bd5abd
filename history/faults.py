"""Fault windows: the nemesis ops of a history paired into the time each fault held.

A *fault window* runs from a nemesis start op's invoke (start-partition,
start-latency, kill, pause, kill-cluster) to the completion of its matching stop
(stop-partition, stop-latency, start, resume, start-cluster), per docs/spec.md
section 7. Nemesis ops are info/info pairs: the first event of an f is its invoke,
the next its completion (the nemesis never interleaves two records of one f). The
completion of a start says what was done (the grudge, the nodes): it becomes the
window's detail; a start's `target` field (leader, new-leader, ...) becomes the
window's target.

Faults may overlap: a partition while a node is down, two nodes killed one after the
other. A stop of a process fault (start, resume) closes the open window of its kind
that holds the same nodes; any other stop closes the oldest open window of its kind
(first in, first out). A fault never stopped lasts to the end of the history.

This is the one pairing of nemesis ops: the run statistics (phases, availability,
faults by kind), the timeline and the plots all read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

NEMESIS = "nemesis"

# start f -> (stop f, window kind)
FAULT_PAIRS: dict[str, tuple[str, str]] = {
    "start-partition": ("stop-partition", "partition"),
    "start-latency": ("stop-latency", "latency"),
    "kill": ("start", "kill"),
    "pause": ("resume", "pause"),
    "kill-cluster": ("start-cluster", "restart"),
}
STOPS: dict[str, tuple[str, str]] = {stop: (start, kind)
                                     for start, (stop, kind) in FAULT_PAIRS.items()}
KINDS: tuple[str, ...] = tuple(kind for _, kind in FAULT_PAIRS.values())


@dataclass
class FaultWindow:
    """A nemesis fault from its start invoke to its stop completion."""

    kind: str                       # partition | latency | kill | pause | restart
    start: int                      # ns since the test started
    end: int                        # ns; the end of the history when never stopped
    detail: str = ""
    closed: bool = True
    target: str | None = None       # how the nodes were chosen (leader, one, ...)


@dataclass
class _Open:
    start: int
    detail: str
    nodes: tuple | None
    target: str | None


def short(v: Any, limit: int = 60) -> str:
    """A value as compact JSON, cut to `limit` characters."""
    try:
        s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _nodes(value: Any) -> tuple | None:
    """A node list as a sorted tuple (the identity of a process fault), else None."""
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return tuple(sorted(value))
    return None


class FaultPairing:
    """Feed nemesis events in history order; read `windows` at the end."""

    def __init__(self) -> None:
        self.windows: list[FaultWindow] = []
        self._open: dict[str, list[_Open]] = {}   # kind -> open windows, oldest first
        self._pending: set[str] = set()            # f awaiting its completion

    def add(self, type_: str, f: str, t: int, value: Any,
            target: str | None = None) -> None:
        """One nemesis event: its type (invoke or info), f, time, value and the
        start's target (if the op has one)."""
        invoke = type_ == "invoke" or (type_ == "info" and f not in self._pending)
        if invoke:
            self._pending.add(f)
        else:
            self._pending.discard(f)
        if f in FAULT_PAIRS:
            kind = FAULT_PAIRS[f][1]
            stack = self._open.setdefault(kind, [])
            if invoke:
                stack.append(_Open(t, short(value), _nodes(value),
                                   target if isinstance(target, str) else None))
            elif stack:
                # the completion says what was applied: keep it as the detail
                stack[-1].detail = short(value, 120)
        elif f in STOPS and not invoke:
            kind = STOPS[f][1]
            stack = self._open.get(kind)
            if stack:
                nodes = _nodes(value)
                match = next((w for w in stack if nodes is not None and w.nodes == nodes),
                             stack[0])
                stack.remove(match)
                self.windows.append(FaultWindow(kind, match.start, t, match.detail,
                                                target=match.target))

    def finish(self, end_time: int) -> list[FaultWindow]:
        """Close what is still open at `end_time`; every window, by start time."""
        for kind, stack in self._open.items():
            for w in stack:
                self.windows.append(FaultWindow(kind, w.start, end_time, w.detail,
                                                closed=False, target=w.target))
        self._open = {}
        self.windows.sort(key=lambda w: w.start)
        return self.windows


def target_of(op: Any) -> str | None:
    """The `target` field of a nemesis op (an `Op` or a dict), if any."""
    if isinstance(op, dict):
        return op.get("target")
    extra = getattr(op, "extra", None)
    return extra.get("target") if isinstance(extra, dict) else None


def fault_windows(ops: Iterable[Any]) -> list[FaultWindow]:
    """Every fault window of a history of `Op`s (history.ops)."""
    pairing = FaultPairing()
    last = 0
    for op in ops:
        last = max(last, op.time)
        if op.process == NEMESIS:
            pairing.add(op.type, op.f, op.time, op.value, target_of(op))
    return pairing.finish(last)
