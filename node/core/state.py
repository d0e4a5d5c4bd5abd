"""The core's data: its timing configuration, its persistent state, what a Ready hands
to the caller, and a leader's view of each follower (paper Figure 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node.core.messages import CommitEntry, LogEntry, Message


@dataclass
class RaftConfig:
    """Timing in ticks. A follower that hears no leader for a random number of ticks in
    [election_ticks_min, election_ticks_max] starts an election (section 5.2)."""

    election_ticks_min: int = 10
    election_ticks_max: int = 20
    heartbeat_ticks: int = 1
    max_batch_entries: int = 256
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if not (1 <= self.heartbeat_ticks < self.election_ticks_min <= self.election_ticks_max):
            raise ValueError("RaftConfig: need 1 <= heartbeat_ticks < election_ticks_min "
                             "<= election_ticks_max")
        if self.max_batch_entries < 1:
            raise ValueError("RaftConfig: max_batch_entries must be >= 1")


@dataclass
class HardState:
    """The persistent state of Figure 2 besides the log: currentTerm and votedFor."""

    term: int = 0
    voted_for: str | None = None


@dataclass
class Ready:
    """What the caller must persist, send, apply and answer (see the module contract)."""

    hard_state: HardState | None = None
    truncate_from: int | None = None
    entries: list[tuple[int, LogEntry]] = field(default_factory=list)
    messages: list[tuple[str, Message]] = field(default_factory=list)
    committed: list[CommitEntry] = field(default_factory=list)
    reads: list[tuple[Any, int]] = field(default_factory=list)
    dropped_reads: list[Any] = field(default_factory=list)

    def must_sync(self) -> bool:
        return self.hard_state is not None or self.truncate_from is not None or bool(self.entries)


class Progress:
    """A leader's view of one follower: nextIndex and matchIndex (Figure 2, leader
    state). `probing`: the follower's log position is unknown, so at most one
    AppendEntries is in flight; otherwise entries are pipelined (next advances
    optimistically as they are sent)."""

    __slots__ = ("next", "match", "probing", "probe_sent", "read_ack", "dirty")

    def __init__(self, next_index: int) -> None:
        self.next = next_index
        self.match = 0
        self.probing = True
        self.probe_sent = False
        self.read_ack = 0
        self.dirty = True
