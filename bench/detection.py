"""Benchmark: detection power. Which planted Raft bugs the suite finds, at its defaults.

The planted-bug catalog (node/bugs.py) is the suite's own mutation test. For every bug
this script runs `raftcheck test --bug NAME --seed S` with no other option (the
defaults a user gets) for S in a range of seeds, the same for the correct node, and
`raftcheck sim --bug NAME` over a range of simulation seeds; it prints, per bug, found
k of n (a run that exits 1, invalid), the median time to a verdict (the run's wall
time, start to verdict), which checkers caught it, and the simulation's figures. The
correct node's line is the false-alarm rate: it must be 0 of n.

Every run is a separate `python -m campaign ...` process, exactly what a user runs.
Each finished run is appended to a JSON-lines file (--results) at once, and runs
already in it are skipped, so a long measurement can be stopped and resumed, and its
table printed again with --report.

    python bench/detection.py                       # every bug x 10 seeds, correct x 50,
                                                     # sim 200 seeds per bug, 2000 correct
    python bench/detection.py --bugs lease-reads,no-dedup --seeds 3 --correct 0
    python bench/detection.py --report              # the table from --results only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `python bench/detection.py` puts bench/ first on sys.path, where bench/checker.py
# would shadow the checker package: drop it, and make sure the project root is there.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parent
sys.path.insert(0, str(ROOT))

from node.bugs import BUGS  # noqa: E402

CORRECT = "none"                       # the bug column of the correct node's runs
DEFAULT_RESULTS = ROOT / "bench" / "results" / "detection.jsonl"
RUN_BOUND_S = 300                      # a run that takes longer is stopped and counted


def load(path: Path) -> list[dict]:
    """Every result recorded so far (a truncated last line is ignored)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def record(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def chaos_run(bug: str, seed: int, store: Path) -> dict:
    """One default `raftcheck test` run; what it found and how long it took."""
    cmd = [sys.executable, "-m", "campaign", "test", "--seed", str(seed),
           "--store", str(store), "--name", f"detect-{bug}"]
    if bug != CORRECT:
        cmd += ["--bug", bug]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=RUN_BOUND_S)
        code, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        code, out = -1, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else ""
    wall = time.monotonic() - t0
    run_dir = next((ln.strip() for ln in reversed(out.splitlines())
                    if ln.strip().startswith(str(store))), None)
    caught: list[str] = []
    invariants: list[str] = []
    time_limit = nodes = ops = None
    acted = bug_acted(Path(run_dir), bug) if run_dir and bug != CORRECT else None
    if run_dir and (Path(run_dir) / "results.json").exists():
        results = json.loads((Path(run_dir) / "results.json").read_text())
        caught = sorted(name for name, c in results.get("checkers", {}).items()
                        if c.get("valid") is False)
        invariants = failing_invariants(results)
        test = json.loads((Path(run_dir) / "test.json").read_text())
        time_limit = test.get("options", {}).get("time_limit")
        nodes = test.get("options", {}).get("nodes")
        ops = results.get("stats", {}).get("ops")
    return {"kind": "chaos", "bug": bug, "seed": seed, "exit": code,
            "found": code == 1, "wall_s": round(wall, 2), "caught_by": caught,
            "invariants": invariants,
            "time_limit": time_limit, "nodes": nodes, "ops": ops, "acted": acted,
            "run_dir": run_dir}


def bug_acted(run_dir: Path, bug: str) -> int:
    """How many times the planted bug changed what a node did in this run, from the
    nodes' "planted bug NAME acted (N times)" lines (node.bugs.BugTrace: the first
    few and every hundredth are logged, the count restarting with each process)."""
    pattern = re.compile(r"planted bug " + re.escape(bug) + r" acted \((\d+) times\)")
    total = 0
    for log in sorted((run_dir / "nodes").glob("*.log")):
        last = 0
        for line in log.read_text(errors="replace").splitlines():
            m = pattern.search(line)
            if m:
                n = int(m.group(1))
                if n <= last:       # a new incarnation of the process
                    total += last
                last = n
        total += last
    return total


def sim_run(bug: str, seeds: int) -> dict:
    """`raftcheck sim` over `seeds` seeds; the first failing seed and the time to it."""
    cmd = [sys.executable, "-m", "campaign", "sim", "--seeds", str(seeds), "--json",
           "--no-shrink"]
    if bug != CORRECT:
        cmd += ["--bug", bug, "--stop-at-first"]
    else:
        cmd += ["--all"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=4 * 3600)
    wall = time.monotonic() - t0
    summary: dict = {}
    for line in proc.stdout.splitlines():
        try:
            summary = json.loads(line)
        except ValueError:
            continue
    failing = sorted(summary.get("failing") or [])
    return {"kind": "sim", "bug": bug, "seeds": seeds, "exit": proc.returncode,
            "found": proc.returncode == 1, "wall_s": round(wall, 2),
            "first_failing_seed": failing[0] if failing else None,
            "seeds_run": summary.get("seeds_run"), "failing_seeds": failing}


def failing_invariants(results: dict) -> list[str]:
    """The raft-invariants a run's results.json says failed."""
    inv = (results.get("checkers", {}).get("raft-invariants") or {}).get("invariants") or {}
    return sorted(k for k, v in inv.items() if isinstance(v, dict) and v.get("valid") is False)


def _invariants_of(row: dict) -> list[str]:
    """A row's failing invariants (read from its kept run folder for rows recorded
    before they were)."""
    if "invariants" in row or not row.get("run_dir"):
        return row.get("invariants") or []
    try:
        return failing_invariants(json.loads((Path(row["run_dir"]) / "results.json")
                                             .read_text()))
    except (OSError, ValueError):
        return []


def table(rows: list[dict]) -> str:
    """The per-bug table for docs/benchmarks.md (markdown)."""
    names = [CORRECT] + sorted(BUGS)
    out = ["| bug | layer | chaos: found | median time to verdict | caught by | "
           "sim: found | first failing seed |",
           "|---|---|---|---|---|---|---|"]
    total_found = total_runs = 0
    for name in names:
        chaos = [r for r in rows if r["kind"] == "chaos" and r["bug"] == name]
        sims = [r for r in rows if r["kind"] == "sim" and r["bug"] == name]
        if not chaos and not sims:
            continue
        found = sum(r["found"] for r in chaos)
        if name != CORRECT:
            total_found += found
            total_runs += len(chaos)
        walls = [r["wall_s"] for r in chaos if (r["found"] or name == CORRECT)]
        med = f"{statistics.median(walls):.0f} s" if walls else "-"
        caught: dict[str, int] = {}
        invariants: dict[str, int] = {}
        for r in chaos:
            for c in r.get("caught_by", []):
                caught[c] = caught.get(c, 0) + 1
            for i in _invariants_of(r):
                invariants[i] = invariants.get(i, 0) + 1
        inv_text = ", ".join(f"{i} {n}" for i, n in sorted(invariants.items(),
                                                            key=lambda x: (-x[1], x[0])))
        by = ", ".join(f"{c} {n}" + (f" ({inv_text})" if c == "raft-invariants" and inv_text
                                     else "")
                       for c, n in sorted(caught.items(), key=lambda x: -x[1]))
        layer = BUGS[name].layer if name in BUGS else "-"
        label = "correct node" if name == CORRECT else f"`{name}`"
        chaos_cell = (f"{'invalid' if name == CORRECT else 'found'} {found}/{len(chaos)}"
                      if chaos else "-")
        sim = sims[-1] if sims else None
        if sim is None:
            sim_cell, first = "-", "-"
        elif name == CORRECT:
            sim_cell = f"violations in {len(sim.get('failing_seeds') or [])}/{sim['seeds']}"
            first = "-"
        else:
            sim_cell = f"{'yes' if sim['found'] else 'no'} in {sim['seeds']} seeds"
            first = str(sim.get("first_failing_seed") or "-")
        out.append(f"| {label} | {layer} | {chaos_cell} | {med} | {by or '-'} | "
                   f"{sim_cell} | {first} |")
    if total_runs:
        out.append(f"\nPlanted bugs found in chaos runs: {total_found} of {total_runs} runs.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bugs", default="all", help="comma-separated catalog names, or all")
    p.add_argument("--seeds", type=int, default=10, help="chaos seeds per bug (default 10)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--correct", type=int, default=50,
                   help="default runs of the correct node (default 50)")
    p.add_argument("--sim-seeds", type=int, default=200,
                   help="simulation seeds per bug (default 200; 0 skips the simulation)")
    p.add_argument("--sim-correct", type=int, default=2000,
                   help="simulation seeds of the correct node (default 2000)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--report", action="store_true", help="print the table and stop")
    p.add_argument("--keep", metavar="DIR", type=Path, default=None,
                   help="keep every run folder in this store (default: a temporary one, "
                        "removed)")
    args = p.parse_args(argv)
    names = sorted(BUGS) if args.bugs == "all" else [b.strip() for b in args.bugs.split(",")]
    unknown = [b for b in names if b not in BUGS]
    if unknown:
        print(f"detection.py: unknown bug {unknown[0]!r}", file=sys.stderr)
        return 254
    rows = load(args.results)
    if not args.report:
        done = {(r["kind"], r["bug"], r.get("seed", r.get("seeds"))) for r in rows}
        store = args.keep or Path(tempfile.mkdtemp(prefix="raftcheck-detect-"))
        # seed by seed across the bugs, a correct run beside each round, then the rest
        # of the correct runs: a measurement stopped early is still balanced
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        correct = list(range(args.first_seed, args.first_seed + args.correct))
        plan = []
        for s in seeds:
            plan += [(b, s) for b in names]
            if correct:
                plan.append((CORRECT, correct.pop(0)))
        plan += [(CORRECT, s) for s in correct]
        try:
            for i, (bug, seed) in enumerate(plan, 1):
                if ("chaos", bug, seed) in done:
                    continue
                row = chaos_run(bug, seed, store)
                record(args.results, row)
                rows.append(row)
                print(f"[{i}/{len(plan)}] chaos {bug} seed {seed}: exit {row['exit']} "
                      f"in {row['wall_s']} s {row['caught_by']} (bug acted "
                      f"{row['acted']} times)", file=sys.stderr, flush=True)
                if not args.keep:
                    shutil.rmtree(store / f"detect-{bug}", ignore_errors=True)
            sims = [(b, args.sim_seeds) for b in names if args.sim_seeds]
            if args.sim_correct:
                sims.append((CORRECT, args.sim_correct))
            for bug, n in sims:
                if ("sim", bug, n) in done:
                    continue
                row = sim_run(bug, n)
                record(args.results, row)
                rows.append(row)
                print(f"sim {bug}: exit {row['exit']} first failing seed "
                      f"{row['first_failing_seed']} in {row['wall_s']} s",
                      file=sys.stderr, flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(store, ignore_errors=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
