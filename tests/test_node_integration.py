"""Integration: 3 real node processes on loopback survive a leader SIGKILL and a full
restart without losing any acknowledged write (`cluster.bare.NodeCluster`, data under
tmp_path)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from cluster.bare import NodeCluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster(tmp_path):
    c = NodeCluster(tmp_path)
    yield c
    c.stop()


def test_acknowledged_writes_survive_leader_kill_and_full_restart(cluster: NodeCluster):
    cluster.start()
    cluster.wait_up()
    first = cluster.leader()
    acked: dict[str, int] = {}

    def write_batch(start: int, count: int, among: list[str]) -> None:
        for k in range(start, start + count):
            body = {"op": "write", "key": f"k{k}", "value": 1000 + k,
                    "client": "itest", "seq": k}
            reply = cluster.submit(body, among, time.monotonic() + 15)
            if reply is not None and reply["ok"]:
                acked[f"k{k}"] = 1000 + k

    write_batch(0, 20, cluster.ids)
    assert len(acked) == 20

    assert cluster.kill(first) == -signal.SIGKILL
    survivors = [i for i in cluster.ids if i != first]
    write_batch(20, 20, survivors)   # the survivors elect a new leader and go on
    assert len(acked) >= 35, f"only {len(acked)} of 40 writes acknowledged"
    for body in ({"op": "write", "key": "retried", "value": 1, "client": "retry", "seq": 7},
                 {"op": "write", "key": "retried", "value": 2, "client": "other", "seq": 1}):
        reply = cluster.submit(body, survivors, time.monotonic() + 15)
        assert reply is not None and reply["ok"], reply
    acked["retried"] = 2
    second = cluster.leader(survivors)
    assert second != first

    # Restart every node (the survivors by SIGKILL as well: nothing acked may be lost).
    for i in survivors:
        cluster.kill(i)
    cluster.start()
    cluster.wait_up()
    cluster.leader()
    # The durable commit index: each node restarts knowing most of what was committed
    # (SIGKILL keeps the page cache), so its state machine replays at once.
    for i in cluster.ids:
        starts = [json.loads(line.split("raft-event ", 1)[1])
                  for line in cluster.log(i).splitlines()
                  if "raft-event " in line and '"event":"start"' in line]
        assert len(starts) >= 2 and 20 <= starts[-1]["commit"] <= starts[-1]["last_index"]
    for key, value in acked.items():
        reply = cluster.submit({"op": "read", "key": key}, cluster.ids,
                               time.monotonic() + 10)
        assert reply is not None and reply["ok"], f"read {key} failed: {reply}"
        assert reply["value"] == value, f"{key}: acknowledged {value}, read {reply['value']}"
    # Exactly-once survives the restart: the session table is rebuilt from the log,
    # so a retried write (same client/seq) is not applied again over a later write.
    k = "retried"
    assert k in acked
    assert cluster.submit({"op": "write", "key": k, "value": 1, "client": "retry", "seq": 7},
                          cluster.ids, time.monotonic() + 10)["ok"]
    reply = cluster.submit({"op": "read", "key": k}, cluster.ids, time.monotonic() + 10)
    assert reply["value"] == 2
    # SIGTERM: every node exits cleanly.
    cluster.stop()
    assert {i: p.returncode for i, p in cluster.procs.items()} == {i: 0 for i in cluster.ids}
