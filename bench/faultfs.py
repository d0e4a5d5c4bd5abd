"""Benchmark: the node's write path on faultfs against the plain disk.

Two figures, each measured on the plain disk and on a faultfs mount over a folder of
the same disk, in the same run, interleaved (plain, faultfs, plain, faultfs, ...) so
that a busy machine weighs on both alike:

- WAL: `node.shell.storage.Storage.save` of one entry (one write + one fsync, what
  the node does per Ready), back to back: saves/s.
- cluster: a 3-node local cluster (`make_cluster("local", ..., crash_fs=...)`),
  closed-loop clients writing to the leader: writes/s.

    python bench/faultfs.py [--seconds 2] [--rounds 5] [--clients 8] [--no-cluster]

Prints each figure and the ratio faultfs / plain (medians over the rounds, and for
the WAL the per-save latency percentiles, which a busy machine disturbs less than
rates); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from cluster.base import find_leader, make_cluster  # noqa: E402
from cluster.faultfs import FaultFS, available  # noqa: E402
from node.core.messages import LogEntry  # noqa: E402
from node.core.state import HardState  # noqa: E402
from node.shell.storage import Storage  # noqa: E402


def wal_saves(folder: Path, seconds: float) -> tuple[float, list[float]]:
    """Back-to-back Storage.save of one ~80-byte entry, each fsync'd: (saves/s, the
    latency of each save in seconds)."""
    storage = Storage(folder, fsync=True, node_id="bench")
    storage.load()
    command = {"op": "write", "key": 7, "value": 12345, "client": "c1", "seq": 0}
    storage.save(HardState(1, "bench"), None, [])
    latencies = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        command["seq"] = index = len(latencies) + 1
        t = time.perf_counter()
        storage.save(None, None, [(index, LogEntry(1, command))])
        latencies.append(time.perf_counter() - t)
    elapsed = time.monotonic() - start
    storage.close()
    return len(latencies) / elapsed, latencies


async def _writes_per_s(urls: list[str], clients: int, seconds: float) -> float:
    done = 0
    end = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def client(k: int) -> None:
            nonlocal done
            target, seq = 0, 0
            while time.monotonic() < end:
                seq += 1
                body = {"op": "write", "key": k, "value": seq}
                try:
                    async with session.post(urls[target] + "/op", json=body) as r:
                        reply = await r.json()
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    reply = {}
                if reply.get("ok"):
                    done += 1
                else:
                    target = (target + 1) % len(urls)
        start = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(clients)))
        return done / (time.monotonic() - start)


def cluster_writes_per_s(folder: Path, crash_fs: bool, clients: int, seconds: float) -> float:
    cluster = make_cluster("local", 3, folder, crash_fs=crash_fs)
    try:
        cluster.start()
        deadline = time.monotonic() + 20
        leader = None
        while leader is None and time.monotonic() < deadline:
            leader = find_leader(cluster)
            time.sleep(0.1)
        if leader is None:
            raise SystemExit("no leader within 20 s")
        urls = [cluster.client_url(leader)] + [cluster.client_url(n) for n in cluster.node_ids
                                               if n != leader]
        return asyncio.run(_writes_per_s(urls, clients, seconds))
    finally:
        cluster.teardown()


def report(name: str, unit: str, plain: list[float], fault: list[float]) -> None:
    p, f = statistics.median(plain), statistics.median(fault)
    print(f"{name}: plain disk {p:,.0f} {unit}, faultfs {f:,.0f} {unit}, "
          f"ratio {f / p:.2f} (medians of {len(plain)} rounds; "
          f"plain {', '.join(f'{x:,.0f}' for x in plain)}; "
          f"faultfs {', '.join(f'{x:,.0f}' for x in fault)})")


def report_latency(plain: list[float], fault: list[float]) -> None:
    """Per-save latency percentiles: less sensitive to a busy machine than rates."""
    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000
    p50p, p50f = pct(plain, 0.5), pct(fault, 0.5)
    print(f"WAL save+fsync latency: p50 plain {p50p:.3f} ms, faultfs {p50f:.3f} ms "
          f"(x{p50f / p50p:.2f}); p90 plain {pct(plain, 0.9):.3f} ms, faultfs "
          f"{pct(fault, 0.9):.3f} ms; faultfs throughput at the p50s: "
          f"{p50p / p50f:.2f} of plain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--dir", help="a folder on the disk to measure (default: a temporary one)")
    args = ap.parse_args()
    why = available()
    if why:
        raise SystemExit(f"faultfs unavailable: {why}")
    with tempfile.TemporaryDirectory(prefix="bench-faultfs-", dir=args.dir) as tmp:
        base = Path(tmp)
        plain, fault, plain_lat, fault_lat = [], [], [], []
        for r in range(args.rounds):
            rate, lat = wal_saves(base / f"plain{r}", args.seconds)
            plain.append(rate)
            plain_lat += lat
            fs = FaultFS(base / f"backing{r}", base / f"mnt{r}")
            fs.start()
            try:
                rate, lat = wal_saves(fs.mountpoint, args.seconds)
            finally:
                fs.stop()
            fault.append(rate)
            fault_lat += lat
        report("WAL save+fsync", "saves/s", plain, fault)
        report_latency(plain_lat, fault_lat)
        if args.no_cluster:
            return
        plain, fault = [], []
        for r in range(args.rounds):
            plain.append(cluster_writes_per_s(base / f"run-plain{r}", False, args.clients,
                                              args.seconds))
            fault.append(cluster_writes_per_s(base / f"run-faultfs{r}", True, args.clients,
                                              args.seconds))
        report(f"3-node cluster, {args.clients} clients", "writes/s", plain, fault)


if __name__ == "__main__":
    main()
