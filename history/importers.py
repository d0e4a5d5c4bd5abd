"""Importers: Jepsen's EDN histories and Porcupine's logs, read into `Op` lists.

- EDN: op maps one per line or inside one vector; keyword values become strings;
  Jepsen's independent keys (``:value [k v]`` on every client op) become
  ``key``/``value``; ``:key`` is kept as is (Porcupine's kv corpus). Jepsen ``:fail``
  ops carry no reason, so they stay reasonless and are dropped by the checker, as
  Knossos does.
- Porcupine: its etcd Jepsen logs (``INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[1 4]``);
  as in Porcupine's porcupine_test.go, ``:fail :cas`` is a compare that failed and
  ``:timed-out`` completions are uncertain. Its kv logs are EDN op maps.

Neither format has a clock: an op's position in the file is its time.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any, Iterable

from history.errors import BadInput
from history.ops import FAIL, INVOKE, NEMESIS, TYPES, Op
from history.validation import (_SURROGATE, MAX_DEPTH, Refused, Validator,
                                refused_number, value_problem)


# ------------------------------------------------------------------------------ edn

class _Keyword(str):
    """An EDN keyword (its name without the colon)."""


class _EdnError(Exception):
    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(msg)
        self.msg, self.pos = msg, pos


_EDN_TOKEN = re.compile(r"""
    (?P<ws>[\s,]+|;[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<open>\#\{|[\[\{\(])
  | (?P<close>[\]\}\)])
  | (?P<disc>\#_)
  | (?P<tag>\#[A-Za-z][^\s,\[\]\{\}\(\)"]*)
  | (?P<char>\\(?:newline|space|tab|return|u[0-9a-fA-F]{4}|.))
  | (?P<atom>[^\s,\[\]\{\}\(\)"\\;]+)
""", re.X | re.S)
_INT = re.compile(r"[+-]?\d+N?$")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?$")
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_SPECIAL = {"##Inf", "##-Inf", "##NaN"}
_MAX_NESTING = MAX_DEPTH + 3   # a value inside a [k v] tuple, an op map, the vector
_STR_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "b": "\b", "f": "\f"}


def _edn_string(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)",
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "u"
                  else _STR_ESC.get(m.group(1), m.group(1)), body)


def _edn_atom(tok: str) -> Any:
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    if tok[0] == ":":
        return _Keyword(tok[1:])
    if _INT.match(tok):
        return refused_number(tok.rstrip("N")) or int(tok.rstrip("N"))
    if tok in _SPECIAL:
        return Refused(f"{tok} is refused: JSON has no NaN or Infinity")
    if _FLOAT.match(tok):
        return float(tok.rstrip("M"))
    return _Keyword(tok)  # a symbol: keep its name


def _edn_values(text: str, start: int = 0) -> Iterable[tuple[int, Any, list[int]]]:
    """Yield (offset, value, offsets of its items) per top-level EDN value.

    Data only: tags are ignored, nothing is evaluated.
    """
    stack: list[tuple[str, list, int, list]] = []
    discard = 0
    pos, n = start, len(text)
    while pos < n:
        m = _EDN_TOKEN.match(text, pos)
        if m is None:
            raise _EdnError(f"unexpected character {text[pos]!r}", pos)
        kind, tok, tpos = m.lastgroup, m.group(), pos
        pos = m.end()
        if kind == "ws" or kind == "tag":
            continue  # tags (#inst, #uuid...) keep the tagged value as is
        if kind == "disc":
            discard += 1
            continue
        if kind == "open":
            stack.append((tok, [], tpos, []))
            if len(stack) > _MAX_NESTING:
                raise _EdnError(f"nested deeper than {MAX_DEPTH} levels of vectors, "
                                "lists, maps and sets", tpos)
            continue
        if kind == "close":
            if not stack:
                raise _EdnError(f"unbalanced {tok!r}", tpos)
            opener, items, opos, offsets = stack.pop()
            if _CLOSERS[opener] != tok:
                raise _EdnError(f"{opener!r} closed by {tok!r}", tpos)
            if opener == "{":
                if len(items) % 2:
                    raise _EdnError("a map needs an even number of forms", opos)
                value: Any = {_edn_key(items[i]): items[i + 1]
                              for i in range(0, len(items), 2)}
            elif opener == "#{":
                value = items
            else:
                value = items
            tpos = opos
        elif kind == "str":
            value = _edn_string(tok)
        elif kind == "char":
            value = tok[1:]
        else:
            value = _edn_atom(tok)
        if discard:
            discard -= 1
            continue
        if stack:
            stack[-1][1].append(value)
            if len(stack) == 1:
                stack[-1][3].append(tpos)
        else:
            yield tpos, value, (offsets if kind == "close" else [])
    if stack:
        raise _EdnError(f"{stack[-1][0]!r} is never closed", stack[-1][2])


def _edn_key(k: Any) -> Any:
    if isinstance(k, list):
        return tuple(_edn_key(x) for x in k)
    if isinstance(k, dict):
        return json.dumps(k, sort_keys=True, default=str)
    return k


def _plain(v: Any) -> Any:
    """EDN data to JSON-like data: keywords become plain strings."""
    if isinstance(v, _Keyword):
        return str(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k) if isinstance(k, str) else json.dumps(_plain(k)): _plain(x)
                for k, x in v.items()}
    return v


# A flat op map on one line (keyword keys; nil, true, false, keyword, integer or
# escape-free string values): most histories are nothing else, and
# `_flat_values` reads them without the general tokenizer, to the same values.
_FLAT_NAME = r":([A-Za-z_][\w.*+!?<>=/-]*)"
_FLAT_VALUE = r'(nil|true|false|:[A-Za-z_][\w.*+!?<>=/-]*|"[^"\\\n]*"|[+-]?\d+)(?=[\s,}])'
_FLAT_PAIR = re.compile(r"[\s,]*" + _FLAT_NAME + r"[\s,]+" + _FLAT_VALUE)
_FLAT_LINE = re.compile(r"[ \t]*\{(?:[\s,]*:[A-Za-z_][\w.*+!?<>=/-]*[\s,]+"
                        + _FLAT_VALUE.replace("(", "(?:", 1) + r")*[\s,]*\}[ \t,]*")


def _flat_values(text: str, plain: bool = False
                 ) -> tuple[list[tuple[int, Any, list[int]]], list[int], bool] | None:
    """`_edn_values` of a text of flat op maps one per line (blank lines allowed),
    with each map's 1-based line number and whether any value is `Refused`; None if
    the text is anything else. `plain`: keywords already made plain strings (as
    `_plain` makes them)."""
    out: list[tuple[int, Any, list[int]]] = []
    lines: list[int] = []
    refused = False
    off = 0
    pair = _FLAT_PAIR.findall
    full = _FLAT_LINE.fullmatch
    # keys and values repeat from line to line: each read once
    names: dict[str, _Keyword] = {}
    atoms: dict[str, Any] = {}
    for number, line in enumerate(text.split("\n"), 1):
        start = off
        off += len(line) + 1
        if not line or line.isspace():
            continue
        if full(line.rstrip("\r")) is None:
            return None
        d = {}
        for k, v in pair(line):
            name = names.get(k)
            if name is None:
                name = names[k] = str(k) if plain else _Keyword(k)
            x = atoms.get(v, atoms)
            if x is atoms:
                if v[0] == '"':
                    x = v[1:-1]
                else:
                    x = _edn_atom(v)
                    if plain and type(x) is _Keyword:
                        x = str(x)
                    refused = refused or type(x) is Refused
                if len(atoms) < 100_000:   # unique values (a write's) need no cache
                    atoms[v] = x
            d[name] = x
        out.append((start + line.index("{"), d, []))
        lines.append(number)
    return out, lines, refused


def parse_edn(text: str, file: str) -> list[Op]:
    maps: list[tuple[int, dict]] = []
    line_starts: list[int] = []

    def line_of(offset: int) -> int:
        if not line_starts:   # only the general reader and errors need offsets
            line_starts[:] = [0] + [m.end() for m in re.finditer("\n", text)]
        return bisect.bisect_right(line_starts, offset)

    try:
        flat_read = _flat_values(text, plain=True)
        flat = flat_read is not None
        if flat_read is not None:
            found, numbers, refused = flat_read
            # flat values are strings, integers, true, false or nil: plain JSON data
            # unless a string holds a lone surrogate or an integer is too long to keep
            plain_data = not refused and _SURROGATE.search(text) is None
            maps = [(number, d) for number, (_, d, _) in zip(numbers, found)]
        else:
            plain_data = False
            found = list(_edn_values(text))
    except _EdnError as e:
        raise BadInput(f"bad EDN: {e.msg}", file=file, line=line_of(e.pos)) from None
    if not flat:
        if len(found) == 1 and isinstance(found[0][1], list):
            values = list(zip(found[0][2], found[0][1]))  # a vector of op maps
        else:
            values = [(off, val) for off, val, _ in found]
        for off, val in values:
            if not isinstance(val, dict):
                raise BadInput("expected an op map {:type ... :f ...}", file=file,
                               line=line_of(off))
            maps.append((line_of(off), val))
    client = [d for _, d in maps if d.get("process") != NEMESIS]
    independent = bool(client) and all(
        "key" not in d and isinstance(d.get("value"), list) and len(d["value"]) == 2
        and not isinstance(d["value"][0], (list, dict))   # a txn: [[f k v] ...]
        for d in client)
    v = Validator(file)
    ops: list[Op] = []
    for line, d in maps:
        if flat:
            op = d          # already plain (`_flat_values`)
        else:
            op = {}
            for k, x in d.items():
                op[str(k)] = _plain(x)
        if independent and op.get("process") != NEMESIS:
            op["key"], op["value"] = op["value"][0], op["value"][1]
        if "key" in op and not (isinstance(op["key"], str) or type(op["key"]) is int) \
                and value_problem(op["key"], "key") is None:  # else: the validator says
            op["key"] = json.dumps(op["key"], separators=(",", ":"))
        if op.get("type") == FAIL:
            # Jepsen :fail ops carry no reason the checker may use: dropped, as in Knossos.
            if op.get("error") == "precondition-failed":
                op.pop("error")
        op.pop("index", None)
        op.setdefault("time", len(ops))  # no clock: the position orders the ops
        ops.append(v.op_from_dict(op, line, len(ops), strict_index=False,
                                  scan=not plain_data))
    return ops


# ------------------------------------------------------------------------ porcupine

_PORC = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\S+)\s+:(\S+)\s+:(\S+)\s*(.*?)\s*$")
_PORC_VALUE = re.compile(r"^(nil|-?\d+|\[\s*(-?\d+|nil)\s+(-?\d+|nil)\s*\]|:[\w\-]+)$")


def _porc_int(s: str) -> Any:
    return None if s == "nil" else (refused_number(s) or int(s))


def _porc_value(s: str) -> Any:
    if s.startswith("["):
        a, b = s[1:-1].split()
        return [_porc_int(a), _porc_int(b)]
    return _porc_int(s)


def parse_porcupine(text: str, file: str) -> list[Op]:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("{:") or first.startswith("[{"):
        return parse_edn(text, file)   # Porcupine's kv logs are Jepsen EDN op maps
    v = Validator(file)
    ops: list[Op] = []
    invokes: dict[int, Op] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _PORC.match(raw)
        if m is None:
            if "jepsen.util" in raw:
                raise BadInput("not a jepsen.util op line "
                               "(INFO jepsen.util - PROC<TAB>:TYPE<TAB>:F<TAB>VALUE)",
                               file=file, line=lineno)
            continue  # other log lines carry no ops
        proc_s, typ, f, val_s = m.groups()
        if proc_s == ":nemesis" or proc_s == "nemesis":
            proc: int | str = NEMESIS
        elif re.fullmatch(r"\d+", proc_s):
            proc = int(proc_s)
        else:
            raise BadInput(f"bad process {proc_s!r}", file=file, line=lineno,
                           field="process")
        if typ not in TYPES:
            raise BadInput(f"unknown type :{typ}", file=file, line=lineno, field="type")
        if proc == NEMESIS:
            d = {"type": typ, "process": proc, "f": f, "value": val_s or None,
                 "time": len(ops)}
            ops.append(v.op_from_dict(d, lineno, len(ops), strict_index=False))
            continue
        if val_s and not _PORC_VALUE.match(val_s):
            raise BadInput(f"cannot read value {val_s!r} (nil, an integer, [a b] "
                           "or :keyword)", file=file, line=lineno, field="value")
        # no clock in these logs: the position orders the ops
        d: dict[str, Any] = {"type": typ, "process": proc, "f": f, "time": len(ops)}
        if val_s.startswith(":"):
            inv = invokes.get(proc)  # an uncertain completion: keep the invoke's value
            d["value"] = inv.value if inv is not None and f != "read" else None
            d["error"] = val_s[1:]
        else:
            d["value"] = _porc_value(val_s) if val_s else None
            if typ == FAIL and f == "cas":
                d["error"] = "precondition-failed"  # Porcupine: a compare that failed
        op = v.op_from_dict(d, lineno, len(ops), strict_index=False)
        if typ == INVOKE:
            invokes[proc] = op
        ops.append(op)
    return ops
