"""The node's client API (SPEC section 4), its peer protocol (section 5: hardening,
the two lanes, the event lines), against real 3-node clusters of `python -m node`
processes on loopback, and the peer transport alone, in-process."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.bare import SOURCE_ROOT as ROOT, NodeCluster, free_port
from node.core.messages import (AppendEntries, AppendEntriesReply, LogEntry, RequestVote,
                                message_from_dict)
from node.core.state import HardState
from node.shell.transport import Transport, frame_mac, lane_of


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = NodeCluster(tmp_path_factory.mktemp("api"), request_timeout_ms=1000)
    c.start()
    try:
        c.wait_up()
        c.leader()
        yield c
    finally:
        c.stop()


def on_leader(c: NodeCluster, body: dict) -> tuple[int, dict]:
    """POST to the leader; again if leadership moved meanwhile (a definite refusal,
    so nothing ran twice): a busy machine may hold an election at any time."""
    for _ in range(5):
        status, reply = c.op(c.leader(), body)
        if reply.get("code") not in (11, 30):
            break
    return status, reply


def leader_and_follower(c: NodeCluster) -> tuple[str, str]:
    leader = c.leader()
    return leader, next(i for i in c.ids if i != leader)


def test_write_read_cas(cluster: NodeCluster):
    assert on_leader(cluster, {"op": "read", "key": "r1"}) == (200, {"ok": True, "value": None})
    assert on_leader(cluster, {"op": "write", "key": "r1", "value": 5}) == (200, {"ok": True})
    assert on_leader(cluster, {"op": "read", "key": "r1"}) == (200, {"ok": True, "value": 5})
    assert on_leader(cluster, {"op": "cas", "key": "r1", "from": 5, "to": 6})[1] == {"ok": True}
    assert on_leader(cluster, {"op": "read", "key": "r1"})[1]["value"] == 6
    # integer keys and structured values are fine
    assert on_leader(cluster, {"op": "write", "key": 7, "value": [1, {"a": None}]})[1]["ok"]
    assert on_leader(cluster, {"op": "read", "key": 7})[1]["value"] == [1, {"a": None}]


def test_cas_errors_are_definite(cluster: NodeCluster):
    status, reply = on_leader(cluster, {"op": "cas", "key": "never", "from": 1, "to": 2})
    assert (status, reply["code"], reply["error"], reply["definite"]) == \
        (409, 20, "key-does-not-exist", True)
    on_leader(cluster, {"op": "write", "key": "c1", "value": 1})
    status, reply = on_leader(cluster, {"op": "cas", "key": "c1", "from": 2, "to": 3})
    assert (status, reply["code"], reply["error"], reply["definite"]) == \
        (409, 22, "precondition-failed", True)
    assert on_leader(cluster, {"op": "read", "key": "c1"})[1]["value"] == 1


def test_follower_answers_not_leader_with_hint(cluster: NodeCluster):
    for body in ({"op": "write", "key": "f", "value": 1}, {"op": "read", "key": "f"},
                 {"op": "cas", "key": "f", "from": 1, "to": 2}):
        for attempt in range(3):  # a busy machine may cause an election in between
            leader, follower = leader_and_follower(cluster)
            status, reply = cluster.op(follower, body)
            if reply.get("leader") == leader == cluster.leader():
                break
        assert status == 503
        assert reply == {"ok": False, "code": 30, "error": "not-leader", "definite": True,
                         "leader": leader}
    # not executed: the key was never written
    assert cluster.op(leader, {"op": "read", "key": "f"})[1]["value"] is None


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe", b"[1, 2]", b"42", b"null",
    json.dumps({"key": "a"}).encode(),
    json.dumps({"op": "delete", "key": "a"}).encode(),
    json.dumps({"op": "read"}).encode(),
    json.dumps({"op": "read", "key": [1]}).encode(),
    json.dumps({"op": "write", "key": "a"}).encode(),
    json.dumps({"op": "cas", "key": "a", "from": 1}).encode(),
    json.dumps({"op": "write", "key": "a", "value": 1, "client": "c"}).encode(),
    json.dumps({"op": "write", "key": "a", "value": 1, "client": "c", "seq": "1"}).encode(),
    json.dumps({"op": "write", "key": "a", "value": 1, "client": "c", "seq": -1}).encode(),
    # strict JSON with bounds (node.core.values): no NaN or Infinity, at most 32 levels
    b'{"op": "write", "key": "a", "value": NaN}',
    b'{"op": "cas", "key": "a", "from": 1, "to": -Infinity}',
    b'{"op": "write", "key": "a", "value": ' + b"[" * 974 + b"]" * 974 + b"}",
    b'{"op": "write", "key": "a", "value": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    json.dumps({"op": "write", "key": "a", "value": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}).encode(),
])
def test_malformed_request_gets_code_12_and_is_not_fatal(cluster: NodeCluster, body):
    leader, follower = leader_and_follower(cluster)
    for node in (leader, follower):
        status, reply = cluster.op(node, body)
        assert status == 400
        assert reply["code"] == 12 and reply["error"] == "malformed-request"
        assert reply["definite"] is True and reply["ok"] is False
    assert cluster.op(leader, {"op": "read", "key": "a"})[1]["ok"]


def test_values_compare_as_json_and_deep_values_within_bounds_are_kept(cluster: NodeCluster):
    assert on_leader(cluster, {"op": "write", "key": "jb", "value": True})[1] == {"ok": True}
    # true is not 1, and [true] is not [1]: a definite precondition failure
    assert on_leader(cluster, {"op": "cas", "key": "jb", "from": 1, "to": 2})[1]["code"] == 22
    assert on_leader(cluster, {"op": "write", "key": "jb", "value": [True]})[1]["ok"]
    assert on_leader(cluster, {"op": "cas", "key": "jb", "from": [1], "to": 2})[1]["code"] == 22
    assert on_leader(cluster, {"op": "cas", "key": "jb", "from": [True], "to": 2})[1]["ok"]
    deep = 7
    for _ in range(32):
        deep = [deep]
    assert on_leader(cluster, {"op": "write", "key": "jd", "value": deep})[1] == {"ok": True}
    assert on_leader(cluster, {"op": "read", "key": "jd"})[1]["value"] == deep


def test_oversized_request_is_malformed(cluster: NodeCluster):
    leader, _ = leader_and_follower(cluster)
    big = json.dumps({"op": "write", "key": "big", "value": "x" * (2 << 20)}).encode()
    try:
        status, reply = cluster.op(leader, big)
    except OSError:  # the server may close the connection before reading it all
        status, reply = 400, {"code": 12}
    assert status in (400, 413) and reply.get("code", 12) == 12
    assert cluster.status(leader) is not None


def _send_raw(addr: str, data: bytes) -> None:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(data)
        time.sleep(0.05)


def _frame(obj, secret: bytes | None = None) -> bytes:
    """A peer frame (SPEC section 5), with its MAC when given the cluster's secret."""
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    header = len(body).to_bytes(4, "big")
    return header + body + (frame_mac(secret, header, body) if secret else b"")


def _secret(c: NodeCluster) -> bytes:
    return bytes.fromhex(c.options["peer_secret"])


def test_malformed_peer_frames_are_dropped_and_not_fatal(cluster: NodeCluster):
    """Frames that pass authentication (signed with the cluster's secret) but are
    malformed: each is dropped, none stops a node."""
    leader, _ = leader_and_follower(cluster)
    term = cluster.status(leader)["term"]
    key = _secret(cluster)

    def sign(obj) -> bytes:
        return _frame(obj, key)
    bad = [
        b"\xff\xff\xff\xff" + b"x" * 16,          # over the maximum frame size
        sign(b"{not json"),
        sign(b"\xc3\x28"),                       # not UTF-8
        sign(b""),
        sign([1, 2, 3]),
        sign({"type": "Nonsense", "term": 1, "sender": "n2"}),
        sign({"type": "AppendEntries", "term": "x", "sender": "n2"}),
        sign({"type": "RequestVote", "term": term + 100, "sender": "intruder",
                "last_log_index": 10 ** 6, "last_log_term": 10 ** 6}),
        sign({"type": "AppendEntries", "term": 1, "sender": "n2", "prev_log_index": 0,
                "prev_log_term": 0, "entries": [{"term": -1}]}),
        b"\x00\x00",                               # a torn header
    ]
    for node in cluster.ids:
        for data in bad:
            _send_raw(cluster.nodes[node]["peer"], data)
    for node in cluster.ids:
        assert cluster.procs[node].poll() is None, cluster.log(node)[-2000:]
        assert "malformed" in cluster.log(node)
    # The intruder's huge term was never adopted and the cluster still commits.
    assert cluster.leader() == leader
    assert cluster.status(leader)["term"] == term
    assert cluster.op(leader, {"op": "write", "key": "after-garbage", "value": 1})[1]["ok"]


def test_an_authenticated_frame_that_contradicts_committed_entries_changes_no_entry(
        cluster: NodeCluster):
    """A signed AppendEntries (a peer with the secret, but broken) that would overwrite
    committed entries is refused with an ERROR line (node-health reads it); the node
    keeps running and keeps what it committed."""
    leader, follower = leader_and_follower(cluster)
    assert on_leader(cluster, {"op": "write", "key": "kept", "value": 1})[1] == {"ok": True}
    st = cluster.status(follower)
    term = st["term"] + 1
    frame = _frame({"type": "AppendEntries", "term": term, "sender": leader,
                    "prev_log_index": 0, "prev_log_term": 0,
                    "entries": [{"term": term, "command": {"op": "write", "key": "kept",
                                                           "value": 666}}],
                    "leader_commit": 1}, _secret(cluster))
    for _ in range(3):
        _send_raw(cluster.nodes[follower]["peer"], frame)
    deadline = time.monotonic() + 5
    while "refused" not in cluster.log(follower) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = cluster.log(follower)
    assert cluster.procs[follower].poll() is None, log[-2000:]
    assert "which this node committed with term" in log and " ERROR " in log, log[-2000:]
    assert "refusing to truncate" not in log
    st2 = cluster.status(follower)
    assert st2["commit_index"] >= st["commit_index"], (st, st2)
    assert on_leader(cluster, {"op": "read", "key": "kept"})[1] == {"ok": True, "value": 1}


def test_exactly_once_retry_returns_original_result(cluster: NodeCluster):
    cas = {"op": "cas", "key": "eo", "from": 1, "to": 2, "client": "alice", "seq": 3}
    on_leader(cluster, {"op": "write", "key": "eo", "value": 1})
    assert on_leader(cluster, cas)[1] == {"ok": True}
    # A retry would now fail its precondition if applied again; it returns the
    # original result instead and changes nothing.
    assert on_leader(cluster, cas)[1] == {"ok": True}
    write = {"op": "write", "key": "eo", "value": 9, "client": "bob", "seq": 1}
    assert on_leader(cluster, write)[1]["ok"]
    assert on_leader(cluster, {"op": "write", "key": "eo", "value": 10})[1]["ok"]
    assert on_leader(cluster, write)[1] == {"ok": True}   # not applied again
    assert on_leader(cluster, {"op": "read", "key": "eo"})[1]["value"] == 10


def test_status(cluster: NodeCluster):
    leader = cluster.leader()
    cluster.op(leader, {"op": "write", "key": "s", "value": 1})
    for node in cluster.ids:
        st = cluster.status(node)
        assert {"id", "role", "term", "leader", "commit_index", "last_applied",
                "log_length"} <= set(st)
        assert st["id"] == node
        assert st["role"] == ("leader" if node == leader else "follower")
        assert st["leader"] == leader
        assert 0 <= st["last_applied"] <= st["commit_index"] <= st["log_length"]
    assert cluster.status(leader)["commit_index"] >= 2   # the no-op and the write


def _isolate_leader(c: NodeCluster) -> str:
    c.start()
    c.wait_up()
    leader = c.leader()
    assert c.op(leader, {"op": "write", "key": "x", "value": 1})[1]["ok"]
    # (under ack-before-commit the ok came early: wait until every node applied it)
    length = c.status(leader)["log_length"]
    deadline = time.monotonic() + 10
    while any((c.status(i) or {}).get("last_applied", 0) < length for i in c.ids):
        assert time.monotonic() < deadline, "the write was not applied everywhere"
        time.sleep(0.05)
    for i in c.ids:
        if i != leader:
            c.kill(i)
    return leader


def test_without_quorum_writes_are_indefinite_and_reads_refused(tmp_path):
    c = NodeCluster(tmp_path, request_timeout_ms=800)
    try:
        leader = _isolate_leader(c)
        status, reply = c.op(leader, {"op": "write", "key": "x", "value": 2})
        # Appended but never committed: "when in doubt, indefinite", or refused
        # outright once CheckQuorum deposed the leader.
        assert reply["ok"] is False
        assert reply["definite"] is False or reply["code"] in (11, 30)
        time.sleep(1.0)  # CheckQuorum: the leader steps down within an election timeout
        status, reply = c.op(leader, {"op": "read", "key": "x"})
        assert reply["ok"] is False and reply["code"] in (0, 11, 30)
        assert c.status(leader)["role"] != "leader"
    finally:
        c.stop()


def test_planted_bugs_answer_without_quorum(tmp_path):
    """local-reads answers reads from local state and ack-before-commit acknowledges
    an uncommitted write: with both followers dead, the 'leader' still says ok."""
    c = NodeCluster(tmp_path, bug="local-reads,ack-before-commit", request_timeout_ms=800)
    try:
        leader = _isolate_leader(c)
        assert c.status(leader)["bugs"] == ["local-reads", "ack-before-commit"]
        assert c.op(leader, {"op": "write", "key": "x", "value": 2}) == (200, {"ok": True})
        assert c.op(leader, {"op": "cas", "key": "x", "from": 1, "to": 3})[1] == {"ok": True}
        # The acknowledged write and cas were never applied: the stale local state shows.
        assert c.op(leader, {"op": "read", "key": "x"}) == (200, {"ok": True, "value": 1})
        assert c.status(leader)["role"] == "leader"
    finally:
        c.stop()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *args], cwd=ROOT, timeout=30,
                          capture_output=True, text=True)


def test_cli_bad_input_is_one_line_and_exit_254(tmp_path):
    good = tmp_path / "ok.yaml"
    good.write_text('nodes:\n  n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}\n'
                    f'data_dir: "{tmp_path}/d"\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text('nodes:\n  n1: {client: "127.0.0.1:1", peer: "nowhere"}\n')
    cases = [
        (("--config", str(tmp_path / "missing.yaml"), "--id", "n1"), "missing.yaml"),
        (("--config", str(bad), "--id", "n1"), "bad.yaml:2: nodes.n1.peer"),
        (("--config", str(good), "--id", "n9"), "--id"),
        (("--config", str(good), "--id", "n1", "--bug", "no-such-bug"), "--bug"),
        (("--config", str(good)), "--id"),
    ]
    for args, needle in cases:
        r = _cli(*args)
        assert r.returncode == 254, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr


class _Toxiproxy:
    """A real toxiproxy server on a free port, driven through its REST API."""

    def __init__(self, binary: str, base) -> None:
        self.port = free_port()
        self.log = open(base / "toxiproxy.log", "wb")
        self.proc = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.call("GET", "/version")
                break
            except OSError:
                assert time.monotonic() < deadline, "toxiproxy did not start"
                time.sleep(0.05)

    def call(self, method: str, path: str, body: dict | None = None):
        import urllib.request
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            text = r.read()
        return json.loads(text) if text.strip().startswith((b"{", b"[")) else text

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


@pytest.mark.parametrize("shape", ["isolate", "mute"])
def test_black_holed_links_recover_after_heal(tmp_path, shape):
    """Toxiproxy `timeout` toxics (bytes vanish, no error) cut the leader off (both
    directions, or only what it sends); the others elect a new leader; after the heal
    every node follows one leader again and the old leader catches up, through the
    same proxies."""
    from tests.support import require_binary
    binary = require_binary("toxiproxy-server", "go install github.com/Shopify/"
                            "toxiproxy/v2/cmd/server@v2.12.0")
    tp = _Toxiproxy(binary, tmp_path)
    c = NodeCluster(tmp_path, request_timeout_ms=1000)
    try:
        peers: dict = {}
        for a in c.ids:
            for b in c.ids:
                if a != b:
                    p = tp.call("POST", "/proxies", {"name": f"{a}-to-{b}",
                                                     "listen": "127.0.0.1:0",
                                                     "upstream": c.nodes[b]["peer"]})
                    peers.setdefault(a, {})[b] = p["listen"]
        c.write_config(peers=peers)
        c.start()
        c.wait_up()
        old = c.leader()
        assert c.op(old, {"op": "write", "key": "bh", "value": 1})[1]["ok"]
        cuts = [f"{a}-to-{b}" for a in c.ids for b in c.ids
                if a != b and (old in (a, b) if shape == "isolate" else a == old)]
        for name in cuts:
            tp.call("POST", f"/proxies/{name}/toxics",
                    {"name": "cut", "type": "timeout", "stream": "upstream",
                     "attributes": {"timeout": 0}})
        rest = [i for i in c.ids if i != old]
        new = c.leader(rest)
        assert new != old
        assert c.submit({"op": "write", "key": "bh", "value": 2}, rest,
                        time.monotonic() + 10)["ok"]
        time.sleep(1.0)  # long enough for the senders to notice the silence
        for name in cuts:
            tp.call("DELETE", f"/proxies/{name}/toxics/cut")
        assert all(not p["toxics"] for p in tp.call("GET", "/proxies").values())
        # Healed: the old leader hears the new term, follows and catches up.
        assert c.submit({"op": "write", "key": "bh", "value": 3}, c.ids,
                        time.monotonic() + 10)["ok"]
        deadline = time.monotonic() + 15
        while True:
            st = {i: c.status(i) for i in c.ids}
            leader = st[new]["leader"] if st[new] else None
            if (leader and all(s and s["leader"] == leader for s in st.values())
                    and st[old]["last_applied"] >= st[leader]["commit_index"]):
                break
            assert time.monotonic() < deadline, f"no recovery after the heal: {st}"
            time.sleep(0.1)
        reply = c.submit({"op": "read", "key": "bh"}, c.ids, time.monotonic() + 10)
        assert reply["ok"] and reply["value"] == 3
        for i in c.ids:
            assert c.procs[i].poll() is None
    finally:
        c.stop()
        tp.close()


def _events(c: NodeCluster, node: str) -> list[dict]:
    out = []
    for line in c.log(node).splitlines():
        if "raftcheck.node.events" in line and "raft-event " in line:
            out.append(json.loads(line.split("raft-event ", 1)[1]))
    return out


def test_event_lines(cluster: NodeCluster):
    """Every node logs start; the leader logs leader for its term; its voters logged a
    granted vote for it, after a persisted line for that term and vote."""
    leader = cluster.leader()
    term = cluster.status(leader)["term"]
    events = {i: _events(cluster, i) for i in cluster.ids}
    for i, evs in events.items():
        start = evs[0]
        assert start["event"] == "start" and set(start) == {
            "event", "term", "vote", "commit", "last_index", "snapshot_index", "bugs",
            "trace"}, start
        assert start["bugs"] == [] and start["commit"] <= start["last_index"]
    assert {"event": "leader", "term": term} in events[leader]
    def vote_at(evs: list[dict]) -> int | None:
        return next((k for k, e in enumerate(evs) if e["event"] == "vote"
                     and e["term"] == term and e["candidate"] == leader), None)
    voters = [i for i in cluster.ids if i != leader and vote_at(events[i]) is not None]
    assert voters, events
    for i in voters:
        evs = events[i]
        vote = vote_at(evs)
        assert {"event": "persisted", "term": term, "vote": leader} in evs[:vote]
        # section 5.4.1: the vote line carries both logs' positions, up to date
        assert evs[vote]["candidate_last"] >= evs[vote]["own_last"], evs[vote]
    for i in cluster.ids:   # no node announced leadership of the leader's term but it
        assert i == leader or {"event": "leader", "term": term} not in events[i]


# ---- the two-lane peer transport --------------------------------------------------

class _Recorder:
    """A peer listener that records the messages of each accepted connection."""

    def __init__(self) -> None:
        self.connections: list[list] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        got: list = []
        self.connections.append(got)
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(4), "big")
                got.append(message_from_dict(json.loads(await reader.readexactly(n))))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def messages(self) -> list:
        return [m for conn in self.connections for m in conn]


def _traffic(sender: str) -> list:
    """Entries, a heartbeat, a vote request, entries, a reply, a heartbeat."""
    big = [LogEntry(1, {"op": "write", "key": k, "value": "x" * 100}) for k in range(50)]
    return [AppendEntries(1, sender, 0, 0, big), AppendEntries(1, sender, 0, 0, [], 0, 1),
            RequestVote(2, sender, 50, 1), AppendEntries(1, sender, 50, 1, big[:3]),
            AppendEntriesReply(1, sender, True, 7), AppendEntries(1, sender, 50, 1, [], 0, 2)]


def test_heartbeats_and_entries_travel_on_separate_connections():
    async def main():
        rec = _Recorder()
        port = await rec.start()
        t = Transport("a", ("127.0.0.1", 0), {"b": ("127.0.0.1", port)},
                      message_from_dict, lambda m: None)
        await t.start()
        try:
            msgs = _traffic("a")
            for m in msgs:
                t.send("b", m)
            deadline = asyncio.get_running_loop().time() + 10
            while len(rec.messages()) < len(msgs):
                assert asyncio.get_running_loop().time() < deadline, rec.connections
                await asyncio.sleep(0.01)
            return msgs, rec.connections, dict(t.stats)
        finally:
            await t.close()
            rec.server.close()
    msgs, conns, stats = asyncio.run(main())
    by_lane = {lane_of(conn[0]): conn for conn in conns if conn}
    assert len(conns) == 2 and set(by_lane) == {"control", "data"}
    assert by_lane["data"] == [msgs[0], msgs[3]]
    assert by_lane["control"] == [msgs[1], msgs[2], msgs[4], msgs[5]]   # in send order
    assert stats["dials_control"] == stats["dials_data"] == 1


def test_a_toxiproxy_cut_stops_both_lanes_and_both_recover(tmp_path):
    """a -> b through a Toxiproxy proxy; b answers a directly. A `timeout` toxic on the
    proxy silences both lanes; each lane notices the silence and redials; after the
    heal both deliver again."""
    from tests.support import require_binary
    binary = require_binary("toxiproxy-server", "go install github.com/Shopify/"
                            "toxiproxy/v2/cmd/server@v2.12.0")
    tp = _Toxiproxy(binary, tmp_path)
    decode = message_from_dict

    async def main():
        a_port, b_port = free_port(), free_port()
        proxy = tp.call("POST", "/proxies", {"name": "a-to-b", "listen": "127.0.0.1:0",
                                             "upstream": f"127.0.0.1:{b_port}"})
        host, pport = proxy["listen"].rsplit(":", 1)
        got: list = []
        b: Transport

        def at_b(m) -> None:
            got.append(m)
            b.send("a", AppendEntriesReply(m.term, "b", True))
        a = Transport("a", ("127.0.0.1", a_port), {"b": (host, int(pport))}, decode,
                      lambda m: None, silence_s=0.3)
        b = Transport("b", ("127.0.0.1", b_port), {"a": ("127.0.0.1", a_port)}, decode,
                      at_b, silence_s=0.3)
        await a.start()
        await b.start()
        loop = asyncio.get_running_loop()

        async def deliver_both(timeout: float) -> bool:
            """Send one message per lane every 50 ms until b has had both kinds."""
            got.clear()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                for m in _traffic("a")[:2]:
                    a.send("b", m)
                await asyncio.sleep(0.05)
                if {lane_of(m) for m in got} == {"control", "data"}:
                    return True
            return False
        try:
            assert await deliver_both(10), "no delivery before the cut"
            tp.call("POST", "/proxies/a-to-b/toxics",
                    {"name": "cut", "type": "timeout", "stream": "upstream",
                     "attributes": {"timeout": 0}})
            await asyncio.sleep(0.2)     # what was in flight before the cut lands
            assert not await deliver_both(1.5), f"delivered through a cut: {got}"
            cut_stats = dict(a.stats)
            tp.call("DELETE", "/proxies/a-to-b/toxics/cut")
            assert await deliver_both(15), "no delivery after the heal"
            return cut_stats, dict(a.stats)
        finally:
            await a.close()
            await b.close()
    try:
        cut_stats, stats = asyncio.run(main())
    finally:
        tp.close()
    # each lane noticed the silence on its own and redialled
    assert cut_stats["silence_redials"] >= 2
    assert stats["dials_control"] >= 2 and stats["dials_data"] >= 2


def test_a_second_node_on_a_data_directory_in_use_refuses_and_changes_nothing(
        cluster: NodeCluster):
    """The data directory is locked before anything is read (etcd's WAL does the same):
    a node started twice stops with one line, and the running node's WAL is untouched."""
    leader = cluster.leader()
    assert on_leader(cluster, {"op": "write", "key": "lock", "value": 1})[1] == {"ok": True}
    victim = next(i for i in cluster.ids if i != leader)
    wal = Path(str(cluster.options["data_dir"]).replace("{id}", victim)) / "raft.wal"
    time.sleep(0.3)  # the write reaches the follower's WAL
    before = wal.read_bytes()
    r = _cli("--config", str(cluster.config), "--id", victim)
    assert r.returncode == 254, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another node" in lines[0], r.stderr
    assert wal.read_bytes()[:len(before)] == before
    assert cluster.status(victim) is not None
    assert on_leader(cluster, {"op": "read", "key": "lock"})[1] == {"ok": True, "value": 1}


def test_a_damaged_wal_refuses_to_start_until_repair_wal_cuts_it(tmp_path):
    """One line naming the file and offset, exit 254; `--repair-wal` says what it cuts
    and the node starts on what is left."""
    from node.shell.storage import Storage
    data = tmp_path / "d"
    s = Storage(data)
    s.load()
    s.save(HardState(3, "n1"), None, [(1, LogEntry(3, {"op": "write", "key": 1, "value": 1}))])
    s.close()
    wal = data / "raft.wal"
    intact = wal.stat().st_size
    wal.write_bytes(wal.read_bytes() + bytes(64))  # a zero-filled tail
    port, peer = free_port(), free_port()
    cfg = tmp_path / "one.yaml"
    cfg.write_text(f'nodes:\n  n1: {{client: "127.0.0.1:{port}", peer: "127.0.0.1:{peer}"}}\n'
                   f'data_dir: "{data}"\npeer_secret: "{"ab" * 16}"\n')
    r = _cli("--config", str(cfg), "--id", "n1")
    assert r.returncode == 254, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"offset {intact}: zero-filled" in lines[0], r.stderr
    assert "raft.wal" in lines[0] and "Traceback" not in r.stderr
    r = _cli("--config", str(cfg), "--id", "n1", "--repair-wal")
    assert r.returncode == 0, r.stderr
    assert f"offset {intact}: zero-filled" in r.stderr and "cutting 64 bytes" in r.stderr
    assert "the log now holds 1 entries, term 3" in r.stdout
    assert wal.stat().st_size == intact
    r = _cli("--config", str(cfg), "--id", "n1", "--repair-wal")
    assert r.returncode == 0 and "no damage; nothing cut" in r.stdout


def test_forged_peer_frames_change_nothing(cluster: NodeCluster):
    """Without the cluster's secret, a process that reaches a peer port cannot forge an
    entry or a term (the frames of issue: an entry at the next index, a term of
    2^63-1); with a wrong MAC neither. The drops are logged, at most once per 5 s."""
    leader, follower = leader_and_follower(cluster)
    assert on_leader(cluster, {"op": "write", "key": "forge", "value": 1})[1] == {"ok": True}
    st = cluster.status(follower)
    entry = {"term": st["term"], "command": {"op": "write", "key": "forge", "value": 666}}
    forged = [
        {"type": "AppendEntries", "term": st["term"], "sender": leader,
         "prev_log_index": st["log_length"], "prev_log_term": st["term"],
         "entries": [entry], "leader_commit": st["log_length"] + 1},
        {"type": "RequestVote", "term": 2 ** 63 - 1, "sender": leader,
         "last_log_index": 10 ** 9, "last_log_term": 10 ** 9},
    ]
    wrong = b"\x01" * 32
    for node in cluster.ids:
        for obj in forged:
            for _ in range(20):
                _send_raw(cluster.nodes[node]["peer"], _frame(obj))
            _send_raw(cluster.nodes[node]["peer"], _frame(obj, wrong))
    time.sleep(0.5)
    for node in cluster.ids:
        s = cluster.status(node)
        assert s is not None and s["term"] < 2 ** 62, s
        log = cluster.log(node)
        assert 1 <= log.count("fails peer authentication") <= 2, log[-3000:]
    assert on_leader(cluster, {"op": "read", "key": "forge"})[1] == {"ok": True, "value": 1}


def test_a_cluster_file_without_a_peer_secret_is_refused(tmp_path):
    base = 'nodes:\n  n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}\n' \
           f'data_dir: "{tmp_path}/d"\n'
    (tmp_path / "secret.hex").write_text("zz")
    cases = [
        ("", "no peer secret"),
        ('peer_secret: "abcd"\n', "peer_secret: expected at least 16 bytes"),
        ('peer_secret: 12\n', "peer_secret: expected a hex string"),
        ('peer_secret_file: "missing.hex"\n', "peer_secret_file: cannot read"),
        ('peer_secret_file: "secret.hex"\n', "peer_secret_file:"),
        (f'peer_secret: "{"ab" * 16}"\npeer_secret_file: "secret.hex"\n', "not both"),
        ("insecure_peers: 1\n", "insecure_peers: expected true or false"),
    ]
    for i, (extra, needle) in enumerate(cases):
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(base + extra)
        r = _cli("--config", str(cfg), "--id", "n1")
        assert r.returncode == 254, (extra, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (extra, r.stderr)
    from node.shell.config import load_cluster, node_config
    (tmp_path / "good.hex").write_text("ab" * 32 + "\n")
    cfg = tmp_path / "good.yaml"
    cfg.write_text(base + 'peer_secret_file: "good.hex"\n')  # relative to the file
    assert node_config(load_cluster(str(cfg)), "n1").peer_secret == bytes.fromhex("ab" * 32)
    cfg.write_text(base + "insecure_peers: true\n")
    assert node_config(load_cluster(str(cfg)), "n1").peer_secret is None



# --- the client port under slow, idle and too many connections (node.shell.httpguard)

def _raw_client(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the server closes `s` within `seconds` (reads until EOF or timeout)."""
    s.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if s.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except ConnectionError:
            return True
    return False


def test_slow_idle_and_excess_client_connections_are_closed_or_refused(tmp_path):
    """A slowloris connection (headers a byte at a time, never finished) and an idle
    one are closed within seconds; a slow body gets code 12; beyond the cap a request
    gets code 11 and Connection: close; the node serves well-behaved clients all along
    and logs no traceback."""
    c = NodeCluster(tmp_path, n=1, client_idle_timeout_ms=1000, max_client_connections=6)
    c.start()
    try:
        c.wait_up()
        node = c.leader()
        addr = c.nodes[node]["client"]
        loris = _raw_client(addr)
        loris.sendall(b"POST /op HTTP/1.1\r\nHost: n\r\n")
        idle = _raw_client(addr)
        closed = False
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not closed:
            try:
                loris.sendall(b"X")              # a header that never ends
            except OSError:
                closed = True
                break
            closed = _closed_within(loris, 0.3)
        assert closed, "the slowloris connection was never closed"
        assert _closed_within(idle, 3), "the idle connection was never closed"

        slow = _raw_client(addr)
        slow.sendall(b"POST /op HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"op\":")
        slow.settimeout(5)
        answer = slow.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 400") and '"code":12' in answer, answer
        assert "not received within" in answer

        held = [_raw_client(addr) for _ in range(8)]    # over the cap of 6
        status, reply = c.op(node, {"op": "write", "key": "cap", "value": 1})
        assert status == 503 and reply["code"] == 11 and reply["definite"] is True, reply
        assert "too many connections" in reply["detail"]
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while c.op(node, {"op": "write", "key": "cap", "value": 2})[0] != 200:
            assert time.monotonic() < deadline, "the node never served again"
            time.sleep(0.2)
        assert c.op(node, {"op": "read", "key": "cap"})[1] == {"ok": True, "value": 2}
        assert c.procs[node].poll() is None
        assert "Traceback" not in c.log(node)
    finally:
        c.stop()
