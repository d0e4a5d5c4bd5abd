"""Unit scenarios for the Raft core (node/core/raft.py), one rule each, on a tiny in-test
network of real cores (messages go through to_dict/message_from_dict)."""

from __future__ import annotations

import random

import pytest

from node.core.messages import (AppendEntries, AppendEntriesReply, LogEntry, RequestVote,
                                RequestVoteReply, message_from_dict)
from node.core.raft import FOLLOWER, LEADER, RaftCore
from node.core.state import HardState, RaftConfig

CFG = RaftConfig(election_ticks_min=10, election_ticks_max=20, heartbeat_ticks=2,
                 max_batch_entries=64)


class Net:
    """Real cores, a FIFO network with cuts, crashed nodes and a delivery filter."""

    def __init__(self, ids, cfg=CFG, logs=None, terms=None, seed=0):
        self.ids = list(ids)
        self.cfg = cfg
        self.cores = {}
        for k, i in enumerate(self.ids):
            log = list((logs or {}).get(i, []))
            hs = HardState((terms or {}).get(i, log[-1].term if log else 0), None)
            self.cores[i] = RaftCore(i, self.ids, hs, log, cfg, random.Random(seed * 100 + k))
        self.queue = []
        self.cut = set()
        self.down = set()
        self.filter = None
        self.applied = {i: [] for i in self.ids}
        self.reads = {i: [] for i in self.ids}
        self.dropped = {i: [] for i in self.ids}
        self.traces = {i: [] for i in self.ids}
        self.sent = []

    def isolate(self, node):
        for o in self.ids:
            if o != node:
                self.cut |= {(node, o), (o, node)}

    def drain(self, i):
        c = self.cores[i]
        while c.has_ready():
            rd = c.ready()
            for to, m in rd.messages:
                self.sent.append((i, to, m))
                self.queue.append((i, to, message_from_dict(m.to_dict())))
            self.applied[i].extend(rd.committed)
            self.reads[i].extend(rd.reads)
            self.dropped[i].extend(rd.dropped_reads)
            self.traces[i].extend(rd.trace)
            c.advance(rd)

    def deliver(self, limit=100_000):
        n = 0
        while self.queue and n < limit:
            src, dst, m = self.queue.pop(0)
            n += 1
            if src in self.down or dst in self.down or (src, dst) in self.cut:
                continue
            if self.filter is not None:
                m = self.filter(src, dst, m)
                if m is None:
                    continue
            self.cores[dst].step(m)
            self.drain(dst)

    def tick(self, n=1, ids=None):
        for _ in range(n):
            for i in ids or self.ids:
                if i not in self.down:
                    self.cores[i].tick()
                    self.drain(i)
            self.deliver()

    def leaders(self):
        return [i for i in self.ids if i not in self.down and self.cores[i].role == LEADER]

    def elect(self, max_ticks=200, ids=None):
        for _ in range(max_ticks):
            self.tick(ids=ids)
            ls = [l for l in self.leaders() if ids is None or l in ids]
            if ls:
                return ls[0]
        raise AssertionError("no leader elected")

    def propose(self, leader, cmd):
        idx = self.cores[leader].propose(cmd)
        self.drain(leader)
        self.deliver()
        return idx


def entries(*terms):
    return [LogEntry(t, {"t": t, "i": i}) for i, t in enumerate(terms)]


def test_election_one_leader_everyone_follows():
    net = Net(["a", "b", "c"])
    leader = net.elect()
    net.tick(5)
    assert net.leaders() == [leader]
    term = net.cores[leader].term
    for i in net.ids:
        assert net.cores[i].term == term
        assert net.cores[i].leader_id == leader
    # the leader's no-op of its own term is committed and applied everywhere (section 8)
    for i in net.ids:
        assert [(e.index, e.term, e.command) for e in net.applied[i]] == [(1, term, None)]


def test_vote_refused_for_stale_log_and_once_per_term():
    core = RaftCore("a", ["a", "b", "c"], HardState(2, None), entries(1, 2), CFG, random.Random(1))
    # 5.4.1: last term 1 < 2: refuse, though the candidate's term is higher
    core.step(RequestVote(3, "b", 5, 1, False))
    # same last term, shorter log: refuse
    core.step(RequestVote(4, "b", 1, 2, False))
    rd = core.ready()
    assert [m.granted for _, m in rd.messages] == [False, False]
    assert rd.hard_state == HardState(4, None)
    core.advance(rd)
    # up to date: grant, and the vote is in the hard state to persist before the reply
    core.step(RequestVote(4, "b", 2, 2, False))
    # another candidate in the same term: refused (one vote per term)
    core.step(RequestVote(4, "c", 9, 9, False))
    rd = core.ready()
    assert rd.hard_state == HardState(4, "b")
    assert [(to, m.granted) for to, m in rd.messages] == [("b", True), ("c", False)]


def test_figure_8_old_term_entry_on_a_majority_is_not_committed():
    # Paper Figure 8 (c)/(d) with five servers. S1 leads term 4 holding e2 of term 2;
    # S5 holds an entry of term 3 at index 2.
    cfg = RaftConfig(10, 20, 2, max_batch_entries=1, pre_vote=True, check_quorum=False)
    ids = ["s1", "s2", "s3", "s4", "s5"]
    logs = {"s1": entries(1, 2), "s2": entries(1), "s3": entries(1), "s4": entries(1),
            "s5": entries(1, 3)}
    net = Net(ids, cfg, logs, terms={"s1": 3, "s2": 3, "s3": 3, "s4": 3, "s5": 3})
    net.down = {"s5"}
    # the new leader's no-op (term 4) is lost on the way: everything else gets through
    net.filter = lambda s, d, m: (AppendEntries(m.term, m.sender, m.prev_log_index,
                                                m.prev_log_term,
                                                [e for e in m.entries if e.term != 4],
                                                m.leader_commit, m.read_ctx)
                                  if isinstance(m, AppendEntries) else m)
    assert net.elect(ids=["s1"]) == "s1"
    s1 = net.cores["s1"]
    assert s1.term == 4
    net.tick(10, ids=["s1"])
    on = [i for i in ids if net.cores[i].log_length() >= 2 and net.cores[i].entry(2).term == 2]
    assert len(on) >= 3  # e2 (term 2) is on a majority...
    assert s1.commit_index < 2  # ...but counting replicas of an old term does not commit it
    # (d): S1 crashes; S5 wins term 5 and overwrites e2 everywhere: safe, never committed.
    net.down = {"s1"}
    net.filter = None
    assert net.elect(ids=["s5"]) == "s5"
    net.tick(10)
    for i in ["s2", "s3", "s4", "s5"]:
        assert net.cores[i].entry(2).term == 3
    assert all(e.index != 2 or e.term == 3 for i in ids for e in net.applied[i])


def test_figure_8_current_term_entry_commits_the_old_one():
    cfg = RaftConfig(10, 20, 2, max_batch_entries=1, pre_vote=True, check_quorum=False)
    ids = ["s1", "s2", "s3", "s4", "s5"]
    logs = {"s1": entries(1, 2), "s2": entries(1), "s3": entries(1), "s4": entries(1),
            "s5": entries(1, 3)}
    net = Net(ids, cfg, logs, terms={i: 3 for i in ids})
    net.down = {"s5"}
    assert net.elect(ids=["s1"]) == "s1"
    net.tick(10, ids=["s1"])
    assert net.cores["s1"].commit_index == 3  # the no-op of term 4 commits e2 with it
    net.down = {"s1"}
    net.tick(100, ids=["s5"])  # S5 cannot win now: a majority has a newer log
    assert net.cores["s5"].role != LEADER


def test_deposed_leader_uncommitted_entries_are_overwritten():
    net = Net(["a", "b", "c"], seed=3)
    old = net.elect()
    net.propose(old, {"v": "committed"})
    net.isolate(old)
    i1 = net.propose(old, {"v": "lost-1"})
    i2 = net.propose(old, {"v": "lost-2"})
    assert net.cores[old].commit_index < i1
    others = [i for i in net.ids if i != old]
    new = net.elect(ids=others)
    net.propose(new, {"v": "new-1"})
    net.propose(new, {"v": "new-2"})
    net.propose(new, {"v": "new-3"})
    net.cut.clear()
    net.tick(30)
    assert net.cores[old].role == FOLLOWER and net.cores[old].leader_id == new
    assert net.cores[old].entries() == net.cores[new].entries()
    commands = [e.command for e in net.cores[old].entries()]
    assert {"v": "lost-1"} not in commands and {"v": "lost-2"} not in commands
    # the deposed leader applied the new leader's entries at those indexes
    got = {e.index: e.command for e in net.applied[old]}
    assert got[i1] != {"v": "lost-1"} and got[i2] != {"v": "lost-2"}


def test_partitioned_old_leader_rejoins_without_disrupting():
    net = Net(["a", "b", "c"], seed=5)
    old = net.elect()
    t_old = net.cores[old].term
    net.isolate(old)
    others = [i for i in net.ids if i != old]
    new = net.elect(ids=others)
    t_new = net.cores[new].term
    net.tick(200)  # the old leader keeps timing out alone
    # CheckQuorum deposed it; PreVote kept its term from growing while isolated
    assert net.cores[old].role != LEADER
    assert net.cores[old].term == t_old
    net.cut.clear()
    net.tick(50)
    assert net.leaders() == [new]
    assert net.cores[new].term == t_new
    assert net.cores[old].leader_id == new and net.cores[old].term == t_new


def test_without_prevote_a_rejoining_node_disrupts():
    # the contrast that shows PreVote matters: terms grow while isolated
    cfg = RaftConfig(10, 20, 2, 64, pre_vote=False, check_quorum=True)
    net = Net(["a", "b", "c"], cfg, seed=5)
    leader = net.elect()
    follower = next(i for i in net.ids if i != leader)
    t = net.cores[leader].term
    net.isolate(follower)
    net.tick(200)
    assert net.cores[follower].term > t + 3


def test_check_quorum_leader_steps_down_and_drops_reads():
    net = Net(["a", "b", "c"], seed=7)
    leader = net.elect()
    net.tick(5)
    net.isolate(leader)
    assert net.cores[leader].read_index("r1")
    net.tick(2 * CFG.election_ticks_min + 1, ids=[leader])
    assert net.cores[leader].role == FOLLOWER
    assert net.reads[leader] == [] and net.dropped[leader] == ["r1"]


def test_without_check_quorum_isolated_leader_stays():
    cfg = RaftConfig(10, 20, 2, 64, pre_vote=True, check_quorum=False)
    net = Net(["a", "b", "c"], cfg, seed=7)
    leader = net.elect()
    net.isolate(leader)
    net.tick(100, ids=[leader])
    assert net.cores[leader].role == LEADER


def test_fast_backtracking_skips_whole_terms():
    common = [1] * 10
    logs = {"a": entries(*common, *[3] * 60), "b": entries(*common, *[2] * 50),
            "c": entries(*common, *[3] * 60)}
    net = Net(["a", "b", "c"], logs=logs, terms={"a": 3, "b": 3, "c": 3})
    net.down = {"b"}
    assert net.elect(ids=["a"]) == "a"
    net.down = set()
    net.sent.clear()
    net.tick(20)
    rejections = [m for s, d, m in net.sent
                  if s == "b" and isinstance(m, AppendEntriesReply) and not m.success]
    assert 1 <= len(rejections) <= 3, rejections
    assert net.cores["b"].entries() == net.cores["a"].entries()


def test_follower_truncates_only_on_real_conflict_and_commits_verified_only():
    core = RaftCore("f", ["f", "l", "x"], HardState(2, None), entries(1, 1, 2, 2, 2), CFG,
                    random.Random(0))
    log = core.entries()
    # a stale, duplicate AppendEntries: nothing is truncated
    core.step(AppendEntries(2, "l", 1, 1, [log[1]], leader_commit=1))
    rd = core.ready()
    assert core.log_length() == 5 and rd.truncate_from is None and rd.entries == []
    assert rd.messages[0][1].success and rd.messages[0][1].match_index == 2
    core.advance(rd)
    # leaderCommit is far ahead: commit only up to the last verified new entry (2)
    core.step(AppendEntries(2, "l", 1, 1, [log[1]], leader_commit=5))
    assert core.commit_index == 2
    rd = core.ready()
    assert [e.index for e in rd.committed] == [2]  # 1 was delivered by the first Ready
    core.advance(rd)
    # a real conflict at 4 (term 3 vs 2): truncate from 4, append
    core.step(AppendEntries(3, "l", 3, 2, [LogEntry(3, "x")], leader_commit=4))
    rd = core.ready()
    assert rd.truncate_from == 4 and [i for i, _ in rd.entries] == [4]
    assert core.log_length() == 4 and core.commit_index == 4
    # a mismatch at prevLogIndex: refuse with the conflict hint
    core.advance(rd)
    core.step(AppendEntries(3, "l", 4, 9, [], leader_commit=4))
    reply = core.ready().messages[0][1]
    assert not reply.success and reply.conflict_term == 3 and reply.conflict_index == 4


def test_append_that_contradicts_a_committed_entry_is_refused_and_changes_nothing(caplog):
    core = RaftCore("f", ["f", "l", "x"], HardState(2, None), entries(1, 1, 2, 2), CFG,
                    random.Random(0))
    core.step(AppendEntries(2, "l", 4, 2, [], leader_commit=3))
    core.advance(core.ready())
    before = (core.entries(), core.commit_index, core.term)
    # a leader of term 3 whose entry 2 has term 3: entry 2 (term 1) is committed here
    for _ in range(3):
        core.step(AppendEntries(3, "l", 1, 1, [LogEntry(3, "forged"), LogEntry(3, "y")],
                                leader_commit=4))
    assert (core.entries(), core.commit_index) == before[:2]
    assert core.contradictions == 3
    assert core.last_contradiction == ("AppendEntries from l at term 3 has term 3 at index "
                                       "2, which this node committed with term 1 (commit "
                                       "index 3): refused")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage().rsplit(" (", 1)[1] for r in errors] == [
        "1 such messages so far)", "2 such messages so far)"]
    # the 1st and 2nd are logged, then the 4th, 8th, ...
    rd = core.ready()
    assert rd.truncate_from is None and rd.entries == [] and rd.messages == []
    # the same entries past the commit index are a real conflict: truncate from 4
    core.advance(rd)
    core.step(AppendEntries(3, "l", 3, 2, [LogEntry(3, "z")], leader_commit=3))
    rd = core.ready()
    assert rd.truncate_from == 4 and core.contradictions == 3


def test_read_index_waits_for_term_commit_and_quorum():
    net = Net(["a", "b", "c"], seed=11)
    leader = net.elect()
    others = [i for i in net.ids if i != leader]
    assert net.cores[others[0]].read_index("x") is False  # not leader
    net.propose(leader, {"v": 1})
    commit = net.cores[leader].commit_index
    # reads need a heartbeat round acked by a majority: none while isolated
    net.isolate(leader)
    assert net.cores[leader].read_index("r1")
    net.drain(leader)
    net.deliver()
    assert net.reads[leader] == []
    net.cut.clear()
    net.tick(3)
    assert net.reads[leader] == [("r1", commit)]


def test_read_index_not_served_before_current_term_commit():
    net = Net(["a", "b", "c"], seed=13)
    net.filter = lambda s, d, m: None if isinstance(m, AppendEntriesReply) else m
    leader = net.elect()
    assert net.cores[leader].read_index("r1")
    net.tick(3)
    assert net.reads[leader] == []
    net.filter = None
    net.tick(5)
    assert net.reads[leader] and net.reads[leader][0][1] >= 1
    assert net.cores[leader].entry(net.reads[leader][0][1]).term <= net.cores[leader].term


def test_batching_respects_the_cap():
    cfg = RaftConfig(10, 20, 2, max_batch_entries=8)
    net = Net(["a", "b", "c"], cfg)
    leader = net.elect()
    net.sent.clear()
    core = net.cores[leader]
    for k in range(100):
        core.propose(k)
    net.drain(leader)
    net.deliver()
    net.tick(5)
    sizes = [len(m.entries) for s, d, m in net.sent if isinstance(m, AppendEntries)]
    assert max(sizes) == 8
    assert core.commit_index == core.log_length() == 101
    # each follower got the 100 entries in few messages
    assert sum(1 for n in sizes if n) <= 2 * (100 // 8 + 2)


def test_single_node_cluster_commits_alone():
    core = RaftCore("a", ["a"], HardState(), [], CFG, random.Random(0))
    applied = []
    for _ in range(25):
        core.tick()
        while core.has_ready():
            rd = core.ready()
            applied += rd.committed
            core.advance(rd)
    assert core.role == LEADER
    core.propose("x")
    assert core.read_index("r")
    reads = []
    while core.has_ready():
        rd = core.ready()
        applied += rd.committed
        reads += rd.reads
        core.advance(rd)
    assert [e.command for e in applied] == [None, "x"]
    assert reads and reads[0][0] == "r"


def test_restart_replays_committed_entries_once():
    net = Net(["a", "b", "c"], seed=17)
    leader = net.elect()
    for k in range(5):
        net.propose(leader, k)
    f = next(i for i in net.ids if i != leader)
    c = net.cores[f]
    log, hs = c.entries(), HardState(c.term, c.voted_for)
    net.cores[f] = RaftCore(f, net.ids, hs, log, CFG, random.Random(99))
    net.applied[f] = []
    net.tick(5)
    assert [e.index for e in net.applied[f]] == list(range(1, 7))


def test_commit_only_ready_needs_no_fsync_and_durable_commit_lags_the_batch():
    """etcd's MustSync: a Ready that only moves the commit index is written without an
    fsync. The stored commit index never covers entries of the Ready that stores it, so
    a torn write cannot make an entry it was replacing look committed."""
    f = RaftCore("f", ["f", "l", "x"], HardState(1, None), entries(1, 1, 1), CFG,
                 random.Random(0))
    f.step(AppendEntries(2, "l", 1, 1, [LogEntry(2, "a"), LogEntry(2, "b")],
                         leader_commit=3))
    rd = f.ready()
    assert rd.truncate_from == 2 and [i for i, _ in rd.entries] == [2, 3]
    assert f.commit_index == 3
    assert rd.hard_state == HardState(2, None, 1) and rd.term_or_vote_changed
    assert rd.must_sync() and rd.must_write()
    f.advance(rd)
    rd = f.ready()            # now 2..3 are durable: the commit index follows alone
    assert rd.hard_state == HardState(2, None, 3) and not rd.term_or_vote_changed
    assert rd.must_write() and not rd.must_sync()
    f.advance(rd)
    assert not f.has_ready()


def test_restart_from_durable_commit_replays_at_once():
    log = entries(1, 1, 2, 2)
    core = RaftCore("a", ["a", "b", "c"], HardState(2, None, 3), log, CFG, random.Random(0))
    assert core.commit_index == 3
    rd = core.ready()     # no message needed: the state machine replays to 3
    assert [e.index for e in rd.committed] == [1, 2, 3] and rd.hard_state is None
    # a stored commit past the log (its tail was lost) is clamped to the log
    short = RaftCore("a", ["a", "b", "c"], HardState(2, None, 9), log, CFG, random.Random(0))
    assert short.commit_index == 4


def test_heartbeat_checks_at_match_and_survives_reordering():
    """A heartbeat checks the log at matchIndex, so one that overtakes entries still in
    flight (they travel on another connection) is not refused."""
    net = Net(["a", "b", "c"], seed=21)
    leader = net.elect()
    net.tick(3)
    follower = next(i for i in net.ids if i != leader)
    core = net.cores[leader]
    held = []
    net.filter = lambda s, d, m: (held.append((s, d, m)) if isinstance(m, AppendEntries)
                                  and m.entries and d == follower else m)
    for k in range(5):
        core.propose(k)
    net.drain(leader)
    net.deliver()
    net.tick(4)                  # heartbeats overtake the held entries
    beats = [m for s, d, m in net.sent if isinstance(m, AppendEntries) and d == follower
             and not m.entries]
    assert beats and all(m.prev_log_index <= core.log_length() - 5 for m in beats[-2:])
    replies = [m for s, d, m in net.sent if s == follower
               and isinstance(m, AppendEntriesReply)]
    assert replies and all(r.success for r in replies)
    net.filter = None
    for s, d, m in held:         # the entries arrive late
        net.queue.append((s, d, m))
    net.deliver()
    net.tick(4)
    assert net.cores[follower].entries() == core.entries()


@pytest.mark.parametrize("bad", [
    None, [], {"type": "Nope"}, {"type": "RequestVote"},
    {"type": "RequestVote", "term": "1", "sender": "a", "last_log_index": 0, "last_log_term": 0},
    {"type": "RequestVote", "term": True, "sender": "a", "last_log_index": 0, "last_log_term": 0},
    {"type": "RequestVote", "term": -1, "sender": "a", "last_log_index": 0, "last_log_term": 0},
    {"type": "RequestVote", "term": 1, "sender": "", "last_log_index": 0, "last_log_term": 0},
    {"type": "AppendEntries", "term": 1, "sender": "a", "prev_log_index": 0,
     "prev_log_term": 0, "entries": {}},
    {"type": "AppendEntries", "term": 1, "sender": "a", "prev_log_index": 0,
     "prev_log_term": 0, "entries": [{"command": 1}]},
    {"type": "AppendEntriesReply", "term": 1, "sender": "a", "success": "yes"},
    {"type": "RequestVoteReply", "term": 1, "sender": 7, "granted": True},
])
def test_malformed_messages_raise_value_error(bad):
    with pytest.raises(ValueError):
        message_from_dict(bad)


def test_messages_round_trip():
    msgs = [RequestVote(3, "a", 7, 2, True), RequestVoteReply(3, "b", True, True),
            AppendEntries(4, "a", 5, 3, [LogEntry(4, {"op": "write", "key": "k", "value": 1}),
                                         LogEntry(4, None)], 6, 9),
            AppendEntriesReply(4, "c", False, 0, 3, 2, 5, 9)]
    for m in msgs:
        assert message_from_dict(m.to_dict()) == m


def test_unknown_sender_and_stale_term_are_ignored():
    core = RaftCore("a", ["a", "b", "c"], HardState(5, None), [], CFG, random.Random(0))
    core.step(AppendEntries(9, "mallory", 0, 0, [], 0))
    assert core.term == 5 and core.leader_id is None
    core.step(AppendEntries(4, "b", 0, 0, [], 0))
    rd = core.ready()
    # a stale leader is told the current term so that it steps down
    assert core.term == 5 and rd.messages[0][1].term == 5 and not rd.messages[0][1].success
