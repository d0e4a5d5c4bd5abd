"""Shrinking: a small sub-history that is still not linearizable.

*Shrinking* removes operations from an invalid key's history while it stays
invalid at the same op (the first op that cannot be linearized is kept, and the
search still gets stuck on it), by delta debugging (Zeller's ddmin) over whole
operations, so that each process's invoke and completion always stay together (the
failing op alone is tried first: when it is enough, that is the result), and
keeping a write of every value that a kept op observed (`Model.needs`,
`Model.writes`): removing ops must not invent a different anomaly. It starts from the ops
invoked before the failing op completed, runs under a time budget, and returns the
smallest invalid sub-history found so far when the budget runs out.
"""

from __future__ import annotations

import time

from checker.models import Model, Operation
from checker.search import search_subset


def shrink(ops: list[Operation], model: Model, blocked: int | None,
           time_limit_s: float = 5.0) -> list[Operation]:
    """A small subset of `ops` (by id) that is still not linearizable."""
    deadline = time.monotonic() + time_limit_s

    # Keep a write of every value a kept op saw, if the history has one: a read of
    # a value nobody wrote is invalid, but says nothing about the bug.
    written_at_all = {model.init()}
    for o in ops:
        written_at_all.update(model.writes(o))

    def admissible(ids: list[int]) -> bool:
        if blocked is not None and blocked not in ids:
            return False
        written = {model.init()}
        for i in ids:
            written.update(model.writes(ops[i]))
        return all(v in written or v not in written_at_all
                   for i in ids for v in model.needs(ops[i]))

    def invalid(ids: list[int]) -> bool:
        # still not linearizable, and still because of the same op
        if time.monotonic() >= deadline or not admissible(ids):
            return False
        res = search_subset(ops, model, ids, deadline)
        if res.valid is not False:
            return False
        return blocked is None or (res.blocked is not None and ids[res.blocked] == blocked)

    current = [o.id for o in ops]
    if blocked is not None:
        # The failing op alone, if it is still invalid and admissible, is as small
        # as ddmin can get (it keeps that op): tried first, it saves the ddmin.
        if len(current) > 1 and invalid([blocked]):
            return [ops[blocked]]
        b = ops[blocked]
        end = b.ret if b.ret is not None else b.call
        head = [o.id for o in ops if o.call <= end]
        if len(head) < len(current) and invalid(head):
            current = head
    n = 2
    while len(current) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(current) // n)
        parts = [current[i:i + chunk] for i in range(0, len(current), chunk)]
        reduced = False
        for i in range(len(parts)):
            # try removing one part (ddmin's "reduce to complement")
            rest = [x for j, p in enumerate(parts) if j != i for x in p]
            if rest and invalid(rest):
                current = rest
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            for p in parts:
                if len(p) < len(current) and invalid(p):
                    current = p
                    n = 2
                    reduced = True
                    break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(current), n * 2)
    return [ops[i] for i in sorted(current)]


def shrunk_dicts(sub: list[Operation]) -> list[dict]:
    """The ops of a shrunk sub-history as history op dicts, in history order."""
    out = [d for o in sub for d in o.to_dicts()]
    out.sort(key=lambda d: d["index"])
    return out
