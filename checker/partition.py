"""Partitioning: a history split into independent per-key sub-histories.

*P-compositionality* (Herlihy & Wing's locality): a history of several registers is
linearizable if and only if each register's sub-history is. So each key is checked
alone, and, when there are several keys and enough ops to pay for it, in parallel
processes (concurrent.futures.ProcessPoolExecutor); otherwise the keys' searches are
interleaved in this process. As Jepsen's independent checker does (and unlike
Porcupine, which stops at the first failure), every key is decided, within the global
time and memory budgets, so that every failing key is reported; a key whose search a
budget ended is "unknown", with how far it got.

`operations()` also pairs each invoke with its completion and keeps only what the
search can use (SPEC section 2): ``ok`` ops; ``info`` ops (and invokes never
completed) as optional ops, except reads, which change nothing; ``fail`` cas with
``precondition-failed`` as observations; every other ``fail`` is dropped.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from typing import Any, Callable

from history.errors import BadInput
from history.ops import INFO as T_INFO, INVOKE, NEMESIS, OK as T_OK, Op
from checker.models import FAIL, INFO, OK, Model, Operation, get_model
from checker.search import (Progress, SearchResult, budget_reason, memory_per_config,
                            rss_bytes, search, search_steps)

PARALLEL_MIN_OPS = 20_000     # below this, process start-up costs more than it saves
STATUS_S = 2.0                # the progress line: first after this long, then this often


def key_label(key: Any) -> str:
    """A key as the JSON string used in results ("keys" of CheckResult.to_dict())."""
    return json.dumps(key, separators=(",", ":"), ensure_ascii=False)


def operations(ops: list[Op], model: Model,
               progress: Callable[[str], None] | None = None
               ) -> tuple[dict[Any, list[Operation]], dict]:
    """Pair invokes with completions, per key; return (key -> ops, counts).

    Keys come in the order of their first op in the history. `progress` is told how
    far pairing got every 2 s, from 2 s on."""
    start = last = time.monotonic()
    open_: dict[Any, list] = {}
    pairs: list[list] = []      # [invoke, its completion or None], in invoke order
    check_op = model.check_op
    counts = {"client_ops": 0, "ok": 0, "info": 0, "fail": 0, "fail_observed": 0,
              "dropped": 0, "nemesis": 0}
    for op in ops:
        if not op.index & 0xffff and progress is not None:
            now = time.monotonic()
            if now - last >= STATUS_S:
                last = now
                progress(f"pairing: {op.index:,}/{len(ops):,} history lines "
                         f"({op.index / (now - start):,.0f} lines/s)")
        proc = op.process
        if proc == NEMESIS:
            counts["nemesis"] += 1
            continue
        check_op(op)
        if op.type == INVOKE:
            if proc in open_:
                raise BadInput(f"process {proc} invokes op {op.index} (history.txt "
                               f"line {op.index + 1}) while op "
                               f"{open_[proc][0].index} is still open",
                               field="process")
            pair = [op, None]
            open_[proc] = pair
            pairs.append(pair)
            continue
        pair = open_.pop(proc, None)
        inv = pair[0] if pair is not None else None
        if inv is None or inv.f != op.f or inv.key != op.key:   # (an absent key too)
            raise BadInput(f"completion {op.index} (history.txt line {op.index + 1}) "
                           f"does not match an open invoke of process {proc} "
                           f"with the same f and key", field="process")
        pair[1] = op  # type: ignore[index]
    by_key: dict[Any, list[Operation]] = {}
    first: dict[Any, int] = {}
    for inv, comp in pairs:
        first.setdefault(inv.key if inv.has_key else None, inv.index)
        counts["client_ops"] += 1
        ctype = comp.type if comp is not None else T_INFO
        if ctype == T_OK:
            status = OK
        elif ctype == T_INFO:
            status = INFO
        elif inv.f == "cas" and comp is not None and comp.error == "precondition-failed":
            status = FAIL
            counts["fail_observed"] += 1
        else:
            counts["fail"] += 1
            continue
        key = inv.key if inv.has_key else None
        output = comp.value if (comp is not None and ctype == T_OK) else None
        ret = comp.index if (comp is not None and status != INFO) else None
        lst = by_key.setdefault(key, [])
        o = Operation(len(lst), inv.process, inv.f, key, inv.value, output, status,
                      inv.index, ret, inv, comp)
        if not model.relevant(o):
            counts["dropped"] += 1
            continue
        lst.append(o)
    counts["ok"] = sum(1 for lst in by_key.values() for o in lst if o.status == OK)
    counts["info"] = sum(1 for lst in by_key.values() for o in lst if o.status == INFO)
    # keys in the order they first appear in the history
    return dict(sorted(by_key.items(), key=lambda kv: first[kv[0]])), counts


def _rows(ops: list[Operation]) -> list[tuple]:
    """What a worker needs of each op (cheap to send: no history Op objects)."""
    return [(o.id, o.process, o.f, o.key, o.input, o.output, o.status, o.call, o.ret)
            for o in ops]


class Status:
    """The progress line of a check (keys done, ops/s, memory), for `progress`:
    every STATUS_S seconds, the first after STATUS_S (a quicker check shows none)."""

    def __init__(self, progress: Callable[[str], None] | None,
                 parts: dict[Any, list[Operation]]) -> None:
        self.progress = progress
        self.keys = len(parts)
        self.ops = sum(len(v) for v in parts.values())
        self.start = self.last = time.monotonic()

    def due(self) -> bool:
        """Whether a line is wanted now."""
        return self.progress is not None and time.monotonic() - self.last >= STATUS_S

    def emit(self, keys_done: int, ops_done: int, bad: int, rss: int) -> None:
        """Say how far the check got: `ops_done` ops decided, `rss` bytes resident."""
        assert self.progress is not None
        now = self.last = time.monotonic()
        rate = ops_done / max(now - self.start, 1e-9)
        self.progress(f"checking: {keys_done}/{self.keys} keys done"
                      f"{f' ({bad} not linearizable)' if bad else ''}, "
                      f"{ops_done:,}/{self.ops:,} ops ({rate:,.0f} ops/s), "
                      f"memory {rss / 2 ** 20:,.0f} MB")


def memory_bytes(pids: list[int]) -> int:
    """Memory of this process and `pids` (its workers), each page shared by n of
    them counted 1/n (Linux's proportional set size: forked workers share most of
    their parent's pages); resident memory where /proc has no smaps_rollup."""
    total = 0
    for pid in ["self", *pids]:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            if pid == "self":
                total += rss_bytes()
    return total


# Once one key is found not linearizable the verdict is settled; the other keys get this
# much more time (at most) to be decided too, so that a hard key cannot turn a failure
# found in milliseconds into a check that runs for the whole budget.
FAILURE_GRACE_S = 5.0

_STOP = None   # in a worker process: the event set when the grace after a failure ends


def _init_worker(stop_event: Any) -> None:
    """A worker process's set-up: the grace event; no garbage collector (a search
    makes no garbage cycles, and a collection would touch, and so copy, every page
    of the history the worker shares with its parent)."""
    global _STOP
    _STOP = stop_event
    gc.disable()


def _search_job(rows: list[tuple], model_name: str, initial: Any, deadline: float | None,
                memory_limit_bytes: int | None, label: str, prune: bool = True
                ) -> SearchResult:
    """One key's search in a worker process (see `_check_parallel`)."""
    ops = [Operation(*row, None, None) for row in rows]  # type: ignore[arg-type]
    stop = _STOP.is_set if _STOP is not None else None
    return search(ops, get_model(model_name, initial), deadline, memory_limit_bytes,
                  None, label, stop=stop, prune=prune)


def _grace_over(k: Any, bad: Any, explored: int, elapsed: float,
                grace_s: float) -> SearchResult:
    return SearchResult("unknown", explored, elapsed, unknown_reason=(
        f"key {key_label(k)} not decided within {grace_s:g} s after key "
        f"{key_label(bad)} was found not linearizable ({explored:,} configurations "
        f"explored)"))


def check_keys(parts: dict[Any, list[Operation]], model: Model, deadline: float | None,
               memory_limit_bytes: int | None,
               progress: Callable[[str], None] | None = None,
               workers: int | None = None,
               failure_grace_s: float | None = None,
               prune: bool = True) -> dict[Any, SearchResult]:
    """Search every key (a failing key does not stop the others), within the budgets.

    Keys are searched in parallel processes when there are several and enough ops
    to pay for the start-up, else interleaved in this process a few thousand steps
    at a time, so that a hard key never hides an easy failing one.
    """
    total = sum(len(v) for v in parts.values())
    cpus = os.cpu_count() or 1
    workers = workers if workers is not None else min(cpus, len(parts))
    if workers > 1 and len(parts) > 1 and total >= PARALLEL_MIN_OPS \
            and type(model) is type(get_model(model.name)):
        return _check_parallel(parts, model, deadline, memory_limit_bytes, progress,
                               workers, failure_grace_s, prune)
    return _check_interleaved(parts, model, deadline, memory_limit_bytes, progress,
                              failure_grace_s, prune)


def _check_interleaved(parts: dict[Any, list[Operation]], model: Model,
                       deadline: float | None, memory_limit_bytes: int | None,
                       progress: Callable[[str], None] | None,
                       failure_grace_s: float | None = None,
                       prune: bool = True) -> dict[Any, SearchResult]:
    """The keys' searches in this process, a few thousand steps each in turn."""
    grace_s = FAILURE_GRACE_S if failure_grace_s is None else failure_grace_s
    start = time.monotonic()
    multi = len(parts) > 1
    running: dict[Any, tuple[Any, Progress]] = {}
    for k, ops in parts.items():
        where = Progress()
        running[k] = (search_steps(ops, model, where, prune), where)
    results: dict[Any, SearchResult] = {}
    status = Status(progress, parts)
    rss0 = rss_bytes() if memory_limit_bytes is not None else 0
    bad, grace_end = None, None
    while running:
        for k in list(running):
            gen, where = running[k]
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                next(gen)
            except StopIteration as done:
                results[k] = done.value
                del running[k]
                if done.value.valid is False and bad is None:
                    bad, grace_end = k, time.monotonic() + grace_s
        if not running:
            break
        now = time.monotonic()
        if grace_end is not None and now >= grace_end:
            for k, (gen, where) in running.items():
                gen.close()
                results[k] = _grace_over(k, bad, where.explored, now - start, grace_s)
            running.clear()
            break
        why = None
        if deadline is not None and now >= deadline:
            why = "time limit"
        elif memory_limit_bytes is not None and (sum(
                w.explored * memory_per_config(len(parts[k]))
                for k, (_, w) in running.items()) >= memory_limit_bytes
                or rss_bytes() - rss0 >= memory_limit_bytes):
            why = "memory limit"
        if why:
            for k, (gen, where) in running.items():
                gen.close()
                label = f" on key {key_label(k)}" if multi else ""
                results[k] = SearchResult("unknown", where.explored, now - start,
                                          unknown_reason=budget_reason(
                                              why, where, len(parts[k]), label))
            running.clear()
            break
        if status.due():
            status.emit(len(results),
                        sum(len(parts[k]) for k in results)
                        + sum(w.depth for _, w in running.values()),
                        sum(1 for r in results.values() if r.valid is False),
                        rss_bytes())
    return {k: results[k] for k in parts}


def _check_parallel(parts: dict[Any, list[Operation]], model: Model,
                    deadline: float | None, memory_limit_bytes: int | None,
                    progress: Callable[[str], None] | None,
                    workers: int, failure_grace_s: float | None = None,
                    prune: bool = True) -> dict[Any, SearchResult]:
    """The keys' searches in worker processes, biggest key first."""
    grace_s = FAILURE_GRACE_S if failure_grace_s is None else failure_grace_s
    # imported here: process pools cost `raftcheck check` start-up time otherwise
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    per_worker = None if memory_limit_bytes is None else memory_limit_bytes // workers
    results: dict[Any, SearchResult] = {}
    # Forked workers (spawned ones would re-run an unguarded __main__ script) share
    # the parent's pages; with no garbage collector in them (`_init_worker`) and the
    # parent's objects frozen out of its own collections, they copy few of them.
    ctx = multiprocessing.get_context()
    stop = ctx.Event()
    bad, grace = None, None
    status = Status(progress, parts)
    gc.freeze()
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_init_worker, initargs=(stop,)) as pool:
            # biggest keys first, so that the slowest one starts early
            order = sorted(parts, key=lambda k: -len(parts[k]))
            rank = {k: i for i, k in enumerate(order)}
            futs: dict = {}
            queue = iter(order)

            def submit() -> None:
                # a key's rows are made when a worker is about to be free, not all
                # at once (on a 1,000,000-op history they hold 100 MB or more)
                k = next(queue, None)
                if k is not None:
                    fut = pool.submit(_search_job, _rows(parts[k]), model.name,
                                      model.initial, deadline, per_worker,
                                      f" on key {key_label(k)}", prune)
                    futs[fut] = k
                    pending.add(fut)
            pending: set = set()
            for _ in range(workers + 1):
                submit()
            while pending:
                done, pending = wait(pending, timeout=0.5,
                                     return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: rank[futs[f]]):
                    submit()
                    k = futs[fut]
                    res = fut.result()
                    if res.valid == "unknown" and stop.is_set() and bad is not None:
                        res = _grace_over(k, bad, res.explored, res.elapsed_s,
                                          grace_s)
                    results[k] = res
                    if res.valid is False and bad is None:
                        bad = k
                        grace = threading.Timer(grace_s, stop.set)
                        grace.daemon = True
                        grace.start()
                if status.due():
                    pids = list(getattr(pool, "_processes", None) or {})
                    status.emit(len(results), sum(len(parts[k]) for k in results),
                                sum(1 for r in results.values() if r.valid is False),
                                memory_bytes(pids))
    finally:
        gc.unfreeze()
    if grace is not None:
        grace.cancel()
    return {k: results[k] for k in parts}
