"""The linearizability checker.

`check(ops, model)` decides whether a history (a list of `history.ops.Op`) is
linearizable under a model (`checker.models`): it splits the history by key
(`checker.partition`), searches each key (`checker.search`), and explains
(`checker.explain`) every invalid key, and shrinks (`checker.shrink`) the first
SHRINK_MAX_KEYS of them. Every key is decided within the budgets (a failing key
does not stop the others, as in Jepsen's independent checker). The result is
a `CheckResult`: ``valid`` is True, False or "unknown" (a budget ran out);
``to_dict()`` is the JSON of docs/internals.md ("Checker").

A history with no completed client op (empty, or only invokes, info and dropped fail
ops) is linearizable, as Knossos and Porcupine say: every order of what may have
happened is legal. Its result is True with a ``note`` that nothing was observed
(`CheckResult.nothing_observed`). Whether such a run proves anything is the test
runner's question (the vacuity rule of campaign.stats), not the checker's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from checker.explain import explain_failure, render
from history.ops import Op, gc_paused
from checker.models import Model, get_model
from checker.partition import check_keys, key_label, operations
from checker.prepare import prepare
from checker.shrink import shrink as _shrink, shrunk_dicts

SHRINK_TIME_S = 10.0     # at most this long shrinking one invalid key
SHRINK_TOTAL_S = 20.0    # at most this long shrinking, all keys together
SHRINK_MAX_KEYS = 5      # only the first (in key order) invalid keys are shrunk
NOTHING_OBSERVED = ("nothing observed: the history has no completed client operation, "
                    "so it is linearizable, but it shows nothing")


@dataclass
class CheckResult:
    """The verdict on one history, with everything needed to explain it."""

    valid: bool | str
    model: str
    op_count: int
    keys: dict[str, dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    unknown_reason: str | None = None
    stats: dict = field(default_factory=dict)
    _descriptions: dict = field(default_factory=dict, repr=False)
    note: str | None = None

    @property
    def nothing_observed(self) -> bool:
        """True when no completed client op constrained the verdict (see above)."""
        return (self.stats.get("ok", 0) + self.stats.get("fail_observed", 0)) == 0

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"valid": self.valid, "model": self.model,
                             "op_count": self.op_count, "keys": self.keys,
                             "failures": self.failures}
        if self.valid == "unknown":
            d["unknown_reason"] = self.unknown_reason
        if self.note:
            d["note"] = self.note
        d["stats"] = self.stats
        return d

    def explain(self) -> str:
        return render(self.to_dict(), self._descriptions)


def check(ops: list[Op], model: str | Model = "cas-register",
          time_limit: float | None = None, memory_limit_mb: float | None = None,
          shrink: bool = True, progress: Callable[[str], None] | None = None,
          failure_grace_s: float | None = None, prune: bool = True) -> CheckResult:
    """Check a history for linearizability (see the module docstring).

    `failure_grace_s`: once a key is found not linearizable, how long the other keys
    may still take to be decided (default `checker.partition.FAILURE_GRACE_S`; 0 stops
    at the first failing key, as Porcupine does). `prune` False: no exact pruning
    (`checker.prepare`; the verdict is the same, only slower)."""
    with gc_paused():
        return _check(ops, model, time_limit, memory_limit_mb, shrink, progress,
                      failure_grace_s, prune)


def _check(ops: list[Op], model: str | Model, time_limit: float | None,
           memory_limit_mb: float | None, shrink: bool,
           progress: Callable[[str], None] | None, failure_grace_s: float | None,
           prune: bool) -> CheckResult:
    """`check`, with the garbage collector paused."""
    start = time.monotonic()
    m = get_model(model)
    deadline = None if time_limit is None else start + float(time_limit)
    mem = None if memory_limit_mb is None else int(float(memory_limit_mb) * 2 ** 20)
    parts, counts = operations(ops, m, progress)
    counts["pruned"] = counts["interchangeable"] = 0
    if prune:
        parts, pruned = prepare(parts, m)
        counts.update(pruned)
    results = check_keys(parts, m, deadline, mem, progress,
                         failure_grace_s=failure_grace_s, prune=prune)
    keys: dict[str, dict] = {}
    failures: list[dict] = []
    descriptions: dict[int, str] = {}
    unknown: list[str] = []
    invalid: list[Any] = []
    for k, r in results.items():
        keys[key_label(k)] = {"valid": r.valid, "ops": len(parts[k]),
                              "explored": r.explored, "elapsed_s": round(r.elapsed_s, 4)}
        if r.valid == "unknown":
            unknown.append(r.unknown_reason or "budget reached")
            keys[key_label(k)]["unknown_reason"] = unknown[-1]
        if r.valid is not False:
            continue
        invalid.append(k)
        failures.append(explain_failure(k, parts[k], m, r))
        for oid, _ in r.prefix:
            descriptions[parts[k][oid].index] = m.describe(parts[k][oid])
    if shrink:
        # Shrink the first SHRINK_MAX_KEYS invalid keys, sharing SHRINK_TOTAL_S (and
        # what is left of the time limit) among them; time a key leaves unused goes
        # to the next ones. Each key gets at most SHRINK_TIME_S.
        shrink_end = time.monotonic() + SHRINK_TOTAL_S
        if deadline is not None:
            shrink_end = min(shrink_end, deadline)
        todo = list(zip(invalid, failures))[:SHRINK_MAX_KEYS]
        for i, (k, fl) in enumerate(todo):
            left = shrink_end - time.monotonic()
            budget = min(SHRINK_TIME_S, left / (len(todo) - i))
            if budget <= 0:
                break
            if progress is not None:
                progress(f"shrinking{'' if k is None else ' key ' + key_label(k)} "
                         f"({len(parts[k]):,} ops)")
            fl["shrunk"] = shrunk_dicts(_shrink(parts[k], m, results[k].blocked, budget))
    required = counts["ok"] + counts["fail_observed"]
    reason = note = None
    if failures:
        valid: bool | str = False
    elif unknown:
        valid, reason = "unknown", unknown[0]
        if len(unknown) > 1:
            reason += f"; and {len(unknown) - 1} more key{'s' if len(unknown) > 2 else ''}"
            reason += " (see \"keys\")"
    else:
        valid = True
        if required == 0:
            note = NOTHING_OBSERVED
    stats = dict(counts)
    stats.update({"keys": len(parts), "explored": sum(r.explored for r in results.values()),
                  "elapsed_s": round(time.monotonic() - start, 4)})
    return CheckResult(valid, m.name, len(ops), keys, failures, reason, stats,
                       descriptions, note)


__all__ = ["check", "CheckResult"]
