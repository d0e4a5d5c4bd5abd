"""checker.replay: every write and cas answer agrees with the committed log applied
once, in order, with client sessions; a command applied twice, or answered "failed"
and then committed, is a violation naming the op and the log index; missing or
compacted evidence is "unknown", never false."""

from __future__ import annotations

from checker.invariants import check_invariants
from checker.raft_evidence import DurableState, NodeEvidence
from checker.replay import exactly_once
from history.ops import Op


def cmd(op, key, client, seq, **kw):
    return {"op": op, "key": key, "client": client, "seq": seq, **kw}


def history(*answers):
    """(process, f, key, value, completion type[, error]) -> invoke/completion ops."""
    ops = []
    for a in answers:
        proc, f, key, value, typ = a[:5]
        ops.append(Op(len(ops), len(ops), "invoke", proc, f, value, key))
        ops.append(Op(len(ops), len(ops), typ, proc, f, value, key,
                      error=a[5] if len(a) > 5 else None))
    return ops


def cluster(entries, commit=None, base=0):
    log = [(1, e) for e in entries]
    commit = len(log) + base if commit is None else commit
    return [NodeEvidence("n1", DurableState(1, None, commit, log, base=base)),
            NodeEvidence("n2", DurableState(1, None, 1, log[:1], base=base))]


LOG = [None,
       cmd("write", 1, "c0", 1, value=10),
       cmd("cas", 1, "c1", 1, **{"from": 10, "to": 11}),
       cmd("cas", 1, "c1", 1, **{"from": 10, "to": 11}),     # the retry: deduplicated
       cmd("cas", 1, "c2", 1, **{"from": 10, "to": 12})]     # 11 by then: refused


def test_answers_that_agree_with_the_replay_keep_it():
    ops = history((0, "write", 1, 10, "ok"), (1, "cas", 1, [10, 11], "ok"),
                  (2, "cas", 1, [10, 12], "fail", "precondition-failed"),
                  (3, "write", 1, 99, "ok"))        # not in the durable log: not compared
    r = exactly_once(cluster(LOG), ops)
    assert r.valid is True and r.checked == {"answers_compared": 3, "log_entries": 5}


def test_a_retry_applied_twice_shows_as_a_failed_answer_for_a_command_that_took_effect():
    ops = history((1, "cas", 1, [10, 11], "fail", "precondition-failed"))
    r = exactly_once(cluster(LOG), ops)
    assert r.valid is False
    assert [v.text for v in r.violations] == [
        "exactly once (dissertation 6.3): cas [10, 11] on key 1 (op 0) took effect at log "
        "index 3 (n1's WAL; the register held 10, set at log index 2), yet its client "
        "was told it failed (precondition-failed)"]


def test_an_ok_for_a_cas_the_replay_refuses_is_a_violation():
    ops = history((2, "cas", 1, [10, 12], "ok"))
    [v] = exactly_once(cluster(LOG), ops).violations
    assert v.text.endswith("was answered ok, but applying the committed log once, in "
                           "order, it fails at log index 5 (n1's WAL): the register held "
                           "11, set at log index 3") and v.index == 5


def test_a_command_overtaken_by_its_clients_next_seq_is_not_applied():
    log = [cmd("write", 1, "c0", 2, value=20), cmd("write", 1, "c0", 1, value=10),
           cmd("cas", 1, "c9", 1, **{"from": 20, "to": 21})]
    ops = history((9, "cas", 1, [20, 21], "ok"))
    assert exactly_once(cluster(log), ops).valid is True


def test_only_the_durable_committed_prefix_is_replayed():
    ops = history((1, "cas", 1, [10, 11], "fail", "precondition-failed"))
    assert exactly_once(cluster(LOG, commit=2), ops).checked["answers_compared"] == 0


def test_missing_or_compacted_evidence_is_unknown():
    ops = history((0, "write", 1, 10, "ok"))
    r = exactly_once([NodeEvidence("n1", None, None, {"durable": "no data/n1/raft.wal"})],
                     ops)
    assert r.valid == "unknown" and "no data/<id>/raft.wal" in r.unknown_reason
    r = exactly_once(cluster(LOG[1:], base=1), ops)     # no snapshot state at hand
    assert r.valid == "unknown" and "starts after a snapshot (index 1) whose state " \
        "cannot be read" in r.unknown_reason


def test_it_is_an_invariant_of_a_run_with_a_history():
    ops = history((1, "cas", 1, [10, 11], "fail", "precondition-failed"))
    out = check_invariants(cluster(LOG), ops)
    assert out["invariants"]["exactly-once"]["valid"] is False
    assert "exactly-once" not in check_invariants(cluster(LOG))["invariants"]


def test_a_compacted_wal_is_replayed_from_its_snapshots_state():
    """The snapshot at index 3 holds key 1 = 11 and client c1 at seq 1: the retry of
    c1's cas after it is deduplicated, and c2's cas from 10 is refused."""
    machine = {"last_applied": 3, "values": [[1, 11]], "sessions": [["c1", 1, {"ok": True}]]}
    nodes = [NodeEvidence("n1", DurableState(1, None, 5, [(1, LOG[3]), (1, LOG[4])], base=3,
                                             machine=machine))]
    ops = history((1, "cas", 1, [10, 11], "ok"),
                  (2, "cas", 1, [10, 12], "fail", "precondition-failed"))
    r = exactly_once(nodes, ops)
    assert r.valid is True and r.checked["answers_compared"] == 1   # c1's was before it
    [v] = exactly_once(nodes, history((2, "cas", 1, [10, 12], "ok"))).violations
    assert v.text.endswith("the register held 11, set by the snapshot at index 3")
