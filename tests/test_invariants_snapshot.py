"""checker.invariants and campaign.evidence on compacted WALs (paper section 7): a
prefix that is only in a snapshot is not a violation; a difference after the
snapshots still is."""

from __future__ import annotations

from campaign.evidence import _read_wal
from checker.invariants import (DurableState, NodeEvidence, check_invariants, log_matching,
                                state_machine_safety)
from node.core.messages import LogEntry
from node.core.state import HardState, Snapshot
from node.shell.storage import Storage

W = [{"op": "write", "key": 1, "value": v} for v in range(12)]
LOG = [(1, None)] + [(1, W[i]) for i in range(1, 10)]    # indexes 1..10


def compacted(nid, base, upto=10, commit=8):
    return NodeEvidence(nid, DurableState(1, None, commit, LOG[base:upto], base=base), [])


def test_compacted_wals_with_different_snapshots_are_valid():
    nodes = [compacted("n1", 0), compacted("n2", 6), compacted("n3", 9, commit=9)]
    out = check_invariants(nodes)
    assert out["invariants"]["log-matching"]["valid"] is True, out["violations"]
    assert out["invariants"]["state-machine-safety"]["valid"] is True, out["violations"]
    ch = out["checked"]
    # n1-n2 compare 7..10 (4), n1-n3 and n2-n3 compare 10 (1 each)
    assert ch["log-matching"]["entries_compared"] == 4 + 1 + 1
    assert out["nodes"]["n2"]["snapshot_index"] == 6 and out["nodes"]["n2"]["log_length"] == 10
    # a WAL whose commit index is inside its snapshot is not past its log
    nodes = [compacted("n1", 6, commit=5), compacted("n2", 0, commit=5)]
    assert state_machine_safety(nodes).valid is True


def test_a_difference_after_the_snapshots_is_still_found():
    nodes = [compacted("n1", 0), compacted("n2", 6)]
    nodes[1].durable.entries[1] = (1, W[11])                   # index 8 on n2
    r = log_matching(nodes)
    assert r.valid is False and "differ at index 8" in r.violations[0].text
    rows = r.violations[0].entries
    assert rows[0]["index"] == 6 and rows[0]["n2"] is None      # compacted on n2
    r = state_machine_safety(nodes)
    assert r.valid is False and "committed index 8" in r.violations[0].text


def test_evidence_reads_a_compacted_wal(tmp_path):
    d = tmp_path / "data" / "n1"
    s = Storage(d)
    s.load()
    s.save(HardState(1, None, 4), None, [(i + 1, LogEntry(t, c)) for i, (t, c) in enumerate(LOG)])
    s.save_snapshot(Snapshot(6, 1, "{}"), [(i, LogEntry(*LOG[i - 1])) for i in range(7, 11)])
    s.close()
    ev = NodeEvidence("n1")
    problems: dict = {}
    _read_wal(tmp_path, "n1", ev, problems)
    assert not problems and ev.durable is not None
    assert ev.durable.base == 6 and ev.durable.last == 10 and ev.durable.at(7) == LOG[6]
    assert ev.durable.machine == {}   # the snapshot's state, for the exactly-once replay
