"""Fault windows: the nemesis ops of a history paired into the time each fault held.

A *fault window* runs from a nemesis start op's invoke (start-partition,
start-latency, kill, pause, ...) to the completion of its matching stop
(stop-partition, stop-latency, start, resume), per docs/spec.md section 7. Nemesis ops
are info/info pairs: the first event of an f is its invoke, the next its completion.
The completion of a start says what was done (the grudge, the nodes): it becomes the
window's detail. Starts of one kind are closed by stops in order (first in, first
out); a fault never stopped lasts to the end of the history.

This is the one pairing of nemesis ops: the run statistics (phases, availability),
the timeline and the plots all read it.
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
}
STOPS: dict[str, tuple[str, str]] = {stop: (start, kind)
                                     for start, (stop, kind) in FAULT_PAIRS.items()}


@dataclass
class FaultWindow:
    """A nemesis fault from its start invoke to its stop completion."""

    kind: str                       # partition | latency | kill | pause
    start: int                      # ns since the test started
    end: int                        # ns; the end of the history when never stopped
    detail: str = ""
    closed: bool = True


def short(v: Any, limit: int = 60) -> str:
    """A value as compact JSON, cut to `limit` characters."""
    try:
        s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


class FaultPairing:
    """Feed nemesis events in history order; read `windows` at the end."""

    def __init__(self) -> None:
        self.windows: list[FaultWindow] = []
        self._open: dict[str, list[tuple[int, str]]] = {}   # kind -> [(start, detail)]
        self._pending: set[str] = set()                      # f awaiting its completion

    def add(self, type_: str, f: str, t: int, value: Any) -> None:
        """One nemesis event: its type (invoke or info), f, time and value."""
        invoke = type_ == "invoke" or (type_ == "info" and f not in self._pending)
        if invoke:
            self._pending.add(f)
        else:
            self._pending.discard(f)
        if f in FAULT_PAIRS:
            kind = FAULT_PAIRS[f][1]
            if invoke:
                self._open.setdefault(kind, []).append((t, short(value)))
            elif self._open.get(kind):
                # the completion says what was applied: keep it as the detail
                start, _ = self._open[kind][-1]
                self._open[kind][-1] = (start, short(value, 120))
        elif f in STOPS and not invoke:
            stack = self._open.get(STOPS[f][1])
            if stack:
                start, detail = stack.pop(0)
                self.windows.append(FaultWindow(STOPS[f][1], start, t, detail))

    def finish(self, end_time: int) -> list[FaultWindow]:
        """Close what is still open at `end_time`; every window, by start time."""
        for kind, stack in self._open.items():
            for start, detail in stack:
                self.windows.append(FaultWindow(kind, start, end_time, detail,
                                                closed=False))
        self._open = {}
        self.windows.sort(key=lambda w: w.start)
        return self.windows


def fault_windows(ops: Iterable[Any]) -> list[FaultWindow]:
    """Every fault window of a history of `Op`s (history.ops)."""
    pairing = FaultPairing()
    last = 0
    for op in ops:
        last = max(last, op.time)
        if op.process == NEMESIS:
            pairing.add(op.type, op.f, op.time, op.value)
    return pairing.finish(last)
