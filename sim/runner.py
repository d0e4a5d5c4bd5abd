"""Running seeds: one in this process, or many in parallel processes.

A *seed run* builds a simulation from a seed (its parameters and, unless one is
given, its fault schedule), runs it and returns a *summary*: a JSON-safe dict with
the seed, the configuration, op and fault counts, and the violations found (each
`{"kind", "at_ms", "text"}`; empty when every check passed).

`run_seeds(seeds, ...)` runs many seeds in a process pool and yields their summaries
as they finish; it is the API that `raftcheck sim` and the bench use:

    for s in run_seeds(range(1, 201), nodes=5, bugs={"commit-old-term"}, jobs=2,
                       stop_at_first=True):
        print(s["seed"], s["violations"])

With `stop_at_first`, no seed above the first failing one is started once it is
known; seeds below it still run, so the lowest failing seed among those started is
found whatever the timing.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

from sim.params import SimParams
from sim.schedule import Fault
from sim.simulation import Simulation


@dataclass(frozen=True)
class RunConfig:
    """What every seed of a batch shares: cluster size, bugs, overrides."""

    nodes: int = 3
    bugs: frozenset[str] = field(default_factory=frozenset)
    steps: int | None = None
    mix: str | None = None
    check_linearizability: bool = True
    snapshot_entries: int | None = None

    def params(self, seed: int) -> SimParams:
        return SimParams.from_seed(seed, self.nodes, self.steps, self.mix,
                                   self.snapshot_entries)


def simulate(seed: int, config: RunConfig, faults: list[Fault] | None = None,
             verbose: bool = False) -> tuple[Simulation, dict]:
    """Run one seed here; the simulation (its history, effective schedule, checker
    result) and its summary."""
    sim = Simulation(seed, config.params(seed), faults=faults, bugs=config.bugs,
                     check_linearizability=config.check_linearizability, verbose=verbose)
    return sim, sim.run()


def run_seed(seed: int, nodes: int = 3, bugs: Iterable[str] = (), steps: int | None = None,
             mix: str | None = None, faults: list[Fault] | None = None,
             check_linearizability: bool = True, verbose: bool = False,
             snapshot_entries: int | None = None) -> dict:
    """Run one seed in this process; its summary."""
    config = RunConfig(nodes, frozenset(bugs), steps, mix, check_linearizability,
                       snapshot_entries)
    return simulate(seed, config, faults, verbose)[1]


def _task(seed: int, config: RunConfig, faults: list[Fault] | None) -> dict:
    return simulate(seed, config, faults)[1]


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_seeds(seeds: Iterable[int], nodes: int = 3, bugs: Iterable[str] = (),
              jobs: int | None = None, steps: int | None = None, mix: str | None = None,
              check_linearizability: bool = True,
              stop_at_first: bool = False,
              snapshot_entries: int | None = None) -> Iterator[dict]:
    """Run seeds in `jobs` processes (default: the CPUs); yield each summary as it
    finishes (see the module docstring)."""
    config = RunConfig(nodes, frozenset(bugs), steps, mix, check_linearizability,
                       snapshot_entries)
    jobs = jobs or default_jobs()
    seeds = iter(seeds)
    if jobs == 1:
        for seed in seeds:
            summary = _task(seed, config, None)
            yield summary
            if stop_at_first and summary["violations"]:
                return
        return
    first_fail: int | None = None
    with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
        running: dict[cf.Future, int] = {}

        def fill() -> None:
            while len(running) < 2 * jobs:
                seed = next(seeds, None)
                if seed is None or (first_fail is not None and seed > first_fail):
                    return
                running[pool.submit(_task, seed, config, None)] = seed

        try:
            fill()
            while running:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in sorted(done, key=running.__getitem__):
                    seed = running.pop(fut)
                    summary = fut.result()
                    if stop_at_first and summary["violations"] and (
                            first_fail is None or seed < first_fail):
                        first_fail = seed
                        for other, s in list(running.items()):
                            if s > seed and other.cancel():
                                running.pop(other)
                    if first_fail is None or seed <= first_fail or not stop_at_first:
                        yield summary
                fill()
        except BaseException:
            for fut in running:
                fut.cancel()
            raise


def run_schedules(seed: int, config: RunConfig, schedules: list[list[Fault]],
                  pool: cf.Executor | None) -> list[dict]:
    """Run one seed under several schedules (in the pool, if given); summaries in
    the order of `schedules`."""
    if pool is None:
        return [_task(seed, config, s) for s in schedules]
    futures = [pool.submit(_task, seed, config, s) for s in schedules]
    return [f.result() for f in futures]


def with_linearizability(config: RunConfig, on: bool) -> RunConfig:
    return replace(config, check_linearizability=on)
