"""Benchmark: the overhead of a `raftcheck test` run beyond its time limit.

A run costs its time limit plus set-up (toxiproxy, proxies, node start-up), the final
phase (heal, wait for a leader, read every key), tear-down, and the check. This script
runs real local runs (real nodes, real toxiproxy) for 3 and 5 nodes and prints each
part, the overhead (total - time limit) and its ratio to the time limit. No assertion:
figures only (docs/benchmarks.md).

    python bench/runner.py [--time-limit 10] [--nodes 3,5] [--repeat 1]
        [--nemesis partition,kill] [--keep]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

# `python bench/runner.py` puts bench/ first on sys.path, where bench/checker.py would
# shadow the checker package: drop it, and make sure the project root is there.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from campaign.runner import TestOptions, run_test  # noqa: E402

PARTS = ("setup_s", "load_s", "final_s", "teardown_s", "check_s", "report_s", "total_s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time-limit", type=float, default=10.0)
    p.add_argument("--nodes", default="3,5")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--nemesis", default="partition,kill")
    p.add_argument("--nemesis-interval", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--keep", action="store_true", help="keep the store folder")
    args = p.parse_args(argv)
    store = Path(tempfile.mkdtemp(prefix="raftcheck-bench-"))
    rows = []
    try:
        for n in [int(x) for x in args.nodes.split(",")]:
            for r in range(args.repeat):
                opts = TestOptions(name=f"bench-{n}", nodes=n, time_limit=args.time_limit,
                                   rate=args.rate, nemesis=args.nemesis.split(","),
                                   nemesis_interval=args.nemesis_interval, seed=100 + r,
                                   store=str(store))
                out = run_test(opts, out=io.StringIO(), err=io.StringIO())
                t = out.results.get("timing", {})
                rows.append((n, out.valid, t))
                print(f"nodes {n} run {r + 1}: valid={out.valid} " +
                      " ".join(f"{k[:-2]}={t.get(k, float('nan')):.2f}s" for k in PARTS),
                      file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
        else:
            print(f"store kept in {store}", file=sys.stderr)
    print(f"\nrun overhead beyond the time limit ({args.time_limit:g} s, nemesis "
          f"{args.nemesis}, median of {args.repeat})")
    print(f"{'nodes':>5} {'setup':>7} {'final':>7} {'teardown':>9} {'check':>7} "
          f"{'report':>7} {'total':>7} {'overhead':>9} {'ratio':>6}")
    for n in sorted({r[0] for r in rows}):
        ts = [t for m, _, t in rows if m == n]

        def med(k: str) -> float:
            return statistics.median(t.get(k, 0.0) for t in ts)

        overhead = med("total_s") - args.time_limit
        print(f"{n:>5} {med('setup_s'):>6.2f}s {med('final_s'):>6.2f}s "
              f"{med('teardown_s'):>8.2f}s {med('check_s'):>6.2f}s {med('report_s'):>6.2f}s "
              f"{med('total_s'):>6.2f}s "
              f"{overhead:>8.2f}s {overhead / args.time_limit:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
