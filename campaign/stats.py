"""Run statistics: what the clients saw, by op, by phase, and during faults.

A *phase* of a client op is decided by its invoke time: ``before-faults`` (before the
first fault started), ``during-faults`` (while at least one fault was active: from a
nemesis start op's invoke to the matching stop op's completion), ``between-faults``
(healed, between two faults) and ``final`` (the final reads after every fault was
healed). *Availability during faults* is the fraction of ops invoked during faults that
completed ok. Faults are also counted *by kind* (partition, latency, kill, pause,
restart: each kind's windows, the time they held, the ops invoked while one held and
how many of those were ok) and *by target* ("kill new-leader", "partition leader":
how the nemesis chose the nodes), with the bytes of unsynced writes that kills lost
(`lost_bytes`, when the cluster ran on the crash file system).

The *vacuity rule*: a run that proves little is never called valid. If faults were
asked for and no op succeeded while one was active (or no fault ever started), or the
run had fewer than `min_ok` successful ops, the run is vacuous and a valid check
becomes "unknown" (an invalid check stays invalid: a violation is a violation). A run
whose history has no completed client op at all is vacuous whatever `min_ok` says:
the checker calls such a history linearizable, as Knossos and Porcupine do, with a
"nothing observed" note (`CheckResult.nothing_observed`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from history.faults import FaultWindow, fault_windows
from history.ops import FAIL, INFO, INVOKE, NEMESIS, OK, Op

BEFORE, DURING, BETWEEN, FINAL = "before-faults", "during-faults", "between-faults", "final"
PHASES = (BEFORE, DURING, BETWEEN, FINAL)

DEFAULT_MIN_OK = 10


def fault_intervals(ops: Iterable[Op]) -> list[tuple[int, int, str]]:
    """[(start_ns, end_ns, kind)] of every fault window (history.faults), by start."""
    return [(w.start, w.end, w.kind) for w in fault_windows(ops)]


def _phase(t: int, intervals: list[tuple[int, int, str]], final_start: int | None) -> str:
    if final_start is not None and t >= final_start:
        return FINAL
    if any(a <= t <= b for a, b, _ in intervals):
        return DURING
    if not intervals or t < intervals[0][0]:
        return BEFORE
    return BETWEEN


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return round(sorted_values[i], 2)


def compute(ops: list[Op], final_start_ns: int | None = None) -> dict[str, Any]:
    """Statistics of a history (JSON-ready)."""
    windows = fault_windows(ops)
    intervals = [(w.start, w.end, w.kind) for w in windows]
    open_ops: dict[Any, Op] = {}
    pairs: list[tuple[Op, str, Op | None]] = []   # (invoke, outcome type, completion)
    for op in ops:
        if op.process == NEMESIS:
            continue
        if op.type == INVOKE:
            if op.process in open_ops:   # a second invoke: the first stays uncertain
                pairs.append((open_ops.pop(op.process), INFO, None))
            open_ops[op.process] = op
        elif op.type in (OK, FAIL, INFO) and op.process in open_ops:
            pairs.append((open_ops.pop(op.process), op.type, op))
    pairs.extend((inv, INFO, None) for inv in open_ops.values())

    by_type: Counter[str] = Counter()
    by_f: dict[str, Counter[str]] = defaultdict(Counter)
    by_phase: dict[str, Counter[str]] = {p: Counter() for p in PHASES}
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for inv, typ, done in pairs:
        by_type[typ] += 1
        by_f[inv.f][typ] += 1
        by_phase[_phase(inv.time, intervals, final_start_ns)][typ] += 1
        if done is not None and done.error:
            errors[done.error] += 1
        elif done is None:
            errors["no-completion"] += 1
        if typ == OK and done is not None:
            latencies.append((done.time - inv.time) / 1e6)
    latencies.sort()

    def counts(c: Counter[str]) -> dict[str, int]:
        return {t: c.get(t, 0) for t in (OK, FAIL, INFO)}

    during = by_phase[DURING]
    during_total = sum(during.values())
    faults_by_kind = Counter(kind for _, _, kind in intervals)
    kinds = _by_kind(windows, [(inv.time, typ) for inv, typ, _ in pairs])
    duration = (max(op.time for op in ops) / 1e9) if ops else 0.0
    return {
        "ops": len(pairs),
        "by_type": counts(by_type),
        "by_f": {f: counts(c) for f, c in sorted(by_f.items())},
        "by_phase": {p: counts(by_phase[p]) for p in PHASES},
        "errors": dict(errors.most_common()),
        "faults": {"count": len(intervals), "by_kind": dict(faults_by_kind),
                   "active_s": round(sum(b - a for a, b in _union(intervals)) / 1e9, 3),
                   "kinds": kinds,
                   "by_target": dict(sorted(Counter(
                       f"{w.kind} {w.target}" for w in windows if w.target).items())),
                   "lost_bytes": _lost_bytes(ops)},
        "availability": round(by_type[OK] / len(pairs), 4) if pairs else None,
        "availability_during_faults": (round(during[OK] / during_total, 4)
                                       if during_total else None),
        "latency_ms": {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95),
                       "p99": _percentile(latencies, 0.99),
                       "max": round(latencies[-1], 2) if latencies else None},
        "duration_s": round(duration, 3),
    }


def _by_kind(windows: list[FaultWindow], invokes: list[tuple[int, str]]) -> dict:
    """Per fault kind: windows, time held, ops invoked while one held, ok share."""
    out: dict[str, Any] = {}
    for kind in sorted({w.kind for w in windows}):
        spans = [(w.start, w.end, kind) for w in windows if w.kind == kind]
        merged = _union(spans)
        ops: Counter[str] = Counter()
        for t, typ in invokes:
            if any(a <= t <= b for a, b in merged):
                ops[typ] += 1
        total = sum(ops.values())
        out[kind] = {"count": len(spans),
                     "active_s": round(sum(b - a for a, b in merged) / 1e9, 3),
                     "ops": {t: ops.get(t, 0) for t in (OK, FAIL, INFO)},
                     "availability": round(ops[OK] / total, 4) if total else None}
    return out


def _lost_bytes(ops: list[Op]) -> int:
    """Bytes of unsynced writes the nemesis's kills lost (their `lost_bytes`)."""
    total = 0
    for op in ops:
        lost = op.extra.get("lost_bytes") if op.process == NEMESIS else None
        if isinstance(lost, dict):
            total += sum(v for v in lost.values() if isinstance(v, int))
    return total


def _union(intervals: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b, _ in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def vacuity(stats: dict[str, Any], faults_requested: bool,
            min_ok: int = DEFAULT_MIN_OK, nothing_observed: bool = False) -> str | None:
    """Why the run is vacuous, or None if it is not (see the module docstring).
    `nothing_observed`: the checker found no completed client op in the history."""
    ok = stats["by_type"][OK]
    if nothing_observed and ok >= min_ok:  # min_ok 0: still, nothing was observed
        return "the history has no completed client operation to check"
    if ok < min_ok:
        return f"only {ok} successful ops (fewer than {min_ok})"
    if faults_requested:
        if stats["faults"]["count"] == 0:
            return "faults were asked for, but none was injected"
        if stats["by_phase"][DURING][OK] == 0:
            return "no op succeeded while a fault was active"
    return None


def combine(valid: Any, vacuous_reason: str | None) -> Any:
    """The run's verdict: a valid check of a vacuous run is "unknown"."""
    if valid is True and vacuous_reason:
        return "unknown"
    return valid


def worst(verdicts: Iterable[Any]) -> Any:
    """SPEC section 3: false beats "unknown" beats true."""
    verdicts = list(verdicts)
    if any(v is False for v in verdicts):
        return False
    if any(v is not True for v in verdicts):
        return "unknown"
    return True
