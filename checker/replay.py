"""Exactly-once: the answers clients got are what the committed log, applied once in
order, gives.

Raft replicates a log; the service is a state machine that applies the committed
entries in log order (section 5.3), each client command once: a retry carries the
same client id and seq, and the machine answers it from its session table instead
of applying it again (section 8; dissertation 6.3, client sessions). So, replaying
the committed log with a register and a session table of our own (not the node's
code), every write and cas a client was answered must have the outcome the replay
gives its first application: a cas the replay applied was never "failed", a cas the
replay refused was never "ok".

A node that applies a retried command twice breaks it as soon as the second
application changes an answer (a cas applied twice fails its second time and that
answer reaches the client; a write applied again after a later write makes the next
cas on that key fail), whether or not any read observes the state; so does a node
that answers "failed" for a command that then commits. Linearizability sees only
what reads return; this sees every answer.

The evidence: the history (each write's value and each cas's new value are unique in
a raftcheck run: they name the command) and the longest durable committed log (a
node's WAL up to its durable commit index; State Machine Safety, checked beside
this, makes every node's committed prefix the same). A command committed after the
last durable commit index is not replayed, and its answer not compared. A compacted
WAL starts from its snapshot's registers and session table (a WAL whose snapshot is
missing or unreadable has no beginning to replay from: "unknown").
"""

from __future__ import annotations

import json
from typing import Any

from checker.raft_evidence import InvariantResult, NodeEvidence, Violation, missing, result
from history.ops import FAIL, INVOKE, NEMESIS, OK, Op

PROPERTY = ("each write and cas answered as applying the committed log once, in order, "
            "gives (section 5.3; dissertation 6.3, client sessions)")

_PLAIN = (int, str)   # the values the replay compares (a raftcheck workload's)
WRITE, CAS = "write", "cas"


def exactly_once(nodes: list[NodeEvidence], ops: list[Op]) -> InvariantResult:
    """The invariant (module doc) on the nodes' WALs and the run's history."""
    best = _committed_log(nodes)
    if best is None:
        return result([], {"answers_compared": 0},
                      missing(nodes, "durable") or ["no durable commit index"])
    node, log = best
    d = node.durable
    assert d is not None   # _committed_log picks only nodes with a WAL
    start = _start(d.machine) if d.base else ({}, {})
    if start is None:
        return result([], {"answers_compared": 0},
                      [f"{node.node}: the WAL starts after a snapshot (index {d.base}) "
                       "whose state cannot be read: no beginning to replay from"])
    outcomes = _replay(log, d.base, *start)
    if outcomes is None:
        return result([], {"answers_compared": 0},
                      ["a committed value that is not an integer or a string"])
    out: list[Violation] = []
    compared = 0
    for inv, comp in _answers(ops):
        key, uniq = _name(inv)
        found = outcomes.get((inv.f, key, uniq))
        if found is None:
            continue   # never committed, or after the last durable commit index
        index, applied, held = found
        compared += 1
        if (comp.type == OK) == applied:
            continue
        what = f"{inv.f} {json.dumps(inv.value)} on key {json.dumps(inv.key)}"
        if comp.type == OK:
            text = (f"exactly once (dissertation 6.3): {what} (op {inv.index}) was "
                    f"answered ok, but applying the committed log once, in order, it "
                    f"fails at log index {index} ({node.node}'s WAL): {held}")
        else:
            text = (f"exactly once (dissertation 6.3): {what} (op {inv.index}) took effect "
                    f"at log index {index} ({node.node}'s WAL; {held}), yet its client "
                    f"was told it failed ({comp.error or 'no error given'})")
        out.append(Violation("exactly-once", text, [node.node], index=index))
    return result(out, {"answers_compared": compared, "log_entries": len(log)}, [])


def _committed_log(nodes: list[NodeEvidence]) -> tuple[NodeEvidence, list] | None:
    """The node whose WAL holds the most durable committed entries after its
    snapshot (if any), and those (term, command) entries."""
    best = None
    for n in nodes:
        d = n.durable
        if d is None or d.commit is None:
            continue
        entries = [d.at(i) for i in range(d.base + 1, min(d.commit, d.last) + 1)]
        if best is None or len(entries) > len(best[1]):
            best = (n, entries)
    return best


def _start(machine: Any) -> tuple[dict, dict] | None:
    """The registers and the session table (last seq per client) of a snapshot's
    state machine (docs/spec.md: the register machine's snapshot), or None."""
    try:
        state = {json.dumps(k): v for k, v in machine["values"]}
        sessions = {json.dumps(c): seq for c, seq, _ in machine["sessions"]}
    except (TypeError, KeyError, ValueError):
        return None
    return state, sessions


def _replay(log: list, base: int = 0, state: dict | None = None,
            sessions: dict | None = None) -> dict[tuple, tuple[int, bool, str]] | None:
    """(f, key, unique value) -> (log index, applied, what the register held) of each
    command's first application after `base`, from the registers `state` and the
    session table `sessions` there; None if a value is not one the replay compares."""
    state = dict(state or {})
    wrote: dict[str, int] = {k: base for k in state}   # key -> the entry that set it
    sessions = dict(sessions or {})
    first: dict[tuple, tuple[int, bool, str]] = {}
    for index, (_, cmd) in enumerate(log, base + 1):
        if not isinstance(cmd, dict) or type(cmd.get("key")) not in _PLAIN:
            continue   # the no-op, or a command the machine refuses as malformed
        op, key = cmd.get("op"), json.dumps(cmd["key"])
        client, seq = cmd.get("client"), cmd.get("seq")
        if client is not None and type(seq) is int:
            last = sessions.get(json.dumps(client))
            if last is not None and seq <= last:
                continue   # answered from the session table (or overtaken): not applied
            sessions[json.dumps(client)] = seq
        if op == WRITE and "value" in cmd:
            value = cmd["value"]
            if type(value) not in _PLAIN:
                return None
            first.setdefault((WRITE, key, json.dumps(value)), (index, True, _held(
                state, wrote, key, base)))
            state[key], wrote[key] = value, index
        elif op == CAS and "from" in cmd and "to" in cmd:
            old, new = cmd["from"], cmd["to"]
            if type(old) not in _PLAIN or type(new) not in _PLAIN:
                return None
            cur = state.get(key)
            applied = key in state and type(cur) is type(old) and cur == old
            first.setdefault((CAS, key, json.dumps(new)), (index, applied, _held(
                state, wrote, key, base)))
            if applied:
                state[key], wrote[key] = new, index
    return first


def _held(state: dict, wrote: dict, key: str, base: int) -> str:
    if key not in state:
        return "the key was never written"
    at = wrote[key]
    where = f"by the snapshot at index {at}" if base and at == base else f"at log index {at}"
    return f"the register held {json.dumps(state[key])}, set {where}"


def _answers(ops: list[Op]) -> list[tuple[Op, Op]]:
    """(invoke, completion) of every write and cas a client was answered (ok or fail)."""
    open_: dict[Any, Op] = {}
    out = []
    for op in ops:
        if op.process == NEMESIS or op.f not in (WRITE, CAS):
            continue
        if op.type == INVOKE:
            open_[op.process] = op
        elif op.process in open_:
            inv = open_.pop(op.process)
            if op.type in (OK, FAIL):
                out.append((inv, op))
    return out


def _name(inv: Op) -> tuple[str, str]:
    """The key and the unique value that name an invoke's command in the log."""
    value = inv.value[1] if inv.f == CAS and isinstance(inv.value, list) \
        and len(inv.value) == 2 else inv.value
    return json.dumps(inv.key), json.dumps(value)
