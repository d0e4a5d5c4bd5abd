"""A simulated server: the real Raft core and register machine behind the server's loop.

A *SimNode* is what node.shell.server is, minus sockets and threads: a `RaftCore`
(node.core.raft) and a `RegisterMachine` driven through the same Ready loop, in the
same order (persist, send, apply, answer reads, advance), on a `SimDisk`. It answers
clients the way the server does: a definite error when a request is refused before
its entry is appended; once appended, an indefinite timeout when leadership is lost
or the request timeout passes ("when in doubt, indefinite").

The planted bugs (node.bugs) reach it exactly as they reach the server: core bugs
through `RaftConfig(bugs=...)` and `RegisterMachine(bugs=...)`, the core options
through `node.bugs.core_options`; the shell bugs are modelled here, in the same
places and with the same conditions as the server has them: `vote-not-durable` and
`append-not-durable` skip the fsync of a Ready that only changes the term or vote /
a follower's Ready that only appends; `local-reads` answers a leader's reads from
local state; `ack-before-commit` answers a proposal once it is appended;
`commit-wait-definite` ends a commit wait with a definite error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.bugs import (ACK_BEFORE_COMMIT, APPEND_NOT_DURABLE, COMMIT_WAIT_DEFINITE,
                       LOCAL_READS, VOTE_NOT_DURABLE)
from node.core.messages import CommitEntry, RequestVote, RequestVoteReply
from node.core.raft import LEADER, RaftCore
from node.core.register import RegisterMachine, error
from node.core.state import Ready, Snapshot
from sim.disk import SimDisk

if TYPE_CHECKING:
    from sim.clients import SimClient
    from sim.simulation import Simulation

TIMEOUT, UNAVAILABLE, NOT_LEADER = 0, 11, 30


@dataclass
class Request:
    """One attempt of a client op, as it reaches a node."""

    client: "SimClient"
    op_seq: int
    attempt: int
    command: dict


class SimNode:
    """One simulated server: a core, a disk, a register machine, waiting requests."""

    def __init__(self, sim: "Simulation", node_id: str) -> None:
        self.sim = sim
        self.id = node_id
        self.bugs = sim.bugs
        self.disk = SimDisk(f"{node_id}/raft.wal")
        self.up = False
        self.incarnation = 0
        self.max_term_sent = 0
        self.last_term = 0
        self.led_term: int | None = None
        self.paused_until = 0
        self.resume_order: dict[str, int] = {}
        self.jitter = random.Random(f"{sim.seed}-{node_id}-timing")  # ticks, resumes
        self.clock_factor = 1.0
        self.tear_share: float | None = None   # armed by a torn-write fault
        self.snap_rng = random.Random(f"{sim.seed}-{node_id}-snapshots")
        self.core: RaftCore
        self.sm: RegisterMachine
        self.start()

    def start(self) -> None:
        """Start (or restart) from what the disk holds."""
        sim = self.sim
        hs, log, torn = self.disk.load()
        if torn:
            sim.stats["torn_tails"] += 1
        sim.monitor.restarted(self, hs)
        self.incarnation += 1
        rng = random.Random(f"{sim.seed}-{self.id}-{self.incarnation}")
        snap = self.disk.snapshot
        self.core = RaftCore(self.id, sim.ids, hs, log, sim.raft_config, rng, snapshot=snap)
        self.last_term = hs.term
        self.led_term = None
        self.was_leader = False
        self.sm = RegisterMachine(bugs=self.bugs)
        if snap is not None:  # section 7: the snapshot, then the WAL's tail
            self.sm.restore(snap.data, snap.index)
        self.pending: dict[int, list[tuple[int, Request]]] = {}
        self.reads: dict[int, Request] = {}
        self.read_waits: list[tuple[int, Request]] = []
        self.up = True

    def pause(self, until: int) -> None:
        """SIGSTOP until `until`: no ticks; inputs wait in their sockets."""
        self.paused_until = until
        self.resume_order: dict[str, int] = {}

    def resume_time(self, connection: str) -> int:
        """When an input that arrived while stopped is read: on SIGCONT the process
        reads its sockets in no set order, so each connection (a peer's, a client's)
        gets its own small offset; within one connection the order stays FIFO."""
        offset = self.resume_order.get(connection)
        if offset is None:
            offset = self.resume_order[connection] = self.jitter.randint(0, 3)
        return self.paused_until + offset

    def crash(self, keep_share: float | None = None) -> int:
        """Stop at once: unsynced writes are lost (a torn prefix kept, if asked)."""
        self.up = False
        self.tear_share = None
        return self.disk.crash(keep_share)

    # ------------------------------------------------------------------ inputs
    def handle_request(self, req: Request) -> None:
        cmd = req.command
        if cmd["op"] == "read" and cmd.get("via") == "read-index":
            if LOCAL_READS in self.bugs and self.core.role == LEADER:
                self.reply(req, self.sm.read(cmd["key"]))  # the bug: no quorum check
                return
            rid = self.sim.next_id()
            if self.core.read_index(rid):
                self.reads[rid] = req
            else:
                self.reply(req, self.not_leader())
        else:
            index = self.core.propose({k: v for k, v in cmd.items() if k != "via"})
            if index is None:
                self.reply(req, self.not_leader())
            else:
                self.pending.setdefault(index, []).append((self.core.term, req))
                self.was_leader = True
                self.sim.schedule(self.sim.now + self.sim.p.request_timeout,
                                  "request-timeout", (self, self.incarnation, index, req))
        self.drain()

    def request_timeout(self, incarnation: int, index: int, req: Request) -> None:
        """The server's request timeout: the commit wait ends without an answer."""
        if incarnation != self.incarnation or not self.up:
            return
        waiting = self.pending.get(index, [])
        for i, (term, r) in enumerate(waiting):
            if r is req:
                del waiting[i]
                self.reply(req, self.gave_up("no commit within the request timeout"))
                return

    def not_leader(self) -> dict:
        leader = self.core.leader_id
        if leader is None or leader == self.id:
            return error(UNAVAILABLE, "temporarily-unavailable", True, detail="no leader known")
        return error(NOT_LEADER, "not-leader", True, leader=leader)

    def gave_up(self, why: str) -> dict:
        """A commit wait that ends without the entry's fate: indefinite (the correct
        server), or definite under `commit-wait-definite`."""
        if COMMIT_WAIT_DEFINITE in self.bugs:
            return error(UNAVAILABLE, "temporarily-unavailable", True,
                         detail=f"{why}; not committed")
        return error(TIMEOUT, "timeout", False, detail=f"{why}; the outcome is unknown")

    def reply(self, req: Request, result: dict) -> None:
        self.sim.clients.reply(self, req, result)

    # ------------------------------------------------------------------ the Ready loop
    def drain(self) -> None:
        """The server's loop (node.core.raft, the caller's contract), after any input."""
        sim = self.sim
        core = self.core
        rounds = 0
        while self.up and core.has_ready():
            rounds += 1
            if rounds > 10_000:
                sim.monitor.violation("stuck", f"{self.id}: the Ready loop does not end")
                return
            rd = core.ready()
            # 1. persist (write, and fsync unless only the commit index moved)
            if rd.must_write():
                self.disk.write(rd)
                if self.tear_share is not None:
                    kept = self.crash(self.tear_share)
                    sim.stats["torn_writes"] += 1
                    sim.log(f"{self.id} crashed while persisting ({kept} bytes torn in)")
                    sim.nemesis.crashed_in_write(self)
                    return
                if self.must_fsync(rd):
                    self.disk.sync()
            # 2. send
            for to, m in rd.messages:
                if not getattr(m, "pre_vote", False):  # a PreVote names a future term
                    self.max_term_sent = max(self.max_term_sent, m.term)
                if isinstance(m, RequestVoteReply) and m.granted and not m.pre_vote:
                    sim.monitor.record_vote(self.id, m.term, to)
                elif isinstance(m, RequestVote) and not m.pre_vote:
                    sim.monitor.record_vote(self.id, m.term, self.id)
                sim.network.send(self.id, to, m)
            if ACK_BEFORE_COMMIT in self.bugs and rd.entries:
                self.ack_appended(rd.entries[-1][0])
            # 3. apply (after a snapshot from the leader resets the machine)
            if rd.snapshot is not None:
                self.restore(rd.snapshot)
            for ce in rd.committed:
                self.apply(ce)
            # 4. reads
            for rid, index in rd.reads:
                req = self.reads.pop(rid, None)
                if req is not None:
                    self.read_waits.append((index, req))
            for rid in rd.dropped_reads:
                req = self.reads.pop(rid, None)
                if req is not None:
                    self.reply(req, self.not_leader())
            self.serve_reads()
            core.advance(rd)
            self.leadership_check()
            sim.monitor.observe(self)
            n = sim.p.snapshot_entries
            if n and self.sm.last_applied - core.snapshot_index >= n:
                if not self.take_snapshot():
                    return
        if self.up:
            sim.monitor.observe(self)

    def restore(self, snap: Snapshot) -> None:
        """Figure 13, receiver 8 (as the server does): the machine reset from the
        leader's snapshot; proposals it covers have an unknown fate."""
        self.sim.stats["snapshots_installed"] += 1
        self.sm.restore(snap.data, snap.index)
        for index in [i for i in self.pending if i <= snap.index]:
            for _, req in self.pending.pop(index):
                self.reply(req, self.gave_up("replaced by a snapshot"))

    def take_snapshot(self) -> bool:
        """Section 7, as the server does it: the machine's state at its applied index
        saved, the WAL compacted behind it, then the core's log. A share of them
        (snapshot_crash) crash between the snapshot file and the WAL's compaction;
        False then (the node is down)."""
        sim, core = self.sim, self.core
        index = self.sm.last_applied
        term = core.term_at(index)
        assert term is not None
        snap = Snapshot(index, term, self.sm.snapshot())
        if sim.faults_on and self.snap_rng.random() < sim.p.snapshot_crash:
            self.disk.write_snapshot(snap)
            self.crash()
            sim.stats["snapshot_crashes"] += 1
            sim.log(f"{self.id} crashed after writing its snapshot at {index}, before "
                    f"compacting its WAL")
            sim.monitor.check_cuts(self)
            sim.schedule(sim.now + self.snap_rng.randint(20, 300), "restart", self)
            return False
        self.disk.save_snapshot(snap, core.stable_entries(index))
        core.compact(snap)
        sim.stats["snapshots"] += 1
        return True

    def must_fsync(self, rd: Ready) -> bool:
        """Whether this Ready is fsync'd, as the server decides it: not when only the
        commit index moved (etcd's MustSync), nor where a durability bug skips it."""
        if not rd.must_sync():
            return False
        writes_entries = rd.truncate_from is not None or bool(rd.entries)
        if VOTE_NOT_DURABLE in self.bugs and not writes_entries:
            return False  # planted bug: term and vote written, not fsynced
        if (APPEND_NOT_DURABLE in self.bugs and not rd.term_or_vote_changed
                and self.core.role != LEADER):
            return False  # planted bug: a follower's entries written, not fsynced
        return True

    def leadership_check(self) -> None:
        """Leadership lost: appended entries may or may not commit later (server)."""
        if self.was_leader and self.core.role != LEADER:
            self.was_leader = False
            pending, self.pending = self.pending, {}
            for waiting in pending.values():
                for _, req in waiting:
                    self.reply(req, self.gave_up("leadership lost"))
        elif self.core.role == LEADER:
            self.was_leader = True

    def ack_appended(self, last: int) -> None:
        """The planted ack-before-commit bug: answer once the entry is on the leader's
        disk, judging a cas by the leader's applied state (as the server does)."""
        for index in [i for i in self.pending if i <= last]:
            for _, req in self.pending.pop(index):
                cmd = req.command
                if cmd["op"] == "cas":
                    values = self.sm.values
                    if cmd["key"] not in values:
                        reply = error(20, "key-does-not-exist", True)
                    elif values[cmd["key"]] != cmd["from"]:
                        reply = error(22, "precondition-failed", True)
                    else:
                        reply = {"ok": True}
                elif cmd["op"] == "read":
                    reply = self.sm.read(cmd["key"])
                else:
                    reply = {"ok": True}
                self.reply(req, reply)

    def apply(self, ce: CommitEntry) -> None:
        sim = self.sim
        sim.monitor.check_applied(self, ce)
        try:
            result = self.sm.apply(ce)
        except ValueError as e:
            sim.monitor.violation("state-machine", f"{self.id}: {e}")
            return
        for term, req in self.pending.pop(ce.index, []):
            if term == ce.term:
                self.reply(req, result if result is not None else {"ok": True})
            else:  # another entry committed at this index: ours never will
                self.reply(req, error(UNAVAILABLE, "temporarily-unavailable", True,
                                      detail="entry overwritten by a new leader"))

    def serve_reads(self) -> None:
        if not self.read_waits:
            return
        keep = []
        for index, req in self.read_waits:
            if self.sm.last_applied >= index:
                self.reply(req, self.sm.read(req.command["key"]))
            else:
                keep.append((index, req))
        self.read_waits = keep
