"""Benchmark of snapshots and log compaction (Raft section 7): WAL size and restart
time after N writes, with and without compaction.

The node's persistence path in one process, as the server's pump drives it: a
single-node `RaftCore`, the real `Storage` (the WAL and `raft.snap` on disk) and the
`RegisterMachine`; writes are proposed in batches (one Ready, one WAL write each),
applied, and every `snapshot_entries` applied entries the machine is snapshotted
and the WAL compacted behind it (`Storage.save_snapshot`, then `core.compact`), as
node.shell.server does. The writes go to `--keys` keys from `--clients` client
sessions (so the exactly-once table is in the snapshot too).

Restart is what a node does before it serves: `Storage.load` (snapshot + WAL),
`RegisterMachine.restore`, a new `RaftCore`, and its first Ready applying the WAL's
tail. Process start-up and port binding (the same with or without snapshots) are
not in it.

    python bench/snapshot.py [--writes 1000000] [--snapshot-entries 10000]
                             [--batch 64] [--keys 1000] [--clients 16] [--fsync]

Prints figures; asserts nothing. Targets (issue 11 item 5): the WAL stays below 2x
the snapshot threshold over a 1,000,000-write soak; restart after it under 2 s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.core.raft import RaftCore  # noqa: E402
from node.core.register import RegisterMachine  # noqa: E402
from node.core.state import HardState, RaftConfig, Snapshot  # noqa: E402
from node.shell.storage import SNAP_NAME, WAL_NAME, Storage, decode_wal  # noqa: E402


def soak(data: Path, writes: int, every: int, batch: int, keys: int, clients: int,
         fsync: bool) -> dict:
    """N writes through core + storage + machine; the WAL's size as it goes."""
    storage = Storage(data, fsync=fsync, node_id="n1")
    hs, log = storage.load()
    core = RaftCore("n1", ["n1"], hs, log, RaftConfig(), random.Random(1))
    machine = RegisterMachine()
    seqs = [0] * clients
    max_wal_entries = max_wal_bytes = snapshots = 0
    wal_path = data / WAL_NAME
    started, cpu = time.monotonic(), time.process_time()
    for _ in range(50):          # elect itself (a single node)
        core.tick()
        if core.role == "leader":
            break
    done = 0
    while done < writes or core.has_ready():
        for _ in range(min(batch, writes - done)):
            c = done % clients
            seqs[c] += 1
            core.propose({"op": "write", "key": done % keys, "value": done,
                          "client": f"c{c}", "seq": seqs[c]})
            done += 1
        while core.has_ready():
            rd = core.ready()
            if rd.must_write():
                storage.save(rd.hard_state, rd.truncate_from, rd.entries, rd.must_sync())
            for ce in rd.committed:
                machine.apply(ce)
            core.advance(rd)
            max_wal_entries = max(max_wal_entries, core.log_length() - core.snapshot_index)
            if every and machine.last_applied - core.snapshot_index >= every:
                index = machine.last_applied
                snap = Snapshot(index, core.term_at(index), machine.snapshot())
                storage.save_snapshot(snap, core.stable_entries(index))
                core.compact(snap)
                snapshots += 1
        if done % (batch * 64) == 0 or done >= writes:
            max_wal_bytes = max(max_wal_bytes, wal_path.stat().st_size)
    took, cpu = time.monotonic() - started, time.process_time() - cpu
    max_wal_bytes = max(max_wal_bytes, wal_path.stat().st_size)
    storage.close()
    return {"seconds": took, "cpu": cpu, "snapshots": snapshots, "max_wal_entries": max_wal_entries,
            "max_wal_bytes": max_wal_bytes, "applied": machine.last_applied,
            "values": dict(machine.values)}


def restart(data: Path) -> dict:
    """What a node does before it serves: load, restore, replay the tail."""
    t0, c0 = time.monotonic(), time.process_time()
    storage = Storage(data, node_id="n1")
    hs, log = storage.load()
    machine = RegisterMachine()
    snap = storage.snapshot
    if snap is not None:
        machine.restore(snap.data, snap.index)
    t1, c1 = time.monotonic(), time.process_time()
    core = RaftCore("n1", ["n1"], hs, log, RaftConfig(), random.Random(2), snapshot=snap)
    replayed = 0
    while core.has_ready():
        rd = core.ready()
        for ce in rd.committed:
            machine.apply(ce)
            replayed += 1
        if rd.must_write():
            storage.save(rd.hard_state, rd.truncate_from, rd.entries, rd.must_sync())
        core.advance(rd)
    t2, c2 = time.monotonic(), time.process_time()
    storage.close()
    return {"seconds": t2 - t0, "load_s": t1 - t0, "replay_s": t2 - t1, "cpu": c2 - c0,
            "load_cpu": c1 - c0, "replay_cpu": c2 - c1, "replayed": replayed,
            "applied": machine.last_applied, "values": dict(machine.values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=1_000_000)
    ap.add_argument("--snapshot-entries", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=64, help="writes per Ready (default 64)")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--fsync", action="store_true", help="fsync each batch (default off: "
                    "the figures are sizes and restart times)")
    ap.add_argument("--only", choices=["with", "without"])
    args = ap.parse_args()
    print(f"{args.writes:,} writes, {args.keys} keys, {args.clients} client sessions, "
          f"batches of {args.batch}, fsync {'on' if args.fsync else 'off'}")
    runs = [("with", args.snapshot_entries), ("without", 0)]
    for name, every in runs:
        if args.only and name != args.only:
            continue
        data = Path(tempfile.mkdtemp(prefix=f"snapbench-{name}-"))
        try:
            s = soak(data, args.writes, every, args.batch, args.keys, args.clients, args.fsync)
            wal = data / WAL_NAME
            snap = data / SNAP_NAME
            records = decode_wal(wal.read_bytes()).records
            r = restart(data)
            ok = r["values"] == s["values"] and r["applied"] == s["applied"]
            label = f"compaction every {every:,}" if every else "no compaction"
            print(f"{label}:")
            print(f"  soak: {s['seconds']:.1f} s wall, {s['cpu']:.1f} s CPU, "
                  f"{s['snapshots']} snapshots")
            print(f"  WAL at the end: {wal.stat().st_size / 1e6:.2f} MB, {records:,} records; "
                  f"at most {s['max_wal_entries']:,} entries"
                  + (f" ({s['max_wal_entries'] / every:.2f}x the threshold)" if every else "")
                  + f", {s['max_wal_bytes'] / 1e6:.2f} MB")
            if snap.exists():
                print(f"  raft.snap: {snap.stat().st_size / 1e3:.1f} kB")
            print(f"  restart: {r['seconds']:.3f} s wall, {r['cpu']:.3f} s CPU (load "
                  f"{r['load_cpu']:.3f} s, replay of {r['replayed']:,} entries "
                  f"{r['replay_cpu']:.3f} s CPU); state "
                  f"{'identical' if ok else 'DIFFERENT'} after restart")
        finally:
            shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
