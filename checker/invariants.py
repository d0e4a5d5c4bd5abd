"""Raft's safety invariants, checked after a run on the evidence the nodes left.

A linearizability checker sees only what clients saw. A Raft node can break the
protocol before any client notices: two leaders in one term, logs that disagree at a
committed index, a term or a vote forgotten across a crash. This module checks the
safety properties of the Raft paper (Ongaro and Ousterhout, "In Search of an
Understandable Consensus Algorithm", Figure 2 "persistent state" and Figure 3) on two
kinds of evidence per node, as MIT 6.824's tester checks "term T has 2 leaders" and
"commit index i: server a != server b", but after the fact, from what was written:

- the node's durable state after the run (`DurableState`: currentTerm, votedFor, the
  durable commit index and the log, decoded from its WAL);
- the node's event lines, in the order it logged them across all its restarts
  (`Event`: "start", "persisted", "vote", "leader", "commit", "fatal"; docs/spec.md).

The invariants, each a name in `INVARIANTS`:

- `election-safety`: at most one leader per term (Figure 3), from every node's
  "leader" events;
- `one-vote-per-term`: a node grants at most one candidate its vote in a term, also
  across restarts (Figure 2, RequestVote receiver rule 2; section 5.2), from its
  "vote" events and the votes it persisted;
- `terms-never-decrease`: currentTerm "increases monotonically" and votedFor is kept
  on stable storage for its term (Figure 2): a restart (a "start" event, or the WAL
  after the run) never recovers a term below one the node persisted or voted in, nor
  loses the vote it had persisted in its latest term (how a lost fsync of term or
  vote shows), and the node never persists its term's vote cleared (a vote forgotten
  on a same-term step-down, which lets it vote twice);
- `log-matching`: two logs with the same term at an index hold the same entries up
  to it (Figure 3, Log Matching);
- `commit-rule`: a leader advances its commit index by counting replicas only to an
  entry of its own term (Figure 2, rules for leaders; section 5.4.2, Figure 8), from
  its "commit" events (the first commit of each term it led, and the term of the
  entry it counted);
- `state-machine-safety`: for every pair of nodes, the entries up to the smaller of
  their durable commit indexes are identical, and a durable commit index never
  exceeds its node's log (Figure 3, State Machine Safety; Figure 2, commitIndex);
- `committed-on-a-majority`: the entry at the highest durable commit index is held, with
  the same term, by a majority of the durable logs (section 5.3: committed means held
  by a majority; 5.4: no server removes a committed entry), so an entry a leader
  counted on replicas that never made it durable, or never received it, shows;
- `log-durable`: log[] is persistent state (Figure 2) and a committed entry is never
  removed (section 5.4): a restart ("start": its last index), and the WAL after the
  run, hold at least every entry up to the highest index the node told ("stable") it
  knew committed and believed durable. This is how a follower that acknowledged
  entries it never synced shows after any crash that drops unsynced writes, not only
  when the loss changes what clients see;
- the rules of checker.raft_rules (`election-restriction`, `current-term-leader`,
  `read-index`): each decision a node traced checked against the rule that governs it.

Input is plain data; no file I/O here (campaign.evidence reads the logs and WALs).
Missing evidence never fails a check: a node without a WAL or without event lines (an
older node) makes the invariants that need it "unknown", unless a violation is found
in the evidence there is. Every violation is one line naming the nodes, the term or
index and what differs, plus a structured `details` entry (its log lines, and for the
logs the entries side by side) that report.page draws.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from checker import raft_rules, replay
from checker.raft_evidence import (DurableState, Event, InvariantResult, NodeEvidence,
                                   Violation, cut, json_text, missing, result)

INVARIANTS: dict[str, str] = {
    "election-safety": "Election Safety (Figure 3): at most one leader per term",
    "one-vote-per-term": "one vote per term per node, across restarts (Figure 2, "
                         "RequestVote rule 2; section 5.2)",
    "terms-never-decrease": "currentTerm never decreases and votedFor is kept for its "
                            "term, also across restarts (Figure 2, persistent state)",
    "commit-rule": "a leader commits by counting only an entry of its own term "
                   "(Figure 2, rules for leaders; Figure 8)",
    "log-matching": "Log Matching (Figure 3): the same term at an index means the same "
                    "entries up to it",
    "state-machine-safety": "State Machine Safety (Figure 3): committed entries agree "
                            "on every node; commitIndex within the log",
    "committed-on-a-majority": "a majority of the logs hold every committed entry "
                               "(sections 5.3 and 5.4)",
    "log-durable": "a restart recovers every committed entry the node believed durable "
                   "(Figure 2, persistent state)",
    **raft_rules.RULES,
    "exactly-once": replay.PROPERTY,
}
MAX_DETAILS = 50        # structured violations kept for the report (all lines are kept)
MAX_VIOLATIONS = 1000   # one-line violations kept per invariant
CONTEXT_ENTRIES = 2     # log entries shown on each side of a divergence


# -- the invariants -------------------------------------------------------------

def election_safety(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 3: at most one node is leader of a term (its first "leader" event)."""
    leaders: dict[int, dict[str, Event]] = {}
    events = 0
    for n in nodes:
        for ev in n.events or []:
            term = ev.int_field("term")
            if ev.kind != "leader" or term is None:
                continue
            events += 1
            leaders.setdefault(term, {}).setdefault(n.node, ev)
    out = []
    for term in sorted(leaders):
        who = leaders[term]
        if len(who) > 1:
            names = sorted(who)
            listed = ", ".join(f"{nid} ({who[nid].where()})" for nid in names)
            out.append(Violation(
                "election-safety", f"Election Safety (Figure 3): term {term} has "
                f"{len(who)} leaders: {listed}", names, term=term,
                refs=[who[nid].ref(nid) for nid in names]))
    return result(out, {"leader_events": events, "terms_with_a_leader": len(leaders)},
                   missing(nodes, "events"))


def one_vote_per_term(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 2, RequestVote rule 2: a node votes for one candidate per term. A vote is
    a "vote" event (sent) or a vote the node persisted or recovered ("persisted",
    "start"); granting the same candidate again is allowed."""
    out, votes, terms = [], 0, 0
    for n in nodes:
        first: dict[int, tuple[str, Event]] = {}
        reported: set[int] = set()
        for ev in n.events or []:
            term, cand = _vote_of(ev)
            if term is None or cand is None:
                continue
            votes += 1
            if term not in first:
                first[term] = (cand, ev)
                continue
            cand0, ev0 = first[term]
            if cand != cand0 and term not in reported:
                reported.add(term)
                out.append(Violation(
                    "one-vote-per-term", f"one vote per term (Figure 2): {n.node} voted "
                    f"twice in term {term}: for {cand0} ({ev0.where()}) and for {cand} "
                    f"({ev.where()})", [n.node], term=term,
                    refs=[ev0.ref(n.node), ev.ref(n.node)]))
        terms += len(first)
    return result(out, {"vote_records": votes, "node_terms_with_a_vote": terms},
                   missing(nodes, "events"))


def _vote_of(ev: Event) -> tuple[int | None, str | None]:
    term = ev.int_field("term")
    if ev.kind == "vote":
        cand = ev.data.get("candidate")
    elif ev.kind in ("persisted", "start"):
        cand = ev.data.get("vote")
    else:
        return None, None
    return term, cand if isinstance(cand, str) else None


def commit_rule(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 2, rules for leaders: commitIndex moves to N by counting only if
    log[N].term == currentTerm; an older entry commits only under a newer one (section
    5.4.2: Figure 8 shows an old-term entry, counted on a majority, overwritten). A
    "commit" event gives the first index a leader committed in its term and the term
    of that entry (none: nothing to check, as for the other event invariants)."""
    out, commits = [], 0
    for n in nodes:
        for ev in n.events or []:
            if ev.kind != "commit":
                continue
            term, index, entry_term = (ev.int_field(k) for k in ("term", "index",
                                                                  "entry_term"))
            if term is None or index is None or entry_term is None:
                continue
            commits += 1
            if entry_term != term:
                out.append(Violation(
                    "commit-rule", f"commit rule (Figure 8): {n.node}, leader of term "
                    f"{term}, committed up to index {index}, an entry of term "
                    f"{entry_term}, by counting replicas ({ev.where()})", [n.node],
                    term=term, index=index, refs=[ev.ref(n.node)]))
    return result(out, {"commit_events": commits}, missing(nodes, "events"))


def terms_never_decrease(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 2: what a node persisted (a "persisted" event: written and, in the
    correct node, fsynced; a "vote" event: persisted before it was sent; a "start":
    recovered) is what it recovers at its next start and what its WAL holds after the
    run: never a lower term, never the latest term without its vote."""
    out: list[Violation] = []
    restarts = compared = 0
    for n in nodes:
        durable: tuple[int, str | None, Event] | None = None  # last (term, vote, where)
        for ev in n.events or []:
            term, vote = ev.int_field("term"), _vote_of(ev)[1]
            if term is None or ev.kind not in ("start", "persisted", "vote"):
                continue
            if ev.kind == "start":
                if durable is not None:
                    restarts += 1
                    compared += 1
                    v = _recovery_violation(n.node, durable, term, vote,
                                            f"{n.node} restarted ({ev.where()}) with", ev)
                    if v:
                        out.append(v)
                durable = (term, vote, ev)  # what it runs on now
            elif durable is None or term > durable[0]:
                durable = (term, vote, ev)
            elif term == durable[0]:
                # the same term: a persisted write is the vote now; a vote sent was
                # persisted first. votedFor is reset only with a new term (Figure 2):
                # a vote cleared within its term lets the node vote again in it.
                if ev.kind == "persisted" and vote is None and durable[1] is not None:
                    compared += 1
                    out.append(Violation(
                        "terms-never-decrease", f"votedFor is kept for its term (Figure "
                        f"2): {n.node} persisted term {term} with no vote ({ev.where()}) "
                        f"after it had voted for {durable[1]} in term {term} "
                        f"({durable[2].where()})", [n.node], term=term,
                        refs=[durable[2].ref(n.node), ev.ref(n.node)]))
                durable = (term, vote, ev)
            elif ev.kind == "persisted":
                compared += 1
                out.append(Violation(
                    "terms-never-decrease", f"currentTerm never decreases (Figure 2): "
                    f"{n.node} persisted term {term} ({ev.where()}) after term "
                    f"{durable[0]} ({durable[2].where()}) without a restart",
                    [n.node], term=term, refs=[durable[2].ref(n.node), ev.ref(n.node)]))
        if durable is not None and n.durable is not None:
            compared += 1
            v = _recovery_violation(n.node, durable, n.durable.term, n.durable.vote,
                                    f"{n.node}'s raft.wal holds, after the run,", None)
            if v:
                out.append(v)
    return result(out, {"restarts": restarts, "recoveries_compared": compared},
                   missing(nodes, "events"))


_HOW = {"persisted": "persisted", "vote": "voted in", "start": "recovered"}


def _recovery_violation(node: str, durable: tuple[int, str | None, Event], term: int,
                        vote: str | None, subject: str, ev: Event | None) -> Violation | None:
    t0, v0, ev0 = durable
    refs = [ev0.ref(node)] + ([ev.ref(node)] if ev else [])
    if term < t0:
        return Violation("terms-never-decrease", f"currentTerm never decreases (Figure 2): "
                         f"{subject} term {term}, below term {t0} it had "
                         f"{_HOW.get(ev0.kind, 'seen')} ({ev0.where()})", [node], term=t0,
                         refs=refs)
    if term == t0 and v0 is not None and vote != v0:
        return Violation("terms-never-decrease", f"votedFor is kept (Figure 2): "
                         f"{subject} term {term} and vote {json_text(vote)}, but it had voted for "
                         f"{v0} in term {t0} ({ev0.where()})", [node], term=t0, refs=refs)
    return None


def log_matching(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 3: if two logs hold an entry with the same index and term, the logs are
    identical in all entries up to that index. Per pair: the highest index where the
    terms agree; the first entry up to it that differs is the violation."""
    out, pairs, compared = [], 0, 0
    logs = _logs(nodes)
    for a, b in _pairs(sorted(logs)):
        da, db = logs[a].durable, logs[b].durable
        assert da is not None and db is not None
        pairs += 1
        # Both compacted WALs hold entries after the later snapshot only (section 7).
        lo, top = max(da.base, db.base), 0
        for i in range(min(da.last, db.last), lo, -1):
            if da.at(i)[0] == db.at(i)[0]:  # type: ignore[index]
                top = i
                break
        compared += max(0, top - lo)
        j = _first_difference(logs[a], logs[b], top)
        if j is not None:
            t = da.at(top)[0]  # type: ignore[index]
            out.append(Violation(
                "log-matching", f"Log Matching (Figure 3): {a} and {b} both hold term "
                f"{t} at index {top}, but differ at index {j}: "
                f"{_side(a, da, j)}, {_side(b, db, j)}", [a, b], term=t,
                index=j, entries=_window({a: da, b: db}, j)))
    return result(out, {"node_pairs": pairs, "entries_compared": compared},
                   missing(nodes, "durable"))


def state_machine_safety(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 3: a committed entry is the same on every node. Per pair, the entries up
    to the smaller durable commit index must be identical; a durable commit index
    beyond the node's own log is itself a violation (Figure 2: commitIndex is the
    index of the highest log entry known committed)."""
    out: list[Violation] = []
    by_id = _logs(nodes)
    logs = {nid: n.durable for nid, n in by_id.items()}
    commits = {n.node: n.durable.commit for n in nodes
               if n.durable is not None and n.durable.commit is not None}
    for nid in sorted(commits):
        if commits[nid] > logs[nid].last:  # type: ignore[union-attr]
            out.append(Violation(
                "state-machine-safety", f"State Machine Safety (Figure 2, commitIndex): "
                f"{nid}'s durable commit index {commits[nid]} exceeds its log of "
                f"{logs[nid].last} entries", [nid], index=commits[nid]))  # type: ignore[union-attr]
    pairs = compared = 0
    for a, b in _pairs(sorted(commits)):
        pairs += 1
        da, db = logs[a], logs[b]
        assert da is not None and db is not None
        m = min(commits[a], commits[b], da.last, db.last)
        compared += max(0, m - max(da.base, db.base))
        j = _first_difference(by_id[a], by_id[b], m)
        if j is not None:
            out.append(Violation(
                "state-machine-safety", f"State Machine Safety (Figure 3): {a} (commit "
                f"{commits[a]}) and {b} (commit {commits[b]}) differ at committed index "
                f"{j}: {_side(a, da, j)}, {_side(b, db, j)}", [a, b], index=j,
                entries=_window({a: da, b: db}, j)))
    return result(out, {"nodes_with_a_commit": len(commits), "node_pairs": pairs,
                         "committed_entries_compared": compared}, _missing_commits(nodes))


def committed_on_a_majority(nodes: list[NodeEvidence]) -> InvariantResult:
    """Section 5.3: an entry is committed once the leader has replicated it on a
    majority, each of which made it durable first (Figure 2); section 5.4: no server
    ever removes a committed entry. So after the run the entry at the highest durable
    commit index is held with the same term by a majority of the durable logs (Log
    Matching then gives the whole prefix); a snapshot that covers the index holds it.
    Missing durable state on enough nodes to matter makes it unknown."""
    logs = {n.node: n.durable for n in nodes if n.durable is not None}
    commits = {nid: d.commit for nid, d in logs.items() if d.commit is not None}
    quorum = len(nodes) // 2 + 1
    known = [(c, nid) for nid, c in commits.items()
             if c > 0 and logs[nid].at(c) is not None]   # type: ignore[union-attr]
    if not known:
        return result([], {"commit_index": 0, "holders": 0}, _missing_commits(nodes))
    top = max(c for c, _ in known)
    who = min(nid for c, nid in known if c == top)
    term = logs[who].at(top)[0]  # type: ignore[index, union-attr]
    holders = sorted(nid for nid, d in logs.items()
                     if top <= d.base or (d.at(top) or (None,))[0] == term)
    checked = {"commit_index": top, "holders": len(holders)}
    if len(holders) >= quorum:
        return result([], checked, [])
    absent = missing(nodes, "durable")
    if len(holders) + len(nodes) - len(logs) >= quorum:
        return result([], checked, absent)   # the nodes without a WAL may hold it
    lacking = sorted(nid for nid in logs if nid not in holders)
    return result([Violation(
        "committed-on-a-majority", f"committed entries on a majority (section 5.3): "
        f"{who} committed index {top} (term {term}), but only {', '.join(holders)} of "
        f"{len(nodes)} nodes hold it: " + ", ".join(_side(nid, logs[nid], top)
                                                   for nid in lacking),
        sorted([who] + lacking), term=term, index=top,
        entries=_window({nid: logs[nid] for nid in sorted(logs)}, top))],
        checked, [])


def log_durable(nodes: list[NodeEvidence]) -> InvariantResult:
    """Figure 2 (log[] persistent) and section 5.4 (committed entries stay): a node's
    log after a restart, and after the run, reaches every index it had told, by a
    "stable" line, it knew committed and believed durable."""
    out: list[Violation] = []
    compared = 0
    for n in nodes:
        if not raft_rules.traced(n):
            continue
        told: tuple[int, Event] | None = None
        for ev in n.events or []:
            if ev.kind == "stable" and ev.int_field("index") is not None:
                if told is None or ev.int_field("index") > told[0]:  # type: ignore[operator]
                    told = (ev.int_field("index"), ev)  # type: ignore[assignment]
            elif ev.kind == "start" and told is not None \
                    and ev.int_field("last_index") is not None:
                compared += 1
                last = ev.int_field("last_index")
                if last < told[0]:   # type: ignore[operator]
                    out.append(_lost_log(n.node, told, last,  # type: ignore[arg-type]
                                         f"restarted ({ev.where()}) with", ev))
                    told = (last, ev)   # type: ignore[assignment]
        if told is not None and n.durable is not None:
            compared += 1
            if n.durable.last < told[0]:
                out.append(_lost_log(n.node, told, n.durable.last,
                                     "'s raft.wal holds, after the run,", None))
    return result(out, {"recoveries_compared": compared}, raft_rules.untraced(nodes))


def _lost_log(node: str, told: tuple[int, Event], last: int, subject: str,
              ev: Event | None) -> Violation:
    index, where = told
    sep = "" if subject.startswith("'") else " "
    return Violation(
        "log-durable", f"log[] is persistent (Figure 2): {node}{sep}{subject} a log "
        f"ending at index {last}, below index {index} it knew committed and believed "
        f"durable ({where.where()})", [node], index=index,
        refs=[where.ref(node)] + ([ev.ref(node)] if ev else []))


CHECKS: dict[str, Callable[[list[NodeEvidence]], InvariantResult]] = {
    "election-safety": election_safety,
    "one-vote-per-term": one_vote_per_term,
    "terms-never-decrease": terms_never_decrease,
    "commit-rule": commit_rule,
    "log-matching": log_matching,
    "state-machine-safety": state_machine_safety,
    "committed-on-a-majority": committed_on_a_majority,
    "log-durable": log_durable,
    **raft_rules.CHECKS,
}


def check_invariants(nodes: list[NodeEvidence], ops: list | None = None) -> dict:
    """Every invariant on the evidence of `nodes`: the "raft-invariants" checker of
    results.json (docs/spec.md section 8); with the run's history `ops`, also
    `exactly-once` (checker.replay)."""
    results = {name: fn(nodes) for name, fn in CHECKS.items()}
    if ops is not None:
        results["exactly-once"] = replay.exactly_once(nodes, ops)
    lines: list[str] = []
    details: list[dict] = []
    summary: dict[str, dict] = {}
    for name, r in results.items():
        lines.extend(v.text for v in r.violations[:MAX_VIOLATIONS])
        if len(r.violations) > MAX_VIOLATIONS:
            lines.append(f"{name}: {len(r.violations) - MAX_VIOLATIONS} more violations "
                         "not listed")
        details.extend(v.to_dict() for v in r.violations)
        summary[name] = {"valid": r.valid, "property": INVARIANTS[name],
                         "violations": len(r.violations)}
        if r.unknown_reason:
            summary[name]["unknown_reason"] = r.unknown_reason
    valid = _worst(r.valid for r in results.values())
    out: dict[str, Any] = {
        "valid": valid, "violations": lines,
        "checked": {name: r.checked for name, r in results.items()},
        "invariants": summary, "details": details[:MAX_DETAILS],
        "nodes": {n.node: _node_summary(n) for n in nodes}}
    if valid == "unknown":
        reasons: dict[str, list[str]] = {}
        for name, r in results.items():
            for why in (r.unknown_reason or "").split("; "):
                if why:
                    reasons.setdefault(why, []).append(name)
        out["unknown_reason"] = "; ".join(f"{why} ({', '.join(names)})"
                                          for why, names in reasons.items())
    return out


# -- helpers --------------------------------------------------------------------

def _missing_commits(nodes: list[NodeEvidence]) -> list[str]:
    """Why durable commit indexes are missing: no WAL, or a WAL format without one."""
    old = [n.node for n in nodes if n.durable is not None and n.durable.commit is None]
    return missing(nodes, "durable") + (
        [f"{', '.join(old)}: no commit index in the WAL (an older node)"] if old else [])


def _worst(verdicts: Iterable[Any]) -> Any:
    vs = list(verdicts)
    if any(v is False for v in vs):
        return False
    return True if all(v is True for v in vs) else "unknown"


def _logs(nodes: list[NodeEvidence]) -> dict[str, NodeEvidence]:
    return {n.node: n for n in nodes if n.durable is not None}


def _pairs(ids: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]


def _first_difference(a: NodeEvidence, b: NodeEvidence, upto: int) -> int | None:
    """The first 1-based index <= upto, after both snapshots (section 7), where the
    two logs differ, or None. Entries are compared exactly as JSON (true is not 1;
    key order does not matter): their reprs decide at C speed, canonical JSON where
    the reprs differ."""
    da, db = a.durable, b.durable
    assert da is not None and db is not None
    lo = max(da.base, db.base)
    if upto <= lo:
        return None
    ra = a.entry_reprs()[lo - da.base:upto - da.base]
    rb = b.entry_reprs()[lo - db.base:upto - db.base]
    if ra == rb:
        return None
    for k in range(upto - lo):
        i = lo + k + 1
        ea, eb = da.at(i), db.at(i)
        if ra[k] != rb[k] and (ea[0] != eb[0]  # type: ignore[index]
                               or json_text(ea[1]) != json_text(eb[1])):  # type: ignore[index]
            return i
    return None


def _side(node: str, log: DurableState, index: int) -> str:
    e = log.at(index)
    if e is None:
        return f"{node} has no entry" + (" (compacted)" if index <= log.base else "")
    term, cmd = e
    return f"{node} has term {term} {cut(json_text(cmd))}"


def _window(logs: dict[str, DurableState], index: int) -> list[dict]:
    """The entries around `index` on each node, side by side: [{"index", node:
    {"term", "command"} | None}]."""
    rows = []
    top = max(log.last for log in logs.values())
    for i in range(max(1, index - CONTEXT_ENTRIES), min(top, index + CONTEXT_ENTRIES) + 1):
        row: dict[str, Any] = {"index": i}
        for nid, log in logs.items():
            e = log.at(i)
            row[nid] = {"term": e[0], "command": e[1]} if e is not None else None
        rows.append(row)
    return rows


def _node_summary(n: NodeEvidence) -> dict:
    d: dict[str, Any] = {"events": None if n.events is None else len(n.events)}
    if n.durable is not None:
        d.update(term=n.durable.term, vote=n.durable.vote, commit=n.durable.commit,
                 log_length=n.durable.last)
        if n.durable.base:
            d["snapshot_index"] = n.durable.base
    else:
        d["durable"] = None
    if n.missing:
        d["missing"] = dict(n.missing)
    return d


