"""Grudges, targets and the nemesis schedule.

The schedule runs on a real LocalCluster with a real toxiproxy server, whose "nodes"
are small echo servers (GET /status on the client port, a TCP echo on the peer
port), so these tests do not depend on the Raft node.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cluster.local import LocalCluster, find_toxiproxy
from history.errors import BadInput
from history.writer import HistoryWriter
from nemesis import partition, process
from nemesis.partition import SHAPES, cuts, grudge_for, majority
from nemesis.schedule import FAULTS, Nemesis
from tests.support import require

ECHO_NODE = textwrap.dedent('''
    """An echo "node": GET /status on the client port, TCP echo on the peer port."""
    import json, socketserver, sys, threading, yaml
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    args = sys.argv[1:]
    config = yaml.safe_load(open(args[args.index("--config") + 1]))
    me = args[args.index("--id") + 1]
    def addr(kind):
        host, port = config["nodes"][me][kind].rsplit(":", 1)
        return host, int(port)
    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(4096):
                self.request.sendall(data)
    peer = socketserver.ThreadingTCPServer(addr("peer"), Echo)
    peer.daemon_threads = True
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    class Status(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"id": me, "role": "leader" if me == "n2" else "follower",
                               "term": 1, "leader": "n2"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    print(me, "echo node up", flush=True)
    ThreadingHTTPServer(addr("client"), Status).serve_forever()
''')


# --- grudges -------------------------------------------------------------------------

def _hears(grudge: dict, nodes: list[str]) -> dict[str, set[str]]:
    return {n: set(nodes) - set(grudge.get(n, ())) for n in nodes}


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_grudge_shapes(n, seed):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    m = majority(n)
    for shape in SHAPES:
        g = grudge_for(shape, nodes, random.Random(seed))
        hears = _hears(g, nodes)
        assert all(k in nodes and set(v) <= set(nodes) and k not in v and v == sorted(v)
                   for k, v in g.items()), (shape, g)
        if shape == "one":
            (alone,) = [x for x in nodes if hears[x] == {x}]
            assert all(hears[x] == set(nodes) - {alone} for x in nodes if x != alone)
        elif shape == "majority":
            sides = {frozenset(h) for h in hears.values()}
            assert sorted(len(s) for s in sides) == [n // 2, n - n // 2]
            assert frozenset().union(*sides) == set(nodes)
            assert all(x in hears[x] for x in nodes)
        elif shape == "majorities-ring":
            assert all(len(hears[x]) == m and x in hears[x] for x in nodes), g
            assert len({frozenset(h) for h in hears.values()}) == n  # all different
        elif shape == "bridge":
            (bridge,) = [x for x in nodes if hears[x] == set(nodes)]
            rest = [x for x in nodes if x != bridge]
            assert all(bridge in hears[x] for x in rest)
            sides = {frozenset(hears[x] - {bridge}) for x in rest}
            assert len(sides) == 2 and sorted(len(s) for s in sides) == [n // 2, n // 2]
        elif shape == "one-way":
            (deaf,) = list(g)
            assert g[deaf] == sorted(set(nodes) - {deaf})
            assert all(hears[x] == set(nodes) for x in nodes if x != deaf)
        assert g == grudge_for(shape, nodes, random.Random(seed))  # seeded


def test_known_grudges_and_cuts():
    assert partition.complete_grudge([["n1"], ["n2", "n3"]]) == {
        "n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}
    # n1 hears no one from n2 / n3: links n2 -> n1 and n3 -> n1 are cut, and back.
    assert cuts({"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}) == [
        ("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n3", "n1")]
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    for seed in range(5):  # the leader is the node cut off
        assert grudge_for("one", nodes, random.Random(seed), "n4", True)["n4"] == \
            ["n1", "n2", "n3", "n5"]
        g = grudge_for("majority", nodes, random.Random(seed), "n4", True)
        assert len(g["n4"]) == 3
    assert partition.describe(partition.complete_grudge([["n1"], ["n2", "n3"]]),
                              ["n1", "n2", "n3"]) == "n1 | n2 n3"


@pytest.mark.parametrize("n", [3, 5])
def test_targets(n):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    rng = random.Random(7)
    sizes = {"one": 1, "minority": (n - 1) // 2, "majority": majority(n), "all": n}
    for target, size in sizes.items():
        chosen = process.pick_targets(target, nodes, rng)
        assert len(chosen) == size and chosen == sorted(set(chosen)) and set(chosen) <= set(nodes)
    assert process.pick_targets("leader", nodes, rng, leader="n2") == ["n2"]
    assert len(process.pick_targets("leader", nodes, rng, leader=None)) == 1
    with pytest.raises(ValueError):
        process.pick_targets("most", nodes, rng)


def test_bad_fault_names_are_bad_input():
    with pytest.raises(BadInput, match="'flood'"):
        Nemesis(None, ["partition", "flood"])  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="interval"):
        Nemesis(None, ["kill"], interval_s=0)  # type: ignore[arg-type]


# --- against echo nodes through real proxies ---------------------------------------------

@pytest.fixture
def echo_cluster(tmp_path):
    try:
        find_toxiproxy()
    except BadInput as e:
        require(False, str(e))
    script = tmp_path / "echo_node.py"
    script.write_text(ECHO_NODE)
    cluster = LocalCluster(3, tmp_path / "run", node_command=[sys.executable, str(script)])
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.teardown()


def _link_works(cluster: LocalCluster, src: str, dst: str, wait_s: float) -> bool:
    """Do bytes sent by src to dst (through proxy src-to-dst) reach dst and come back?"""
    listen = cluster.toxiproxy.proxies_raw()[f"{src}-to-{dst}"]["listen"]
    host, port = listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.settimeout(wait_s)
        s.sendall(b"ping")
        try:
            return s.recv(4) == b"ping"
        except socket.timeout:
            return False


def test_grudge_applied_through_proxies(echo_cluster):
    c = echo_cluster
    g = {"n1": ["n2", "n3"], "n2": ["n1"]}  # n1 deaf; n2 does not hear n1
    partition.apply_grudge(c.toxiproxy, g)
    for src in c.node_ids:
        for dst in c.node_ids:
            if src != dst:
                cut = src in g.get(dst, [])
                assert _link_works(c, src, dst, 0.3 if cut else 5) is (not cut), (src, dst)
    c.toxiproxy.heal()
    assert _link_works(c, "n2", "n1", 5)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_schedule_writes_history_and_ends_healed(echo_cluster, tmp_path):
    c = echo_cluster
    path = tmp_path / "history.jsonl"
    history = HistoryWriter(path)
    nem = Nemesis(c, list(FAULTS), interval_s=0.1, seed=3, history=history,
                  targets=list(process.TARGETS), latencies_ms=[10])
    stop = threading.Event()
    seen_active: list[str] = []

    def watch() -> None:  # stop after enough faults (bounded in time too)
        deadline = time.monotonic() + 20
        while len(history.ops) < 24 and time.monotonic() < deadline:
            if nem.active and nem.active not in seen_active:
                seen_active.append(nem.active)
            time.sleep(0.02)
        stop.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    nem.run(stop)
    watcher.join()
    history.close()
    assert nem.active is None

    ops = [json.loads(line) for line in path.read_text().splitlines()]
    assert [o["index"] for o in ops] == list(range(len(ops)))
    assert len(ops) >= 8 and len(ops) % 2 == 0
    assert len(set(nem.counts)) >= 2  # more than one kind of fault ran
    pairs = {"start-partition": "stop-partition", "start-latency": "stop-latency",
             "kill": "start", "pause": "resume"}
    opened = None
    for inv, done in zip(ops[::2], ops[1::2]):
        for o in (inv, done):
            assert o["type"] == "info" and o["process"] == "nemesis" and "error" not in o
        assert inv["f"] == done["f"] and inv["time"] <= done["time"]
        f = inv["f"]
        if f in pairs:
            assert opened is None
            opened = pairs[f]
        else:
            assert f == opened
            opened = None
        if f == "start-partition":
            assert inv["value"] in SHAPES
            assert isinstance(done["value"], dict) and done["value"]
            assert all(set(v) <= set(c.node_ids) for v in done["value"].values())
        elif f in ("stop-partition", "stop-latency"):
            assert inv["value"] is None and done["value"] == "network-healed"
        elif f == "start-latency":
            assert inv["value"] == {"latency": 10, "jitter": 5}
            assert done["value"] == inv["value"]
        else:
            assert inv["value"] == done["value"]
            assert inv["value"] and set(inv["value"]) <= set(c.node_ids)
    assert opened is None  # the last fault was stopped

    # ended healed: no toxic, every proxy enabled, every node running and not stopped
    c.toxiproxy.verify_healed()
    pids = c.pids()
    assert set(pids) == {"n1", "n2", "n3", "toxiproxy"}
    assert all(_state(pid) not in ("T", "t", "Z") for pid in pids.values())
    assert all(_link_works(c, a, b, 5) for a, b in [("n1", "n2"), ("n3", "n1")])
    assert seen_active  # the progress text was set while faults ran


def test_failed_stop_is_recorded_and_heal_all_recovers(echo_cluster, tmp_path):
    c = echo_cluster
    c.restart_attempts = 1
    history = HistoryWriter(tmp_path / "history.jsonl")
    nem = Nemesis(c, ["kill"], interval_s=1, seed=0, history=history, targets=["one"])
    nem.start_fault()
    (victim,) = history.ops[-1].value
    assert victim not in c.pids() and nem.active == f"kill {victim}"
    port = int(c.addresses[victim]["peer"].rsplit(":", 1)[1])
    with socket.socket() as s:  # the restart cannot bind: the stop fails
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        nem.stop_fault()
        nem.start_fault()  # refused while the kill is not undone
    assert nem.active == f"kill {victim}" and nem.counts == {"kill": 1}
    nem.heal_all()
    history.close()
    assert nem.active is None and victim in c.pids()
    ops = [o.to_dict() for o in history.ops]
    failed = [("start", False), ("start", True)]  # an invoke, an error completion
    assert [(o["f"], "error" in o) for o in ops] == [
        ("kill", False), ("kill", False), *failed, *failed,  # stop, then retried by start
        ("start", False), ("start", False)]                  # heal_all
    assert "busy" in ops[3]["error"] and ops[-1]["value"] == [victim]
