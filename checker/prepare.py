"""Preparation: exact pruning of a key's ops before the search.

etcd's robustness tests prepare a history before Porcupine sees it; the same idea,
kept exact (the verdict never changes; tests/test_checker_prepare.py compares
verdicts with and without it on small random histories, brute force included):

- a read that failed or timed out changes nothing and observes nothing: dropped
  by `checker.partition.operations` (so is every fail but a precondition-failed cas);
- an *interchangeable* info op (`Model.interchangeable`; for the registers: an info
  write or cas of a value that no read returned and no cas that succeeded compared
  with) can only matter by making a precondition-failed cas legal (the register
  then holds a value the cas did not expect). One invoked after every such cas of
  its key completed can matter to none: in any linearization that holds it, every
  op after it up to the next write is legal without it too, and the next write
  leaves the same state. It is dropped. The others stay, and the search tries them
  in call order up to the first unused *free* one only (`checker.search`): that
  one may stand for any of the others.
"""

from __future__ import annotations

from typing import Any

from checker.models import Model, Operation


def prepare(parts: dict[Any, list[Operation]], model: Model
            ) -> tuple[dict[Any, list[Operation]], dict[str, int]]:
    """Drop the ops of each key that cannot change its verdict; return (parts with
    the survivors renumbered, {"pruned": ops dropped, "interchangeable": the
    interchangeable ops kept})."""
    out: dict[Any, list[Operation]] = {}
    dropped = kept = 0
    for k, ops in parts.items():
        junk = model.interchangeable(ops)
        drop = droppable(ops, model, junk)
        kept += len(junk) - len(drop)
        if not drop:
            out[k] = ops
            continue
        dropped += len(drop)
        kept_ops = [o for o in ops if o.id not in drop]
        for i, o in enumerate(kept_ops):
            o.id = i           # the ops are this check's own (checker.partition)
        out[k] = kept_ops
    return out, {"pruned": dropped, "interchangeable": kept}


def droppable(ops: list[Operation], model: Model,
              junk: dict[int, bool] | None = None) -> set[int]:
    """Ids of the interchangeable info ops of one key invoked after every op whose
    precondition is not ("eq", v) or ("any", None) completed (see the module
    docstring); an unfinished such op never completes."""
    if junk is None:
        junk = model.interchangeable(ops)
    if not junk:
        return set()
    last = -1
    for o in ops:
        if o.id not in junk and model.precondition(o)[0] not in ("eq", "any"):
            last = max(last, o.ret if o.ret is not None else 1 << 62)
    return {i for i in junk if ops[i].call > last}


__all__ = ["prepare", "droppable"]
