"""The evidence a Raft node leaves and the shape of a checked invariant.

A node leaves two kinds of evidence (docs/spec.md section 5): its durable state after
the run (`DurableState`, decoded from its WAL) and its event lines (`Event`, in the
order it logged them across its restarts). `NodeEvidence` holds both for one node;
an invariant over them gives an `InvariantResult` of `Violation`s, each one line
naming the nodes, the term or index and what differs, with the log lines it cites.
Missing evidence never fails a check: it makes the verdict "unknown" (`result`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    """One event line of a node: `kind` and its JSON fields (`data`), where it was
    logged (`source` file, 1-based `line`) and the log line's time."""

    kind: str
    data: dict = field(default_factory=dict)
    line: int | None = None
    time: str | None = None
    source: str | None = None

    def int_field(self, name: str) -> int | None:
        v = self.data.get(name)
        return v if type(v) is int else None

    def where(self) -> str:
        place = f"{self.source or 'log'} line {self.line}" if self.line else "an event line"
        return place + (f", {clock(self.time)}" if self.time else "")

    def ref(self, node: str) -> dict:
        return {"node": node, "line": self.line, "time": self.time, "source": self.source}


@dataclass
class DurableState:
    """What a node's WAL held after the run: currentTerm, votedFor, the durable
    commit index (None: a WAL format without it) and the log after `base`, entry i
    at i-base-1. A compacted WAL (section 7) starts after its snapshot's last index
    `base`: the entries up to it are in the snapshot, not compared here; `machine` is
    that snapshot's state machine, decoded (the register machine's JSON: "values"
    [[key, value]...], "sessions" [[client, seq, result]...], "last_applied"), when
    it is the snapshot at `base`."""

    term: int = 0
    vote: str | None = None
    commit: int | None = None
    entries: list[tuple[int, Any]] = field(default_factory=list)  # (term, command)
    base: int = 0
    machine: Any = None

    @property
    def last(self) -> int:
        """The last index the WAL holds."""
        return self.base + len(self.entries)

    def at(self, index: int) -> tuple[int, Any] | None:
        """(term, command) at `index`, None if compacted or past the end."""
        if self.base < index <= self.base + len(self.entries):
            return self.entries[index - self.base - 1]
        return None


@dataclass
class NodeEvidence:
    """Everything known about one node. `durable` None: no WAL; `events` None: no
    event lines (an older node, or no log); `missing` says why, for the report."""

    node: str
    durable: DurableState | None = None
    events: list[Event] | None = None
    missing: dict[str, str] = field(default_factory=dict)  # "durable"/"events" -> why
    _reprs: list[str] | None = field(default=None, repr=False, compare=False)

    def entry_reprs(self) -> list[str]:
        """repr() of each log entry, computed once: equal reprs mean equal entries
        (and tell true from 1, which `==` does not)."""
        if self._reprs is None:
            self._reprs = list(map(repr, self.durable.entries if self.durable else []))
        return self._reprs


@dataclass
class Violation:
    invariant: str
    text: str
    nodes: list[str]
    term: int | None = None
    index: int | None = None
    refs: list[dict] = field(default_factory=list)        # log lines it names
    entries: list[dict] = field(default_factory=list)     # entries side by side

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"invariant": self.invariant, "text": self.text,
                             "nodes": self.nodes}
        for k in ("term", "index"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.refs:
            d["refs"] = self.refs
        if self.entries:
            d["entries"] = self.entries
        return d


@dataclass
class InvariantResult:
    valid: bool | str
    violations: list[Violation]
    checked: dict[str, int]
    unknown_reason: str | None = None



# -- helpers --------------------------------------------------------------------

def result(violations: list[Violation], checked: dict[str, int],
            missing: list[str]) -> InvariantResult:
    if violations:
        return InvariantResult(False, violations, checked)
    if missing:
        return InvariantResult("unknown", [], checked, "; ".join(missing))
    return InvariantResult(True, [], checked)


def missing(nodes: list[NodeEvidence], kind: str) -> list[str]:
    """Why evidence of `kind` is missing, nodes with the same reason together (a
    node's own id in the reason reads as <id>)."""
    if not nodes:
        return ["no nodes"]
    what = {"durable": "no durable state", "events": "no event lines"}[kind]
    groups: dict[str, list[str]] = {}
    for n in nodes:
        if (n.durable if kind == "durable" else n.events) is None:
            why = (n.missing.get(kind) or what).replace(n.node, "<id>")
            groups.setdefault(why, []).append(n.node)
    return [f"{', '.join(ids)}: {why}" for why, ids in groups.items()]


def json_text(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clock(t: str) -> str:
    """'2026-11-26T03:53:55.192' -> '03:53:55.192' (the day is in the log itself)."""
    return t.split("T", 1)[1] if "T" in t else t
