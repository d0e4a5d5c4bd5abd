"""The Raft consensus core: a deterministic state machine with no I/O.

A *core* is one Raft server's protocol state (paper Figure 2) driven from outside,
in the style of etcd-io/raft: no sockets, no clocks, no threads, no disk. The caller
feeds it inputs and drains outputs:

- inputs: `tick()` (one unit of logical time), `step(message)` (a message from a peer),
  `propose(command) -> index | None` (leader only), `read_index(request_id) -> bool`
  (leader only; a linearizable read, dissertation 6.4);
- outputs: `ready() -> Ready`, then `advance(ready)`.

Contract for the caller (the server and sim.simulation do exactly this):

1. After any input, while `has_ready()`: `rd = core.ready()`; then
   a. persist `rd.snapshot` (if not None: a snapshot from the leader, Figure 13;
      the stored log then holds nothing up to its index), `rd.hard_state` (if not
      None), the truncation `rd.truncate_from`
      (if not None: drop stored entries from that index on) and `rd.entries`
      (append), durably (fsync) when `rd.must_sync()` — *persist before send*; a
      Ready whose only change is the durable commit index may be written without an
      fsync (etcd's MustSync);
   b. send `rd.messages` (each `(to_id, message)`; losing some is allowed);
   c. reset the state machine from `rd.snapshot` (if not None), then apply
      `rd.committed` (CommitEntry, in log order, each index exactly once per core
      lifetime; they were persisted in this or an earlier Ready);
   d. answer `rd.reads`: each `(request_id, read_index)` may be served from the state
      machine once it has applied `read_index`; answer `rd.dropped_reads` (request
      ids) with a definite "not leader / try again" (the read was not served);
   e. `core.advance(rd)`.
   No other method (except properties and `status()`) may be called between
   `ready()` and `advance()`.
2. A proposal is identified by `(index, term)` where `index = propose(cmd)` and
   `term = core.term` just after the call. It took effect iff a CommitEntry with that
   index *and* that term is delivered; a CommitEntry at that index with another term
   means it never will (it was overwritten); a snapshot from the leader covering
   the index leaves its fate unknown.
3. Snapshots (section 7): after `advance`, the caller may save a snapshot of its
   state machine at its applied index (term: `term_at(index)`), compact its stored
   log behind it (keeping `stable_entries(index)`), then call `compact(snapshot)`;
   a follower whose next entry is compacted is sent the snapshot in chunks.
4. Restart: build a new core from the stored `HardState`, snapshot (if any) and the
   log after it, the state machine restored from the snapshot. The core starts
   from the stored commit index (clamped to the log; `commit_index` may raise it), so
   the first Ready delivers the committed entries again from the first index after
   the snapshot (1 without one) and a fresh
   state machine replays the log at once; the rest is delivered once the core learns
   the commit index. The stored commit index only ever covers entries that were
   durable before the record naming it was written, so a torn write cannot make an
   entry it was about to replace look committed.

Planted bugs (node.bugs) are read from `config.bugs`: each is a switch at the rule it
breaks, marked "Planted bug". The correct core has none.

Rules implemented, with the paper's section (Ongaro & Ousterhout 2014, "In Search of
an Understandable Consensus Algorithm", and Ongaro's dissertation for PreVote,
CheckQuorum and ReadIndex) next to the code that implements each.

Size: over 600 lines, because `RaftCore` is one state machine (Figure 2): elections,
replication, snapshots (Figure 13), commitment and ReadIndex share its state, and
read best in one place, as in etcd-io/raft's raft.go. Its data types live in
node.core.state, the log with its snapshot offset in node.core.log.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from node.bugs import (COMMIT_OLD_TERM, LEASE_READS, LONGER_LOG_WINS_VOTE,
                       MATCH_FROM_LEADER_LOG, READ_BEFORE_TERM_COMMIT, STALE_TERM_APPEND,
                       TRUNCATE_ON_ANY_APPEND, VOTE_RESET_ON_STEP_DOWN, BugTrace)
from node.core.log import RaftLog
from node.core.messages import (AppendEntries, AppendEntriesReply, CommitEntry,
                                InstallSnapshot, InstallSnapshotReply, LogEntry, Message,
                                RequestVote, RequestVoteReply)
from node.core.state import HardState, Progress, RaftConfig, Ready, Snapshot

FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER = "follower", "pre-candidate", "candidate", "leader"

_log = logging.getLogger("raftcheck.node.raft")


class _NodeLog(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['node']}] {msg}", kwargs


class RaftCore:
    """One Raft server's protocol state (Figure 2); deterministic given `rng`."""

    def __init__(self, node_id: str, peer_ids: list[str], hard_state: HardState,
                 log: list[LogEntry], config: RaftConfig, rng: random.Random,
                 commit_index: int = 0, snapshot: Snapshot | None = None) -> None:
        self.id = node_id
        self.peers = [p for p in peer_ids if p != node_id]
        self._peer_set = set(self.peers)
        self.config = config
        self.bugs = config.bugs
        self.rng = rng
        self.log_ = _NodeLog(_log, {"node": node_id})
        self.trace = BugTrace(self.log_)
        self._term = hard_state.term
        self._voted_for = hard_state.voted_for
        # Section 7: `log` holds the entries after the snapshot, if any.
        self._snapshot = snapshot
        self._log = (RaftLog(log, snapshot.index, snapshot.term) if snapshot is not None
                     else RaftLog(log))
        last = self._log.last_index()
        if not 0 <= commit_index <= last:
            raise ValueError(f"commit_index {commit_index} outside the log (0..{last})")
        # The durable commit index (a lost tail may have left it past the log); a
        # snapshot holds only committed entries.
        self._commit = max(commit_index, min(hard_state.commit, last), self._log.base)
        self._applied = self._log.base  # last index handed out (or in the snapshot)
        self._stable = last            # entries the storage holds (up to this index)
        self._trunc: int | None = None  # storage must drop entries from here on
        self._snap_out: Snapshot | None = None   # received, for the next Ready
        self._snap_in: tuple[int, int, list[str], int] | None = None  # chunks so far
        self._saved_hs = HardState(self._term, self._voted_for, self._durable_commit())
        self._role = FOLLOWER
        self._leader: str | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._active: set[str] = set()
        self._msgs: list[tuple[str, Message]] = []
        # ReadIndex (dissertation 6.4): requests waiting for a quorum round.
        self._read_ctx = 0
        self._reads_unsent: list[Any] = []              # not yet tagged with a ctx
        self._reads_pending: list[tuple[int, Any, int]] = []  # (ctx, request_id, index)
        self._reads_ready: list[tuple[Any, int]] = []
        self._reads_dropped: list[Any] = []
        self._broadcast_read = False
        # Trace events for the caller to log (Ready.trace): the inputs of each
        # decision a rule of Figure 2 or the dissertation governs, checked after a run
        self._trace_out: list[tuple[str, dict]] = []
        self._followed: tuple[str, int] | None = None   # (leader, its term) last traced
        self._read_traced_term = 0                       # term of the last traced read
        self._heartbeat_now = False
        # AppendEntries refused because they contradict a committed entry: a safety
        # alarm (Log Matching or Leader Completeness broken somewhere), never a crash
        self.contradictions = 0
        self.last_contradiction: str | None = None

    # ------------------------------------------------------------------ properties
    @property
    def role(self) -> str:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def leader_id(self) -> str | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied_index(self) -> int:
        return self._applied

    def log_length(self) -> int:
        """The last log index (compacted entries included, section 7)."""
        return self._log.last_index()

    @property
    def snapshot_index(self) -> int:
        """The last index the snapshot includes (0: none), section 7."""
        return self._log.base

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest snapshot (section 7), sent to followers behind it."""
        return self._snapshot

    def term_at(self, index: int) -> int | None:
        """The term at `index`; None if compacted (section 7) or past the end."""
        return self._log.term_at(index)

    def entry(self, index: int) -> LogEntry:
        """The entry at 1-based `index`, after the snapshot (for tests and the sim)."""
        return self._log.entry(index)

    def entries(self) -> list[LogEntry]:
        """A copy of the log after the snapshot (for tests and the simulation)."""
        return self._log.entries()

    def stable_entries(self, after: int) -> list[tuple[int, LogEntry]]:
        """(index, entry) for the persisted entries after `after` (the WAL tail the
        storage keeps when it compacts at `after`, section 7)."""
        lo = max(after, self._log.base) + 1
        return [(i, self._log.entry(i)) for i in range(lo, self._stable + 1)]

    def status(self) -> dict:
        return {"id": self.id, "role": self._role, "term": self._term,
                "leader": self._leader, "commit_index": self._commit,
                "last_applied": self._applied, "log_length": self._log.last_index(),
                "snapshot_index": self._log.base}

    # ------------------------------------------------------------------ helpers
    def _quorum(self) -> int:
        return (len(self.peers) + 1) // 2 + 1

    def _last_index(self) -> int:
        return self._log.last_index()

    def _term_at(self, index: int) -> int | None:
        return self._log.term_at(index)

    def _last_term(self) -> int:
        return self._log.last_term()

    def _random_timeout(self) -> int:
        # Randomized election timeouts (section 5.2).
        return self.rng.randint(self.config.election_ticks_min, self.config.election_ticks_max)

    def _send(self, to: str, msg: Message) -> None:
        self._msgs.append((to, msg))

    def _trace(self, event: str, **fields: Any) -> None:
        # One trace event for Ready.trace (see the Ready docstring).
        self._trace_out.append((event, fields))

    def _in_lease(self) -> bool:
        # Dissertation 4.2.3 / 9.6: a server that heard from a current leader within
        # the minimum election timeout ignores RequestVote (and PreVote) requests.
        return (self.config.check_quorum and self._leader is not None
                and self._election_elapsed < self.config.election_ticks_min)

    # ------------------------------------------------------------------ role changes
    def _become_follower(self, term: int, leader: str | None) -> None:
        # Figure 2, all servers: if RPC term T > currentTerm, set currentTerm = T and
        # convert to follower.
        if self._role == LEADER:
            self.log_.info("stepping down at term %d (new term %d, leader %s)",
                           self._term, term, leader)
            self._drop_reads()
        if term > self._term:
            self._term = term
            self._voted_for = None
        elif VOTE_RESET_ON_STEP_DOWN in self.bugs:
            # Planted bug: Figure 2 keeps votedFor for the whole term; forgetting it on
            # a same-term step-down allows a second vote in this term.
            if self._voted_for is not None:
                self.trace.acted(VOTE_RESET_ON_STEP_DOWN, "forgot its vote for %s at "
                                 "term %d", self._voted_for, self._term)
            self._voted_for = None
        self._role = FOLLOWER
        self._leader = leader
        self._election_elapsed = 0
        self._timeout = self._random_timeout()
        self._votes = {}
        self._progress = {}

    def _drop_reads(self) -> None:
        self._reads_dropped.extend(self._reads_unsent)
        self._reads_dropped.extend(r for _, r, _ in self._reads_pending)
        self._reads_unsent = []
        self._reads_pending = []
        self._broadcast_read = False

    def _campaign(self, pre: bool) -> None:
        """Start an election (section 5.2), or a PreVote round first (dissertation 9.6):
        a pre-candidate asks whether it could win at term+1 without raising its term,
        so a partitioned server rejoining does not depose a healthy leader."""
        self._election_elapsed = 0
        self._timeout = self._random_timeout()
        self._leader = None
        self._votes = {self.id: True}
        if pre:
            self._role = PRE_CANDIDATE
            term = self._term + 1
            self.log_.debug("pre-vote for term %d", term)
        else:
            self._role = CANDIDATE
            self._term += 1
            self._voted_for = self.id
            term = self._term
            self.log_.info("campaigning at term %d", term)
        if len(self._votes) >= self._quorum():
            self._won(pre)
            return
        for p in self.peers:
            self._send(p, RequestVote(term, self.id, self._last_index(), self._last_term(), pre))

    def _won(self, pre: bool) -> None:
        if pre:
            self._campaign(pre=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        """Section 5.2: a candidate with votes from a majority becomes leader; it
        appends a no-op of its own term (section 8) so it can commit (Figure 8) and
        serve reads, and initializes nextIndex/matchIndex (Figure 2)."""
        self._role = LEADER
        self._leader = self.id
        self._heartbeat_elapsed = 0
        self._election_elapsed = 0
        self._active = set()
        last = self._last_index()
        self._progress = {p: Progress(last + 1) for p in self.peers}
        self._read_ctx += 1  # replies echoing older contexts are from older terms
        self.log_.info("became leader at term %d (log length %d)", self._term, last)
        if COMMIT_OLD_TERM not in self.bugs:
            self._log.append(LogEntry(self._term, None))
        # else planted bug: no no-op (section 8), as in the paper's basic algorithm.
        self._maybe_commit()

    # ------------------------------------------------------------------ inputs
    def tick(self) -> None:
        """One unit of logical time."""
        if self._role == LEADER:
            self._heartbeat_elapsed += 1
            self._election_elapsed += 1
            if self._election_elapsed >= self.config.election_ticks_min:
                self._election_elapsed = 0
                # CheckQuorum (dissertation 6.2): a leader that has not heard from a
                # majority within an election timeout steps down.
                if self.config.check_quorum and len(self._active) + 1 < self._quorum():
                    self.log_.info("check-quorum failed at term %d: stepping down", self._term)
                    self._become_follower(self._term, None)
                    return
                self._active = set()
            if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
                # Section 5.2: leaders send periodic heartbeats to maintain authority.
                self._heartbeat_elapsed = 0
                for pr in self._progress.values():
                    pr.probe_sent = False
                    pr.dirty = True
                self._heartbeat_now = True
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout:
            # Section 5.2: a follower that receives no communication over the election
            # timeout begins an election.
            self._campaign(pre=self.config.pre_vote)

    def propose(self, command: Any) -> int | None:
        """Append a command to the leader's log (section 5.3); its index, or None if
        this node is not the leader."""
        if self._role != LEADER:
            return None
        self._log.append(LogEntry(self._term, command))
        for pr in self._progress.values():
            pr.dirty = True
        if not self.peers:
            self._maybe_commit()
        return self._log.last_index()

    def read_index(self, request_id: Any) -> bool:
        """Start a linearizable read (dissertation 6.4, ReadIndex): once the leader has
        committed an entry of its term, the read index is its commit index, confirmed
        by a heartbeat round acknowledged by a majority. False if not leader."""
        if self._role != LEADER:
            return False
        if LEASE_READS in self.bugs and self._committed_in_term():
            # Planted bug: etcd's ReadOnlyLeaseBased (dissertation 6.4.1): the
            # leadership, which CheckQuorum ends after an election timeout of this
            # node's own ticks, is taken as a lease; no quorum round for the read.
            self.trace.acted(LEASE_READS, "read at %d served on the lease (election "
                             "elapsed %d ticks)", self._commit, self._election_elapsed)
            self._trace_read(self._commit)
            self._trace_confirmed(self._commit, 1, [])
            self._reads_ready.append((request_id, self._commit))
            return True
        self._reads_unsent.append(request_id)
        self._broadcast_read = True
        return True

    def step(self, m: Message) -> None:
        """Handle one message from a peer. Messages from unknown senders are ignored."""
        if m.sender not in self._peer_set:
            self.log_.warning("ignoring %s from unknown sender %r", type(m).__name__, m.sender)
            return
        if m.term > self._term:
            if isinstance(m, RequestVote):
                if self._in_lease():
                    # Dissertation 4.2.3: within the lease, ignore a disruptive vote.
                    self.log_.debug("ignoring %s from %s at term %d: leader %s is alive",
                                    "pre-vote" if m.pre_vote else "vote", m.sender, m.term,
                                    self._leader)
                    return
                if not m.pre_vote:
                    self._become_follower(m.term, None)
            elif isinstance(m, RequestVoteReply) and m.pre_vote and m.granted:
                pass  # a granted PreVote carries the term it was asked for
            else:
                leader = (m.sender if isinstance(m, (AppendEntries, InstallSnapshot))
                          else None)
                self._become_follower(m.term, leader)
        elif m.term < self._term:
            if (isinstance(m, AppendEntries) and STALE_TERM_APPEND in self.bugs
                    and self._role != LEADER):
                # Planted bug: Figure 2, AppendEntries receiver 1 ("reply false if
                # term < currentTerm") skipped: the deposed leader's entries go in.
                self.trace.acted(STALE_TERM_APPEND, "took AppendEntries of term %d from "
                                 "%s at term %d", m.term, m.sender, self._term)
                self._handle_append(m)
                return
            if isinstance(m, AppendEntries):
                # A stale leader: tell it our term so it steps down (dissertation 9.6,
                # needed with CheckQuorum/PreVote since terms no longer spread by votes).
                self._send(m.sender, AppendEntriesReply(self._term, self.id, False,
                                                        read_ctx=m.read_ctx))
            elif isinstance(m, InstallSnapshot):
                # Figure 13, receiver 1: reply immediately if term < currentTerm.
                self._send(m.sender, InstallSnapshotReply(self._term, self.id,
                                                          read_ctx=m.read_ctx))
            elif isinstance(m, RequestVote):
                # Figure 2, RequestVote receiver 1: reply false if term < currentTerm.
                self._send(m.sender, RequestVoteReply(self._term, self.id, False, m.pre_vote))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, RequestVoteReply):
            self._handle_vote_reply(m)
        elif isinstance(m, AppendEntries):
            self._handle_append(m)
        elif isinstance(m, AppendEntriesReply):
            self._handle_append_reply(m)
        elif isinstance(m, InstallSnapshot):
            self._handle_snapshot(m)
        elif isinstance(m, InstallSnapshotReply):
            self._handle_snapshot_reply(m)

    # ------------------------------------------------------------------ votes
    def _handle_vote_request(self, m: RequestVote) -> None:
        # Figure 2, RequestVote receiver 2: grant if votedFor is null or candidateId
        # (one vote per term), and the candidate's log is at least as up-to-date as
        # ours (section 5.4.1: compare last terms, then last indexes).
        can_vote = (self._voted_for == m.sender
                    or (self._voted_for is None and self._leader is None)
                    or (m.pre_vote and m.term > self._term))
        up_to_date = (m.last_log_term > self._last_term()
                      or (m.last_log_term == self._last_term()
                          and m.last_log_index >= self._last_index()))
        if LONGER_LOG_WINS_VOTE in self.bugs:
            # Planted bug: section 5.4.1's comparison done by length only.
            by_length = m.last_log_index >= self._last_index()
            if by_length and not up_to_date and can_vote:
                self.trace.acted(LONGER_LOG_WINS_VOTE, "%s's log (last term %d, length "
                                 "%d) counted as up to date against ours (%d, %d)",
                                 m.sender, m.last_log_term, m.last_log_index,
                                 self._last_term(), self._last_index())
            up_to_date = by_length
        if can_vote and up_to_date:
            if m.pre_vote:
                self._send(m.sender, RequestVoteReply(m.term, self.id, True, True))
            else:
                self._voted_for = m.sender
                self._election_elapsed = 0
                self.log_.debug("voted for %s at term %d", m.sender, self._term)
                # Section 5.4.1: the grant and both logs' last (term, index) it compared.
                self._trace("vote", term=self._term, candidate=m.sender,
                            candidate_last=[m.last_log_term, m.last_log_index],
                            own_last=[self._last_term(), self._last_index()])
                self._send(m.sender, RequestVoteReply(self._term, self.id, True, False))
        else:
            self._send(m.sender, RequestVoteReply(self._term, self.id, False, m.pre_vote))

    def _handle_vote_reply(self, m: RequestVoteReply) -> None:
        if m.pre_vote:
            if self._role != PRE_CANDIDATE or (m.granted and m.term != self._term + 1):
                return
        else:
            if self._role != CANDIDATE or m.term != self._term:
                return
        self._votes.setdefault(m.sender, m.granted)
        granted = sum(1 for v in self._votes.values() if v)
        rejected = len(self._votes) - granted
        if granted >= self._quorum():
            self._won(m.pre_vote)
        elif rejected >= self._quorum():
            self._become_follower(self._term, None)

    # ------------------------------------------------------------------ replication
    def _follow(self, sender: str, leader_term: int, what: str) -> bool:
        """A message of the leader's kind at this node's term: its sender leads this
        term (section 5.2, one leader per term), so follow it and reset the election
        timer. False (ignored) if this node itself leads the term. A new (leader, term)
        is traced: Figure 2, AppendEntries receiver 1 takes a leader's word only at
        the node's current term."""
        if self._role == LEADER:
            self.log_.error("%s from %s at my own term %d as leader: ignored", what, sender,
                            self._term)
            return False
        if self._role != FOLLOWER or self._leader != sender:
            self._become_follower(self._term, sender)
        self._election_elapsed = 0
        if self._followed != (sender, leader_term):
            self._followed = (sender, leader_term)
            self._trace("follow", term=self._term, leader=sender, leader_term=leader_term)
        return True

    def _handle_append(self, m: AppendEntries) -> None:
        # Same term: m.sender is the leader of this term (one leader per term, 5.2).
        if not self._follow(m.sender, m.term, "AppendEntries"):
            return
        prev = m.prev_log_index
        base = self._log.base
        if prev < base:
            # Section 7: entries up to the snapshot are committed, so they match the
            # leader's (Leader Completeness); check the rest from the base on.
            skip = base - prev
            if skip >= len(m.entries):
                self._send(m.sender, AppendEntriesReply(self._term, self.id, True,
                                                        match_index=base,
                                                        read_ctx=m.read_ctx))
                return
            m = AppendEntries(m.term, m.sender, base, self._log.base_term, m.entries[skip:],
                              m.leader_commit, m.read_ctx)
            prev = base
        # Figure 2, AppendEntries receiver 2: reply false if the log does not contain
        # an entry at prevLogIndex whose term matches prevLogTerm.
        if self._term_at(prev) != m.prev_log_term:
            if prev > self._last_index():
                ci, ct = self._last_index() + 1, 0
            else:
                # Fast backtracking (section 5.3, end): report the conflicting term and
                # the first index we hold for it (after the snapshot).
                ct = self._term_at(prev) or 0
                ci = prev
                while ci - 1 > base and self._term_at(ci - 1) == ct:
                    ci -= 1
            self._send(m.sender, AppendEntriesReply(self._term, self.id, False,
                                                    conflict_index=ci, conflict_term=ct,
                                                    reject_index=prev, read_ctx=m.read_ctx))
            return
        conflict = self._contradicts_committed(prev, m.entries)
        if conflict is not None:
            self._refuse_contradiction(m.sender, conflict, m.entries[conflict - prev - 1].term)
            return
        if (TRUNCATE_ON_ANY_APPEND in self.bugs
                and self._last_index() > max(prev, self._commit)):
            # Planted bug: Figure 2, receiver 3 truncates only on a conflict ("the if
            # here is crucial"); this drops everything after prevLogIndex (never what
            # it knows committed: that would only trip the guard in _truncate).
            if self._last_index() > prev + len(m.entries) and all(
                    self._term_at(prev + 1 + k) == e.term for k, e in enumerate(m.entries)
                    if prev + 1 + k <= self._last_index()):
                self.trace.acted(TRUNCATE_ON_ANY_APPEND, "dropped entries %d..%d it held "
                                 "(AppendEntries from %s at %d with %d entries)",
                                 prev + len(m.entries) + 1, self._last_index(), m.sender,
                                 prev, len(m.entries))
            self._truncate(max(prev, self._commit) + 1)
        # Figure 2, receiver 3 and 4: delete an existing entry that conflicts with a
        # new one (same index, different term) and all that follow; append any new
        # entries not already in the log. Never truncate on a mere duplicate.
        index = prev
        for k, e in enumerate(m.entries):
            index = prev + 1 + k
            if index <= self._last_index():
                if self._term_at(index) == e.term:
                    continue
                self._truncate(index)
            self._log.extend(m.entries[k:])
            break
        last_new = prev + len(m.entries)
        # Figure 2, receiver 5: commitIndex = min(leaderCommit, index of last new
        # entry) — only over entries verified against this leader's log.
        if m.leader_commit > self._commit:
            self._commit = max(self._commit, min(m.leader_commit, last_new))
        self._send(m.sender, AppendEntriesReply(self._term, self.id, True,
                                                match_index=last_new, read_ctx=m.read_ctx))

    def _contradicts_committed(self, prev: int, entries: list[LogEntry]) -> int | None:
        """The first index up to the commit index where `entries` (following `prev`)
        hold another term than this log, or None. A leader holds every committed
        entry (Leader Completeness, section 5.4), so a correct one never sends one."""
        for k, e in enumerate(entries[:max(0, self._commit - prev)]):
            held = self._term_at(prev + 1 + k)
            if held is not None and held != e.term:
                return prev + 1 + k
        return None

    def _refuse_contradiction(self, sender: str, index: int, term: int) -> None:
        """Drop an AppendEntries that would overwrite a committed entry (Figure 3,
        State Machine Safety): nothing changes and the node keeps running; the alarm
        is logged at ERROR the 1st, 2nd, 4th, 8th, ... time (node-health reads it)."""
        self.contradictions += 1
        self.last_contradiction = (
            f"AppendEntries from {sender} at term {self._term} has term {term} at index "
            f"{index}, which this node committed with term {self._term_at(index)} "
            f"(commit index {self._commit}): refused")
        n = self.contradictions
        if n & (n - 1) == 0:
            self.log_.error("%s (%d such messages so far)", self.last_contradiction, n)

    def _truncate(self, index: int) -> None:
        if index <= self._commit:
            # Never happens in a correct Raft (Log Matching + Leader Completeness).
            raise RuntimeError(f"[{self.id}] refusing to truncate committed entry {index} "
                               f"(commit index {self._commit})")
        self.log_.info("truncating log from index %d (length %d)", index,
                       self._last_index())
        self._log.truncate(index)
        if index <= self._stable:
            self._stable = index - 1
            self._trunc = index if self._trunc is None else min(self._trunc, index)

    def _reply_progress(self, m: AppendEntriesReply | InstallSnapshotReply
                        ) -> Progress | None:
        """A follower's reply, seen by its leader: the follower is active (CheckQuorum,
        dissertation 6.2) and any reply acknowledges the read context it carries
        (ReadIndex, dissertation 6.4). Its Progress, or None if this node does not
        lead or does not know the sender."""
        if self._role != LEADER:
            return None
        pr = self._progress.get(m.sender)
        if pr is None:
            return None
        self._active.add(m.sender)
        if m.read_ctx > pr.read_ack:
            pr.read_ack = m.read_ctx
            self._confirm_reads()
        return pr

    def _handle_append_reply(self, m: AppendEntriesReply) -> None:
        pr = self._reply_progress(m)
        if pr is None:
            return
        pr.probe_sent = False
        if m.success:
            if m.match_index > self._last_index():
                self.log_.warning("bogus match_index %d from %s", m.match_index, m.sender)
                return
            confirmed = m.match_index
            pr.acked = max(pr.acked, confirmed)
            if MATCH_FROM_LEADER_LOG in self.bugs:
                # Planted bug: matchIndex from what was sent (nextIndex - 1), not from
                # what this reply confirms (Figure 2: matchIndex is for safety).
                sent = min(pr.next - 1, self._last_index())
                if sent > max(confirmed, pr.match):
                    self.trace.acted(MATCH_FROM_LEADER_LOG, "matchIndex of %s set to %d, "
                                     "the reply confirms %d", m.sender, sent, confirmed)
                confirmed = max(confirmed, sent)
            if confirmed > pr.match:
                pr.match = confirmed
            if pr.next <= pr.match:
                pr.next = pr.match + 1
            if pr.probing:
                pr.probing = False
                pr.next = pr.match + 1
            if pr.next <= self._last_index():
                pr.dirty = True
            self._maybe_commit()
            return
        # Rejection. Stale if the refused index is already known to match.
        if m.reject_index <= pr.match:
            return
        nxt = m.conflict_index
        if m.conflict_term > 0:
            # Fast backtracking: if we have entries of conflict_term, resume after our
            # last one; otherwise skip the follower's whole conflicting term.
            i = min(m.reject_index, self._last_index())
            base = self._log.base
            while i > base and (self._term_at(i) or 0) > m.conflict_term:
                i -= 1
            if i > base and self._term_at(i) == m.conflict_term:
                nxt = i + 1
        nxt = min(nxt, m.reject_index)
        pr.next = max(pr.match + 1, min(nxt, self._last_index() + 1), 1)
        pr.probing = True
        pr.dirty = True

    def _maybe_commit(self) -> None:
        """Section 5.3/5.4.2 (Figure 8): the leader sets commitIndex to the largest N
        held by a majority (its own persisted log counts) with log[N].term ==
        currentTerm; older-term entries commit only indirectly."""
        matches = sorted([pr.match for pr in self._progress.values()] + [self._stable],
                         reverse=True)
        n = matches[self._quorum() - 1]
        # Planted bug commit-old-term: count replicas of an older term's entry too.
        if n > self._commit and (self._term_at(n) == self._term
                                 or COMMIT_OLD_TERM in self.bugs):
            if self._term_at(n) != self._term:
                self.trace.acted(COMMIT_OLD_TERM, "committed %d..%d by counting replicas "
                                 "(entry %d has term %d, current term %d)", self._commit + 1,
                                 n, n, self._term_at(n), self._term)
            self._commit = n
            # Figure 2, rules for leaders: what the replies confirmed, beside the
            # commit (checker.raft_rules commit-quorum)
            self._trace("acked", term=self._term, index=n, entry_term=self._term_at(n) or 0,
                        own=self._stable, peers={p: pr.acked
                                                 for p, pr in self._progress.items()})
            # Followers learn the new commit index with the next entries or
            # heartbeat: no extra message round per commit.
            self._release_waiting_reads()

    # ------------------------------------------------------------------ snapshots
    def compact(self, snapshot: Snapshot) -> None:
        """Section 7: the caller saved `snapshot` (the state machine after applying
        entries up to `snapshot.index`) and compacted its WAL behind it; discard the
        log up to there. Only applied, persisted entries may be compacted."""
        index = snapshot.index
        if index <= self._log.base:
            return
        if index > self._applied or index > self._stable:
            raise ValueError(f"[{self.id}] snapshot at {index} past the applied "
                             f"({self._applied}) or persisted ({self._stable}) entries")
        if self._term_at(index) != snapshot.term:
            raise ValueError(f"[{self.id}] snapshot at {index} has term {snapshot.term}, "
                             f"the log {self._term_at(index)}")
        self._log.compact(index)
        self._snapshot = snapshot
        self.log_.debug("compacted the log up to %d (term %d)", index, snapshot.term)

    def _send_snapshot(self, p: str, pr: Progress) -> None:
        """Figure 13: a follower whose nextIndex is compacted gets the snapshot, in
        chunks of at most snapshot_chunk_chars, one in flight (resent on heartbeats)."""
        snap = self._snapshot
        assert snap is not None and snap.index == self._log.base
        if pr.snap_index != snap.index:
            self.log_.info("sending snapshot at %d (term %d, %d chars) to %s", snap.index,
                           snap.term, len(snap.data), p)
            pr.snap_index, pr.snap_offset, pr.probe_sent = snap.index, 0, False
        pr.probing = True
        off = min(pr.snap_offset, len(snap.data))
        chunk = snap.data[off:off + self.config.snapshot_chunk_chars]
        done = off + len(chunk) >= len(snap.data)
        self._send(p, InstallSnapshot(self._term, self.id, snap.index, snap.term, off, chunk,
                                      done, self._read_ctx))
        pr.probe_sent = True

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        """Figure 13, InstallSnapshot receiver 2-8: gather the chunks in order (a
        chunk out of order gets the offset expected), then install the snapshot."""
        if not self._follow(m.sender, m.term, "InstallSnapshot"):
            return
        index, term = m.last_included_index, m.last_included_term

        def reply(offset: int, done: bool) -> None:
            self._send(m.sender, InstallSnapshotReply(self._term, self.id, index, offset,
                                                      done, m.read_ctx))
        if index <= self._commit:
            # It already committed past the snapshot: those entries match the
            # leader's (Leader Completeness); nothing to install.
            self._snap_in = None
            reply(m.offset + len(m.data), True)
            return
        got = self._snap_in
        if m.offset == 0:
            got = (index, term, [], 0)    # receiver 2: create a new snapshot
        elif got is None or got[:2] != (index, term) or m.offset != got[3]:
            reply(got[3] if got is not None and got[:2] == (index, term) else 0, False)
            return
        parts, size = got[2], got[3] + len(m.data)
        parts.append(m.data)              # receiver 3: write data at offset
        if not m.done:                    # receiver 4: wait for more chunks
            self._snap_in = (index, term, parts, size)
            reply(size, False)
            return
        self._snap_in = None
        self._install(Snapshot(index, term, "".join(parts)))
        reply(size, True)

    def _install(self, snap: Snapshot) -> None:
        """Figure 13, receiver 5-8: keep the log after the snapshot if it holds its
        last included entry, else discard it; the state machine is reset from the
        snapshot (Ready.snapshot, persisted before the reply is sent)."""
        kept = self._log.install(snap.index, snap.term)
        self.log_.info("installing snapshot at %d (term %d) from %s; %s", snap.index,
                       snap.term, self._leader,
                       "kept the entries after it" if kept else "discarded the log")
        self._snapshot = snap
        self._commit = max(self._commit, snap.index)
        self._applied = snap.index
        self._stable = snap.index   # the storage rewrites its WAL behind the snapshot;
        self._trunc = None          # entries kept are persisted again after it
        self._snap_out = snap

    def _handle_snapshot_reply(self, m: InstallSnapshotReply) -> None:
        """Figure 13 from the leader's side: send the next chunk from the offset the
        follower holds; once installed, matchIndex is the snapshot's last index."""
        pr = self._reply_progress(m)
        if pr is None:
            return
        if m.done:
            if m.last_included_index > self._last_index():
                self.log_.warning("bogus snapshot index %d from %s", m.last_included_index,
                                  m.sender)
                return
            pr.match = max(pr.match, m.last_included_index)
            pr.acked = max(pr.acked, m.last_included_index)
            if pr.match >= self._log.base:
                pr.snap_index, pr.probing, pr.probe_sent = 0, False, False
                pr.next = pr.match + 1
                pr.dirty = True
            self._maybe_commit()
            return
        if pr.snap_index == 0 or pr.snap_index != m.last_included_index:
            return  # a reply about an older snapshot
        snap = self._snapshot
        pr.snap_offset = min(m.offset, len(snap.data) if snap is not None else 0)
        pr.probe_sent = False
        pr.dirty = True

    # ------------------------------------------------------------------ ReadIndex
    def _committed_in_term(self) -> bool:
        return self._commit > 0 and self._term_at(self._commit) == self._term

    def _read_index_known(self) -> bool:
        # Dissertation 6.4, ReadIndex step 1: the commit index is a valid read index
        # only once an entry of this leader's term has committed.
        return self._committed_in_term() or READ_BEFORE_TERM_COMMIT in self.bugs

    def _trace_read(self, index: int) -> None:
        # Dissertation 6.4, ReadIndex step 1: the first read index of each term, with
        # the term of the entry there (this term once an entry of it is committed).
        if self._read_traced_term != self._term:
            self._read_traced_term = self._term
            self._trace("read", term=self._term, index=index,
                        entry_term=self._term_at(index) or 0)

    def _release_waiting_reads(self) -> None:
        if self._reads_unsent:
            self._broadcast_read = True

    def _confirm_reads(self) -> None:
        if not self._reads_pending:
            return
        acks = sorted([pr.read_ack for pr in self._progress.values()] + [self._read_ctx],
                      reverse=True)
        confirmed = acks[self._quorum() - 1]
        keep, released = [], {}
        for ctx, rid, idx in self._reads_pending:
            if ctx <= confirmed:
                self._reads_ready.append((rid, idx))
                released[ctx] = (idx, released.get(ctx, (idx, 0))[1] + 1)
            else:
                keep.append((ctx, rid, idx))
        self._reads_pending = keep
        for ctx, (idx, count) in released.items():
            self._trace_confirmed(idx, count, [p for p, pr in self._progress.items()
                                               if pr.read_ack >= ctx])

    def _trace_confirmed(self, index: int, reads: int, peers: list[str]) -> None:
        # Dissertation 6.4, ReadIndex step 3: reads released at `index`, with the
        # followers whose replies to a message sent after the reads arrived confirmed
        # the leadership (checker.raft_rules read-quorum).
        self._trace("confirmed", term=self._term, index=index, reads=reads,
                    voters=len(self.peers) + 1, peers=sorted(peers))

    # ------------------------------------------------------------------ outputs
    def _send_append(self, p: str, pr: Progress, force: bool) -> None:
        """Send AppendEntries to one follower (Figure 2), at most max_batch_entries.
        Every message carries the latest read context: a reply to any message sent
        after a read was registered confirms leadership for that read."""
        last = self._last_index()
        if pr.probing and pr.probe_sent and not force:
            return
        nxt = min(pr.next, last + 1)
        prev = nxt - 1
        if prev < self._log.base:
            # Section 7: the entries it needs are compacted: send the snapshot.
            self._send_snapshot(p, pr)
            return
        pr.snap_index = 0
        end = min(last, prev + self.config.max_batch_entries)
        entries = self._log.slice(prev + 1, end)
        if not entries and not force:
            return
        if not entries and not pr.probing and pr.match >= self._log.base:
            # A heartbeat (section 5.2) checks the log at matchIndex, which the follower
            # already confirmed, and carries leaderCommit capped there by the
            # follower (receiver rule 5), as etcd's heartbeats carry min(match,
            # committed): it commutes with appends still in flight, so it may travel on
            # its own connection and overtake them without a spurious rejection.
            prev = pr.match
        self._send(p, AppendEntries(self._term, self.id, prev, self._term_at(prev) or 0,
                                    entries, self._commit, self._read_ctx))
        if pr.probing:
            pr.probe_sent = True
        else:
            pr.next = end + 1

    def _flush_leader(self) -> None:
        read_ctx = 0
        if self._broadcast_read and self._read_index_known():
            if not self._committed_in_term():
                self.trace.acted(READ_BEFORE_TERM_COMMIT, "%d reads at index %d before an "
                                 "entry of term %d committed", len(self._reads_unsent),
                                 self._commit, self._term)
            self._trace_read(self._commit)
            self._read_ctx += 1
            read_ctx = self._read_ctx
            for rid in self._reads_unsent:
                self._reads_pending.append((read_ctx, rid, self._commit))
            self._reads_unsent = []
            self._broadcast_read = False
            if not self.peers:
                self._confirm_reads()
        heartbeat = self._heartbeat_now
        self._heartbeat_now = False
        for p, pr in self._progress.items():
            if not (pr.dirty or read_ctx):
                continue
            pr.dirty = False
            self._send_append(p, pr, heartbeat or bool(read_ctx))
            # A pipelined follower that is behind gets a few more batches now; the
            # rest follows its replies (bounded in-flight data).
            extra = 0
            while not pr.probing and pr.next <= self._last_index() and extra < 3:
                self._send_append(p, pr, False)
                extra += 1

    def _durable_commit(self) -> int:
        # The commit index to store: only over entries already durable (log[:stable],
        # after any pending truncation), never over ones this Ready writes.
        return min(self._commit, self._stable)

    def _hard_state_changed(self) -> bool:
        saved = self._saved_hs
        return (saved.term != self._term or saved.voted_for != self._voted_for
                or saved.commit != self._durable_commit())

    def has_ready(self) -> bool:
        if self._msgs or self._reads_ready or self._reads_dropped or self._trace_out:
            return True
        if (self._trunc is not None or self._stable < self._last_index()
                or self._snap_out is not None):
            return True
        if self._hard_state_changed():
            return True
        if self._applied < self._commit:
            return True
        if self._role == LEADER:
            if any(pr.dirty for pr in self._progress.values()):
                return True
            if self._heartbeat_now:
                return True
            if self._broadcast_read and self._read_index_known():
                return True
        return False

    def ready(self) -> Ready:
        """Collect what the caller must persist, send, apply and answer."""
        if self._role == LEADER:
            self._flush_leader()
        rd = Ready()
        if self._hard_state_changed():
            rd.hard_state = HardState(self._term, self._voted_for, self._durable_commit())
            rd.term_or_vote_changed = (self._saved_hs.term != self._term
                                       or self._saved_hs.voted_for != self._voted_for)
        rd.snapshot = self._snap_out
        rd.truncate_from = self._trunc
        if self._stable < self._last_index():
            rd.entries = [(i, self._log.entry(i))
                          for i in range(self._stable + 1, self._last_index() + 1)]
        rd.messages = self._msgs
        self._msgs = []
        if self._applied < self._commit:
            rd.committed = [CommitEntry(e.command, i, e.term)
                            for i, e in ((i, self._log.entry(i))
                                         for i in range(self._applied + 1, self._commit + 1))]
        rd.reads = self._reads_ready
        self._reads_ready = []
        rd.dropped_reads = self._reads_dropped
        self._reads_dropped = []
        rd.trace = self._trace_out
        self._trace_out = []
        return rd

    def advance(self, rd: Ready) -> None:
        """Mark `rd` persisted, sent and applied."""
        if rd.hard_state is not None:
            hs = rd.hard_state
            self._saved_hs = HardState(hs.term, hs.voted_for, hs.commit)
        if rd.snapshot is not None and rd.snapshot is self._snap_out:
            self._snap_out = None
        if rd.truncate_from is not None:
            self._trunc = None
        if rd.entries:
            self._stable = max(self._stable, rd.entries[-1][0])
        if rd.committed:
            self._applied = rd.committed[-1].index
        if self._role == LEADER and rd.entries:
            self._maybe_commit()
