"""`python -m sim --seed N ...`: one seeded simulation run, and its summary."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from sim.model import SimParams
from sim.simulation import Simulation


def rerun_command(seed: int, nodes: int, steps: int) -> str:
    return f"python -m sim --seed {seed} --nodes {nodes} --steps {steps}"


def run_seed(seed: int, nodes: int = 3, steps: int = 1500, check_linearizability: bool = True,
             verbose: bool = False) -> dict:
    """Run one seed; the summary dict (violations empty when all checks pass)."""
    sim = Simulation(seed, SimParams.from_seed(seed, nodes, steps),
                     check_linearizability, verbose)
    return sim.run()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # bad usage: one line, exit 254 (SPEC 3)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(254)


def main(argv: list[str] | None = None) -> int:
    """Run one seed; exit 0 when every check passed, 1 on a violation."""
    ap = _Parser(prog="python -m sim", description="One seeded simulation run of a Raft register cluster.")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    ap.add_argument("--steps", type=int, default=1500,
                    help="ticks (10 simulated ms each) with faults on (default 1500)")
    ap.add_argument("--no-linearizability", action="store_true",
                    help="check Raft invariants only")
    ap.add_argument("--verbose", "-v", action="store_true",
                    help="print faults and elections as they happen (stderr)")
    ap.add_argument("--history", help="write the client history (jsonl) here")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s %(message)s")
    sim = Simulation(args.seed, SimParams.from_seed(args.seed, args.nodes, args.steps),
                     not args.no_linearizability, args.verbose)
    r = sim.run()
    if args.history:
        with open(args.history, "w", encoding="utf-8") as f:
            for op in sim.ops:
                f.write(op.to_json() + "\n")
    p = r["params"]
    print(f"seed {r['seed']}: {r['nodes']} nodes, {r['steps']} ticks + heal; "
          f"drop {p['drop']}, dup {p['dup']}, delay 1-{p['delay_max']} ms, "
          f"partitions {p['partitions']}, crashes {p['crashes']}, pauses {p['pauses']}, "
          f"crash-in-write {p['crash_in_write']}, pre-vote {p['pre_vote']}, "
          f"check-quorum {p['check_quorum']}")
    print(f"  ops: {r['ops']}")
    print(f"  network/faults: {r['stats']}; max term {r['max_term']}")
    print("  checked: election safety (one leader per term), one vote per term, "
          "terms never decrease (across restarts), log matching "
          f"({r['stats']['log_checks']} checks), leader completeness "
          f"({r['stats']['elections']} elections), state machine safety "
          f"({r['stats']['applied']} applies), liveness after heal, "
          f"linearizability: {r['linearizable']}")
    for n in r["notes"]:
        print(f"  note: {n}")
    for v in r["violations"]:
        print(f"  VIOLATION {v}")
    print(f"  {'FAIL' if r['violations'] else 'ok'} in {r['elapsed_s']} s; rerun: "
          f"{rerun_command(r['seed'], r['nodes'], r['steps'])}")
    return 1 if r["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
