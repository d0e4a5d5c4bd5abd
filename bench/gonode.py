"""Benchmark: raftcheck's own node against gonode (the node contract on etcd's Raft
library, docs/node-contract.md section 5), side by side, with the same client.

Each cell is a fresh 3-node cluster on loopback, no faults, fsync on: closed-loop
writers (1 and 16 clients, each on its own key) for a fixed time, as bench/node.py
measures our node (its client code is reused). The two implementations run in
alternation for `--rounds` rounds, so that a busy machine slows both alike; the table
gives the medians of writes/s and p50 latency and the ratio gonode / ours.

    python bench/gonode.py [--seconds 5] [--rounds 2] [--clients 1,16]

Needs `raftcheck-gonode` on PATH (scripts/setup.sh builds it). Prints figures and
ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.bare import NodeCluster  # noqa: E402

# bench/node.py's client (a module named "node" would shadow the node package).
_spec = importlib.util.spec_from_file_location("bench_node", ROOT / "bench" / "node.py")
bench_node = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_node)

OURS, GO = "ours (Python)", "gonode (etcd raft)"


class GoCluster(NodeCluster):
    """A NodeCluster whose nodes are raftcheck-gonode processes, dialling each other
    directly through a peers table (no Toxiproxy: no faults here)."""

    def __init__(self, base: Path, binary: str, **options: object) -> None:
        super().__init__(base, **options)
        self.binary = binary
        self.write_config(peers={i: {j: self.nodes[j]["peer"] for j in self.ids if j != i}
                                 for i in self.ids})

    def start(self, *ids: str) -> None:
        for i in ids or self.ids:
            if i in self.procs and self.procs[i].poll() is None:
                continue
            with open(self.base / f"{i}.log", "ab") as log:
                self.procs[i] = subprocess.Popen(
                    [self.binary, "--config", str(self.config), "--id", i],
                    stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)


def cell(kind: str, binary: str, tmp: str, seconds: float, clients: list[int]) -> list[dict]:
    base = Path(tempfile.mkdtemp(dir=tmp))
    c = GoCluster(base, binary) if kind == GO else NodeCluster(base)
    c.start()
    try:
        c.wait_up()
        c.leader()
        time.sleep(0.5)  # let the followers settle after the election
        return asyncio.run(bench_node.throughput(c, seconds, clients, ["write"]))
    finally:
        c.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", default="1,16")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    binary = shutil.which("raftcheck-gonode")
    if binary is None:
        print("raftcheck-gonode is not on PATH: run scripts/setup.sh", file=sys.stderr)
        return 2
    cells: dict[tuple[str, int], list[dict]] = {}
    print(f"# writes, ours vs gonode: 3 nodes, fsync on, no faults, {args.seconds:g} s per "
          f"cell, {args.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="raftcheck-bench-") as tmp:
        for r in range(args.rounds):
            for kind in ((OURS, GO) if r % 2 == 0 else (GO, OURS)):
                print(f"round {r + 1}, {kind}:", flush=True)
                for row in cell(kind, binary, tmp, args.seconds, clients):
                    cells.setdefault((kind, row["clients"]), []).append(row)
    print("# medians")
    print(f"| clients | {OURS} writes/s | {GO} writes/s | ratio | {OURS} p50 ms | "
          f"{GO} p50 ms | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in clients:
        rate = {k: statistics.median(x["rate"] for x in cells[(k, n)]) for k in (OURS, GO)}
        p50 = {k: statistics.median(x["p50"] for x in cells[(k, n)]) for k in (OURS, GO)}
        print(f"| {n} | {rate[OURS]:.0f} | {rate[GO]:.0f} | {rate[GO] / rate[OURS]:.2f} | "
              f"{p50[OURS]:.2f} | {p50[GO]:.2f} | {p50[GO] / p50[OURS]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
