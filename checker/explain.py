"""Explanations: why a history is not linearizable, in terms a person can act on.

An *explanation* of an invalid key names the first op that cannot be linearized
(the op whose completion the search could not get past, at its deepest point), its
history.txt line, the ops concurrent with it, the longest linearizable prefix with
the model state after each op, and a one-line reason ("read 3, but the register
holds 4, written by op 57"). `render()` turns a `CheckResult.to_dict()` into text:
the verdict, a summary of the failing keys ("3 of 18 keys not linearizable: 0, 4,
7"), the keys a budget left undecided, then each failure.
Explanations are only computed for invalid keys, so valid histories pay nothing.
"""

from __future__ import annotations

from typing import Any, Hashable

from checker.models import Illegal, Model, Operation, show, thaw
from checker.search import SearchResult

PREFIX_SHOWN = 8      # prefix entries shown in text (all are in the JSON)
SUMMARY_KEYS = 50     # failing keys named in the summary line
FAILURES_SHOWN = 10   # failures explained in text (all are in the JSON)


def _jsonable(state: Hashable) -> Any:
    return thaw(state)


def _writer_of(prefix: list[tuple[int, Hashable]], ops: list[Operation],
               model: Model) -> Operation | None:
    """The op that set the state after the prefix: its last state-changing op."""
    for oid, _ in reversed(prefix):
        op = ops[oid]
        if model.changes(op):
            return op
    return None


def _line(op: Operation) -> str:
    return f"op {op.index} (line {op.index + 1})"


def explain_failure(key: Any, ops: list[Operation], model: Model,
                    res: SearchResult) -> dict:
    """The failure entry of CheckResult.to_dict() for one invalid key (no "shrunk")."""
    b = ops[res.blocked] if res.blocked is not None else ops[0]
    state = res.prefix[-1][1] if res.prefix else model.init()
    inf = float("inf")
    b_end = b.ret if b.ret is not None else inf
    concurrent = sorted(o.index for o in ops if o is not b and o.call < b_end
                        and (o.ret if o.ret is not None else inf) > b.call)
    outcome = model.step(state, b)
    if isinstance(outcome, Illegal):
        reason = outcome.reason
        w = _writer_of(res.prefix, ops, model)
        if w is not None:
            reason += f", {model.writer_word} by op {w.index}"
            if w.f not in ("write", "put"):
                reason += f" ({model.describe(w)})"
        else:
            reason += " (the initial value)"
    else:
        reason = (f"{model.describe(b)} is legal after the prefix, but no order of it "
                  f"and the {len(concurrent)} ops concurrent with it lets every op "
                  f"complete")
    op_dict = (b.completion or b.invoke).to_dict()
    return {
        "key": key,
        "op": op_dict,
        "line": b.index + 1,
        "invoke_line": b.call + 1,
        "description": model.describe(b),
        "concurrent": concurrent,
        "prefix": [{"index": ops[oid].index, "state": _jsonable(st)}
                   for oid, st in res.prefix],
        "state": _jsonable(state),
        "reason": reason,
        "shrunk": [],
    }


def _count(n: int, noun: str) -> str:
    """'1 op', '2 ops', '1,000 history lines'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def render(d: dict, describe_ops: dict | None = None) -> str:
    """A CheckResult dict as text for a person."""
    v = d["valid"]
    verdict = {True: "linearizable", False: "NOT linearizable"}.get(v, "unknown")
    nkeys = len(d.get("keys", {}))
    word = {True: "true", False: "false"}.get(v, "unknown")
    what = f"model {d['model']}, {_count(d['op_count'], 'history line')}"
    if not (nkeys == 1 and next(iter(d.get("keys", {}))) == "null"):
        what += f", {_count(nkeys, 'key')}"
    lines = [f"valid: {word} ({what})" if v == "unknown" else
             f"valid: {word} ({verdict}; {what})"]
    if v == "unknown" and d.get("unknown_reason"):
        lines.append(f"  unknown because: {d['unknown_reason']}")
    if d.get("note"):
        lines.append(f"  note: {d['note']}")
    fails = d.get("failures", [])
    if fails and not (len(fails) == 1 and fails[0]["key"] is None):
        names = ", ".join(show(fl["key"]) for fl in fails[:SUMMARY_KEYS])
        if len(fails) > SUMMARY_KEYS:
            names += f" and {len(fails) - SUMMARY_KEYS} more"
        lines.append(f"{len(fails)} of {_count(nkeys, 'key')} not linearizable: {names}")
    unknown_keys = [(k, kd) for k, kd in d.get("keys", {}).items()
                    if kd.get("valid") == "unknown"]
    if unknown_keys and v is False:
        lines.append(f"{_count(len(unknown_keys), 'other key')} not decided "
                     f"(a budget, or the grace after a failure, ran out):")
    if unknown_keys and (v is False or len(unknown_keys) > 1):
        for k, kd in unknown_keys[:5]:
            lines.append(f"  key {k}: unknown: {kd.get('unknown_reason', '')}")
        if len(unknown_keys) > 5:
            lines.append(f"  ... {len(unknown_keys) - 5} more keys unknown")
    for fl in fails[:FAILURES_SHOWN]:
        op = fl["op"]
        lines.append(f"the {'register' if d['model'] in ('register', 'cas-register') else d['model']}: "
                     "not linearizable" if fl["key"] is None
                     else f"key {show(fl['key'])}: not linearizable")
        lines.append(f"  first op that cannot be linearized: op {op['index']} "
                     f"(history.txt line {fl['line']}, invoked at line "
                     f"{fl.get('invoke_line', '?')}): process {op['process']} "
                     f"{fl.get('description', op['f'])}")
        lines.append(f"  reason: {fl['reason']}")
        conc = fl["concurrent"]
        shown = ", ".join(f"{i} (line {i + 1})" for i in conc[:12])
        more = f" and {len(conc) - 12} more" if len(conc) > 12 else ""
        lines.append(f"  concurrent ops: {shown or 'none'}{more}")
        pre = fl["prefix"]
        lines.append(f"  longest linearizable prefix: {_count(len(pre), 'op')}; state after it: "
                     f"{show(fl['state'])}")
        if len(pre) > PREFIX_SHOWN:
            lines.append(f"    ... {len(pre) - PREFIX_SHOWN} earlier ops")
        for p in pre[-PREFIX_SHOWN:]:
            desc = (describe_ops or {}).get(p["index"], "")
            lines.append(f"    op {p['index']} (line {p['index'] + 1}) {desc}"
                         f"{' ' if desc else ''}-> state {show(p['state'])}")
        if fl.get("shrunk"):
            n = sum(1 for o in fl["shrunk"] if o.get("type") == "invoke")
            lines.append(f"  shrunk to {_count(n, 'op')}, still not linearizable:")
            for o in fl["shrunk"]:
                err = f" {o['error']}" if o.get("error") else ""
                lines.append(f"    line {o['index'] + 1}: {o['process']} {o['type']} "
                             f"{o['f']} {show(o.get('value'))}{err}")
    if len(fails) > FAILURES_SHOWN:
        lines.append(f"... and {len(fails) - FAILURES_SHOWN} more keys not linearizable "
                     f"(every failure is in the JSON result)")
    return "\n".join(lines)


__all__ = ["explain_failure", "render"]
