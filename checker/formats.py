"""History formats: reading, validating, importing and exporting histories.

A *history format* is a way to write down the operations a test observed. We read
three of them into `checker.history.Op` lists (SPEC section 2):

- ``jsonl``: our own history.jsonl, one JSON object per line, validated strictly:
  every malformed line, unknown type, completion without an invoke, second open op
  on one process, or completion whose f/key differ from its invoke is one `BadInput`
  naming the file, the line and the field.
- ``edn``: Jepsen EDN histories, op maps one per line or inside one vector; keyword
  values become strings; Jepsen's independent keys (``:value [k v]`` on every client
  op) become ``key``/``value``; ``:key`` is kept as is (Porcupine's kv corpus).
  Jepsen ``:fail`` ops carry no reason, so they stay reasonless and are dropped by
  the checker, as Knossos does.
- ``porcupine``: Porcupine's etcd Jepsen logs
  (``INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[1 4]``); its kv logs
  (test_data/kv) are EDN op maps and read as ``edn``. As in Porcupine's
  porcupine_test.go, ``:fail :cas`` is a compare that failed (``error:
  "precondition-failed"``) and ``:timed-out`` completions are uncertain.

``auto`` picks one from the first non-blank line. `write_txt` exports history.txt,
where line N+1 holds the op with index N.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable

from checker.errors import BadInput
from checker.history import FAIL, INVOKE, NEMESIS, TYPES, Op, _ABSENT

log = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "edn", "porcupine")
_KNOWN = frozenset({"index", "time", "type", "process", "f", "key", "value", "node",
                    "error"})
_decode = json.JSONDecoder().decode


def read_history(path: Path | str, format: str = "auto") -> list[Op]:
    """Read and validate a history file; raise `BadInput` naming file, line, field."""
    path = Path(path)
    if format not in FORMATS:
        raise BadInput(f"unknown format {format!r} (one of {', '.join(FORMATS)})",
                       field="--format")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise BadInput("is a directory, not a history file", file=str(path)) from None
    except UnicodeDecodeError as e:
        raise BadInput(f"not UTF-8 text (byte {e.start})", file=str(path)) from None
    except OSError as e:
        raise BadInput(e.strerror or str(e), file=str(path)) from None
    if format == "auto":
        format = detect_format(text, str(path))
    if format == "jsonl":
        ops = _parse_jsonl(text, str(path))
    elif format == "edn":
        ops = _parse_edn(text, str(path))
    else:
        ops = _parse_porcupine(text, str(path))
    return ops


def detect_format(text: str, file: str = "<history>") -> str:
    """Guess the format of a history from its first non-blank line (a Jepsen log
    may start with other lines: any jepsen.util op line makes it ``porcupine``)."""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("{\""):
            return "jsonl"
        if s.startswith("{:") or s.startswith("[") or s.startswith("{ :"):
            return "edn"
        if s.startswith("{"):
            return "jsonl"
        if re.search(r"^INFO\s+jepsen\.util\s+-\s+\S+\s+:", text, re.M):
            return "porcupine"   # a Jepsen log: other lines may come first
        raise BadInput("cannot tell the history format from the first line "
                       "(use --format jsonl|edn|porcupine)", file=file,
                       line=text[:text.find(line)].count("\n") + 1)
    return "jsonl"  # an empty file: an empty history


# ---------------------------------------------------------------------------- jsonl

def _parse_jsonl(text: str, file: str) -> list[Op]:
    ops: list[Op] = []
    v = _Validator(file)
    lines = text.split("\n")
    last = len(lines) - 1
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            d = _decode(raw)
        except json.JSONDecodeError as e:
            if lineno - 1 == last and not text.endswith("\n"):
                # A crashed run may leave a half-written last line: say so, keep the rest.
                log.warning("%s:%d: ignoring a truncated last line (%s)", file, lineno, e.msg)
                break
            raise BadInput(f"not valid JSON ({e.msg} at column {e.colno})",
                           file=file, line=lineno) from None
        if not isinstance(d, dict):
            raise BadInput("expected a JSON object", file=file, line=lineno)
        ops.append(v.op_from_dict(d, lineno, len(ops), strict_index=True))
    return ops


class _Validator:
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
        more = d.keys() - _KNOWN
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
        return int(tok.rstrip("N"))
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


def _parse_edn(text: str, file: str) -> list[Op]:
    maps: list[tuple[int, dict]] = []
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset)

    try:
        found = list(_edn_values(text))
    except _EdnError as e:
        raise BadInput(f"bad EDN: {e.msg}", file=file, line=line_of(e.pos)) from None
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
        for d in client)
    v = _Validator(file)
    ops: list[Op] = []
    for line, d in maps:
        op = {}
        for k, x in d.items():
            op[str(k)] = _plain(x)
        if independent and op.get("process") != NEMESIS:
            op["key"], op["value"] = op["value"][0], op["value"][1]
        if "key" in op and not (isinstance(op["key"], str) or type(op["key"]) is int):
            op["key"] = json.dumps(op["key"], separators=(",", ":"))
        if op.get("type") == FAIL:
            # Jepsen :fail ops carry no reason the checker may use: dropped, as in Knossos.
            if op.get("error") == "precondition-failed":
                op.pop("error")
        op.pop("index", None)
        op.setdefault("time", len(ops))  # no clock: the position orders the ops
        ops.append(v.op_from_dict(op, line, len(ops), strict_index=False))
    return ops


# ------------------------------------------------------------------------ porcupine

_PORC = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\S+)\s+:(\S+)\s+:(\S+)\s*(.*?)\s*$")
_PORC_VALUE = re.compile(r"^(nil|-?\d+|\[\s*(-?\d+|nil)\s+(-?\d+|nil)\s*\]|:[\w\-]+)$")


def _porc_value(s: str) -> Any:
    if s == "nil":
        return None
    if s.startswith("["):
        a, b = s[1:-1].split()
        return [None if a == "nil" else int(a), None if b == "nil" else int(b)]
    return int(s)


def _parse_porcupine(text: str, file: str) -> list[Op]:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("{:") or first.startswith("[{"):
        return _parse_edn(text, file)   # Porcupine's kv logs are Jepsen EDN op maps
    v = _Validator(file)
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


# --------------------------------------------------------------------------- export

def _fmt(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def txt_line(op: Op) -> str:
    """One history.txt line: ``index process type f key value error``."""
    key = _fmt(op.key) if op.has_key else "-"
    err = op.error if op.error is not None else "-"
    return f"{op.index} {op.process} {op.type} {op.f} {key} {_fmt(op.value)} {err}"


def write_txt(ops: list[Op], path: Path | str) -> None:
    """Write history.txt: line N+1 holds the op with index N (SPEC section 2)."""
    with open(path, "w", encoding="utf-8") as out:
        for i, op in enumerate(ops):
            if op.index != i:
                raise ValueError(f"op at position {i} has index {op.index}")
            out.write(txt_line(op) + "\n")


__all__ = ["FORMATS", "read_history", "detect_format", "write_txt", "txt_line"]
