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
  of a term ("read" line) only at a commit index holding an entry of that term.

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
}


def traced(n: NodeEvidence) -> bool:
    """Whether the node writes trace lines (its "start" line says `trace` >= 1)."""
    return any(ev.kind == "start" and (ev.int_field("trace") or 0) >= 1
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


CHECKS: dict[str, Callable[[list[NodeEvidence]], InvariantResult]] = {
    "election-restriction": election_restriction,
    "current-term-leader": current_term_leader,
    "read-index": read_index,
}


def _traced(nodes: list[NodeEvidence]) -> list[NodeEvidence]:
    return [n for n in nodes if traced(n)]


def untraced(nodes: list[NodeEvidence]) -> list[str]:
    """Why some nodes' decisions could not be checked (no event lines, or no trace)."""
    without = [n.node for n in nodes if n.events is not None and not traced(n)]
    return missing(nodes, "events") + (
        [f"{', '.join(without)}: no trace lines (a node that does not write them)"]
        if without else [])


def _position(ev: Event, name: str) -> tuple[int, int] | None:
    v = ev.data.get(name)
    if (isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)):
        return (v[0], v[1])
    return None
