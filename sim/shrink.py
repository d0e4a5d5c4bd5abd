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
   Input", 2002) over what is left: try halves, then complements, then finer
   splits, keeping any candidate that still fails, until no single fault can be
   removed (1-minimal) or the time budget runs out. The candidates of a round run
   in parallel; the first failing one in list order is kept, so the result does
   not depend on the number of processes.

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


def ddmin(items: list, failing: Callable[[list[list]], list[bool]],
          out_of_time: Callable[[], bool]) -> tuple[list, bool]:
    """A 1-minimal failing sub-list of `items` (which fails); `failing` tests a
    batch of candidates at once. Returns (items, complete)."""
    n = 2
    while len(items) >= 2:
        if out_of_time():
            return items, False
        chunks = _split(items, n)
        results = failing(chunks)
        hit = next((c for c, r in zip(chunks, results) if r), None)
        if hit is not None:
            items, n = hit, 2
            continue
        if n > 2:
            complements = [[x for j, c in enumerate(chunks) if j != i for x in c]
                           for i in range(len(chunks))]
            results = failing(complements)
            hit = next((c for c, r in zip(complements, results) if r), None)
            if hit is not None:
                items, n = hit, max(n - 1, 2)
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

    def failing(candidates: list[list[Fault]]) -> list[bool]:
        summaries = run_schedules(seed, config, candidates, pool)
        result.reruns += len(candidates)
        found = [still_fails(s) for s in summaries]
        for cand, s, ok in zip(candidates, summaries, found):
            if ok and len(cand) < len(best[0]):
                best[0], best[1] = cand, s
        if progress:
            progress(f"shrinking: {len(best[0])} faults, {result.reruns} reruns, "
                     f"{time.monotonic() - start:.0f} s")
        return found

    def out_of_time() -> bool:
        return time.monotonic() - start > time_budget_s

    best: list = [list(effective), summary]
    try:
        if not failing([effective])[0]:  # the effective schedule must replay the run
            effective = sim.faults
            best[0] = list(effective)
        first_at = min(v["at_ms"] for v in summary["violations"] if v["kind"] in kinds)
        before = [f for f in best[0] if f.at <= first_at]
        candidates = [[]] + ([before] if len(before) < len(best[0]) else [])
        failing(candidates)  # no fault at all, then the faults before the violation
        if best[0]:
            items, result.complete = ddmin(best[0], failing, out_of_time)
            if len(items) < len(best[0]):
                best[0] = items
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    result.faults, result.summary = best[0], best[1]
    result.elapsed_s = round(time.monotonic() - start, 1)
    return result
