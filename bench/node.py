"""Benchmark of the Raft register node: a 3-node local cluster, fsync on.

Closed-loop clients (1 and 16, each on its own key) send write, read and cas to the
leader for a fixed time; the figures are ops/s and p50/p99 latency, plus the CPU
time the three node processes spent per op (less sensitive to a busy machine than
wall-clock rates). Then failover: SIGKILL the leader and time the first successful
write through any survivor (following not-leader hints), over a few trials.

    python bench/node.py [--seconds 5] [--failovers 3] [--clients 1,16]
    python bench/node.py --against REV|DIR [--rounds 3] [--seconds 5]
    python bench/node.py --auth [--rounds 3] [--seconds 5]

Prints figures and ratios; asserts nothing. Targets (issue 3): >= 1,000 writes/s
with 16 clients; p50 write latency < 10 ms with one client; failover < 2 s.

`--against REV` compares write throughput side by side: the node code of git revision
REV (exported with `git archive` to a temporary directory; or of a source tree DIR)
and of this tree run in alternation, one fresh cluster per cell, for `--rounds`
rounds, so that a busy machine slows both alike; it prints every cell, then the
medians and their ratio. `--auth` does the same for this tree with the peers'
frames unauthenticated (`insecure_peers: true`) and authenticated (issue 11 target:
less than 10% fewer writes/s with authentication on).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from cluster.bare import NodeCluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of processes, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def closed_loop(session: aiohttp.ClientSession, url: str, kind: str, clients: int,
                      seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def client(w: int) -> None:
        nonlocal errors
        key = f"{kind}-{clients}-{w}"
        value = 0
        async with session.post(url, json={"op": "write", "key": key, "value": value}) as r:
            await r.read()
        while time.monotonic() < end:
            if kind == "write":
                body = {"op": "write", "key": key, "value": value + 1}
            elif kind == "read":
                body = {"op": "read", "key": key}
            else:
                body = {"op": "cas", "key": key, "from": value, "to": value + 1}
            t = time.perf_counter()
            async with session.post(url, json=body) as r:
                reply = await r.json(content_type=None)
            if reply.get("ok"):
                lat.append(time.perf_counter() - t)
                if kind != "read":
                    value += 1
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(client(w) for w in range(clients)))
    elapsed = time.monotonic() - started
    lat.sort()
    return {"ops": len(lat), "rate": len(lat) / elapsed, "p50": pct(lat, 0.5) * 1000,
            "p99": pct(lat, 0.99) * 1000, "errors": errors}


async def throughput(c: NodeCluster, seconds: float, clients_list: list[int],
                     kinds: list[str]) -> list[dict]:
    rows = []
    pids = [p.pid for p in c.procs.values()]
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        for kind in kinds:
            for clients in clients_list:
                leader = c.leader()
                cpu0, own0 = cpu_seconds(pids), time.process_time()
                row = await closed_loop(session, c.url(leader) + "/op", kind, clients, seconds)
                cpu, own = cpu_seconds(pids) - cpu0, time.process_time() - own0
                ops = max(1, row["ops"])
                row.update(kind=kind, clients=clients, cpu_ms_per_op=cpu * 1000 / ops,
                           client_cpu_ms_per_op=own * 1000 / ops)
                rows.append(row)
                print(f"{kind:5s} clients={clients:2d}: {row['rate']:7.0f} ops/s  "
                      f"p50 {row['p50']:6.2f} ms  p99 {row['p99']:7.2f} ms  "
                      f"CPU/op: nodes {row['cpu_ms_per_op']:.2f} ms, client "
                      f"{row['client_cpu_ms_per_op']:.2f} ms  errors {row['errors']}",
                      flush=True)
    return rows


class TreeCluster(NodeCluster):
    """A NodeCluster whose nodes run the node code of another source tree."""

    def __init__(self, base: Path, source: Path, **options: object) -> None:
        super().__init__(base, **options)
        self.source = source

    def start(self, *ids: str) -> None:
        for i in ids or self.ids:
            if i in self.procs and self.procs[i].poll() is None:
                continue
            cmd = [sys.executable, "-m", "node", "--config", str(self.config), "--id", i]
            with open(self.base / f"{i}.log", "ab") as log:
                self.procs[i] = subprocess.Popen(cmd, cwd=self.source, stderr=log,
                                                 stdout=subprocess.DEVNULL,
                                                 stdin=subprocess.DEVNULL)


def export_revision(rev: str, into: Path) -> Path:
    """The tree of git revision `rev` of this repository, extracted into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def side_by_side(variants: dict[str, tuple[Path, bool]], rounds: int, seconds: float,
                 clients_list: list[int]) -> int:
    """Write throughput of each variant (name -> (source tree, peers authenticated)),
    cells in alternation; the ratios are of the last variant to the first."""
    cells: dict[tuple[str, int], list[dict]] = {}
    names = list(variants)
    with tempfile.TemporaryDirectory(prefix="raftcheck-bench-") as tmp:
        print(f"# write throughput, {' vs '.join(names)}: 3 nodes, fsync on, {seconds:g} s "
              f"per cell, {rounds} rounds, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
              f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
              flush=True)
        for r in range(rounds):
            for name in (names if r % 2 == 0 else list(reversed(names))):
                source, authenticated = variants[name]
                base = Path(tempfile.mkdtemp(dir=tmp))
                c = TreeCluster(base, source)
                if not authenticated:
                    c.options.pop("peer_secret", None)
                    c.write_config(insecure_peers=True)
                c.start()
                try:
                    c.wait_up()
                    c.leader()
                    print(f"round {r + 1}, {name}:", flush=True)
                    for row in asyncio.run(throughput(c, seconds, clients_list, ["write"])):
                        cells.setdefault((name, row["clients"]), []).append(row)
                finally:
                    c.stop()
    print("# medians")
    first, last = names[0], names[-1]
    for clients in clients_list:
        old = statistics.median(x["rate"] for x in cells[(first, clients)])
        new = statistics.median(x["rate"] for x in cells[(last, clients)])
        old_cpu = statistics.median(x["cpu_ms_per_op"] for x in cells[(first, clients)])
        new_cpu = statistics.median(x["cpu_ms_per_op"] for x in cells[(last, clients)])
        print(f"writes, {clients:2d} clients: {first} {old:7.0f} ops/s, {last} {new:7.0f} "
              f"ops/s (ratio {new / old:.2f}); node CPU per write {old_cpu:.2f} -> "
              f"{new_cpu:.2f} ms")
    return 0


def failover(c: NodeCluster, trials: int) -> list[float]:
    times = []
    for t in range(trials):
        leader = c.leader()
        others = [i for i in c.ids if i != leader]
        body = {"op": "write", "key": "failover", "value": t, "client": "bench-fo", "seq": t}
        start = time.monotonic()
        c.kill(leader, signal.SIGKILL)
        reply = c.submit(body, others, time.monotonic() + 30)
        took = time.monotonic() - start
        ok = reply is not None and reply.get("ok")
        print(f"failover {t + 1}: killed {leader}, first write ok after {took * 1000:.0f} ms"
              + ("" if ok else f" (FAILED: {reply})"), flush=True)
        if ok:
            times.append(took)
        c.start(leader)
        c.wait_up()
        c.leader()
        time.sleep(1.0)  # let the restarted node catch up before the next trial
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--kinds", default="write,read,cas")
    ap.add_argument("--against", metavar="REV",
                    help="compare write throughput with git revision REV, side by side")
    ap.add_argument("--auth", action="store_true",
                    help="compare write throughput without and with peer authentication "
                         "(insecure_peers vs the HMAC-SHA256 per frame), side by side")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    clients_list = [int(x) for x in args.clients.split(",")]
    if args.against:
        with tempfile.TemporaryDirectory(prefix="raftcheck-rev-") as tmp:
            rev = args.against
            old = Path(rev) if Path(rev).is_dir() else export_revision(rev, Path(tmp) / "old")
            return side_by_side({rev: (old, True), "this tree": (ROOT, True)},
                                args.rounds, args.seconds, clients_list)
    if args.auth:
        return side_by_side({"insecure_peers": (ROOT, False),
                             "peers authenticated": (ROOT, True)},
                            args.rounds, args.seconds, clients_list)
    with tempfile.TemporaryDirectory(prefix="raftcheck-bench-") as tmp:
        c = NodeCluster(Path(tmp))
        c.start()
        try:
            c.wait_up()
            c.leader()
            print(f"# 3 nodes, fsync on, {args.seconds:g} s per cell, "
                  f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            rows = asyncio.run(throughput(c, args.seconds, clients_list,
                                         args.kinds.split(",")))
            fo = failover(c, args.failovers)
        finally:
            c.stop()
    by = {(r["kind"], r["clients"]): r for r in rows}
    print("# summary")
    if ("write", 16) in by:
        w16 = by[("write", 16)]["rate"]
        print(f"writes/s with 16 clients: {w16:.0f} (target >= 1000: ratio {w16 / 1000:.2f})")
    if ("write", 1) in by:
        p50 = by[("write", 1)]["p50"]
        print(f"p50 write latency, 1 client: {p50:.2f} ms (target < 10 ms: ratio "
              f"{p50 / 10:.2f})")
        cpu = by[("write", 16)]["cpu_ms_per_op"] + by[("write", 16)]["client_cpu_ms_per_op"]
        print(f"CPU-bound estimate on {os.cpu_count()} idle CPUs (nodes + client CPU per "
              f"write, 16 clients): {os.cpu_count() * 1000 / cpu:.0f} writes/s")
    if ("write", 1) in by and ("write", 16) in by:
        print(f"batching speed-up 16 vs 1 client (writes): "
              f"{by[('write', 16)]['rate'] / by[('write', 1)]['rate']:.1f}x")
    if fo:
        print(f"failover: median {statistics.median(fo) * 1000:.0f} ms, max "
              f"{max(fo) * 1000:.0f} ms over {len(fo)} trials (target < 2000 ms: ratio "
              f"{max(fo) / 2:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
