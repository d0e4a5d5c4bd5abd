"""Benchmark: the cost of the local cluster's life cycle and of network faults.

For 3, 5 and 7 nodes (real `raftcheck node` processes, a real toxiproxy server):
start (toxiproxy + N(N-1) proxies + nodes answering /status), first leader, a
partition applied (every cut of a "majority" grudge), a verified heal, kill + restart
of one node, pause + resume, teardown. Prints the median of a few repetitions and the
per-node / per-proxy ratios. No assertion: figures only.

    python bench/cluster.py [--repeat 3] [--nodes 3,5,7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.base import find_leader  # noqa: E402
from cluster.local import LocalCluster  # noqa: E402
from nemesis import partition  # noqa: E402


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def one_round(n: int, root: Path) -> dict[str, float]:
    c = LocalCluster(n, root / f"n{n}-{time.monotonic_ns()}")
    out: dict[str, float] = {}
    try:
        out["start"] = _timed(c.start)
        t = time.perf_counter()
        while find_leader(c) is None and time.perf_counter() - t < 30:
            time.sleep(0.02)
        out["first leader"] = time.perf_counter() - t
        grudge = partition.grudge_for("majority", c.node_ids, random.Random(0))
        out["partition"] = _timed(lambda: partition.apply_grudge(c.toxiproxy, grudge))
        out["heal (verified)"] = _timed(c.toxiproxy.heal)
        out["kill + restart"] = _timed(lambda: (c.kill("n1"), c.restart("n1")))
        out["pause + resume"] = _timed(lambda: (c.pause("n2"), c.resume("n2")))
        out["cuts"] = float(len(partition.cuts(grudge)))
    finally:
        out["teardown"] = _timed(c.teardown)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nodes", default="3,5,7")
    args = ap.parse_args()
    sizes = [int(x) for x in args.nodes.split(",")]
    with tempfile.TemporaryDirectory(prefix="raftcheck-bench-") as tmp:
        for n in sizes:
            rounds = [one_round(n, Path(tmp)) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            cuts = int(med.pop("cuts"))
            print(f"{n} nodes, {n * (n - 1)} proxies (median of {args.repeat}):")
            for k, v in med.items():
                print(f"  {k:<16} {v * 1000:8.1f} ms")
            print(f"  start per node   {med['start'] / n * 1000:8.1f} ms")
            print(f"  partition per cut {med['partition'] / cuts * 1000:7.1f} ms "
                  f"({cuts} cuts)")


if __name__ == "__main__":
    main()
