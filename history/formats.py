"""History formats: reading, validating, importing and exporting histories.

A *history format* is a way to write down the operations a test observed. We read
three of them into `history.ops.Op` lists (SPEC section 2):

- ``jsonl``: our own history.jsonl, one JSON object per line, validated strictly:
  every malformed line, unknown type, completion without an invoke, second open op
  on one process, or completion whose f/key differ from its invoke is one `BadInput`
  naming the file, the line and the field.
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

``auto`` picks one from the first non-blank line. `write_txt` exports history.txt,
where line N+1 holds the op with index N.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from history.errors import BadInput
from history.importers import parse_edn, parse_porcupine
from history.ops import Op
from history.validation import Validator

log = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "edn", "porcupine")
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
        ops = parse_edn(text, str(path))
    else:
        ops = parse_porcupine(text, str(path))
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
    v = Validator(file)
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
