"""History validation: the field and pairing checks every reader applies.

A `Validator` turns one decoded op (a dict) into an `Op`, checking each field and
that invokes and completions pair up per process (docs/spec.md section 2); the
first problem is one `BadInput` naming the file, the line and the field.

Every field's value must be plain JSON data that survives a round trip (SPEC section
2): no NaN or infinite number, no integer over `MAX_INT_DIGITS` digits (Python's limit
on reading and printing integers), no nesting deeper than `MAX_DEPTH` arrays and
objects, no lone surrogate in a string. A reader marks what it could not even build
with a `Refused` placeholder, and `value_problem` finds it, with its place.
"""

from __future__ import annotations

import json
import math
import re
import sys
from sys import intern
from typing import Any

from history.errors import BadInput
from history.ops import INVOKE, NEMESIS, NO_EXTRA, OK, TYPES, _ABSENT, Op

_TYPE = {t: t for t in TYPES}


def _intern(s: Any) -> Any:
    """The one shared copy of a plain string (anything else as it is)."""
    return intern(s) if type(s) is str else s


KNOWN_FIELDS = frozenset({"index", "time", "type", "process", "f", "key", "value",
                          "node", "error"})
MAX_DEPTH = 64            # arrays and objects inside one field's value
MAX_INT_DIGITS = 4300     # Python's default int_max_str_digits
READ_FS = frozenset({"read", "get"})   # an ok completion of these must say what it read
_SURROGATE = re.compile("[\ud800-\udfff]")


class Refused:
    """A placeholder a reader puts where a value cannot be kept (NaN, Infinity, an
    integer too long to read); `why` says what it was."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def refused_number(text: str) -> Any:
    """An integer token too long to keep, as a `Refused`; else None. The bound is
    MAX_INT_DIGITS, or this Python's own limit if it was set lower."""
    digits = len(text.lstrip("+-"))
    limit = min(MAX_INT_DIGITS, sys.get_int_max_str_digits() or MAX_INT_DIGITS)
    if digits > limit and text.lstrip("+-").isdigit():
        return Refused(f"an integer of {digits:,} digits (at most {limit:,}: "
                       "Python's limit for reading and printing integers)")
    return None


def _where(path: str) -> str:
    return f" (at {path})" if "[" in path else ""


def value_problem(v: Any, path: str, depth: int = 0) -> str | None:
    """Why `v` (found at `path`) is not plain JSON data, or None (see the docstring)."""
    t = type(v)
    if t is str:
        if _SURROGATE.search(v):
            return (f"a string holds a lone surrogate (U+{ord(_SURROGATE.search(v)[0]):04X}),"
                    f" which is not text{_where(path)}")
        return None
    if t is int or v is None or t is bool:
        return None
    if t is float:
        if not math.isfinite(v):
            return f"{v} is refused: JSON has no NaN or Infinity{_where(path)}"
        return None
    if t is Refused:
        return f"{v.why}{_where(path)}"
    if t is list or t is dict:
        if depth >= MAX_DEPTH:
            return (f"nested deeper than {MAX_DEPTH} levels of arrays and objects"
                    f"{_where(path)}")
        if t is list:
            for i, x in enumerate(v):
                why = value_problem(x, f"{path}[{i}]", depth + 1)
                if why:
                    return why
            return None
        for k, x in v.items():
            if type(k) is str and _SURROGATE.search(k):
                return f"an object key holds a lone surrogate (in {path})"
            why = value_problem(x, f"{path}[{json.dumps(k)}]", depth + 1)
            if why:
                return why
        return None
    return f"a {t.__name__} is not JSON data{_where(path)}"


class Validator:
    """Field and pairing checks shared by the importers (SPEC section 2)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.open: dict[Any, tuple[Op, int]] = {}  # process -> (invoke, line)

    def bad(self, msg: str, line: int, field: str | None = None) -> BadInput:
        return BadInput(msg, file=self.file, line=line, field=field)

    def op_from_dict(self, d: dict, line: int, position: int, strict_index: bool,
                     scan: bool = True) -> Op:
        """An `Op` from one decoded op; `scan` False: the reader vouches that every
        value is plain JSON data (see the module docstring)."""
        if scan:
            for name, x in d.items():
                if type(name) is str and _SURROGATE.search(name):
                    raise self.bad("a field name holds a lone surrogate", line,
                                   name.encode("utf-8", "backslashreplace").decode())
                why = value_problem(x, name)
                if why:
                    raise self.bad(why, line, name)
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
        if typ == OK and f in READ_FS and proc != NEMESIS and "value" not in d:
            raise self.bad(f"missing: an ok {f} must say what it read (null if "
                           "nothing was ever written)", line, "value")
        if f == "cas" and proc != NEMESIS and typ == INVOKE:
            if not (isinstance(value, list) and len(value) == 2):
                raise self.bad(f"a cas value must be [from, to], not {json.dumps(value)}",
                               line, "value")
        if KNOWN_FIELDS.issuperset(d):
            extra: Any = NO_EXTRA   # shared by every op without extra fields
        else:
            extra = {k: d[k] for k in d.keys() - KNOWN_FIELDS}
        # one string object per type, f and error (a 1,000,000-op history would
        # otherwise hold millions of copies of "invoke", "write"...)
        op = Op(position, t, _TYPE[typ], proc, _intern(f), value, key, node,
                _intern(err), extra)
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
