"""The register state machine: the replicated service behind the Raft log.

A *register machine* maps keys to values and applies committed commands in log
order (paper section 5.3: every server applies the same commands in the same order).
A command is a dict (SPEC section 4):

    {"op": "read",  "key": K}
    {"op": "write", "key": K, "value": V}
    {"op": "cas",   "key": K, "from": A, "to": B}
    plus optional "client": id and "seq": int for exactly-once

and its result is the client reply: `{"ok": true}` (plus "value" for a read), or
`{"ok": false, "code": N, "error": NAME, "definite": true}` for a cas on a key never
written (20) or a cas whose `from` did not match (22). Values are strict JSON and compare as JSON
(node.core.values); a committed command that fails validation is applied as nothing,
with a malformed-request result, identically on every node.

Exactly-once (dissertation 6.3, client sessions): the table client -> (last seq, its
result) is part of the replicated state, so every node agrees on it. A command whose
(client, seq) was already applied is not applied again; its stored result is
returned. A command older than the client's last applied seq was overtaken (the
client gave up on it): it is not applied and gets an indefinite error, since the
machine no longer knows what its first attempt did. The no-op (None) is ignored.
The planted bug `no-dedup` (node.bugs) turns the table off.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from node.bugs import NO_DEDUP, BugTrace
from node.core.messages import CommitEntry
from node.core.values import same_value, value_problem

_log = logging.getLogger("raftcheck.node.register")

MALFORMED = 12


def error(code: int, name: str, definite: bool, **extra: Any) -> dict:
    """A SPEC section 4 error reply."""
    return {"ok": False, "code": code, "error": name, "definite": definite, **extra}


def validate_command(cmd: Any) -> str | None:
    """Why `cmd` is not a valid register command, or None if it is."""
    if not isinstance(cmd, dict):
        return "command: expected an object"
    op = cmd.get("op")
    if op not in ("read", "write", "cas"):
        return f"field 'op': expected read, write or cas, got {op!r:.40}"
    key = cmd.get("key")
    if type(key) not in (str, int):
        return "field 'key': expected a string or an integer"
    if op == "write" and "value" not in cmd:
        return "field 'value': missing"
    if op == "cas" and ("from" not in cmd or "to" not in cmd):
        return "field 'from'/'to': missing"
    for field in ("value", "from", "to", "key"):
        if field in cmd:
            why = value_problem(cmd[field], field)
            if why is not None:
                return why
    client, seq = cmd.get("client"), cmd.get("seq")
    if client is not None and type(client) not in (str, int):
        return "field 'client': expected a string, an integer or null"
    if seq is not None and type(seq) is not int:
        return "field 'seq': expected an integer or null"
    return None


class RegisterMachine:
    """Registers by key with read, write, cas and an exactly-once table."""

    def __init__(self, bugs: frozenset[str] = frozenset()) -> None:
        self.bugs = frozenset(bugs)
        self.trace = BugTrace(_log)
        self.values: dict[Any, Any] = {}
        self.sessions: dict[Any, tuple[int, dict]] = {}
        self.last_applied = 0

    def snapshot(self) -> str:
        """The machine's state for a snapshot (section 7): registers, the
        exactly-once table and the last applied index, as JSON text (pairs, since
        keys and client ids may be strings or integers)."""
        return json.dumps({"last_applied": self.last_applied,
                           "values": [[k, v] for k, v in self.values.items()],
                           "sessions": [[c, seq, r] for c, (seq, r) in self.sessions.items()]},
                          separators=(",", ":"))

    def restore(self, data: str, index: int) -> None:
        """Reset the machine from a snapshot taken at `index` (Figure 13, receiver 8);
        ValueError if `data` is not one."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict) or d.get("last_applied") != index:
                raise ValueError(f"expected the state at index {index}")
            values = {k: v for k, v in d["values"]}
            sessions = {c: (seq, r) for c, seq, r in d["sessions"]}
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"not a register snapshot: {e}") from None
        self.values, self.sessions, self.last_applied = values, sessions, index

    def read(self, key: Any) -> dict:
        """A local read, for a ReadIndex read once `read_index` is applied."""
        return {"ok": True, "value": self.values.get(key)}

    def apply(self, entry: CommitEntry) -> dict | None:
        """Apply one committed entry (in log order); the client's result, or None
        for the leader's no-op."""
        if entry.index != self.last_applied + 1:
            raise ValueError(f"applying index {entry.index} after {self.last_applied}: "
                             "entries must be applied in order, exactly once")
        self.last_applied = entry.index
        cmd = entry.command
        if cmd is None:
            return None
        why = validate_command(cmd)
        if why is not None:
            return error(MALFORMED, "malformed-request", True, detail=why)
        client, seq = cmd.get("client"), cmd.get("seq")
        session = client is not None and seq is not None
        if NO_DEDUP in self.bugs:
            # Planted bug: client sessions ignored (dissertation 6.3), so a retried
            # command is applied again.
            if session and self.sessions.get(client, (None,))[0] == seq:
                self.trace.acted(NO_DEDUP, "applied %s's seq %s again", client, seq)
            if session:
                self.sessions[client] = (seq, {})
            session = False
        if session and client in self.sessions:
            last_seq, last_result = self.sessions[client]
            if seq == last_seq:
                return last_result
            if seq < last_seq:
                return error(0, "timeout", False,
                             detail=f"seq {seq} overtaken by seq {last_seq}")
        result = self._execute(cmd)
        if session:
            self.sessions[client] = (seq, result)
        return result

    def _execute(self, cmd: dict) -> dict:
        op, key = cmd["op"], cmd["key"]
        if op == "read":
            return {"ok": True, "value": self.values.get(key)}
        if op == "write":
            self.values[key] = cmd["value"]
            return {"ok": True}
        if key not in self.values:
            return error(20, "key-does-not-exist", True)
        if not same_value(self.values[key], cmd["from"]):
            return error(22, "precondition-failed", True)
        self.values[key] = cmd["to"]
        return {"ok": True}
