"""History formats: reading, validating, importing and exporting histories.

A *history format* is a way to write down the operations a test observed. We read
three of them into `history.ops.Op` lists (SPEC section 2):

- ``jsonl``: our own history.jsonl, one JSON object per line, validated strictly:
  every malformed line, unknown type, completion without an invoke, second open op
  on one process, completion whose f/key differ from its invoke, ok read without a
  value, or value that is not plain JSON data (NaN, Infinity, an integer over 4,300
  digits, nesting over 64 levels, a lone surrogate: history.validation) is one
  `BadInput` naming the file, the line and the field. A whole file that is one JSON
  array is refused with a hint.
- ``edn`` (history.importers): Jepsen EDN histories, op maps one per line or inside one vector; keyword
  values become strings; Jepsen's independent keys (``:value [k v]`` on every client
  op) become ``key``/``value``; ``:key`` is kept as is (Porcupine's kv corpus).
  Jepsen ``:fail`` ops carry no reason, so they stay reasonless and are dropped by
  the checker, as Knossos does.
- ``porcupine`` (history.importers): Porcupine's etcd Jepsen logs
  (``INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[1 4]``); its kv logs
  (test_data/kv) are EDN op maps and read as ``edn``. As in Porcupine's
  porcupine_test.go, ``:fail :cas`` is a compare that failed (``error:
  "precondition-failed"``) and ``:timed-out`` completions are uncertain.

``auto`` picks one from the first non-blank line (EDN comment lines skipped); a
forced format that would find no ops in a file whose first line shows another one is
bad input (field ``--format``). `write_txt` exports history.txt,
where line N+1 holds the op with index N.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable

from history.errors import BadInput
from history.importers import parse_edn, parse_porcupine
from history.ops import Op, gc_paused
from history.validation import MAX_DEPTH, Refused, Validator, refused_number

log = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "edn", "porcupine")


class _Flag:
    """Raised when the decoder met a number it could not keep (see `_json_decoder`)."""

    def __init__(self) -> None:
        self.raised = False


def _json_decoder(flag: _Flag, long_ints: bool = False) -> Any:
    """Strict-data JSON: NaN, Infinity, numbers that overflow to infinity and (with
    `long_ints`: slower, so only for a line whose fast decoding failed on one)
    integers over MAX_INT_DIGITS digits become `Refused` placeholders (and set
    `flag.raised`), so that the validator names their field."""
    def constant(name: str) -> Any:
        flag.raised = True
        return Refused(f"{name} is refused: JSON has no NaN or Infinity")

    def number(text: str) -> Any:
        v = float(text)
        if v in (float("inf"), float("-inf")):
            flag.raised = True
            return Refused(f"{text[:20]}{'...' if len(text) > 20 else ''} is refused: "
                           "too large, it reads as Infinity")
        return v

    def integer(text: str) -> Any:
        bad = refused_number(text)
        if bad is None:
            return int(text)
        flag.raised = True
        return bad

    decoder = json.JSONDecoder(parse_constant=constant, parse_float=number,
                               parse_int=integer if long_ints else None)
    scan, slow = decoder.scan_once, decoder.decode

    def decode(line: str) -> Any:
        # An object that fills the line is scanned directly (a third faster on a
        # million-line history); anything else, errors included, goes the usual way.
        if line[:1] == "{":
            try:
                obj, end = scan(line, 0)
            except StopIteration:
                return slow(line)
            if end == len(line):
                return obj
        return slow(line)

    return decode


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:]')


def _too_deep(raw: str) -> tuple[int, str | None] | None:
    """(column, top-level field) where a JSON line nests deeper than MAX_DEPTH levels
    below the op object, or None."""
    depth, field, last = 0, None, None
    for m in _JSON_TOKEN.finditer(raw):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth > MAX_DEPTH + 1:
                return m.start() + 1, field
        elif tok in "]}":
            depth -= 1
        elif tok == ":":
            if depth == 1 and last is not None and last.startswith('"'):
                try:
                    field = json.loads(last)
                except ValueError:
                    field = None
        last = tok
    return None


def read_history(path: Path | str, format: str = "auto",
                 progress: Callable[[str], None] | None = None) -> list[Op]:
    """Read and validate a history file; raise `BadInput` naming file, line, field.
    `progress` (jsonl): told how far reading got every 2 s, from 2 s on."""
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
        line = e.object[:e.start].count(b"\n") + 1
        raise BadInput(f"not UTF-8 text (byte {e.start})", file=str(path),
                       line=line) from None
    except OSError as e:
        raise BadInput(e.strerror or str(e), file=str(path)) from None
    if format == "auto":
        format = detect_format(text, str(path))
    else:
        _check_forced(text, format, str(path))
    with gc_paused():
        return _parse(text, str(path), format, progress)


def _parse(text: str, path: str, format: str,
           progress: Callable[[str], None] | None = None) -> list[Op]:
    """The ops of a history file's text in a known format (see read_history)."""
    if format == "jsonl":
        ops = _parse_jsonl(text, str(path), progress)
    elif format == "edn":
        ops = parse_edn(text, str(path))
    elif _sniff(text) == "edn":
        ops = parse_edn(text, str(path))   # Porcupine's kv logs are EDN
    else:
        ops = parse_porcupine(text, str(path))
        if not ops and text.strip():
            line, _ = _first_line(text)
            raise BadInput("no jepsen.util op line (INFO  jepsen.util - PROC<TAB>:TYPE"
                           "<TAB>:F<TAB>VALUE) in the file: it is not a Porcupine log "
                           "(use --format auto)", file=str(path), line=line,
                           field="--format")
    return ops


def _first_line(text: str) -> tuple[int, str]:
    """(line number, stripped text) of the first line that is not blank or an EDN
    comment (``;``); (1, "") if none."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith(";"):
            return n, line.strip()
    return 1, ""


def _sniff(text: str) -> str | None:
    """The format the first non-blank line shows ("json-array" for a whole file that
    is one JSON array), or None when it shows none."""
    _, s = _first_line(text)
    if not s:
        return "jsonl"  # an empty file: an empty history
    if s.startswith("{\""):
        return "jsonl"
    if s.startswith("["):
        if re.match(r"\[\s*\{\s*\"", text[text.find(s):]):
            return "json-array"
        return "edn"
    if s.startswith("{:") or s.startswith("{ :"):
        return "edn"
    if s.startswith("{"):
        return "jsonl"
    if re.search(r"^INFO\s+jepsen\.util\s+-\s+\S+\s+:", text, re.M):
        return "porcupine"   # a Jepsen log: other lines may come first
    return None


def _json_array(file: str, line: int) -> BadInput:
    return BadInput("the file is one JSON array, not JSON lines: write one op object "
                    "per line (for example: jq -c '.[]' FILE)", file=file, line=line)


def detect_format(text: str, file: str = "<history>") -> str:
    """Guess the format of a history from its first non-blank line (a Jepsen log
    may start with other lines: any jepsen.util op line makes it ``porcupine``)."""
    found = _sniff(text)
    if found == "json-array":
        raise _json_array(file, _first_line(text)[0])
    if found is None:
        raise BadInput("cannot tell the history format from the first line "
                       "(use --format jsonl|edn|porcupine)", file=file,
                       line=_first_line(text)[0])
    return found


def _check_forced(text: str, format: str, file: str) -> None:
    """A forced --format that would find no ops in this file (its first line shows
    another format) is bad input, said before reading it as the wrong thing.
    Porcupine's kv logs are EDN: ``--format porcupine`` reads EDN as EDN."""
    found = _sniff(text)
    line, first = _first_line(text)
    if found == "json-array":
        raise _json_array(file, line)
    if found is None or found == format or (format == "porcupine" and found == "edn"):
        return
    if found != "porcupine":   # edn vs jsonl: does the first line read as JSON?
        try:
            is_json = isinstance(json.loads(first),
                                 (dict, list) if format == "jsonl" else dict)
        except (ValueError, RecursionError):
            is_json = False
        if is_json == (format == "jsonl"):
            return  # let the forced reader say what it finds
    first = " ".join(first.split())
    shown = first if len(first) <= 40 else first[:37] + "..."
    raise BadInput(f"the file is {found} ({shown}), and {format} finds no ops in it "
                   f"(use --format {found} or auto)", file=file, line=line,
                   field="--format")


# ---------------------------------------------------------------------------- jsonl

def _parse_jsonl(text: str, file: str,
                 progress: Callable[[str], None] | None = None) -> list[Op]:
    """The ops of a history.jsonl, validated (see the module docstring)."""
    ops: list[Op] = []
    start = shown = time.monotonic()
    v = Validator(file)
    flag = _Flag()
    decode = _json_decoder(flag)
    decode_long = _json_decoder(flag, long_ints=True)
    lines = text.split("\n")
    last = len(lines) - 1
    for lineno, raw in enumerate(lines, 1):
        if not lineno & 0xffff and progress is not None:
            now = time.monotonic()
            if now - shown >= 2.0:
                shown = now
                progress(f"reading: {lineno:,}/{len(lines):,} lines "
                         f"({lineno / (now - start):,.0f} lines/s)")
        if not raw.strip():
            continue
        deep = _too_deep(raw) if raw.count("[") + raw.count("{") > MAX_DEPTH + 1 else None
        if deep is not None:
            raise BadInput(f"nested deeper than {MAX_DEPTH} levels of arrays and "
                           f"objects (at column {deep[0]})", file=file, line=lineno,
                           field=deep[1])
        flag.raised = False
        try:
            try:
                d = decode(raw)
            except json.JSONDecodeError:
                raise
            except ValueError:   # Python's limit on integer digits: find the field
                d = decode_long(raw)
        except json.JSONDecodeError as e:
            if lineno - 1 == last and not text.endswith("\n"):
                # A crashed run may leave a half-written last line: say so, keep the rest.
                log.warning("%s:%d: ignoring a truncated last line (%s)", file, lineno, e.msg)
                break
            raise BadInput(f"not valid JSON ({e.msg} at column {e.colno})",
                           file=file, line=lineno) from None
        except RecursionError:   # _too_deep lets no such line through; to be safe
            raise BadInput(f"nested deeper than {MAX_DEPTH} levels of arrays and "
                           "objects", file=file, line=lineno) from None
        if not isinstance(d, dict):
            if isinstance(d, list):
                raise BadInput("expected a JSON object (one op per line), not an array",
                               file=file, line=lineno)
            raise BadInput("expected a JSON object", file=file, line=lineno)
        # A file decoded as UTF-8 holds no surrogates: only a \u escape makes one.
        ops.append(v.op_from_dict(d, lineno, len(ops), strict_index=True,
                                  scan=flag.raised or "\\u" in raw))
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
