"""Snapshots on real nodes (paper section 7): a 3-node cluster that snapshots every 20
applied entries; a follower stopped while the others compact past its log catches up
by InstallSnapshot; a restart loads snapshot + tail; a damaged snapshot is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from cluster.bare import SOURCE_ROOT as ROOT, NodeCluster
from node.shell.storage import SNAP_NAME, WAL_NAME, decode_snapshot, decode_wal

EVERY = 20
N = 8 * EVERY


def _wait(fn, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _write(c: NodeCluster, key, value) -> None:
    for _ in range(20):
        leader = c.leader()
        try:
            status, reply = c.op(leader, {"op": "write", "key": key, "value": value})
        except OSError:
            continue
        if reply.get("ok"):
            return
        time.sleep(0.05)
    raise AssertionError(f"write {key}={value} failed: {reply}")


def _read(c: NodeCluster, key):
    for _ in range(20):
        try:
            status, reply = c.op(c.leader(), {"op": "read", "key": key})
        except OSError:
            continue
        if reply.get("ok"):
            return reply.get("value")
        time.sleep(0.05)
    raise AssertionError(f"read {key} failed")


def _events(c: NodeCluster, i: str, kind: str) -> list[dict]:
    out = []
    for line in c.log(i).splitlines():
        at = line.find("raft-event ")
        if at >= 0:
            ev = json.loads(line[at + len("raft-event "):])
            if ev.get("event") == kind:
                out.append(ev)
    return out


def test_a_stopped_follower_catches_up_by_snapshot_and_restarts_from_it(tmp_path):
    c = NodeCluster(tmp_path, snapshot_entries=EVERY, request_timeout_ms=2000)
    c.start()
    try:
        c.wait_up()
        leader = c.leader()
        lagger = next(i for i in c.ids if i != leader)
        _write(c, "early", 1)
        c.kill(lagger)
        # more writes than the transport keeps for a peer it cannot reach
        # (KEEP_WHILE_DOWN frames): what it missed is only in the snapshot
        for k in range(N):
            _write(c, k % 5, k)
        st = _wait(lambda: c.status(c.leader()), "the leader's status")
        assert st["snapshot_index"] >= 2 * EVERY
        data = Path(str(c.options["data_dir"]).replace("{id}", c.leader()))
        wal = decode_wal((data / WAL_NAME).read_bytes())
        assert wal.base == decode_snapshot((data / SNAP_NAME).read_bytes()).index > 0
        assert len(wal.entries) < 2 * EVERY + 5   # the WAL was compacted behind it

        c.start(lagger)
        c.wait_up()
        target = st["commit_index"]
        _wait(lambda: (c.status(lagger) or {}).get("last_applied", 0) >= target,
              "the restarted follower to catch up")
        installed = [e for e in _events(c, lagger, "snapshot") if e["source"] == "leader"]
        assert installed and installed[0]["index"] >= 2 * EVERY, c.log(lagger)[-3000:]
        assert "sending snapshot" in c.log(c.leader())

        # the whole cluster restarts from snapshots and WAL tails, and still holds
        # what was written before the snapshots
        c.stop()
        c.procs.clear()
        c.start()
        c.wait_up()
        assert _read(c, "early") == 1 and _read(c, 4) == N - 1
        starts = _events(c, lagger, "start")
        assert starts[-1]["snapshot_index"] >= 2 * EVERY
    finally:
        c.stop()

    # a damaged snapshot: one line, exit 254
    snap = Path(str(c.options["data_dir"]).replace("{id}", lagger)) / SNAP_NAME
    raw = bytearray(snap.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    snap.write_bytes(bytes(raw))
    r = subprocess.run([sys.executable, "-m", "node", "--config", str(c.config), "--id",
                        lagger], cwd=ROOT, timeout=30, capture_output=True, text=True)
    assert r.returncode == 254, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "raft.snap" in lines[0] and "damaged" in lines[0], r.stderr
