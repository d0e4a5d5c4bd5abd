"""A node's log, read after a run: its records, its event lines, its crash signs.

The node writes one line per log record to stderr (node/cli.py: `TIME LEVEL NODE
LOGGER: MESSAGE`); a traceback follows its record on lines of its own. The local
backend appends every start of a node to run_dir/nodes/<id>.log, the docker backend
writes the container's log (every start) there, so one file holds every incarnation
of the node in order.

Two kinds of evidence come out of it:

- event lines (`raft-event {json}`, docs/spec.md): the node's own account of what it
  made durable, whom it voted for, when it led; checker.invariants reads them as
  `Event`s. A "start" event begins an incarnation.
- crash signs (`Incident`s), what the node-health checker reports: a "fatal" event,
  an ERROR or CRITICAL record, and a traceback that belongs to no ERROR record (an
  uncaught exception Python printed). One failure usually leaves several (the fatal
  event, the ERROR with its traceback, the "stopped after a fatal error" line): within
  an incarnation, a sign whose text contains, or is contained in, one already kept is
  folded into it, so each failure is one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from checker.invariants import Event

EVENT_MARK = "raft-event "
RECORD = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?)\s+"
                    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(\S+)\s+([\w.\-]+):\s?(.*)$")
TRACEBACK = "Traceback (most recent call last):"
MAX_TAIL = 200         # continuation lines kept per record
CRASH_LEVELS = ("ERROR", "CRITICAL")


@dataclass
class LogRecord:
    """One record: its first line (1-based `line`) and the lines that follow it."""

    line: int
    time: str | None
    level: str | None
    logger: str | None
    message: str
    tail: list[str] = field(default_factory=list)

    def exception(self) -> str | None:
        """The exception line of a traceback in the tail ("KeyError: 'x'"), or None."""
        if TRACEBACK not in self.tail:
            return None
        found = None
        for text in self.tail[self.tail.index(TRACEBACK) + 1:]:
            if text and not text[0].isspace() and not text.startswith(
                    (TRACEBACK, "During handling", "The above exception")):
                found = text.strip()
        return found or "a traceback"


@dataclass
class Incident:
    """A sign that the node crashed or failed: kind "fatal" | "error" | "traceback"."""

    kind: str
    line: int
    time: str | None
    text: str          # one line: what happened
    key: str           # what identifies the failure, for folding duplicates


@dataclass
class NodeLog:
    """A parsed log: every line, the records, the events, the crash signs."""

    node: str
    source: str                      # the file's name, e.g. "n1.log"
    lines: list[str]
    records: list[LogRecord]
    events: list[Event]
    incidents: list[Incident]
    folded: int = 0                  # crash signs folded into another one
    bad_events: int = 0              # event lines whose JSON did not parse


def read_node_log(path: Path, node: str) -> NodeLog:
    """Parse `path` (OSError when it cannot be read)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    return parse_node_log(text, node, path.name)


def parse_node_log(text: str, node: str, source: str) -> NodeLog:
    lines = text.splitlines()
    records: list[LogRecord] = []
    for i, raw in enumerate(lines, 1):
        m = RECORD.match(raw)
        if m:
            records.append(LogRecord(i, m.group(1).replace(",", "."), m.group(2),
                                     m.group(4), m.group(5)))
        elif records:
            if len(records[-1].tail) < MAX_TAIL:
                records[-1].tail.append(raw)
        else:  # output before the first record (e.g. an interpreter error)
            records.append(LogRecord(i, None, None, None, raw))
    log = NodeLog(node, source, lines, records, [], [])
    _events(log)
    _incidents(log)
    return log


def _events(log: NodeLog) -> None:
    decoder = json.JSONDecoder()
    for r in log.records:
        for offset, text in enumerate([r.message] + r.tail):
            at = text.find(EVENT_MARK)
            if at < 0:
                continue
            try:
                obj, _ = decoder.raw_decode(text, at + len(EVENT_MARK))
            except ValueError:
                log.bad_events += 1
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
                log.bad_events += 1
                continue
            log.events.append(Event(obj["event"], obj, r.line + offset, r.time, log.source))


def _incidents(log: NodeLog) -> None:
    """Crash signs, folded per incarnation (see the module docstring)."""
    incarnation: list[Incident] = []
    starts = {ev.line for ev in log.events if ev.kind == "start"}
    fatal = {ev.line: ev for ev in log.events if ev.kind == "fatal"}
    found: list[list[Incident]] = [incarnation]
    for r in log.records:
        if r.line in starts:
            incarnation = []
            found.append(incarnation)
        where = _where(log.source, r.line, r.time)
        exc = r.exception()
        if r.line in fatal:
            error = str(fatal[r.line].data.get("error") or "no error given")
            incarnation.append(Incident("fatal", r.line, r.time, f"{log.node} stopped on a "
                                        f"fatal error ({where}): {error}", error))
        elif r.level in CRASH_LEVELS:
            text = r.message + (f": {exc}" if exc else "")
            incarnation.append(Incident("error", r.line, r.time, f"{log.node} logged "
                                        f"{r.level} ({where}): {_cut(text)}", exc or r.message))
        elif exc is not None:
            at = r.line + 1 + r.tail.index(TRACEBACK)
            incarnation.append(Incident("traceback", at, r.time, f"{log.node} printed a "
                                        f"traceback ({_where(log.source, at, None)}): {exc}",
                                        exc))
    order = {"fatal": 0, "error": 1, "traceback": 2}
    for group in found:
        kept: list[Incident] = []
        for inc in sorted(group, key=lambda i: (order[i.kind], i.line)):
            if any(_related(inc.key, k.key) for k in kept):
                log.folded += 1
            else:
                kept.append(inc)
        log.incidents.extend(sorted(kept, key=lambda i: i.line))


def _related(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    return bool(a and b) and (a in b or b in a)


def _where(source: str, line: int, time: str | None) -> str:
    return f"{source} line {line}" + (f", {time.split('T', 1)[-1]}" if time else "")


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def excerpt(log: NodeLog, line: int, before: int = 4, after: int = 4) -> dict:
    """The lines around `line` (1-based), for the report: {"node", "source",
    "first_line", "mark", "lines"}. A record's traceback is kept whole (up to 30)."""
    rec = next((r for r in log.records if r.line == line), None)
    if rec is not None and rec.tail and TRACEBACK in rec.tail:
        after = max(after, min(len(rec.tail), 30))
    first = max(1, line - before)
    last = min(len(log.lines), line + after)
    return {"node": log.node, "source": log.source, "first_line": first, "mark": line,
            "lines": [_cut(t, 400) for t in log.lines[first - 1:last]]}
