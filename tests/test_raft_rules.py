"""checker.raft_rules: each traced decision is checked against its rule, a decision
that breaks it is one line naming the node, the term and the log line, and a node
that writes no trace lines leaves the rules "unknown", never false. The core side:
node.core.raft emits the trace (Ready.trace) that the rules read."""

from __future__ import annotations

from checker.invariants import check_invariants
from checker.raft_rules import (CHECKS, commit_quorum, current_term_leader,
                                election_restriction, read_index, read_quorum)
from node.core.messages import AppendEntries, LogEntry, RequestVote
from tests.test_invariants import clean_cluster, ev
import random

from node.core.raft import RaftCore
from node.core.state import HardState
from tests.test_raft_core import CFG


def test_clean_trace_keeps_every_rule():
    nodes = clean_cluster()
    for check in CHECKS.values():
        assert check(nodes).valid is True


def test_a_commit_the_replies_do_not_cover_breaks_commit_quorum():
    nodes = clean_cluster()
    nodes[0].events += [
        ev("n1", 9, "acked", term=1, index=3, entry_term=1, own=3, peers={"n2": 3, "n3": 0}),
        ev("n1", 10, "acked", term=1, index=5, entry_term=1, own=5, peers={"n2": 4, "n3": 2})]
    r = commit_quorum(nodes)
    assert r.valid is False and r.checked == {"commits_checked": 2}
    assert [v.text for v in r.violations] == [
        "commit rule (Figure 2, rules for leaders): n1, leader of term 1, committed up to "
        "index 5, held by 1 of 3 by what the replies confirmed (own log 5, n2 4, n3 2), "
        "not a majority (n1.log line 10, 00:00:10.000)"]


def test_a_commit_of_an_older_terms_entry_breaks_commit_quorum_even_on_a_majority():
    nodes = clean_cluster()
    nodes[0].events.append(ev("n1", 9, "acked", term=3, index=4, entry_term=2, own=4,
                              peers={"n2": 4, "n3": 4}))
    [v] = commit_quorum(nodes).violations
    assert "whose entry is of the older term 2" in v.text and v.index == 4


def test_reads_released_without_a_majority_break_read_quorum():
    nodes = clean_cluster()
    nodes[1].events += [
        ev("n2", 8, "confirmed", term=2, index=6, reads=3, voters=3, peers=["n3"]),
        ev("n2", 9, "confirmed", term=2, index=7, reads=1, voters=3, peers=[])]
    r = read_quorum(nodes)
    assert r.checked == {"read_batches_checked": 2}
    assert [v.text for v in r.violations] == [
        "ReadIndex (dissertation 6.4, step 3): n2, leader of term 2, served 1 read(s) at "
        "index 7 confirmed by 1 of 3 (n2), not a majority (n2.log line 9, 00:00:09.000)"]


def test_version_1_trace_leaves_the_quorum_rules_unknown():
    nodes = clean_cluster()
    for e in (e for n in nodes for e in n.events if e.kind == "start"):
        e.data["trace"] = 1
    nodes[0].events.append(ev("n1", 9, "acked", term=1, index=5, entry_term=1, own=5,
                              peers={"n2": 0, "n3": 0}))
    for check in (commit_quorum, read_quorum):
        r = check(nodes)
        assert r.valid == "unknown" and r.unknown_reason == (
            "n1, n2, n3: no trace lines of version 2 (a node that does not write them)")


def test_a_vote_for_a_longer_but_older_log_breaks_the_election_restriction():
    nodes = clean_cluster()
    nodes[2].events.append(ev("n3", 9, "vote", term=3, candidate="n1",
                              candidate_last=[1, 9], own_last=[2, 4]))
    r = election_restriction(nodes)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "election restriction (section 5.4.1): n3 voted for n1 in term 3 (n3.log line 9, "
        "00:00:09.000), whose log ends at term 1 index 9, behind its own (term 2 index 4)"]


def test_a_vote_for_a_shorter_log_of_the_same_term_breaks_it_and_a_newer_term_wins():
    nodes = clean_cluster()
    nodes[2].events += [
        ev("n3", 9, "vote", term=3, candidate="n1", candidate_last=[2, 3], own_last=[2, 4]),
        ev("n3", 10, "vote", term=4, candidate="n2", candidate_last=[3, 1], own_last=[2, 4])]
    r = election_restriction(nodes)
    assert [v.term for v in r.violations] == [3]


def test_following_the_leader_of_an_older_term_breaks_current_term_leader():
    nodes = clean_cluster()
    nodes[2].events.append(ev("n3", 9, "follow", term=2, leader="n1", leader_term=1))
    r = current_term_leader(nodes)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "AppendEntries only from the current term (Figure 2, receiver 1): n3, at term 2, "
        "followed n1, leader of the older term 1 (n3.log line 9, 00:00:09.000)"]


def test_a_ready_that_moved_through_terms_is_not_a_stale_follow():
    """One Ready handled AppendEntries of terms 3 and then 4: its "persisted" line (the
    term at its end) comes before both "follow" lines, each at its own term."""
    nodes = clean_cluster()
    nodes[2].events += [ev("n3", 9, "persisted", term=4, vote=None),
                        ev("n3", 10, "follow", term=3, leader="n1", leader_term=3),
                        ev("n3", 11, "follow", term=4, leader="n1", leader_term=4)]
    assert current_term_leader(nodes).valid is True


def test_a_read_at_an_older_terms_entry_breaks_read_index():
    nodes = clean_cluster()
    nodes[1].events.append(ev("n2", 8, "read", term=2, index=2, entry_term=1))
    r = read_index(nodes)
    assert r.valid is False
    assert r.violations[0].text == (
        "ReadIndex (dissertation 6.4): n2, leader of term 2, served reads at index 2, "
        "an entry of term 1, before an entry of its own term was committed (n2.log "
        "line 8, 00:00:08.000)")


def test_nodes_without_trace_lines_leave_the_rules_unknown_never_false():
    nodes = clean_cluster()
    for n in nodes:
        for e in n.events:
            e.data.pop("trace", None)
    nodes[2].events.append(ev("n3", 9, "follow", term=2, leader="n1", leader_term=1))
    out = check_invariants(nodes)
    for name in ("election-restriction", "current-term-leader", "read-index"):
        assert out["invariants"][name]["valid"] == "unknown"
        assert out["invariants"][name]["unknown_reason"] == (
            "n1, n2, n3: no trace lines (a node that does not write them)")
    assert out["invariants"]["election-safety"]["valid"] is True


# -- the core's trace ---------------------------------------------------------------

def make_core(node_id: str, ids: list[str]) -> RaftCore:
    return RaftCore(node_id, ids, HardState(0, None), [], CFG, random.Random(0))


def _trace(core) -> list[tuple[str, dict]]:
    out = []
    while core.has_ready():
        rd = core.ready()
        out += rd.trace
        core.advance(rd)
    return out


def test_the_core_traces_a_granted_vote_with_both_logs_positions():
    core = make_core("n2", ["n1", "n2", "n3"])
    _trace(core)
    core.step(RequestVote(3, "n1", 0, 0))
    assert ("vote", {"term": 3, "candidate": "n1", "candidate_last": [0, 0],
                     "own_last": [0, 0]}) in _trace(core)


def test_the_core_traces_each_new_leader_it_follows_once():
    core = make_core("n2", ["n1", "n2", "n3"])
    _trace(core)
    for _ in range(2):
        core.step(AppendEntries(2, "n1", 0, 0, [LogEntry(None, 2)], 0))
    follows = [t for t in _trace(core) if t[0] == "follow"]
    assert follows == [("follow", {"term": 2, "leader": "n1", "leader_term": 2})]
