"""The core's data: its timing configuration, its persistent state, what a Ready hands
to the caller, and a leader's view of each follower (paper Figure 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node.core.messages import CommitEntry, LogEntry, Message


@dataclass
class RaftConfig:
    """Timing in ticks. A follower that hears no leader for a random number of ticks in
    [election_ticks_min, election_ticks_max] starts an election (section 5.2).
    `snapshot_chunk_chars` bounds one InstallSnapshot chunk (Figure 13), so a frame
    stays far below the transport's limit even if every character is escaped. `bugs`
    names the planted bugs (node.bugs) this core runs with; none by default."""

    election_ticks_min: int = 10
    election_ticks_max: int = 20
    heartbeat_ticks: int = 1
    max_batch_entries: int = 256
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_chunk_chars: int = 64 * 1024
    bugs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (1 <= self.heartbeat_ticks < self.election_ticks_min <= self.election_ticks_max):
            raise ValueError("RaftConfig: need 1 <= heartbeat_ticks < election_ticks_min "
                             "<= election_ticks_max")
        if self.snapshot_chunk_chars < 1:
            raise ValueError("RaftConfig: snapshot_chunk_chars must be >= 1")
        if self.max_batch_entries < 1:
            raise ValueError("RaftConfig: max_batch_entries must be >= 1")
        self.bugs = frozenset(self.bugs)


@dataclass
class HardState:
    """The persistent state of Figure 2 besides the log: currentTerm and votedFor, plus
    the commit index as etcd's HardState keeps it. The commit index is knowledge, not
    a promise: losing it is safe (it is learned again), so writing it alone needs no
    fsync; keeping it lets a restarted node replay its state machine at once."""

    term: int = 0
    voted_for: str | None = None
    commit: int = 0


@dataclass(frozen=True)
class Snapshot:
    """A snapshot (section 7, Figure 12): the state machine's state after applying
    the entries up to `index` (lastIncludedIndex), whose term is `term`
    (lastIncludedTerm). `data` is the machine's serialized state; the core never
    looks inside it."""

    index: int
    term: int
    data: str


@dataclass
class Ready:
    """What the caller must persist, send, apply and answer (see the module contract).

    `snapshot` is one received from the leader (Figure 13): persist it (the WAL then
    holds only what follows it) before sending, and restore the state machine from
    it before applying `committed`, which then start after it.
    `hard_state` is set when the term, the vote or the durable commit index changed;
    `term_or_vote_changed` tells which. `must_sync()` is etcd's MustSync: a Ready whose
    only change is the commit index is written without an fsync.
    `trace` lists (event, fields) facts about decisions Raft's rules govern, for the
    caller to log after persisting and before sending (docs/spec.md section 5): a
    granted vote with both logs' last (term, index) (section 5.4.1), a new leader
    followed and its term (Figure 2, AppendEntries receiver 1), the first read index
    of a term and the term of its entry (dissertation 6.4), each commit advance with
    the indexes the followers' replies confirmed (Figure 2, rules for leaders), each
    batch of reads released with the followers that confirmed the leadership for it
    (dissertation 6.4, ReadIndex step 3)."""

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    truncate_from: int | None = None
    entries: list[tuple[int, LogEntry]] = field(default_factory=list)
    messages: list[tuple[str, Message]] = field(default_factory=list)
    committed: list[CommitEntry] = field(default_factory=list)
    reads: list[tuple[Any, int]] = field(default_factory=list)
    dropped_reads: list[Any] = field(default_factory=list)
    trace: list[tuple[str, dict]] = field(default_factory=list)
    term_or_vote_changed: bool = False

    def must_write(self) -> bool:
        """Anything for the WAL (hard state, truncation or entries)."""
        return (self.hard_state is not None or self.truncate_from is not None
                or bool(self.entries) or self.snapshot is not None)

    def must_sync(self) -> bool:
        """Figure 2's persistent state changed: write and fsync before sending."""
        return (self.term_or_vote_changed or self.truncate_from is not None
                or bool(self.entries) or self.snapshot is not None)


class Progress:
    """A leader's view of one follower: nextIndex and matchIndex (Figure 2, leader
    state). `acked`: the highest index a reply of this leadership confirmed (what
    matchIndex must follow; traced with each commit). `probing`: the follower's log
    position is unknown, so at most one
    AppendEntries is in flight; otherwise entries are pipelined (next advances
    optimistically as they are sent). `snap_index` > 0: the follower is behind the
    log's base and gets that snapshot (Figure 13), one chunk in flight, from
    `snap_offset`."""

    __slots__ = ("next", "match", "acked", "probing", "probe_sent", "read_ack", "dirty",
                 "snap_index", "snap_offset")

    def __init__(self, next_index: int) -> None:
        self.next = next_index
        self.match = 0
        self.acked = 0
        self.probing = True
        self.probe_sent = False
        self.read_ack = 0
        self.dirty = True
        self.snap_index = 0
        self.snap_offset = 0
