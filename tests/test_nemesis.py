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
from campaign import stats
from history.errors import BadInput
from history.faults import fault_windows
from history.ops import Op
from history.writer import HistoryWriter
from nemesis import partition, process
from nemesis.partition import SHAPES, cuts, grudge_for, majority
from nemesis.schedule import FAULTS, Nemesis
from tests.support import require

ECHO_NODE = textwrap.dedent('''
    """An echo "node": GET /status on the client port, TCP echo on the peer port.
    Its role and term come from status.json in the run folder (the test's elector
    writes it), else it follows n2, the leader of term 1. It exits at once (code 3)
    when the run folder holds a file broken-<its id>."""
    import json, os, socketserver, sys, threading, yaml
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    args = sys.argv[1:]
    config = yaml.safe_load(open(args[args.index("--config") + 1]))
    me = args[args.index("--id") + 1]
    if os.path.exists(f"broken-{me}"):
        sys.exit(3)
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
            try:
                view = json.load(open("status.json"))
            except (OSError, ValueError):
                view = {"leader": "n2", "term": 1, "roles": {}}
            role = view["roles"].get(me) or ("leader" if me == view["leader"] else "follower")
            body = json.dumps({"id": me, "role": role, "term": view["term"],
                               "leader": view["leader"]}).encode()
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
    for leader in nodes:
        assert process.pick_targets("leader", nodes, rng, leader=leader) == [leader]
        followers = process.pick_targets("followers", nodes, rng, leader=leader)
        assert len(followers) == majority(n) and leader not in followers
        # new-leader and candidate start with the current leader (the trigger)
        assert process.pick_targets("new-leader", nodes, rng, leader=leader) == [leader]
    assert len(process.pick_targets("leader", nodes, rng, leader=None)) == 1
    assert len(process.pick_targets("followers", nodes, rng, leader=None)) == majority(n)
    with pytest.raises(ValueError):
        process.pick_targets("most", nodes, rng)
    # the same draws whether or not the leader is known: a seed gives the same run
    a, b = random.Random(3), random.Random(3)
    process.pick_targets("leader", nodes, a, leader="n1")
    process.pick_targets("leader", nodes, b, leader=None)
    assert a.random() == b.random()


def test_bad_fault_names_are_bad_input():
    with pytest.raises(BadInput, match="'flood'"):
        Nemesis(None, ["partition", "flood"])  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="interval"):
        Nemesis(None, ["kill"], interval_s=0)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="'most'"):
        Nemesis(None, ["kill"], targets=["leader", "most"])  # type: ignore[arg-type]


def _nem(t: float, f: str, value, **extra) -> Op:
    return Op(0, int(t * 1e9), "info", "nemesis", f, value, extra=extra)


def test_fault_windows_pair_overlapping_faults_by_node():
    ops = [
        _nem(1, "kill", ["n1"], target="leader"), _nem(1.1, "kill", ["n1"], target="leader"),
        _nem(2, "kill", ["n2"], target="new-leader"),
        _nem(2.1, "kill", ["n2"], target="new-leader", lost_bytes={"n2": 7}),
        _nem(2.5, "start-partition", "one"), _nem(2.6, "start-partition", {"n3": ["n1"]}),
        _nem(3, "start", ["n1"]), _nem(3.5, "start", ["n1"]),   # closes n1's, not n2's
        _nem(4, "kill-cluster", ["n1", "n2", "n3"], target="all"),
        _nem(4.1, "kill-cluster", ["n1", "n2", "n3"], target="all"),
        _nem(5, "start", ["n2"]), _nem(5.5, "start", ["n2"]),
        _nem(6, "start-cluster", ["n1", "n2", "n3"]),
        _nem(6.5, "start-cluster", ["n1", "n2", "n3"]),
        _nem(7, "pause", ["n3"], target="one"), _nem(7.1, "pause", ["n3"], target="one"),
    ]
    ws = fault_windows(ops)
    got = [(w.kind, w.start / 1e9, w.end / 1e9, w.target, w.closed) for w in ws]
    assert got == [("kill", 1, 3.5, "leader", True), ("kill", 2, 5.5, "new-leader", True),
                   ("partition", 2.5, 7.1, None, False),
                   ("restart", 4, 6.5, "all", True), ("pause", 7, 7.1, "one", False)]
    assert json.loads(ws[1].detail) == ["n2"]
    st = stats.compute(ops)
    assert st["faults"]["by_kind"] == {"kill": 2, "partition": 1, "restart": 1, "pause": 1}
    assert st["faults"]["by_target"] == {"kill leader": 1, "kill new-leader": 1,
                                         "pause one": 1, "restart all": 1}
    assert st["faults"]["lost_bytes"] == 7
    assert set(st["faults"]["kinds"]) == {"kill", "partition", "restart", "pause"}


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


class Elector:
    """Plays Raft's elections for the echo nodes (through status.json): when the
    leader is killed or paused, a live node runs as a candidate for a moment, then
    leads the next term. `leaders` and `candidates` map each term to its node."""

    def __init__(self, cluster: LocalCluster, candidate_s: float = 0.15) -> None:
        self.cluster = cluster
        self.path = cluster.run_dir / "status.json"
        self.candidate_s = candidate_s
        self.term, self.leader = 1, "n2"
        self.leaders = {1: "n2"}
        self.candidates: dict[int, str] = {}
        self._write({})

    def _write(self, roles: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"leader": self.leader, "term": self.term,
                                   "roles": roles}))
        tmp.replace(self.path)

    def _alive(self, node: str | None) -> bool:
        pid = self.cluster.pids().get(node) if node else None
        try:
            return pid is not None and _state(pid) not in ("T", "t", "Z")
        except OSError:
            return False

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.01):
            if self._alive(self.leader):
                continue
            live = [n for n in self.cluster.node_ids if self._alive(n)]
            if not live:
                continue
            self.term += 1
            self.leader = None
            candidate = live[self.term % len(live)]
            self.candidates[self.term] = candidate
            self._write({candidate: "candidate"})
            time.sleep(self.candidate_s)
            if self._alive(candidate):
                self.leader = candidate
                self.leaders[self.term] = candidate
                self._write({})


def _pairs(ops: list[dict]) -> list[tuple[dict, dict]]:
    """Nemesis records as (invoke, completion): per f, they alternate."""
    pending: dict[str, dict] = {}
    out = []
    for o in ops:
        if o["f"] in pending:
            out.append((pending.pop(o["f"]), o))
        else:
            pending[o["f"]] = o
    assert not pending, f"unpaired nemesis records: {pending}"
    return out


WANTED_TARGETS = {"kill leader", "partition leader", "restart election"}
# Each leader-following target kind must act at least once, through any fault.
WANTED_KINDS = ("new-leader", "candidate", "followers", "leader-last", "cut-leader",
                "follower")


def _reached(counts) -> bool:
    acted = set(counts)
    return WANTED_TARGETS <= acted and all(
        any(name.endswith(" " + kind) for name in acted) for kind in WANTED_KINDS)


def test_schedule_follows_the_leader_reaches_every_fault_and_ends_healed(echo_cluster,
                                                                          tmp_path):
    c = echo_cluster
    elector = Elector(c)
    stop = threading.Event()
    electing = threading.Thread(target=elector.run, args=(stop,))
    electing.start()
    path = tmp_path / "history.jsonl"
    history = HistoryWriter(path)
    nem = Nemesis(c, list(FAULTS), interval_s=0.2, seed=5, history=history,
                  targets=["leader", "new-leader", "candidate", "followers"],
                  latencies_ms=[10])
    seen_active: list[str] = []
    overlapped = []

    def watch() -> None:  # stop once every kind and leader target ran (bounded)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if nem.active and nem.active not in seen_active:
                seen_active.append(nem.active)
            if len(nem.held()) > 1:
                overlapped.append(nem.active)
            if set(FAULTS) <= set(nem.counts) and _reached(nem.target_counts):
                break
            time.sleep(0.01)
        stop.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        nem.run(stop)
    finally:
        stop.set()
        watcher.join()
        electing.join()
        history.close()
    assert nem.active is None and not nem.held()
    assert set(FAULTS) <= set(nem.counts), nem.counts
    missing = WANTED_TARGETS - set(nem.target_counts)
    assert _reached(nem.target_counts), (sorted(missing), dict(nem.target_counts))
    assert overlapped, "network and process faults never overlapped"

    ops = [json.loads(line) for line in path.read_text().splitlines()]
    assert [o["index"] for o in ops] == list(range(len(ops)))
    starts = {"start-partition", "start-latency", "kill", "pause", "kill-cluster"}
    trigger_term = chain_term = None
    for inv, done in _pairs(ops):
        for o in (inv, done):
            assert o["type"] == "info" and o["process"] == "nemesis" and "error" not in o
        assert inv["time"] <= done["time"]
        f = inv["f"]
        if f in starts:
            assert inv.get("target") and done.get("target") == inv["target"], inv
        if f == "start-partition":
            assert inv["value"] in SHAPES
            assert isinstance(done["value"], dict) and done["value"]
            assert all(set(v) <= set(c.node_ids) for v in done["value"].values())
            if inv["target"] == "leader":  # the leader is on the side cut off
                assert elector.leaders[inv["term"]] in done["value"], (inv, done)
            if inv["target"] == "follower":  # a node alone, and not the leader
                alone = [n for n, v in done["value"].items() if len(v) == 2]
                assert len(alone) == 1 and alone[0] != elector.leaders[inv["term"]]
        elif f in ("stop-partition", "stop-latency"):
            # a leader-chain hop reconnects the previous leader, the new one stays cut
            assert inv["value"] is None and (
                done["value"] == "network-healed"
                or done["value"].startswith("reconnected; in force: ")), done
        elif f == "start-latency":
            assert inv["value"] == {"latency": 10, "jitter": 10} == done["value"]
        else:
            assert inv["value"] == done["value"]
            assert inv["value"] and set(inv["value"]) <= set(c.node_ids)
        # leader following: the record's node led (or ran in) the record's term
        target = inv.get("target")
        if f in ("kill", "pause") and target in ("leader", "new-leader", "cut-leader"):
            assert inv["value"] == [elector.leaders[inv["term"]]], inv
        if f in ("kill", "pause") and target == "candidate":
            assert inv["value"] == [elector.candidates[inv["term"]]], inv
        if f in ("kill", "pause") and target == "leader":
            trigger_term = inv["term"]
        if f == "start-partition" and target == "leader":
            chain_term = inv.get("term")
        if target in ("new-leader", "candidate"):  # a newer term than the trigger's
            trigger = chain_term if f == "start-partition" else trigger_term
            # (no trigger when no leader was acting: the strike waited for the next)
            assert trigger is None or inv["term"] > trigger, (f, target, inv)
            if f == "start-partition":
                chain_term = inv["term"]   # the next hop follows this one
        if f == "kill-cluster" and inv["target"] == "all":
            # every node, but one the partition package holds paused (a cut leader)
            assert set(inv["value"]) <= set(c.node_ids)
            assert len(inv["value"]) >= len(c.node_ids) - 1
        elif f == "kill-cluster" and inv["target"] == "leader-last":
            assert elector.leaders[inv["term"]] in inv["value"]
        elif f == "kill-cluster":  # struck while a candidate ran; the leader died first
            assert inv["target"] == "election" and inv["term"] in elector.candidates
            assert len(inv["value"]) >= len(c.node_ids) - 1
    _check_leader_last(ops, elector)
    windows = fault_windows([Op(o["index"], o["time"], o["type"], o["process"], o["f"],
                                o["value"], extra={k: v for k, v in o.items()
                                                   if k == "target"}) for o in ops])
    assert windows and all(w.closed for w in windows)
    assert {w.kind for w in windows} == {"partition", "latency", "kill", "pause", "restart"}

    # ended healed: no toxic, every proxy enabled, every node running and not stopped
    c.toxiproxy.verify_healed()
    pids = c.pids()
    assert set(pids) == {"n1", "n2", "n3", "toxiproxy"}
    assert all(_state(pid) not in ("T", "t", "Z") for pid in pids.values())
    assert all(_link_works(c, a, b, 5) for a, b in [("n1", "n2"), ("n3", "n1")])
    assert seen_active  # the progress text was set while faults ran


def _check_leader_last(ops: list[dict], elector: Elector) -> None:
    """A leader-last restart: every node but the term's leader is started first (a
    `start` op), then the old leader alone (start-cluster)."""
    restarts = [o for o in ops if o["f"] == "kill-cluster"
                and o.get("target") == "leader-last"][::2]   # invokes
    assert restarts, "no leader-last restart ran"
    for r in restarts:
        leader = elector.leaders[r["term"]]
        after = [o for o in ops if o["index"] > r["index"]
                 and o["f"] in ("start", "start-cluster")]
        first = next(o for o in after if o["f"] == "start")
        last = next(o for o in after if o["f"] == "start-cluster")
        assert leader in r["value"] and leader not in first["value"], (r, first)
        assert set(first["value"]) | {leader} == set(r["value"]), (r, first)
        assert last["value"] == [leader] and first["index"] < last["index"], (r, last)


def test_failed_stop_is_recorded_and_heal_all_recovers(echo_cluster, tmp_path):
    c = echo_cluster
    c.restart_attempts = 1
    history = HistoryWriter(tmp_path / "history.jsonl")
    nem = Nemesis(c, ["kill"], interval_s=1, seed=0, history=history, targets=["one"])
    nem.start_fault()
    (victim,) = history.ops[-1].value
    assert victim not in c.pids() and nem.active == f"kill {victim} (one)"
    port = int(c.addresses[victim]["peer"].rsplit(":", 1)[1])
    with socket.socket() as s:  # the restart cannot bind: the stop fails
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        nem.stop_fault()
        nem.start_fault()  # refused while the kill is not undone
    assert nem.active == f"kill {victim} (one)" and nem.counts == {"kill": 1}
    nem.heal_all()
    history.close()
    assert nem.active is None and victim in c.pids() and not nem.abandoned
    ops = [o.to_dict() for o in history.ops]
    failed = [("start", False), ("start", True)]  # an invoke, an error completion
    assert [(o["f"], "error" in o) for o in ops] == [
        ("kill", False), ("kill", False), *failed, *failed,  # stop, then retried by start
        ("start", False), ("start", False)]                  # heal_all
    assert "busy" in ops[3]["error"] and ops[-1]["value"] == [victim]
    assert ops[0]["target"] == "one"


def test_heal_gives_up_on_a_node_that_exits_by_itself(echo_cluster, tmp_path):
    c = echo_cluster
    history = HistoryWriter(tmp_path / "history.jsonl")
    nem = Nemesis(c, ["kill"], seed=0, history=history, targets=["leader"])
    nem.start_fault()
    assert history.ops[-1].value == ["n2"] and history.ops[-1].extra["target"] == "leader"
    (c.run_dir / "broken-n2").write_text("")  # n2 now exits at every start
    nem.heal_all()  # does not raise: the node's failure, not the nemesis's
    history.close()
    assert nem.abandoned and nem.abandoned[0].startswith("n2 ") and not nem.held()
    assert any(e["node"] == "n2" for e in c.unexpected_exits())
    starts = [o for o in history.ops if o.f == "start"]
    assert len(starts) == 2 * 3 and all(o.error for o in starts[1::2])
    c.toxiproxy.verify_healed()
