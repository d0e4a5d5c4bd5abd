"""Raft's rules checked on the decisions a node traced, as trace validation does.

The invariants of checker.invariants are properties of the outcome (one leader per
term, logs that agree). A rule of Figure 2 or of the dissertation can be broken
without the outcome of one run showing it: a vote granted to a candidate whose log is
behind elects a leader that may lack committed entries only if the timing is wrong.
Like etcd-io/raft's trace validation (each traced step of the node checked against
the TLA+ specification), a node that writes trace lines (its "start" line carries
`trace`; docs/spec.md section 5) reports the inputs of each such decision, and the
rules below check the decision against them:

- `election-restriction` (section 5.4.1): a vote ("vote" line) goes only to a
  candidate whose log is at least as up to date as the voter's: a later last term,
  or the same last term and a last index at least as high;
- `current-term-leader` (Figure 2, AppendEntries receiver 1): a node takes a
  leader's AppendEntries or InstallSnapshot ("follow" line, one per new leader and
  term) only at its own current term, never from the leader of an older term;
- `read-index` (dissertation 6.4, ReadIndex step 1): a leader serves its first read
  of a term ("read" line) only at a commit index holding an entry of that term;
- `commit-quorum` (Figure 2, rules for leaders; section 5.4.2): a leader advances its
  commit index ("acked" line, trace 2) only to an entry of its own term that a
  majority holds by what the followers' replies confirmed (matchIndex follows the
  replies, never what was sent), the leader's own persisted log counting for it;
- `read-quorum` (dissertation 6.4, ReadIndex step 3): a leader releases reads
  ("confirmed" line, trace 2) only once a majority, itself included, answered a
  message sent after the reads arrived (no lease counted in the leader's own time).

A node without trace lines (an older node, or a node of the user's own) leaves these
"unknown"; for a node of the user's own the run leaves them out with a warning.
"""

from __future__ import annotations

from typing import Callable

from checker.raft_evidence import (Event, InvariantResult, NodeEvidence, Violation,
                                   missing, result)

RULES: dict[str, str] = {
    "election-restriction": "a vote only for a candidate whose log is at least as up to "
                            "date (section 5.4.1)",
    "current-term-leader": "AppendEntries taken only from the leader of the node's "
                           "current term (Figure 2, AppendEntries receiver 1)",
    "read-index": "a leader serves reads only once an entry of its term is committed "
                  "(dissertation 6.4, ReadIndex)",
    "commit-quorum": "a leader commits only an entry of its term that the replies of a "
                     "majority confirmed (Figure 2, rules for leaders)",
    "read-quorum": "a leader serves reads only after a majority confirmed its "
                   "leadership (dissertation 6.4, ReadIndex step 3)",
}
# the trace version that brings each rule's lines (the "start" line's `trace`)
VERSION = {"election-restriction": 1, "current-term-leader": 1, "read-index": 1,
           "commit-quorum": 2, "read-quorum": 2}


def traced(n: NodeEvidence, version: int = 1) -> bool:
    """Whether the node writes trace lines of this version (its "start" line says
    `trace` >= version)."""
    return any(ev.kind == "start" and (ev.int_field("trace") or 0) >= version
               for ev in n.events or [])


def election_restriction(nodes: list[NodeEvidence]) -> InvariantResult:
    """Section 5.4.1: grant a vote only if the candidate's (last term, last index) is
    at least the voter's, terms compared first (never the lengths alone)."""
    out, compared = [], 0
    for n in _traced(nodes):
        for ev in n.events or []:
            cand, own = _position(ev, "candidate_last"), _position(ev, "own_last")
            if ev.kind != "vote" or cand is None or own is None:
                continue
            compared += 1
            if cand < own:
                term = ev.int_field("term")
                out.append(Violation(
                    "election-restriction", f"election restriction (section 5.4.1): "
                    f"{n.node} voted for {ev.data.get('candidate')} in term {term} "
                    f"({ev.where()}), whose log ends at term {cand[0]} index {cand[1]}, "
                    f"behind its own (term {own[0]} index {own[1]})", [n.node], term=term,
                    refs=[ev.ref(n.node)]))
    return result(out, {"votes_compared": compared}, untraced(nodes))


def current_term_leader(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 2, AppendEntries receiver 1 ("reply false if term < currentTerm"): a
    leader followed is the leader of the node's current term at that moment (the
    line's own `term`: a Ready's "persisted" line gives the term at its end, after
    every message it handled, so it cannot stand for the term of each)."""
    out, follows = [], 0
    for n in _traced(nodes):
        for ev in n.events or []:
            term, leader_term = ev.int_field("term"), ev.int_field("leader_term")
            if ev.kind != "follow" or term is None or leader_term is None:
                continue
            follows += 1
            if leader_term < term:
                out.append(Violation(
                    "current-term-leader", f"AppendEntries only from the current term "
                    f"(Figure 2, receiver 1): {n.node}, at term {term}, followed "
                    f"{ev.data.get('leader')}, leader of the older term {leader_term} "
                    f"({ev.where()})", [n.node], term=leader_term, refs=[ev.ref(n.node)]))
    return result(out, {"leaders_followed": follows}, untraced(nodes))


def read_index(nodes: list[NodeEvidence]) -> InvariantResult:
    """Dissertation 6.4, ReadIndex step 1: a new leader's commit index may lag its
    predecessor's until an entry of its own term commits; a read served at an index
    whose entry is of an older term may miss acknowledged writes."""
    out, reads = [], 0
    for n in _traced(nodes):
        for ev in n.events or []:
            term, index, entry_term = (ev.int_field(k) for k in ("term", "index",
                                                                  "entry_term"))
            if ev.kind != "read" or term is None or index is None or entry_term is None:
                continue
            reads += 1
            if entry_term != term:
                out.append(Violation(
                    "read-index", f"ReadIndex (dissertation 6.4): {n.node}, leader of "
                    f"term {term}, served reads at index {index}, an entry of term "
                    f"{entry_term}, before an entry of its own term was committed "
                    f"({ev.where()})", [n.node], term=term, index=index,
                    refs=[ev.ref(n.node)]))
    return result(out, {"first_reads_of_a_term": reads}, untraced(nodes))


def commit_quorum(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 2, rules for leaders: commitIndex = N only if log[N].term ==
    currentTerm (section 5.4.2) and a majority of matchIndex[i] >= N, where
    matchIndex follows what the followers' replies confirmed ("Students' Guide to
    Raft": setting it from what was sent "is not safe"). The leader itself counts if
    its own log is persisted up to N."""
    out, commits = [], 0
    for n in _traced(nodes, 2):
        for ev in n.events or []:
            term, index, entry_term, own = (ev.int_field(k) for k in (
                "term", "index", "entry_term", "own"))
            peers = ev.data.get("peers")
            if (ev.kind != "acked" or None in (term, index, entry_term, own)
                    or not isinstance(peers, dict)
                    or not all(type(v) is int for v in peers.values())):
                continue
            commits += 1
            holders = (own >= index) + sum(1 for v in peers.values() if v >= index)
            need = (len(peers) + 1) // 2 + 1
            if entry_term != term or holders < need:
                why = (f"whose entry is of the older term {entry_term}" if entry_term != term
                       else f"held by {holders} of {len(peers) + 1} by what the replies "
                            f"confirmed ({_confirmed(own, peers)}), not a majority")
                out.append(Violation(
                    "commit-quorum", f"commit rule (Figure 2, rules for leaders): "
                    f"{n.node}, leader of term {term}, committed up to index {index}, "
                    f"{why} ({ev.where()})", [n.node], term=term, index=index,
                    refs=[ev.ref(n.node)]))
    return result(out, {"commits_checked": commits}, untraced(nodes, 2))


def read_quorum(nodes: list[NodeEvidence]) -> InvariantResult:
    """Dissertation 6.4, ReadIndex step 3: the leader records its commit index, sends
    a round of heartbeats, and serves the reads once a majority acknowledged one sent
    after they arrived: it was still the leader when they arrived. A lease (6.4.1)
    trusts the leader's clock instead, which a paused or slow node cannot."""
    out, batches = [], 0
    for n in _traced(nodes, 2):
        for ev in n.events or []:
            term, index, voters = (ev.int_field(k) for k in ("term", "index", "voters"))
            peers = ev.data.get("peers")
            if (ev.kind != "confirmed" or None in (term, index, voters)
                    or not isinstance(peers, list)):
                continue
            batches += 1
            if 1 + len(peers) < voters // 2 + 1:
                out.append(Violation(
                    "read-quorum", f"ReadIndex (dissertation 6.4, step 3): {n.node}, "
                    f"leader of term {term}, served {ev.data.get('reads')} read(s) at "
                    f"index {index} confirmed by {1 + len(peers)} of {voters} "
                    f"({', '.join([n.node] + [str(p) for p in peers])}), not a majority "
                    f"({ev.where()})", [n.node], term=term, index=index,
                    refs=[ev.ref(n.node)]))
    return result(out, {"read_batches_checked": batches}, untraced(nodes, 2))


CHECKS: dict[str, Callable[[list[NodeEvidence]], InvariantResult]] = {
    "election-restriction": election_restriction,
    "current-term-leader": current_term_leader,
    "read-index": read_index,
    "commit-quorum": commit_quorum,
    "read-quorum": read_quorum,
}


def _traced(nodes: list[NodeEvidence], version: int = 1) -> list[NodeEvidence]:
    return [n for n in nodes if traced(n, version)]


def _confirmed(own: int, peers: dict) -> str:
    return ", ".join([f"own log {own}"] + [f"{p} {v}" for p, v in sorted(peers.items())])


def untraced(nodes: list[NodeEvidence], version: int = 1) -> list[str]:
    """Why some nodes' decisions could not be checked (no event lines, or no trace
    lines of this version)."""
    without = [n.node for n in nodes if n.events is not None and not traced(n, version)]
    return missing(nodes, "events") + (
        [f"{', '.join(without)}: no trace lines"
         + (f" of version {version}" if version > 1 else "")
         + " (a node that does not write them)"] if without else [])


def _position(ev: Event, name: str) -> tuple[int, int] | None:
    v = ev.data.get(name)
    if (isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)):
        return (v[0], v[1])
    return None
