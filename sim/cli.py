"""`raftcheck sim`: the seeded simulation as a bug finder, many seeds at a time.

    raftcheck sim [--seeds 200] [--first-seed 1] [--jobs K] [--nodes 3|5] [--bug A,B]
    raftcheck sim --seed N [--faults FILE|SPEC]        # one seed, in full; a replay

Each seed is a whole run of real Raft cores on a simulated network and disks under
its own fault schedule (sim.simulation), checked for Raft's safety properties and
linearizability. Seeds run in parallel processes (sim.runner). The first failing
seed is reported with its violations and the checker's explanation of its history,
and its fault schedule is shrunk to a short reproduction (sim.shrink), printed as
the command that replays it. `python -m sim` is the same command.

Exit codes: 0 no violation, 1 a violation, 254 bad usage (one line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from history.errors import BadInput
from node.bugs import BUGS, parse_bugs
from node.errors import BadConfig
from sim.params import MIXES
from sim.runner import RunConfig, default_jobs, run_seeds, simulate
from sim.schedule import Fault, faults_to_json, format_spec, load_faults
from sim.shrink import ShrinkResult, shrink

EXIT_OK, EXIT_VIOLATION, EXIT_BAD_USAGE = 0, 1, 254
INLINE_SPEC_MAX = 240
EXPLAIN_LINES = 40
PERIODIC_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--seeds", type=int, default=200, metavar="N", help="how many seeds (default 200)")
    a("--first-seed", type=int, default=1, metavar="S", help="the first seed (default 1)")
    a("--seed", type=int, metavar="N", help="run this one seed and report it in full")
    a("--jobs", "-j", type=int, metavar="K", help="parallel processes (default: the CPUs)")
    a("--nodes", type=int, choices=[3, 5], default=3, help="cluster size (default 3)")
    a("--bug", metavar="A,B", help=f"planted bugs, from: {', '.join(sorted(BUGS))}")
    a("--mix", choices=MIXES, help="fault mix for every seed (default: each seed draws one)")
    a("--steps", type=int, metavar="T", help="ticks (10 ms each) with faults on "
                                            "(default: each seed draws 1500 to 6000)")
    a("--snapshot-entries", type=int, metavar="N",
      help="snapshot every N applied entries, 0 never (default: each seed draws "
           "0, 8, 20 or 50)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--stop-at-first", dest="stop_at_first", action="store_true",
                      default=True, help="stop at the first failing seed (default)")
    stop.add_argument("--all", dest="stop_at_first", action="store_false",
                      help="run every seed, even after a failure")
    a("--faults", metavar="FILE|SPEC", help="with --seed: replay this fault schedule "
                                            "(AT:KIND:TARGET:DURATION[:ARG];...) instead "
                                            "of the seed's own")
    a("--no-shrink", action="store_true", help="do not shrink a failing seed's schedule")
    a("--shrink-time", type=float, default=120.0, metavar="S",
      help="time budget of the shrinking (default 120)")
    a("--no-linearizability", action="store_true", help="check the Raft invariants only")
    a("--out", default="store/sim", metavar="DIR",
      help="where a failing seed's history and shrunk schedule go (default store/sim)")
    a("--history", metavar="FILE", help="with --seed: write the client history (jsonl) here")
    a("--json", action="store_true", help="print one JSON object instead of text")
    a("--verbose", "-v", action="store_true", help="with --seed: print faults and elections "
                                                   "as they happen (stderr)")


def _config(args: argparse.Namespace) -> RunConfig:
    try:
        bugs = parse_bugs(args.bug)
    except BadConfig as e:
        raise BadInput(e.message, field="--bug") from None
    if args.seeds < 1:
        raise BadInput(f"must be >= 1, got {args.seeds}", field="--seeds")
    if args.jobs is not None and args.jobs < 1:
        raise BadInput(f"must be >= 1, got {args.jobs}", field="--jobs")
    if args.steps is not None and args.steps < 1:
        raise BadInput(f"must be >= 1, got {args.steps}", field="--steps")
    if args.shrink_time <= 0:
        raise BadInput(f"must be > 0, got {args.shrink_time}", field="--shrink-time")
    if args.snapshot_entries is not None and args.snapshot_entries < 0:
        raise BadInput(f"must be >= 0, got {args.snapshot_entries}",
                       field="--snapshot-entries")
    for flag in ("faults", "history"):
        if getattr(args, flag) is not None and args.seed is None:
            raise BadInput("needs --seed", field=f"--{flag}")
    return RunConfig(args.nodes, frozenset(bugs), args.steps, args.mix,
                     not args.no_linearizability, args.snapshot_entries)


def rerun_command(prog: str, seed: int, config: RunConfig, faults: str | None = None) -> str:
    parts = [prog, "--seed", str(seed), "--nodes", str(config.nodes)]
    if config.bugs:
        parts += ["--bug", ",".join(sorted(config.bugs))]
    if config.mix:
        parts += ["--mix", config.mix]
    if config.steps:
        parts += ["--steps", str(config.steps)]
    if not config.check_linearizability:
        parts.append("--no-linearizability")
    if faults is not None:
        parts += ["--faults", f"'{faults}'" if ";" in faults or "|" in faults else faults]
    return " ".join(parts)


def describe_violation(v: dict) -> str:
    return f"{v['kind']} at {v['at_ms']} ms: {v['text']}"


# ---------------------------------------------------------------------- progress
class Progress:
    """Seeds done, failing, seeds/s: a live line on a terminal, else every 10 s."""

    def __init__(self, total: int, jobs: int, stream: TextIO) -> None:
        self.total, self.jobs, self.stream = total, jobs, stream
        self.live = stream.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")
        self.start = time.monotonic()
        self.last = self.start
        self.done = 0
        self.failing: list[int] = []

    def line(self) -> str:
        el = time.monotonic() - self.start
        rate = self.done / el if el > 0 else 0.0
        return (f"sim: {self.done}/{self.total} seeds, {len(self.failing)} failing, "
                f"{rate:.1f} seeds/s ({self.jobs} jobs, {el:.0f} s)")

    def update(self, summary: dict) -> None:
        self.done += 1
        if summary["violations"]:
            self.failing.append(summary["seed"])
        now = time.monotonic()
        if self.live:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
        elif now - self.last >= PERIODIC_S:
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def say(self, text: str) -> None:
        if self.live:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def end(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# ---------------------------------------------------------------------- one failing seed
def report_failure(prog: str, seed: int, config: RunConfig, faults: list[Fault] | None,
                   summary: dict, args: argparse.Namespace, jobs: int, progress: Progress,
                   out: TextIO) -> dict:
    """Explain a failing seed: violations, the checker's explanation, the shrunk
    schedule and the command that replays it. Returns the same as JSON."""
    sim, summary = simulate(seed, config, faults)  # deterministic: the same run again
    folder = Path(args.out) / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    history = folder / "history.jsonl"
    with open(history, "w", encoding="utf-8") as f:
        for op in sim.ops:
            f.write(op.to_json() + "\n")
    report: dict[str, Any] = {"summary": summary, "history": str(history)}
    text = []
    vs = summary["violations"]
    text.append(f"seed {seed} FAILED: {len(vs)} violation{'s' * (len(vs) != 1)} "
                f"({summary['nodes']} nodes, mix {summary['mix']}, {summary['steps']} ticks, "
                f"bugs: {', '.join(summary['bugs']) or 'none'})")
    text += [f"  {describe_violation(v)}" for v in vs[:10]]
    if len(vs) > 10:
        text.append(f"  ... and {len(vs) - 10} more")
    res = sim.check_result
    if res is not None:
        explanation = res.explain()
        report["explanation"] = explanation
        lines = explanation.splitlines()
        text.append(f"history: {len(sim.ops)} ops in {history}; the checker says:")
        text += ["  " + line for line in lines[:EXPLAIN_LINES]]
        if len(lines) > EXPLAIN_LINES:
            text.append(f"  ... ({len(lines) - EXPLAIN_LINES} more lines: raftcheck check "
                        f"{history})")
    print("\n".join(text), file=out, flush=True)
    schedule = sim.nemesis.effective_schedule()
    if args.no_shrink:
        result = ShrinkResult(schedule, len(sim.faults), len(schedule), complete=False,
                              summary=summary)
    else:
        progress.say(f"shrinking the fault schedule of seed {seed} "
                     f"({len(schedule)} effective faults of {len(sim.faults)}) ...")
        result = shrink(seed, config, faults, summary, jobs=jobs,
                        time_budget_s=args.shrink_time, progress=progress.say)
        progress.end()
    spec = format_spec(result.faults)
    faults_file = folder / "faults.json"
    faults_file.write_text(json.dumps({"seed": seed, "nodes": config.nodes,
                                       "bugs": sorted(config.bugs),
                                       "faults": faults_to_json(result.faults)}, indent=1)
                           + "\n", encoding="utf-8")
    replay = spec if len(spec) <= INLINE_SPEC_MAX else str(faults_file)
    command = rerun_command(prog, seed, config, replay)
    report["shrunk"] = {"faults": faults_to_json(result.faults), "spec": spec,
                        "file": str(faults_file), "original": result.original,
                        "effective": result.effective, "reruns": result.reruns,
                        "elapsed_s": result.elapsed_s, "complete": result.complete,
                        "violations": result.summary.get("violations", [])}
    report["rerun"] = command
    text = []
    if not args.no_shrink:
        how = "" if result.complete else " (time budget reached)"
        text.append(f"shrunk its fault schedule from {result.original} faults "
                    f"({result.effective} effective) to {len(result.faults)} in "
                    f"{result.reruns} reruns, {result.elapsed_s} s{how}:")
        text += ["  " + f.describe() for f in result.faults] or ["  (no fault at all)"]
        shrunk_vs = result.summary.get("violations", [])
        if shrunk_vs:
            text.append(f"  it fails with: {describe_violation(shrunk_vs[0])}")
    text.append(f"schedule: {faults_file}")
    text.append(f"rerun: {command}")
    print("\n".join(text), file=out, flush=True)
    return report


# ---------------------------------------------------------------------- commands
def run_one(prog: str, args: argparse.Namespace, config: RunConfig, out: TextIO) -> int:
    """--seed N: one seed, in full (and its failure explained and shrunk)."""
    faults = load_faults(args.faults, [f"n{i + 1}" for i in range(config.nodes)]) \
        if args.faults else None
    sim, r = simulate(args.seed, config, faults, verbose=args.verbose)
    if args.history:
        with open(args.history, "w", encoding="utf-8") as f:
            for op in sim.ops:
                f.write(op.to_json() + "\n")
    if args.json and not r["violations"]:
        print(json.dumps({"seed": args.seed, "summary": r}), file=out)
        return EXIT_OK
    if not args.json:
        p, s = r["params"], r["stats"]
        schedule = "given" if faults is not None else "the seed's own"
        print(f"seed {r['seed']}: {r['nodes']} nodes, mix {r['mix']}, {r['steps']} ticks + "
              f"heal; bugs: {', '.join(r['bugs']) or 'none'}; drop {p['drop']}, dup "
              f"{p['dup']}, delay 1-{p['delay_max']} ms; {r['faults']} faults ({schedule}), "
              f"{r['effective_faults']} effective", file=out)
        print(f"  ops: {r['ops']}", file=out)
        print(f"  network and faults: {s}; max term {r['max_term']}", file=out)
        print("  checked: election safety, one vote per term, terms never decrease, log "
              f"matching ({s['log_checks']} checks), leader completeness ({s['elections']} "
              f"elections), state machine safety ({s['applied']} applies), committed "
              f"entries durable on a majority, liveness after heal, linearizability: "
              f"{r['linearizable']}", file=out)
        for n in r["notes"]:
            print(f"  note: {n}", file=out)
        if not r["violations"]:
            print(f"  ok in {r['elapsed_s']} s; rerun: "
                  f"{rerun_command(prog, args.seed, config, args.faults)}", file=out)
            return EXIT_OK
    jobs = args.jobs or default_jobs()
    progress = Progress(1, jobs, sys.stderr)
    sink = open(os.devnull, "w") if args.json else out
    try:
        report = report_failure(prog, args.seed, config, faults, r, args, jobs, progress, sink)
    finally:
        if sink is not out:
            sink.close()
    if args.json:
        print(json.dumps({"seed": args.seed, **report}), file=out)
    return EXIT_VIOLATION


def run_many(prog: str, args: argparse.Namespace, config: RunConfig, out: TextIO) -> int:
    jobs = args.jobs or default_jobs()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    progress = Progress(len(seeds), jobs, sys.stderr)
    summaries: list[dict] = []
    for s in run_seeds(seeds, nodes=config.nodes, bugs=config.bugs, jobs=jobs,
                       steps=config.steps, mix=config.mix,
                       check_linearizability=config.check_linearizability,
                       stop_at_first=args.stop_at_first,
                       snapshot_entries=config.snapshot_entries):
        summaries.append(s)
        progress.update(s)
    progress.end()
    elapsed = time.monotonic() - progress.start
    failing = sorted(s["seed"] for s in summaries if s["violations"])
    mixes: dict[str, int] = {}
    for s in summaries:
        mixes[s["mix"]] = mixes.get(s["mix"], 0) + 1
    result: dict[str, Any] = {
        "seeds_run": len(summaries), "first_seed": args.first_seed, "nodes": config.nodes,
        "bugs": sorted(config.bugs), "mixes": mixes, "failing": failing, "jobs": jobs,
        "elapsed_s": round(elapsed, 1),
        "seeds_per_s": round(len(summaries) / elapsed, 2) if elapsed > 0 else None,
        "unknown": sorted(s["seed"] for s in summaries if s["linearizable"] == "unknown")}
    sink = open(os.devnull, "w") if args.json else out
    try:
        mix_text = ", ".join(f"{k} {v}" for k, v in sorted(mixes.items()))
        stopped = " (stopped at the first failure)" if failing and args.stop_at_first else ""
        print(f"sim: {len(summaries)} seeds from {args.first_seed} ({config.nodes} nodes; mixes "
              f"{mix_text}; bugs: {', '.join(sorted(config.bugs)) or 'none'}): "
              f"{len(failing)} failing{stopped}; {result['seeds_per_s']} seeds/s with "
              f"{jobs} jobs ({result['elapsed_s']} s)", file=sink)
        if failing:
            shown = ", ".join(map(str, failing[:20])) + (" ..." if len(failing) > 20 else "")
            print(f"failing seeds: {shown}", file=sink)
            first = next(s for s in summaries if s["seed"] == failing[0])
            result["first_failure"] = report_failure(prog, first["seed"], config, None, first,
                                                     args, jobs, progress, sink)
        else:
            print("no violation: every seed passed every check.", file=sink)
    finally:
        if sink is not out:
            sink.close()
    if args.json:
        print(json.dumps(result), file=out)
    return EXIT_VIOLATION if failing else EXIT_OK


def run(args: argparse.Namespace, prog: str = "raftcheck sim", out: TextIO | None = None) -> int:
    """`raftcheck sim` (campaign/cli.py): exit 0, 1, or BadInput (254)."""
    out = out or sys.stdout
    config = _config(args)
    if args.seed is not None:
        return run_one(prog, args, config, out)
    return run_many(prog, args, config, out)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # bad usage: one line, exit 254 (SPEC 3)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_USAGE)


def main(argv: list[str] | None = None) -> int:
    """`python -m sim`: the same command as `raftcheck sim`."""
    parser = _Parser(prog="python -m sim", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, prog="python -m sim")
    except BadInput as e:
        print(f"python -m sim: error: {e}", file=sys.stderr)
        return EXIT_BAD_USAGE
    except KeyboardInterrupt:
        print("python -m sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m sim ... | head`: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
