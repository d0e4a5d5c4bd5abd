"""checker.invariants: each Raft invariant holds on clean evidence, fails with its one
line on a violating one, and is "unknown" (never false) when evidence is missing."""

from __future__ import annotations

import json

from checker.invariants import (DurableState, Event, NodeEvidence, check_invariants,
                                commit_rule, committed_on_a_majority, election_safety,
                                log_durable, log_matching, one_vote_per_term,
                                state_machine_safety, terms_never_decrease)

W = {"op": "write", "key": 1, "value": 5}
W2 = {"op": "write", "key": 1, "value": 6}


def ev(node: str, line: int, kind: str, **data) -> Event:
    return Event(kind, {"event": kind, **data}, line, f"2026-01-01T00:00:{line:02d}.000",
                 f"{node}.log")


def node(nid: str, events=None, entries=None, term=0, vote=None, commit=None,
         durable=True) -> NodeEvidence:
    d = DurableState(term, vote, commit, list(entries or [])) if durable else None
    return NodeEvidence(nid, d, events)


def clean_cluster() -> list[NodeEvidence]:
    log = [(1, None), (1, W), (2, None), (2, W2)]
    return [
        node("n1", [ev("n1", 1, "start", term=0, vote=None, commit=0, last_index=0, bugs=[], trace=2),
                    ev("n1", 2, "persisted", term=1, vote="n1"),
                    ev("n1", 3, "leader", term=1),
                    ev("n1", 4, "commit", term=1, index=2, entry_term=1),
                    ev("n1", 5, "read", term=1, index=2, entry_term=1),
                    ev("n1", 9, "persisted", term=2, vote="n2")],
             log, term=2, vote="n2", commit=4),
        node("n2", [ev("n2", 1, "start", term=0, vote=None, commit=0, last_index=0, bugs=[], trace=2),
                    ev("n2", 2, "persisted", term=1, vote="n1"),
                    ev("n2", 3, "vote", term=1, candidate="n1", candidate_last=[0, 0],
                       own_last=[0, 0]),
                    ev("n2", 4, "vote", term=1, candidate="n1", candidate_last=[0, 0],
                       own_last=[0, 0]),   # a retransmission
                    ev("n2", 5, "follow", term=1, leader="n1", leader_term=1),
                    ev("n2", 5, "persisted", term=2, vote="n2"),
                    ev("n2", 6, "leader", term=2),
                    ev("n2", 6, "stable", index=3),
                    ev("n2", 7, "start", term=2, vote="n2", commit=3, last_index=4, bugs=[],
                       trace=2)],
             log, term=2, vote="n2", commit=3),
        node("n3", [ev("n3", 1, "start", term=0, vote=None, commit=0, last_index=0, bugs=[], trace=2),
                    ev("n3", 2, "persisted", term=1, vote=None),
                    ev("n3", 5, "persisted", term=2, vote="n2"),
                    ev("n3", 6, "vote", term=2, candidate="n2", candidate_last=[1, 2],
                       own_last=[1, 2]),
                    ev("n3", 7, "follow", term=2, leader="n2", leader_term=2)],
             log[:3], term=2, vote="n2", commit=2),
    ]


def test_clean_evidence_is_valid_and_counts_what_was_compared():
    out = check_invariants(clean_cluster())
    assert out["valid"] is True, out["violations"]
    assert out["violations"] == []
    assert {k: v["valid"] for k, v in out["invariants"].items()} == {
        "election-safety": True, "one-vote-per-term": True, "terms-never-decrease": True,
        "commit-rule": True, "log-matching": True, "state-machine-safety": True,
        "committed-on-a-majority": True, "log-durable": True,
        "election-restriction": True, "current-term-leader": True, "read-index": True,
        "commit-quorum": True, "read-quorum": True}
    ch = out["checked"]
    assert ch["commit-rule"] == {"commit_events": 1}
    assert ch["election-safety"] == {"leader_events": 2, "terms_with_a_leader": 2}
    assert ch["log-matching"] == {"node_pairs": 3, "entries_compared": 4 + 3 + 3}
    assert ch["state-machine-safety"]["committed_entries_compared"] == 3 + 2 + 2
    assert ch["terms-never-decrease"]["restarts"] == 1
    assert ch["election-restriction"] == {"votes_compared": 3}
    assert ch["current-term-leader"] == {"leaders_followed": 2}
    assert ch["read-index"] == {"first_reads_of_a_term": 1}
    assert ch["log-durable"] == {"recoveries_compared": 2}   # n2's restart and WAL
    assert json.loads(json.dumps(out)) == out  # results.json material


def test_a_leader_committing_an_older_terms_entry_by_counting_breaks_the_commit_rule():
    nodes = clean_cluster()
    # Figure 8 (c): the leader of term 2 counts replicas of its term-1 entry at index 2
    nodes[1].events.insert(5, ev("n2", 6, "commit", term=2, index=2, entry_term=1))
    r = commit_rule(nodes)
    assert r.valid is False
    assert len(r.violations) == 1
    v = r.violations[0]
    assert (v.term, v.index, v.nodes) == (2, 2, ["n2"])
    assert ("n2, leader of term 2, committed up to index 2, an entry of term 1, by "
            "counting replicas (n2.log line 6") in v.text


def test_a_commit_index_only_a_minority_holds_breaks_committed_on_a_majority():
    nodes = clean_cluster()
    assert committed_on_a_majority(nodes).checked == {"commit_index": 4, "holders": 2}
    # n2 lost index 4 (acknowledged without fsync, then a crash): n1 alone holds it
    nodes[1].durable.entries = nodes[1].durable.entries[:3]
    nodes[1].durable.commit = 3
    r = committed_on_a_majority(nodes)
    assert r.valid is False
    v = r.violations[0]
    assert (v.index, v.term, v.nodes) == (4, 2, ["n1", "n2", "n3"])
    assert v.text.startswith("committed entries on a majority (section 5.3): n1 committed "
                             "index 4 (term 2), but only n1 of 3 nodes hold it: n2 has "
                             "no entry, n3 has no entry")
    # an entry of another term at that index is not the committed one
    nodes[1].durable.entries.append((3, W))
    assert committed_on_a_majority(nodes).valid is False
    # a snapshot that covers the index holds it (section 7)
    nodes[2].durable.base, nodes[2].durable.entries = 4, []
    assert committed_on_a_majority(nodes).valid is True


def test_committed_on_a_majority_is_unknown_when_missing_wals_could_hold_it():
    nodes = clean_cluster()
    nodes[1].durable.entries = nodes[1].durable.entries[:3]
    nodes[1].durable.commit = 3
    nodes[2].durable = None
    r = committed_on_a_majority(nodes)
    assert r.valid == "unknown" and "n3: no durable state" in r.unknown_reason


def test_two_leaders_in_one_term():
    nodes = clean_cluster()
    nodes[2].events.append(ev("n3", 8, "leader", term=2))
    r = election_safety(nodes)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "Election Safety (Figure 3): term 2 has 2 leaders: n2 (n2.log line 6, 00:00:06.000), "
        "n3 (n3.log line 8, 00:00:08.000)"]
    assert r.violations[0].refs[1] == {"node": "n3", "line": 8, "time":
                                       "2026-01-01T00:00:08.000", "source": "n3.log"}
    assert check_invariants(nodes)["valid"] is False


def test_the_same_leader_announced_again_after_a_restart_is_one_leader():
    nodes = clean_cluster()
    nodes[1].events.append(ev("n2", 9, "leader", term=2))
    assert election_safety(nodes).valid is True


def test_two_votes_in_one_term_across_a_restart():
    nodes = clean_cluster()
    nodes[2].events += [ev("n3", 7, "start", term=2, vote=None, commit=0, last_index=3),
                        ev("n3", 8, "vote", term=2, candidate="n1")]
    r = one_vote_per_term(nodes)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "one vote per term (Figure 2): n3 voted twice in term 2: for n2 (n3.log line 5, "
        "00:00:05.000) and for n1 (n3.log line 8, 00:00:08.000)"]


def test_a_recovered_term_below_a_persisted_one():
    nodes = clean_cluster()
    nodes[0].events.append(ev("n1", 10, "start", term=1, vote="n1", commit=0, last_index=4))
    r = terms_never_decrease(nodes)
    assert r.valid is False
    assert r.violations[0].text == (
        "currentTerm never decreases (Figure 2): n1 restarted (n1.log line 10, "
        "00:00:10.000) with term 1, below term 2 it had persisted (n1.log line 9, "
        "00:00:09.000)")


def test_a_vote_lost_across_a_restart():
    nodes = clean_cluster()
    nodes[2].events.append(ev("n3", 7, "start", term=2, vote=None, commit=0, last_index=3))
    r = terms_never_decrease(nodes)
    assert r.valid is False
    assert r.violations[0].text == (
        "votedFor is kept (Figure 2): n3 restarted (n3.log line 7, 00:00:07.000) with term "
        "2 and vote null, but it had voted for n2 in term 2 (n3.log line 6, 00:00:06.000)")


def test_a_wal_that_ends_below_a_term_the_node_voted_in():
    nodes = clean_cluster()
    nodes[2].durable.term = 1
    nodes[2].durable.vote = None
    r = terms_never_decrease(nodes)
    assert [v.text for v in r.violations] == [
        "currentTerm never decreases (Figure 2): n3's raft.wal holds, after the run, term "
        "1, below term 2 it had voted in (n3.log line 6, 00:00:06.000)"]


def test_a_vote_cleared_within_its_term_breaks_votedfor_kept():
    """Figure 2 resets votedFor only with a new term: a node that persists its term's
    vote cleared (a same-term step-down that forgets the vote) may vote twice."""
    nodes = clean_cluster()
    nodes[2].events += [ev("n3", 8, "persisted", term=2, vote=None)]
    r = terms_never_decrease(nodes)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "votedFor is kept for its term (Figure 2): n3 persisted term 2 with no vote "
        "(n3.log line 8, 00:00:08.000) after it had voted for n2 in term 2 "
        "(n3.log line 6, 00:00:06.000)"]
    assert r.violations[0].refs[0]["line"] == 6


def test_a_vote_cleared_by_a_new_term_is_rule_abiding():
    nodes = clean_cluster()
    nodes[2].events += [ev("n3", 8, "persisted", term=3, vote=None)]
    nodes[2].durable.term, nodes[2].durable.vote = 3, None
    assert terms_never_decrease(nodes).valid is True


def test_a_restart_that_lost_committed_entries_it_believed_durable():
    """A follower acknowledged entries it never synced; a crash that dropped unsynced
    writes took back entries it had told it knew committed."""
    nodes = clean_cluster()
    nodes[1].events.append(ev("n2", 9, "stable", index=4))
    nodes[1].events.append(ev("n2", 10, "start", term=2, vote="n2", commit=2, last_index=2,
                              bugs=[], trace=2))
    r = log_durable(nodes)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "log[] is persistent (Figure 2): n2 restarted (n2.log line 10, 00:00:10.000) "
        "with a log ending at index 2, below index 4 it knew committed and believed "
        "durable (n2.log line 9, 00:00:09.000)"]


def test_a_wal_that_ends_below_a_told_stable_index():
    nodes = clean_cluster()
    nodes[2].events.append(ev("n3", 9, "stable", index=3))   # its WAL holds 3 entries
    assert log_durable(nodes).valid is True
    nodes[2].events.append(ev("n3", 10, "stable", index=4))
    r = log_durable(nodes)
    assert [v.text for v in r.violations] == [
        "log[] is persistent (Figure 2): n3's raft.wal holds, after the run, a log "
        "ending at index 3, below index 4 it knew committed and believed durable "
        "(n3.log line 10, 00:00:10.000)"]


def test_logs_that_share_a_term_at_an_index_but_differ_below_it():
    nodes = clean_cluster()
    nodes[2].durable.entries[1] = (1, W2)  # n3: index 2 differs, index 3 (term 2) agrees
    r = log_matching(nodes)
    assert r.valid is False
    texts = [v.text for v in r.violations]
    assert texts == [
        'Log Matching (Figure 3): n1 and n3 both hold term 2 at index 3, but differ at '
        'index 2: n1 has term 1 {"key":1,"op":"write","value":5}, n3 has term 1 '
        '{"key":1,"op":"write","value":6}',
        'Log Matching (Figure 3): n2 and n3 both hold term 2 at index 3, but differ at '
        'index 2: n2 has term 1 {"key":1,"op":"write","value":5}, n3 has term 1 '
        '{"key":1,"op":"write","value":6}']
    rows = r.violations[0].entries
    assert [row["index"] for row in rows] == [1, 2, 3, 4]
    assert rows[1] == {"index": 2, "n1": {"term": 1, "command": W},
                       "n3": {"term": 1, "command": W2}}
    assert rows[3]["n3"] is None  # n3's log ends at 3


def test_logs_that_diverge_only_after_the_last_common_term_match():
    """Different terms at the tail (an uncommitted suffix overwritten later) are
    allowed: only a shared term at an index constrains what comes before it."""
    nodes = clean_cluster()
    nodes[2].durable.entries[2] = (3, W)
    assert log_matching(nodes).valid is True


def test_committed_entries_that_differ():
    nodes = clean_cluster()
    nodes[2].durable.entries = [(1, None), (2, W2)]  # a different term at committed index 2
    r = state_machine_safety(nodes)
    assert r.valid is False
    assert r.violations[0].text == (
        'State Machine Safety (Figure 3): n1 (commit 4) and n3 (commit 2) differ at '
        'committed index 2: n1 has term 1 {"key":1,"op":"write","value":5}, n3 has term 2 '
        '{"key":1,"op":"write","value":6}')
    assert r.violations[0].index == 2
    assert log_matching(nodes).valid is True  # no shared term at or above it: only SMS sees it


def test_an_uncommitted_difference_is_not_a_state_machine_violation():
    nodes = clean_cluster()
    nodes[2].durable.entries[2] = (3, W)  # index 3 differs, but n3 committed only 2
    assert state_machine_safety(nodes).valid is True


def test_a_commit_index_beyond_the_log():
    nodes = clean_cluster()
    nodes[2].durable.commit = 7
    r = state_machine_safety(nodes)
    assert [v.text for v in r.violations] == [
        "State Machine Safety (Figure 2, commitIndex): n3's durable commit index 7 exceeds "
        "its log of 3 entries"]


def test_commands_compare_exactly_as_json():
    nodes = clean_cluster()
    nodes[1].durable.entries[1] = (1, {"op": "write", "key": 1, "value": True})
    nodes[0].durable.entries[1] = (1, {"op": "write", "key": 1, "value": 1})
    assert state_machine_safety(nodes).valid is False            # true is not 1
    nodes[0].durable.entries[1] = (1, {"value": True, "key": 1, "op": "write"})
    nodes[2].durable.entries[1] = (1, {"op": "write", "key": 1, "value": True})
    assert state_machine_safety(nodes).valid is True             # key order is not content


def test_missing_evidence_is_unknown_never_false():
    nodes = clean_cluster()
    nodes[2] = NodeEvidence("n3", None, None, {"durable": "no data/n3/raft.wal",
                                               "events": "no event lines in nodes/n3.log"})
    out = check_invariants(nodes)
    assert out["valid"] == "unknown"
    assert out["violations"] == []
    assert out["invariants"]["log-matching"]["unknown_reason"] == "n3: no data/<id>/raft.wal"
    assert out["unknown_reason"] == (
        "n3: no event lines in nodes/<id>.log (election-safety, one-vote-per-term, "
        "terms-never-decrease, commit-rule, log-durable, election-restriction, "
        "current-term-leader, read-index, commit-quorum, read-quorum); n3: no "
        "data/<id>/raft.wal (log-matching, "
        "state-machine-safety)")
    assert out["nodes"]["n3"] == {"events": None, "durable": None, "missing": {
        "durable": "no data/n3/raft.wal", "events": "no event lines in nodes/n3.log"}}


def test_an_older_wal_without_a_commit_index_is_unknown_for_state_machine_safety():
    nodes = clean_cluster()
    for n in nodes:
        n.durable.commit = None
    r = state_machine_safety(nodes)
    assert r.valid == "unknown"
    assert r.unknown_reason == "n1, n2, n3: no commit index in the WAL (an older node)"


def test_a_violation_found_with_partial_evidence_is_still_false():
    nodes = clean_cluster()
    nodes[2].events.append(ev("n3", 8, "leader", term=2))
    nodes.append(NodeEvidence("n4", None, None))
    out = check_invariants(nodes)
    assert out["valid"] is False
    assert out["invariants"]["election-safety"]["valid"] is False
    assert out["invariants"]["log-matching"]["valid"] == "unknown"
    assert out["details"][0]["invariant"] == "election-safety"
