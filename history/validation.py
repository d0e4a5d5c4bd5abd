"""History validation: the field and pairing checks every reader applies.

A `Validator` turns one decoded op (a dict) into an `Op`, checking each field and
that invokes and completions pair up per process (docs/spec.md section 2); the
first problem is one `BadInput` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from typing import Any

from history.errors import BadInput
from history.ops import INVOKE, NEMESIS, TYPES, _ABSENT, Op

KNOWN_FIELDS = frozenset({"index", "time", "type", "process", "f", "key", "value",
                          "node", "error"})


class Validator:
    """Field and pairing checks shared by the importers (SPEC section 2)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.open: dict[Any, tuple[Op, int]] = {}  # process -> (invoke, line)

    def bad(self, msg: str, line: int, field: str | None = None) -> BadInput:
        return BadInput(msg, file=self.file, line=line, field=field)

    def op_from_dict(self, d: dict, line: int, position: int, strict_index: bool) -> Op:
        for name in ("type", "process", "f"):
            if name not in d:
                raise self.bad("missing", line, name)
        index = d.get("index", position)
        if strict_index:
            if "index" not in d:
                raise self.bad("missing", line, "index")
            if type(index) is not int:
                raise self.bad(f"must be an integer, not {json.dumps(index)}", line, "index")
            if index != position:
                raise self.bad(f"is {index}, expected {position} (the op's 0-based "
                               "position in the file)", line, "index")
        t = d.get("time", 0)
        if type(t) is not int or t < 0:
            raise self.bad(f"must be a non-negative integer, not {json.dumps(t)}",
                           line, "time")
        typ = d["type"]
        if typ not in TYPES:
            raise self.bad(f"unknown type {json.dumps(typ)} (one of invoke, ok, fail, info)",
                           line, "type")
        proc = d["process"]
        if not (type(proc) is int or proc == NEMESIS):
            raise self.bad(f"must be an integer or \"nemesis\", not {json.dumps(proc)}",
                           line, "process")
        f = d["f"]
        if not isinstance(f, str) or not f:
            raise self.bad(f"must be a non-empty string, not {json.dumps(f)}", line, "f")
        key = d.get("key", _ABSENT)
        if key is not _ABSENT and not (isinstance(key, str) or type(key) is int):
            raise self.bad(f"must be a string or an integer, not {json.dumps(key)}",
                           line, "key")
        node = d.get("node")
        if node is not None and not isinstance(node, str):
            raise self.bad(f"must be a string, not {json.dumps(node)}", line, "node")
        err = d.get("error")
        if err is not None and not isinstance(err, str):
            err = json.dumps(err, separators=(",", ":"))
        value = d.get("value")
        if f == "cas" and proc != NEMESIS and typ == INVOKE:
            if not (isinstance(value, list) and len(value) == 2):
                raise self.bad(f"a cas value must be [from, to], not {json.dumps(value)}",
                               line, "value")
        more = d.keys() - KNOWN_FIELDS
        extra = {k: d[k] for k in more} if more else {}
        op = Op(position, t, typ, proc, f, value, key, node, err, extra)
        self.pair(op, line)
        return op

    def pair(self, op: Op, line: int) -> None:
        if op.process == NEMESIS:
            return
        if op.type == INVOKE:
            if op.process in self.open:
                prev, pline = self.open[op.process]
                raise self.bad(f"process {op.process} invokes a second op while its op "
                               f"at line {pline} is still open", line, "process")
            self.open[op.process] = (op, line)
            return
        opened = self.open.pop(op.process, None)
        if opened is None:
            raise self.bad(f"{op.type} completion without an open invoke on process "
                           f"{op.process}", line, "process")
        inv, iline = opened
        if inv.f != op.f:
            raise self.bad(f"is {json.dumps(op.f)}, but its invoke at line {iline} has "
                           f"{json.dumps(inv.f)}", line, "f")
        if inv.has_key != op.has_key or (inv.has_key and inv.key != op.key):
            ik = json.dumps(inv.key) if inv.has_key else "no key"
            ck = json.dumps(op.key) if op.has_key else "no key"
            raise self.bad(f"is {ck}, but its invoke at line {iline} has {ik}", line, "key")
