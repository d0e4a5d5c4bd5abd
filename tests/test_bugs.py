"""The planted-bug catalog (node/bugs.py): each bug, in the smallest scenario that
shows it, with the same scenario on the correct node showing the right behaviour.

Core bugs drive real `RaftCore`s by hand (the in-test network of test_raft_core) or
the register machine; shell bugs drive a real node server in-process whose two peers
are played by the test ("puppets" that speak the peer protocol), so every message the
node sends and every fsync it makes can be watched.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from cluster.bare import free_port
from node.bugs import (ACK_BEFORE_COMMIT, APPEND_NOT_DURABLE, BUGS, COMMIT_OLD_TERM,
                       COMMIT_WAIT_DEFINITE, CORE, LEASE_READS, LOCAL_READS,
                       LONGER_LOG_WINS_VOTE, MATCH_FROM_LEADER_LOG, NO_DEDUP, PROTECTIONS,
                       READ_BEFORE_TERM_COMMIT, SHELL, STALE_TERM_APPEND,
                       TRUNCATE_ON_ANY_APPEND, VOTE_NOT_DURABLE, VOTE_RESET_ON_STEP_DOWN,
                       core_options, ordered, parse_bugs)
from node.errors import BadConfig
from node.core.messages import (AppendEntries, AppendEntriesReply, CommitEntry, LogEntry,
                                RequestVote, RequestVoteReply, message_from_dict)
from node.core.raft import FOLLOWER, LEADER, RaftCore
from node.core.register import RegisterMachine
from node.core.state import HardState, RaftConfig
from node.shell.config import NodeConfig
from node.shell.transport import encode_frame
from checker.invariants import terms_never_decrease
from checker.raft_evidence import Event, NodeEvidence
from checker.raft_rules import (commit_quorum, current_term_leader, election_restriction,
                                read_index, read_quorum)
from tests.test_raft_core import Net, entries


def rule_verdict(rule, node: str, trace: list[tuple[str, dict]], term: int = 0):
    """What a rule of checker.raft_rules says of one core's trace (Ready.trace) as
    the node would log it, after a "start" line at `term`."""
    events = [Event("start", {"term": term, "trace": 2}, 1)] + [
        Event(name, dict(fields), k + 2) for k, (name, fields) in enumerate(trace)]
    return rule([NodeEvidence(node, None, events)]).valid

ROOT = Path(__file__).resolve().parent.parent

CONTRACT = ["commit-old-term", "vote-reset-on-step-down", "truncate-on-any-append",
            "match-from-leader-log", "read-before-term-commit", "longer-log-wins-vote",
            "stale-term-append", "lease-reads", "no-dedup", "local-reads",
            "ack-before-commit", "vote-not-durable", "append-not-durable",
            "commit-wait-definite"]


def config(*bugs: str, **timing) -> RaftConfig:
    """The core config a node with these bugs runs with (as the server builds it)."""
    chosen = frozenset(bugs)
    t = dict(election_ticks_min=10, election_ticks_max=20, heartbeat_ticks=2,
             max_batch_entries=64) | timing
    return RaftConfig(**t, bugs=chosen, **core_options(chosen))


# ---------------------------------------------------------------- the catalog

def test_catalog_is_the_contract_and_every_bug_is_documented():
    assert list(BUGS) == CONTRACT
    for name, bug in BUGS.items():
        assert bug.name == name
        assert bug.layer in (CORE, SHELL)
        assert len(bug.summary) > 20 and len(bug.source) > 20 and len(bug.detail) > 80
        assert bug.disables <= set(PROTECTIONS)
    assert {n for n, b in BUGS.items() if b.layer == SHELL} == {
        LOCAL_READS, ACK_BEFORE_COMMIT, VOTE_NOT_DURABLE, APPEND_NOT_DURABLE,
        COMMIT_WAIT_DEFINITE}


def test_parse_bugs_and_core_options():
    assert parse_bugs(None) == parse_bugs("") == frozenset()
    assert parse_bugs(" lease-reads, no-dedup ") == {LEASE_READS, NO_DEDUP}
    assert parse_bugs([LOCAL_READS]) == {LOCAL_READS}
    for bad in ("nope", "local-reads,nope", ["local-reads", 3]):
        with pytest.raises(BadConfig) as e:
            parse_bugs(bad, field="bugs")
        assert e.value.field == "bugs"
    assert ordered({ACK_BEFORE_COMMIT, LOCAL_READS, NO_DEDUP}) == [
        NO_DEDUP, LOCAL_READS, ACK_BEFORE_COMMIT]
    assert core_options([]) == {"pre_vote": True, "check_quorum": True}
    assert core_options([LEASE_READS]) == {"pre_vote": True, "check_quorum": True}
    assert core_options([LOCAL_READS, LEASE_READS]) == {"pre_vote": True,
                                                        "check_quorum": False}
    assert core_options([COMMIT_OLD_TERM]) == {"pre_vote": False, "check_quorum": False}


def test_node_cli_rejects_an_unknown_bug_with_exit_254(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text('nodes:\n  n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}\n'
                   f'data_dir: "{tmp_path}/d"\n')
    r = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "--id", "n1",
                        "--bug", "lease-reads,no-such-bug"], cwd=ROOT, timeout=30,
                       capture_output=True, text=True)
    assert r.returncode == 254
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--bug" in lines[0] and "no-such-bug" in lines[0]


def test_server_configures_its_core_as_core_options_says(tmp_path):
    from node.shell.server import NodeServer
    for bugs in ([], [LOCAL_READS], [COMMIT_OLD_TERM, LEASE_READS], [LONGER_LOG_WINS_VOTE]):
        server = NodeServer(_node_config(tmp_path, {"n2": 1, "n3": 2}), frozenset(bugs))
        rc = server._raft_config()
        assert rc.bugs == frozenset(bugs)
        assert {"pre_vote": rc.pre_vote, "check_quorum": rc.check_quorum} == \
            core_options(bugs)


# ---------------------------------------------------------------- core bugs

@pytest.mark.parametrize("bug", [False, True])
def test_commit_old_term(bug):
    """Figure 8 (c)-(e): s1 leads term 4 holding e2 of term 2 and gets it onto a
    majority; s5 holds an entry of term 3 at index 2. With the bug s1 commits e2 by
    counting and applies it, then s5 is elected and commits its own entry at index 2:
    two state machines apply different entries at one index. The correct leader never
    commits e2 that way."""
    ids = ["s1", "s2", "s3", "s4", "s5"]
    cfg = config(*([COMMIT_OLD_TERM] if bug else []), max_batch_entries=1)
    logs = {"s1": entries(1, 2), "s2": entries(1), "s3": entries(1), "s4": entries(1),
            "s5": entries(1, 3)}
    net = Net(ids, cfg, logs, terms={i: 3 for i in ids})
    net.down = {"s5"}

    def from_s1(src, dst, m):
        # s1's entries of its own term (the correct node's no-op) are lost, and no
        # follower learns a commit index past 1 from it.
        if isinstance(m, AppendEntries) and src == "s1":
            return AppendEntries(m.term, m.sender, m.prev_log_index, m.prev_log_term,
                                 [e for e in m.entries if e.term != 4],
                                 min(m.leader_commit, 1), m.read_ctx)
        return m
    net.filter = from_s1
    assert net.elect(ids=["s1"]) == "s1"
    net.tick(10, ids=["s1"])
    assert sum(1 for i in ids if net.cores[i].log_length() >= 2
               and net.cores[i].entry(2).term == 2) >= 3   # e2 is on a majority
    s1_applied = {e.index: e.term for e in net.applied["s1"]}
    if not bug:
        assert net.cores["s1"].commit_index < 2 and 2 not in s1_applied
        return
    assert s1_applied[2] == 2        # committed by counting replicas, and applied
    net.down = {"s1"}
    net.filter = None
    assert net.elect(ids=["s5"]) == "s5"   # its last term (3) beats everyone's (2)
    net.tick(20)
    assert net.cores["s2"].entry(2).term == 3
    s2_applied = {e.index: e.term for e in net.applied["s2"]}
    assert s2_applied[2] == 3 != s1_applied[2]   # State Machine Safety broken


@pytest.mark.parametrize("bug", [False, True])
def test_vote_reset_on_step_down(bug):
    """a votes for b in term 5, then loses a PreVote round and steps down in the same
    term: with the bug it forgets its vote and grants c a second vote in term 5."""
    a = RaftCore("a", ["a", "b", "c"], HardState(4, None), entries(1),
                 config(*([VOTE_RESET_ON_STEP_DOWN] if bug else [])), random.Random(0))
    a.step(RequestVote(5, "b", 1, 1))
    rd = a.ready()
    assert [(to, m.granted) for to, m in rd.messages] == [("b", True)]
    a.advance(rd)
    for _ in range(30):                     # no leader: a starts a PreVote round
        a.tick()
    assert a.role != FOLLOWER and a.term == 5
    a.advance(a.ready())
    a.step(RequestVoteReply(5, "b", False, pre_vote=True))
    a.step(RequestVoteReply(5, "c", False, pre_vote=True))
    assert a.role == FOLLOWER and a.term == 5
    # what the node persists now: the forgotten vote, before any second vote
    hs = a.ready().hard_state
    persisted = [Event("persisted", {"term": 5, "vote": "b"}, 2)] + (
        [Event("persisted", {"term": hs.term, "vote": hs.voted_for}, 3)] if hs else [])
    assert terms_never_decrease([NodeEvidence("a", None, persisted)]).valid is (not bug)
    a.step(RequestVote(5, "c", 1, 1))
    votes = [(to, m.granted) for to, m in a.ready().messages
             if isinstance(m, RequestVoteReply) and not m.pre_vote]
    assert votes == [("c", bug)]            # a second vote in term 5 only with the bug


@pytest.mark.parametrize("bug", [False, True])
def test_truncate_on_any_append(bug):
    """A follower acknowledges entries 3..5, then a stale AppendEntries for entry 2
    arrives: the correct follower keeps 3..5, the buggy one takes them back."""
    f = RaftCore("f", ["f", "l", "x"], HardState(2, None), [],
                 config(*([TRUNCATE_ON_ANY_APPEND] if bug else [])), random.Random(0))
    log = entries(1, 1, 2, 2, 2)
    f.step(AppendEntries(2, "l", 0, 0, log[:2], leader_commit=0))
    f.advance(f.ready())
    f.step(AppendEntries(2, "l", 2, 1, log[2:], leader_commit=1))
    rd = f.ready()
    assert rd.messages[0][1].success and rd.messages[0][1].match_index == 5
    f.advance(rd)
    f.step(AppendEntries(2, "l", 1, 1, [log[1]], leader_commit=1))   # stale, reordered
    rd = f.ready()
    assert rd.messages[0][1].success
    if bug:
        assert f.log_length() == 2 and rd.truncate_from == 2   # acknowledged 3..5 gone
    else:
        assert f.log_length() == 5 and rd.truncate_from is None


@pytest.mark.parametrize("bug", [False, True])
def test_match_from_leader_log(bug):
    """The entry sent to f1 is lost and f2 is cut off; f1 answers a heartbeat. The
    buggy leader takes nextIndex-1 as f1's matchIndex and commits an entry only it
    holds."""
    net = Net(["a", "b", "c"], config(*([MATCH_FROM_LEADER_LOG] if bug else [])), seed=3)
    leader = net.elect()
    net.tick(3)
    f1, f2 = [i for i in net.ids if i != leader]
    net.cut |= {(leader, f2), (f2, leader)}
    net.filter = lambda s, d, m: (None if isinstance(m, AppendEntries) and m.entries
                                  and d == f1 else m)
    index = net.propose(leader, {"v": 1})
    net.tick(4, ids=[leader, f1])            # heartbeats and f1's replies
    assert net.cores[f1].log_length() < index and net.cores[f2].log_length() < index
    assert (net.cores[leader].commit_index >= index) is bug
    # the trace shows the commit the replies did not cover (checker.raft_rules)
    assert rule_verdict(commit_quorum, leader, net.traces[leader]) is (not bug)


@pytest.mark.parametrize("bug", [False, True])
def test_read_before_term_commit(bug):
    """The old leader committed and applied a write; the followers hold it but have
    not yet learned its commit. A new leader is elected and its no-op never gets
    through: the buggy leader serves a read at its stale commit index (a stale read),
    the correct one waits for an entry of its term to commit."""
    net = Net(["a", "b", "c"], config(*([READ_BEFORE_TERM_COMMIT] if bug else [])), seed=11)
    old = net.elect()
    net.tick(3)
    index = net.propose(old, {"v": "w1"})
    assert net.cores[old].commit_index == index
    others = [i for i in net.ids if i != old]
    assert all(net.cores[i].log_length() >= index > net.cores[i].commit_index
               for i in others)
    net.down = {old}
    net.filter = lambda s, d, m: (AppendEntries(m.term, m.sender, m.prev_log_index,
                                                m.prev_log_term, [], m.leader_commit,
                                                m.read_ctx)
                                  if isinstance(m, AppendEntries) else m)
    new = net.elect(ids=others)
    assert net.cores[new].read_index("r")
    net.tick(4, ids=others)
    if bug:
        [(rid, at)] = net.reads[new]
        assert rid == "r" and at < index   # would miss the acknowledged write
    else:
        assert net.reads[new] == []
    # the trace shows it whether or not a write was missed (checker.raft_rules)
    assert rule_verdict(read_index, new, net.traces[new]) is (not bug)


@pytest.mark.parametrize("bug", [False, True])
def test_longer_log_wins_vote(bug):
    """A candidate with a longer log whose last term (2) is older than the voter's (3)."""
    v = RaftCore("v", ["v", "c", "x"], HardState(3, None), entries(1, 1, 3),
                 config(*([LONGER_LOG_WINS_VOTE] if bug else [])), random.Random(0))
    v.step(RequestVote(4, "c", 5, 2))
    rd = v.ready()
    [(to, reply)] = rd.messages
    assert to == "c" and reply.granted is bug
    assert rule_verdict(election_restriction, "v", rd.trace, 3) is (not bug)


@pytest.mark.parametrize("bug", [False, True])
def test_stale_term_append(bug):
    """A deposed leader of term 2 sends entries to a follower now in term 3: the buggy
    follower overwrites its term-3 entry with the stale one."""
    f = RaftCore("f", ["f", "old", "new"], HardState(3, None), entries(1, 1, 3),
                 config(*([STALE_TERM_APPEND] if bug else [])), random.Random(0))
    f.step(AppendEntries(2, "old", 2, 1, [LogEntry(2, "stale")], leader_commit=0))
    rd = f.ready()
    [(to, reply)] = rd.messages
    assert to == "old" and reply.term == 3     # either way it learns the newer term
    if bug:
        assert reply.success and f.entry(3) == LogEntry(2, "stale")
        assert rd.truncate_from == 3
    else:
        assert not reply.success and f.entry(3).term == 3 and rd.truncate_from is None
    assert rule_verdict(current_term_leader, "f", rd.trace, 3) is (not bug)


@pytest.mark.parametrize("bug", [False, True])
def test_lease_reads(bug):
    """The leader is cut off (or paused: it counts no ticks) while the others elect a
    new leader that commits a write. Asked for a read, the buggy leader answers at once
    from its lease, at a commit index that misses the new write."""
    net = Net(["a", "b", "c"], config(*([LEASE_READS] if bug else [])), seed=7)
    old = net.elect()
    net.propose(old, {"v": 1})
    net.isolate(old)
    others = [i for i in net.ids if i != old]
    new = net.elect(ids=others)
    index = net.propose(new, {"v": 2})
    assert net.cores[new].commit_index >= index
    assert net.cores[old].role == LEADER      # no tick yet: it still believes it leads
    assert net.cores[old].read_index("r")
    net.drain(old)
    net.deliver()
    if bug:
        [(rid, read_index)] = net.reads[old]
        assert rid == "r" and read_index < index   # a stale read
    else:
        assert net.reads[old] == []
    # served with no quorum round: the trace shows it (checker.raft_rules)
    assert rule_verdict(read_quorum, old, net.traces[old]) is (not bug)


@pytest.mark.parametrize("bug", [False, True])
def test_no_dedup(bug):
    """A cas committed twice (the client retried after losing the first answer)."""
    m = RegisterMachine(frozenset([NO_DEDUP]) if bug else frozenset())
    cmds = [{"op": "write", "key": "k", "value": 1},
            {"op": "cas", "key": "k", "from": 1, "to": 2, "client": "c", "seq": 1},
            {"op": "cas", "key": "k", "from": 1, "to": 2, "client": "c", "seq": 1}]
    results = [m.apply(CommitEntry(c, i + 1, 1)) for i, c in enumerate(cmds)]
    if bug:
        assert results[2]["ok"] is False and results[2]["code"] == 22   # applied again
    else:
        assert results[2] == {"ok": True}    # the first result, not applied again
    assert m.values["k"] == 2


def test_correct_core_is_unchanged_by_the_bug_plumbing():
    """With no bug the config has both protections and the no-op is appended."""
    net = Net(["a", "b", "c"], config())
    leader = net.elect()
    assert net.cores[leader].config.pre_vote and net.cores[leader].config.check_quorum
    assert net.cores[leader].entry(1).command is None


# ---------------------------------------------------------------- shell bugs
#
# A real NodeServer (n1) runs in-process on loopback; its peers n2 and n3 are puppets
# played by the test: they record what n1 sends and answer as told.

def _node_config(tmp_path: Path, peer_ports: dict[str, int], **extra) -> NodeConfig:
    fields = dict(tick_ms=10, heartbeat_ms=50, election_timeout_ms=(300, 400),
                  request_timeout_ms=600) | extra
    return NodeConfig(node_id="n1", client_addr=("127.0.0.1", free_port()),
                      peer_addr=("127.0.0.1", free_port()), listen_host=None,
                      peer_addrs={p: ("127.0.0.1", port) for p, port in peer_ports.items()},
                      data_dir=str(tmp_path / "n1"), **fields)


class Puppet:
    """Plays one peer of n1: records the messages n1 sends it, answers votes and
    appends when told to (as a follower holding whatever it was sent), and can send
    n1 any message."""

    def __init__(self, peer_id: str) -> None:
        self.id = peer_id
        self.port = free_port()
        self.received: list = []
        self.grant_votes = True
        self.ack_appends = True
        self.last = 0                        # the highest index it was sent
        self.node_addr: tuple[str, int] | None = None
        self._server: asyncio.base_events.Server | None = None
        self._out: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._out is not None:
            self._out.close()
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(4), "big")
                m = message_from_dict(json.loads(await reader.readexactly(n)))
                self.received.append(m)
                await self._react(m)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _react(self, m) -> None:
        if isinstance(m, RequestVote) and self.grant_votes:
            await self.send(RequestVoteReply(m.term, self.id, True, m.pre_vote))
        elif isinstance(m, AppendEntries):
            if m.prev_log_index <= self.last:
                self.last = max(self.last, m.prev_log_index + len(m.entries))
            if self.ack_appends:
                await self.send(AppendEntriesReply(m.term, self.id, True,
                                                   match_index=self.last,
                                                   read_ctx=m.read_ctx))

    async def send(self, m) -> None:
        if self._out is None:
            _, self._out = await asyncio.open_connection(*self.node_addr)
        self._out.write(encode_frame(m.to_dict()))
        await self._out.drain()


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    """Wait (bounded) until predicate() holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def run_node(tmp_path: Path, bugs, scenario, **extra):
    """Start n1 with these bugs and two puppets, run `await scenario(node, puppets,
    op)`, stop everything. `op(body)` posts to n1's client API."""
    from node.shell.server import NodeServer

    async def main():
        puppets = {p: Puppet(p) for p in ("n2", "n3")}
        for p in puppets.values():
            await p.start()
        cfg = _node_config(tmp_path, {p: q.port for p, q in puppets.items()}, **extra)
        for p in puppets.values():
            p.node_addr = cfg.peer_addr
        node = NodeServer(cfg, frozenset(bugs))
        await node.start()
        url = f"http://127.0.0.1:{cfg.client_addr[1]}/op"
        async with aiohttp.ClientSession() as session:
            async def op(body: dict) -> dict:
                async with session.post(url, json=body) as r:
                    return await r.json(content_type=None)
            try:
                return await scenario(node, puppets, op)
            finally:
                await node.stop()
                for p in puppets.values():
                    await p.close()
    return asyncio.run(main())


async def lead(node, puppets) -> None:
    """Let n1 win an election (the puppets grant) and commit its no-op."""
    await until(lambda: node.core.role == LEADER, "n1 to lead")
    await until(lambda: node.machine.last_applied >= 1, "the no-op to commit")


@pytest.mark.parametrize("bug", [False, True])
def test_local_reads(tmp_path, bug):
    """The leader's followers stop answering: the buggy leader still answers a read
    at once from its local state; the correct one cannot confirm its leadership."""
    async def scenario(node, puppets, op):
        await lead(node, puppets)
        assert (await op({"op": "write", "key": "k", "value": 1}))["ok"]
        for p in puppets.values():
            p.ack_appends = False
        return await op({"op": "read", "key": "k"})
    reply = run_node(tmp_path, [LOCAL_READS] if bug else [], scenario)
    if bug:
        assert reply == {"ok": True, "value": 1}
    else:
        assert reply["ok"] is False and reply["code"] in (0, 11, 30)


@pytest.mark.parametrize("bug", [False, True])
def test_ack_before_commit(tmp_path, bug):
    """No follower acknowledges: the buggy leader acknowledges the write anyway."""
    async def scenario(node, puppets, op):
        await lead(node, puppets)
        for p in puppets.values():
            p.ack_appends = False
        reply = await op({"op": "write", "key": "k", "value": 2})
        return reply, node.core.commit_index, node.core.log_length()
    reply, commit, length = run_node(tmp_path, [ACK_BEFORE_COMMIT] if bug else [], scenario)
    assert commit < length        # the write was appended, never committed
    if bug:
        assert reply == {"ok": True}
    else:
        assert reply["ok"] is False and reply["definite"] is False


@pytest.mark.parametrize("bug", [False, True])
def test_commit_wait_definite(tmp_path, bug):
    """The followers are slow: the write's commit wait ends with the request timeout.
    The buggy node calls it a definite failure; then the write commits and shows."""
    async def scenario(node, puppets, op):
        await lead(node, puppets)
        for p in puppets.values():
            p.ack_appends = False
        reply = await op({"op": "write", "key": "k", "value": 3})
        for p in puppets.values():
            p.ack_appends = True
        await until(lambda: node.machine.values.get("k") == 3, "the write to commit")
        return reply, await op({"op": "read", "key": "k"})
    reply, read = run_node(tmp_path, [COMMIT_WAIT_DEFINITE] if bug else [], scenario,
                           request_timeout_ms=300)
    assert read == {"ok": True, "value": 3}   # it took effect after all
    if bug:
        assert reply["code"] == 11 and reply["definite"] is True
    else:
        assert reply["code"] == 0 and reply["definite"] is False


@pytest.mark.parametrize("bug", [False, True])
def test_vote_not_durable(tmp_path, bug, caplog):
    """n2 asks n1 for its vote: n1 writes term and vote and replies; the buggy node
    replies before any fsync covers them (yet logs them as persisted)."""
    caplog.set_level("INFO", logger="raftcheck.node.events")

    async def scenario(node, puppets, op):
        n2 = puppets["n2"]
        await n2.send(RequestVote(1, "n2", 0, 0))
        await until(lambda: any(isinstance(m, RequestVoteReply) for m in n2.received),
                    "the vote")
        [reply] = [m for m in n2.received if isinstance(m, RequestVoteReply)]
        return reply, node.storage.fsyncs, node.storage.writes
    reply, fsyncs, writes = run_node(tmp_path, [VOTE_NOT_DURABLE] if bug else [], scenario,
                                     election_timeout_ms=(5000, 6000))
    assert reply.granted and reply.term == 1 and writes >= 1
    assert fsyncs == (0 if bug else 1)
    wal = (tmp_path / "n1" / "raft.wal").read_bytes()
    from node.shell.storage import decode_wal
    assert decode_wal(wal).hard_state == HardState(1, "n2", 0)   # written, at least
    events = [json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records
              if r.getMessage().startswith("raft-event ")]
    assert {"event": "persisted", "term": 1, "vote": "n2"} in events
    assert {"event": "vote", "term": 1, "candidate": "n2", "candidate_last": [0, 0],
            "own_last": [0, 0]} in events


@pytest.mark.parametrize("bug", [False, True])
def test_append_not_durable(tmp_path, bug):
    """n2 leads term 1 and sends n1 two entries: the buggy follower acknowledges them
    with no fsync since it wrote them."""
    async def scenario(node, puppets, op):
        n2 = puppets["n2"]
        await n2.send(AppendEntries(1, "n2", 0, 0, [], 0))     # n1 learns term 1
        await until(lambda: len(n2.received) >= 1, "the heartbeat reply")
        before = (node.storage.fsyncs, node.storage.writes)
        await n2.send(AppendEntries(1, "n2", 0, 0, [LogEntry(1, None),
                                                    LogEntry(1, {"op": "write", "key": "k",
                                                                 "value": 1})], 0))
        await until(lambda: any(getattr(m, "match_index", 0) == 2 for m in n2.received),
                    "the append reply")
        return before, (node.storage.fsyncs, node.storage.writes)
    before, after = run_node(tmp_path, [APPEND_NOT_DURABLE] if bug else [], scenario,
                             election_timeout_ms=(5000, 6000))
    assert before[0] == 1                       # the term change was fsynced anyway
    assert after[1] > before[1]                 # the entries were written
    assert after[0] - before[0] == (0 if bug else 1)
