"""Shrinking a failing seed's fault schedule to a short reproduction.

A failing seed's schedule can hold hundreds of faults, most of them irrelevant.
*Shrinking* finds a small sub-list that still fails, rerunning the seed (the same
parameters, network, clients and cores, sim.runner) with each candidate schedule;
each rerun is deterministic, so "still fails" is a fact, not a chance. It goes:

1. the effective schedule: the faults that did something, with `leader` replaced by
   the node it hit (a no-op fault left out changes nothing, so this replays the
   same run);
2. the faults up to the first violation (later ones cannot have caused it);
3. ddmin (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing
   Input", 2002) over what is left: try halves, then the complements of finer and
   finer splits (a fault schedule seldom fails on a small piece alone, so those
   pieces are not tried by themselves), keeping any candidate that still fails,
   until no single fault can be removed (1-minimal) or the time budget runs out.
   Candidates run in parallel batches, one per process, in list order; the first
   failing one is kept, so the result does not depend on the number of processes.

"Still fails" means a violation of a kind the original run had (a schedule that
only trades a lost entry for, say, a liveness failure is not a reproduction).
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass, field
from typing import Callable

from sim.runner import RunConfig, run_schedules, simulate, with_linearizability
from sim.schedule import Fault


@dataclass
class ShrinkResult:
    """The shrunk schedule and how it was found."""

    faults: list[Fault]
    original: int                 # faults in the seed's schedule
    effective: int                # of them, faults that did something
    reruns: int = 0
    elapsed_s: float = 0.0
    complete: bool = True         # False: the time budget ran out first
    kinds: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # the shrunk run's summary


def _split(items: list, n: int) -> list[list]:
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return [c for c in out if c]


def ddmin(items: list, first_failing: Callable[[list[list]], int | None],
          out_of_time: Callable[[], bool]) -> tuple[list, bool]:
    """A 1-minimal failing sub-list of `items` (which fails). `first_failing` returns
    the index of the first candidate, in list order, that fails (or None); it may
    try them in parallel batches. Returns (items, complete)."""
    n = 2
    while len(items) >= 2:
        if out_of_time():
            return items, False
        chunks = _split(items, n)
        if n == 2:  # halves; finer subsets seldom fail alone, so only their complements
            hit = first_failing(chunks)
            if hit is not None:
                items, n = chunks[hit], 2
                continue
        else:
            complements = [[x for j, c in enumerate(chunks) if j != i for x in c]
                           for i in range(len(chunks))]
            hit = first_failing(complements)
            if hit is not None:
                items, n = complements[hit], max(n - 1, 2)
                continue
        if n >= len(items):
            break
        n = min(len(items), 2 * n)
    return items, True


def shrink(seed: int, config: RunConfig, faults: list[Fault] | None, summary: dict,
           jobs: int = 1, time_budget_s: float = 120.0,
           progress: Callable[[str], None] | None = None) -> ShrinkResult:
    """Shrink the schedule of a failing run (`faults` None: the seed's own) to a
    short reproduction (see the module docstring)."""
    start = time.monotonic()
    kinds = sorted({v["kind"] for v in summary["violations"]})
    config = with_linearizability(config, config.check_linearizability
                                  and "linearizability" in kinds)
    sim, _ = simulate(seed, config, faults)
    effective = sim.nemesis.effective_schedule()
    result = ShrinkResult(effective, len(sim.faults), len(effective), kinds=kinds,
                          summary=summary)
    pool = cf.ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None

    def still_fails(s: dict) -> bool:
        return any(v["kind"] in kinds for v in s["violations"])

    seen: dict[tuple[Fault, ...], dict] = {}
    smallest = [len(effective)]

    def failing(candidates: list[list[Fault]]) -> list[bool]:
        summaries = run_schedules(seed, config, candidates, pool)
        result.reruns += len(candidates)
        found = [still_fails(s) for s in summaries]
        for cand, s, ok in zip(candidates, summaries, found):
            seen[tuple(cand)] = s
            if ok:
                smallest[0] = min(smallest[0], len(cand))
        if progress:
            progress(f"shrinking: {smallest[0]} faults, {result.reruns} reruns, "
                     f"{time.monotonic() - start:.0f} s")
        return found

    def first_failing(candidates: list[list[Fault]]) -> int | None:
        """In batches of `jobs`: the first failing candidate in list order, so the
        result does not depend on the number of processes."""
        for lo in range(0, len(candidates), jobs):
            found = failing(candidates[lo:lo + jobs])
            if any(found):
                return lo + found.index(True)
        return None

    def out_of_time() -> bool:
        return time.monotonic() - start > time_budget_s

    current = list(effective)
    try:
        if not failing([current])[0]:  # the effective schedule must replay the run
            current = list(sim.faults)
        first_at = min(v["at_ms"] for v in summary["violations"] if v["kind"] in kinds)
        before = [f for f in current if f.at <= first_at]
        # no fault at all, then only the faults before the violation
        candidates = [[]] + ([before] if len(before) < len(current) else [])
        hit = first_failing(candidates) if len(candidates) > 1 else (
            0 if failing(candidates)[0] else None)
        if hit is not None:
            current = candidates[hit]
        if current:
            current, result.complete = ddmin(current, first_failing, out_of_time)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    result.faults, result.summary = current, seen.get(tuple(current), summary)
    result.elapsed_s = round(time.monotonic() - start, 1)
    return result
