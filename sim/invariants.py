"""Raft's safety properties, checked on every step of a simulation run.

The *monitor* sees every node's state after every Ready and every restart, and
records a violation, with its kind and simulated time, when one of these fails:

- `election-safety` (Figure 3): at most one leader per term;
- `double-vote` (Figure 2, votedFor): a node grants at most one vote per term, even
  across restarts (a durable vote counts as cast);
- `term-regressed` (Figure 2, currentTerm on stable storage): a node's term never
  decreases, not even across a restart after it sent messages at that term;
- `log-matching` (Figure 3): two logs that agree on the term at an index are
  identical up to it;
- `leader-completeness` (Figure 3): a new leader holds every entry committed in an
  earlier term;
- `state-machine-safety` (Figure 3): no two nodes apply different entries at an index;
- `committed-lost` (section 5.3 with Figure 2's "updated on stable storage before
  responding"): an entry a leader counts as committed is on the disks (fsync'd)
  of a majority, from the moment it commits and through every crash and
  truncation after;
- `core-error`, `stuck`, `state-machine`, `wal`: the core raised, its Ready loop
  did not end, the machine was fed out of order, a WAL the run wrote did not load.

At the end of the run: `liveness` (some op succeeds after the faults stop),
`vacuous` (no op succeeded at all), and `linearizability` (checker.check on the
client history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.core.messages import CommitEntry, LogEntry
from node.core.raft import LEADER
from node.core.state import HardState

if TYPE_CHECKING:
    from sim.node import SimNode
    from sim.simulation import Simulation

MAX_VIOLATIONS = 50
LOG_WINDOW = 64


class SafetyMonitor:
    """Checks the properties of the module docstring; collects violations."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.violations: list[dict] = []
        self.leaders: dict[int, str] = {}
        self.votes: dict[tuple[str, int], str] = {}
        self.applied: dict[int, tuple[int, Any]] = {}
        self.committed: dict[int, tuple[int, LogEntry]] = {}  # index -> (commit term, entry)
        self.max_commit = 0

    def violation(self, kind: str, text: str, at_ms: int | None = None) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            at = self.sim.now if at_ms is None else at_ms
            self.violations.append({"kind": kind, "at_ms": at, "text": text})
        self.sim.log(f"VIOLATION {kind}: {text}")

    # ------------------------------------------------------------------ votes, terms
    def record_vote(self, voter: str, term: int, candidate: str) -> None:
        prev = self.votes.setdefault((voter, term), candidate)
        if prev != candidate:
            self.violation("double-vote", f"{voter} voted for {prev} and for {candidate} "
                                          f"in term {term}")

    def restarted(self, node: "SimNode", hs: HardState) -> None:
        if hs.term < node.max_term_sent:
            self.violation("term-regressed", f"{node.id} restarted at term {hs.term} but "
                                             f"had sent messages at term {node.max_term_sent}")
        if hs.voted_for is not None:  # a durable vote counts as cast (one per term)
            self.record_vote(node.id, hs.term, hs.voted_for)

    # ------------------------------------------------------------------ after a Ready
    def observe(self, node: "SimNode") -> None:
        core = node.core
        if core.term < node.last_term:
            self.violation("term-regressed",
                           f"{node.id}: term went back from {node.last_term} to {core.term}")
        node.last_term = core.term
        self.check_cuts(node)
        if core.role != LEADER:
            return
        prev = self.leaders.setdefault(core.term, node.id)
        if prev != node.id:
            self.violation("election-safety", f"two leaders in term {core.term}: "
                                              f"{prev} and {node.id}")
        if node.led_term != core.term:
            node.led_term = core.term
            self.sim.stats["elections"] += 1
            self.sim.log(f"{node.id} leader at term {core.term}")
            n, base = core.log_length(), core.snapshot_index
            for index, (cterm, entry) in self.committed.items():
                # Entries in its snapshot are compared as applied (state machine safety).
                if cterm < core.term and index > base and (index > n
                                                           or core.entry(index) != entry):
                    self.violation("leader-completeness",
                                   f"{node.id} leads term {core.term} without entry {index} "
                                   f"committed at term {cterm}")
                    break
        if core.commit_index > self.max_commit:
            for index in range(self.max_commit + 1, core.commit_index + 1):
                if index > core.snapshot_index:
                    entry = core.entry(index)
                else:  # compacted (section 7): it applied the entry first
                    entry = LogEntry(*self.applied[index])
                self.committed[index] = (core.term, entry)
                self.check_durable(index, entry, f"{node.id} committed it at term {core.term}")
            self.max_commit = core.commit_index

    def check_durable(self, index: int, entry: LogEntry, when: str) -> bool:
        holders = [n.id for n in self.sim.nodes.values() if n.disk.holds(index, entry)]
        if len(holders) < self.sim.p.quorum:
            self.violation("committed-lost",
                           f"entry {index} (term {entry.term}) is committed but on the disk "
                           f"of only {len(holders)} of {len(self.sim.ids)} nodes "
                           f"({', '.join(holders) or 'none'}); {when}")
            return False
        return True

    def check_cuts(self, node: "SimNode") -> None:
        """A node's durable log lost entries (a truncation, a torn write): every
        committed entry from there on must still be on a majority of disks."""
        cut = node.disk.take_lowest_cut()
        if cut is None or cut > self.max_commit:
            return
        for index in range(cut, self.max_commit + 1):
            _, entry = self.committed[index]
            if not self.check_durable(index, entry, f"after {node.id}'s disk lost "
                                                    f"entries from {cut} on"):
                break

    def check_applied(self, node: "SimNode", ce: CommitEntry) -> None:
        self.sim.stats["applied"] += 1
        prev = self.applied.setdefault(ce.index, (ce.term, ce.command))
        if prev != (ce.term, ce.command):
            self.violation("state-machine-safety",
                           f"{node.id} applied {(ce.term, ce.command)} at {ce.index}, "
                           f"another node applied {prev}")
        committed = self.committed.get(ce.index)
        if committed is not None and committed[1] != LogEntry(ce.term, ce.command):
            self.violation("state-machine-safety",
                           f"{node.id} applied at {ce.index} an entry that differs from "
                           f"the one a leader committed")

    # ------------------------------------------------------------------ periodically
    def check_logs(self) -> None:
        """Log matching (Figure 3) between every two up nodes: the terms of the
        whole agreeing prefix, the entries themselves over its last LOG_WINDOW
        indexes (further back, state machine safety compares what is applied)."""
        self.sim.stats["log_checks"] += 1
        logs = [(n.id, n.core.snapshot_index, n.core.entries())
                for n in self.sim.nodes.values() if n.up]
        for a in range(len(logs)):
            for b in range(a + 1, len(logs)):
                (ia, ba, full_a), (ib, bb, full_b) = logs[a], logs[b]
                # Compare after both snapshots (section 7): from index `first` on.
                first = max(ba, bb) + 1
                la, lb = full_a[first - ba - 1:], full_b[first - bb - 1:]
                ta, tb = [e.term for e in la], [e.term for e in lb]
                i = min(len(la), len(lb))
                while i > 0 and ta[i - 1] != tb[i - 1]:
                    i -= 1
                lo = max(0, i - LOG_WINDOW)
                if ta[:i] != tb[:i] or la[lo:i] != lb[lo:i]:
                    j = next(k for k in range(i) if la[k] != lb[k])
                    self.violation("log-matching", f"{ia} and {ib} agree on the term at "
                                                   f"{first + i - 1} but differ at "
                                                   f"{first + j}")
