"""Snapshots and log compaction in the Raft core (paper section 7, Figure 13), on the
in-test network of tests/test_raft_core.py with a shell that snapshots as the server
does: every N applied entries, the state machine (here: the list of applied
commands) is saved and the log compacted behind it."""

from __future__ import annotations

import json
import random

import pytest

from node.bugs import TRUNCATE_ON_ANY_APPEND
from node.core.log import RaftLog
from node.core.messages import (AppendEntries, InstallSnapshot, InstallSnapshotReply, LogEntry,
                                message_from_dict)
from node.core.raft import RaftCore
from node.core.state import HardState, RaftConfig, Snapshot
from tests.test_raft_core import Net

CFG = RaftConfig(election_ticks_min=10, election_ticks_max=20, heartbeat_ticks=2,
                 max_batch_entries=8, snapshot_chunk_chars=40)


class SnapNet(Net):
    """Net whose nodes keep a state machine (the commands applied) and snapshot it
    every `every` applied entries; `longest` is the longest log any core held."""

    def __init__(self, ids, every, cfg=CFG, **kw):
        super().__init__(ids, cfg, **kw)
        self.every = every
        self.state = {i: [] for i in self.ids}
        self.installed = {i: 0 for i in self.ids}
        self.longest = 0

    def drain(self, i):
        c = self.cores[i]
        while c.has_ready():
            rd = c.ready()
            for to, m in rd.messages:
                self.sent.append((i, to, m))
                self.queue.append((i, to, message_from_dict(m.to_dict())))
            if rd.snapshot is not None:
                self.state[i] = json.loads(rd.snapshot.data)
                self.installed[i] += 1
            for ce in rd.committed:
                assert ce.index == len(self.state[i]) + 1
                self.state[i].append(ce.command)
            self.applied[i].extend(rd.committed)
            c.advance(rd)
            self.longest = max(self.longest, len(c.entries()))
            if self.every and len(self.state[i]) - c.snapshot_index >= self.every:
                index = len(self.state[i])
                c.compact(Snapshot(index, c.term_at(index), json.dumps(self.state[i])))

    def restart(self, i, seed=7):
        """A crash and restart from what a storage would hold: snapshot + log tail."""
        c = self.cores[i]
        snap = c.snapshot
        core = RaftCore(i, self.ids, HardState(c.term, c.voted_for, c.commit_index),
                        c.entries(), self.cfg, random.Random(seed), snapshot=snap)
        self.cores[i] = core
        self.state[i] = json.loads(snap.data) if snap is not None else []


def cmd(k):
    return {"op": "write", "key": k % 3, "value": k}


def test_compaction_keeps_the_log_bounded():
    net = SnapNet(["a", "b", "c"], every=10)
    leader = net.elect()
    for k in range(200):
        net.propose(leader, cmd(k))
    net.tick(5)
    for i in net.ids:
        c = net.cores[i]
        assert c.snapshot_index >= 190 and c.log_length() == c.commit_index >= 201
        assert net.state[i] == net.state[leader] and len(net.state[i]) == c.commit_index
    # every log stayed below 2x the snapshot threshold (plus one batch in flight)
    assert net.longest < 2 * 10 + CFG.max_batch_entries
    with pytest.raises(IndexError):
        net.cores[leader].entry(1)  # compacted
    assert net.cores[leader].term_at(1) is None


def test_a_follower_behind_the_compaction_point_gets_the_snapshot_in_chunks():
    net = SnapNet(["a", "b", "c"], every=10)
    leader = net.elect()
    lagger = next(i for i in net.ids if i != leader)
    net.down.add(lagger)
    for k in range(60):
        net.propose(leader, cmd(k))
    net.tick(3)
    lc = net.cores[leader]
    assert lc.snapshot_index > net.cores[lagger].log_length() + 10
    net.sent.clear()
    net.down.discard(lagger)
    net.tick(40)
    chunks = [m for src, to, m in net.sent if to == lagger and isinstance(m, InstallSnapshot)]
    snap = lc.snapshot
    assert snap is not None and len(snap.data) > 3 * CFG.snapshot_chunk_chars
    first = [m for m in chunks if m.last_included_index == chunks[0].last_included_index]
    # Figure 13: the chunks at increasing offsets, each within the chunk size, the
    # last one `done`, all naming the last included index and term.
    offsets = sorted({m.offset for m in first})
    assert len(offsets) >= 3 and offsets[0] == 0
    assert all(len(m.data) <= CFG.snapshot_chunk_chars for m in chunks)
    assert any(m.done for m in first)
    assert all(m.last_included_term == net.cores[leader].term for m in first)
    assert net.installed[lagger] >= 1
    # it caught up: same state machine, same log after the snapshot, applied in order
    fc = net.cores[lagger]
    assert fc.commit_index == lc.commit_index and net.state[lagger] == net.state[leader]
    assert fc.entries()[-3:] == lc.entries()[-3:]
    for k in range(60, 70):
        net.propose(leader, cmd(k))
    net.tick(3)
    assert net.state[lagger] == net.state[leader] and len(net.state[leader]) >= 71


def test_out_of_order_and_lost_chunks_are_resent_from_the_offset_held():
    net = SnapNet(["a", "b", "c"], every=10)
    leader = net.elect()
    lagger = next(i for i in net.ids if i != leader)
    net.down.add(lagger)
    for k in range(40):
        net.propose(leader, cmd(k))
    net.tick(3)
    net.down.discard(lagger)
    dropped = []

    def drop_every_other_chunk(src, dst, m):
        if isinstance(m, InstallSnapshot) and m.offset and len(dropped) < 4:
            dropped.append(m.offset)
            return None
        return m
    net.filter = drop_every_other_chunk
    net.tick(80)
    assert len(dropped) == 4
    assert net.state[lagger] == net.state[leader]
    # a chunk at the wrong offset is answered with the offset the follower holds
    fc = net.cores[lagger]
    fc.step(InstallSnapshot(fc.term, leader, 10 ** 6, fc.term, 40, "x" * 10, False))
    rd = fc.ready()
    (to, reply), = rd.messages
    assert isinstance(reply, InstallSnapshotReply) and reply.offset == 0 and not reply.done
    fc.advance(rd)


def test_restart_loads_the_snapshot_and_replays_the_tail():
    log = [LogEntry(3, {"n": k}) for k in range(5)]          # entries 11..15
    snap = Snapshot(10, 3, json.dumps(list(range(10))))
    core = RaftCore("a", ["a", "b", "c"], HardState(3, None, 13), log, CFG,
                    random.Random(1), snapshot=snap)
    assert (core.snapshot_index, core.log_length(), core.commit_index) == (10, 15, 13)
    assert core.applied_index == 10 and core.term_at(10) == 3 and core.term_at(9) is None
    rd = core.ready()
    assert [(c.index, c.command) for c in rd.committed] == [(11, {"n": 0}), (12, {"n": 1}),
                                                            (13, {"n": 2})]
    assert rd.snapshot is None and rd.entries == []
    core.advance(rd)
    # a stored commit index below the snapshot is raised to it (a snapshot is committed)
    core = RaftCore("a", ["a", "b", "c"], HardState(3, None, 2), log, CFG,
                    random.Random(1), snapshot=snap)
    assert core.commit_index == 10 and not core.ready().committed


def test_restart_mid_stream_through_the_network():
    net = SnapNet(["a", "b", "c"], every=7)
    leader = net.elect()
    for k in range(30):
        net.propose(leader, cmd(k))
    net.tick(3)
    follower = next(i for i in net.ids if i != leader)
    before = list(net.state[follower])
    assert net.cores[follower].snapshot_index > 0
    net.restart(follower)
    net.drain(follower)           # replays the tail after the snapshot
    assert net.state[follower] == before
    for k in range(30, 40):
        net.propose(leader, cmd(k))
    net.tick(3)
    assert net.state[follower] == net.state[leader] and len(net.state[leader]) >= 41


def test_install_keeps_a_matching_suffix_and_discards_a_conflicting_log():
    # Figure 13, receiver 6: the log holds the last included entry: keep what follows
    log = RaftLog([LogEntry(1), LogEntry(1), LogEntry(2), LogEntry(2)])
    assert log.install(3, 2) and log.entries() == [LogEntry(2)] and log.last_index() == 4
    # receiver 7: it does not: discard the whole log
    log = RaftLog([LogEntry(1), LogEntry(1), LogEntry(1)])
    assert not log.install(3, 2) and log.entries() == [] and log.last_index() == 3
    assert log.term_at(3) == 2 and log.last_term() == 2


def test_a_follower_with_a_conflicting_tail_installs_and_persists_before_replying():
    core = RaftCore("b", ["a", "b", "c"], HardState(5, None),
                    [LogEntry(1), LogEntry(4), LogEntry(4)], CFG, random.Random(2))
    core.step(InstallSnapshot(5, "a", 4, 5, 0, '["x"]', True))
    rd = core.ready()
    # the snapshot goes to storage in the same Ready as the reply (persist before
    # send), the log is gone (its entry 3 has term 4, the snapshot's term 5 at 4)
    assert rd.snapshot == Snapshot(4, 5, '["x"]') and rd.must_sync()
    assert rd.entries == [] and rd.truncate_from is None
    (to, reply), = rd.messages
    assert to == "a" and reply.done and reply.last_included_index == 4
    assert rd.hard_state is not None and rd.hard_state.commit == 4
    core.advance(rd)
    assert (core.snapshot_index, core.log_length(), core.commit_index) == (4, 4, 4)
    assert core.applied_index == 4 and not core.has_ready()
    # then entries after the snapshot are accepted against its last included term
    core.step(AppendEntries(5, "a", 4, 5, [LogEntry(5, "y")], 5))
    rd = core.ready()
    assert rd.entries == [(5, LogEntry(5, "y"))]
    assert [(c.index, c.command) for c in rd.committed] == [(5, "y")]


def test_appends_before_the_snapshot_are_checked_from_its_base():
    snap = Snapshot(5, 2, "[]")
    core = RaftCore("b", ["a", "b", "c"], HardState(2, None), [LogEntry(2, "e6")], CFG,
                    random.Random(3), snapshot=snap)
    # prev 3 is compacted: entries 4..5 are in the snapshot, 6 matches, 7 is new
    core.step(AppendEntries(2, "a", 3, 1, [LogEntry(2), LogEntry(2), LogEntry(2, "e6"),
                                           LogEntry(2, "e7")], 7))
    rd = core.ready()
    (_, reply), = rd.messages
    assert reply.success and reply.match_index == 7
    assert rd.entries == [(7, LogEntry(2, "e7"))] and rd.truncate_from is None
    core.advance(rd)
    # all of it inside the snapshot: a success at the snapshot's index
    core.step(AppendEntries(2, "a", 1, 1, [LogEntry(1)], 7))
    (_, reply), = core.ready().messages
    assert reply.success and reply.match_index == 5


def test_compact_refuses_what_is_not_applied():
    core = RaftCore("a", ["a"], HardState(1, None), [LogEntry(1)] * 3, CFG,
                    random.Random(4))
    with pytest.raises(ValueError):
        core.compact(Snapshot(2, 1, "[]"))  # nothing applied yet
    rd = core.ready()
    core.advance(rd)
    with pytest.raises(ValueError):
        core.compact(Snapshot(2, 7, "[]"))  # wrong term


def test_the_planted_truncate_bug_still_acts_on_a_compacted_log():
    cfg = RaftConfig(10, 20, 2, max_batch_entries=8, bugs=frozenset({TRUNCATE_ON_ANY_APPEND}))
    snap = Snapshot(5, 2, "[]")
    core = RaftCore("b", ["a", "b", "c"], HardState(2, None),
                    [LogEntry(2, k) for k in range(6, 10)], cfg, random.Random(5),
                    snapshot=snap)
    # a stale AppendEntries for entry 7 alone: the bug cuts from 7 and writes 7
    # again, so 8..9, which it held, are gone
    core.step(AppendEntries(2, "a", 6, 2, [LogEntry(2, 7)], 5))
    rd = core.ready()
    assert rd.truncate_from == 7 and rd.entries == [(7, LogEntry(2, 7))]
    assert core.log_length() == 7 and core.entries() == [LogEntry(2, 6), LogEntry(2, 7)]
