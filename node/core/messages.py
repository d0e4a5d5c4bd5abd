"""Raft messages: the log entry, the committed entry, and the RPCs of the paper.

A *message* is one of the RPC halves of the Raft paper's Figure 2 (RequestVote and
AppendEntries, their replies) or Figure 13 (InstallSnapshot, sent in chunks, and its
reply), extended with PreVote (dissertation 9.6) and a read-context id for ReadIndex
heartbeats (dissertation 6.4). Every message names its
`sender` and its `term` (SPEC section 5). `to_dict()` gives a JSON-safe dict with a
"type" field; `message_from_dict(d)` rebuilds a message from untrusted input and
raises ValueError (one line naming the field) when it is malformed, never anything
else.

A command inside a log entry is any JSON value; `None` is the no-op a new leader
appends when it takes office (paper section 8). The core never looks inside commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log entry (Figure 2, "log[]"): the term in which the leader received it."""

    term: int
    command: Any = None

    def to_dict(self) -> dict:
        return {"term": self.term, "command": self.command}


@dataclass(frozen=True, slots=True)
class CommitEntry:
    """An entry known committed (section 5.3), handed to the state machine in log order."""

    command: Any
    index: int
    term: int


@dataclass(slots=True)
class RequestVote:
    """RequestVote RPC (Figure 2); pre_vote=True is a PreVote probe (dissertation 9.6)
    that asks for a vote at `term` without anyone changing their term."""

    term: int
    sender: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False

    def to_dict(self) -> dict:
        return {"type": "RequestVote", "term": self.term, "sender": self.sender,
                "last_log_index": self.last_log_index,
                "last_log_term": self.last_log_term, "pre_vote": self.pre_vote}


@dataclass(slots=True)
class RequestVoteReply:
    """RequestVote results (Figure 2): the voter's term and whether it granted."""

    term: int
    sender: str
    granted: bool
    pre_vote: bool = False

    def to_dict(self) -> dict:
        return {"type": "RequestVoteReply", "term": self.term, "sender": self.sender,
                "granted": self.granted, "pre_vote": self.pre_vote}


@dataclass(slots=True)
class AppendEntries:
    """AppendEntries RPC (Figure 2). An empty `entries` is a heartbeat (section 5.2).
    `read_ctx` > 0 tags a ReadIndex quorum round (dissertation 6.4); replies echo it."""

    term: int
    sender: str
    prev_log_index: int
    prev_log_term: int
    entries: list[LogEntry] = field(default_factory=list)
    leader_commit: int = 0
    read_ctx: int = 0

    def to_dict(self) -> dict:
        return {"type": "AppendEntries", "term": self.term, "sender": self.sender,
                "prev_log_index": self.prev_log_index,
                "prev_log_term": self.prev_log_term,
                "entries": [e.to_dict() for e in self.entries],
                "leader_commit": self.leader_commit, "read_ctx": self.read_ctx}


@dataclass(slots=True)
class AppendEntriesReply:
    """AppendEntries results (Figure 2), plus:
    - match_index: on success, the last index known to match the leader's log;
    - reject_index: on failure, the prev_log_index that was refused;
    - conflict_index / conflict_term: the fast-backtracking hint (section 5.3, end):
      conflict_term is the follower's term at reject_index (0 if it has no entry
      there) and conflict_index the first index it holds for that term (or its last
      index + 1 when its log is too short);
    - read_ctx: the leader's read context, echoed."""

    term: int
    sender: str
    success: bool
    match_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0
    reject_index: int = 0
    read_ctx: int = 0

    def to_dict(self) -> dict:
        return {"type": "AppendEntriesReply", "term": self.term, "sender": self.sender,
                "success": self.success, "match_index": self.match_index,
                "conflict_index": self.conflict_index,
                "conflict_term": self.conflict_term,
                "reject_index": self.reject_index, "read_ctx": self.read_ctx}


@dataclass(slots=True)
class InstallSnapshot:
    """InstallSnapshot RPC (Figure 13): one chunk of the leader's snapshot, the
    characters `data` of its serialized state at `offset`; `done` on the last chunk.
    `read_ctx` as in AppendEntries (a reply confirms leadership for reads)."""

    term: int
    sender: str
    last_included_index: int
    last_included_term: int
    offset: int
    data: str
    done: bool
    read_ctx: int = 0

    def to_dict(self) -> dict:
        return {"type": "InstallSnapshot", "term": self.term, "sender": self.sender,
                "last_included_index": self.last_included_index,
                "last_included_term": self.last_included_term, "offset": self.offset,
                "data": self.data, "done": self.done, "read_ctx": self.read_ctx}


@dataclass(slots=True)
class InstallSnapshotReply:
    """InstallSnapshot results (Figure 13: the receiver's term), plus which snapshot
    it answers, `offset`: how many characters of it the receiver holds (the next
    chunk to send), `done`: it is installed (durably, before this reply is sent), and
    the echoed `read_ctx`."""

    term: int
    sender: str
    last_included_index: int = 0
    offset: int = 0
    done: bool = False
    read_ctx: int = 0

    def to_dict(self) -> dict:
        return {"type": "InstallSnapshotReply", "term": self.term, "sender": self.sender,
                "last_included_index": self.last_included_index, "offset": self.offset,
                "done": self.done, "read_ctx": self.read_ctx}


Message = Union[RequestVote, RequestVoteReply, AppendEntries, AppendEntriesReply,
                InstallSnapshot, InstallSnapshotReply]

# Terms, indexes and counters in a message: far below 2^53, so every JSON reader
# (JavaScript's included) holds them exactly, and far above what a cluster reaches
# (a term per millisecond for 8,900 years). A frame beyond it is malformed.
MAX_MESSAGE_INT = 2 ** 48
_MAX_INT = MAX_MESSAGE_INT


def _int(d: dict, name: str, default: Any = None) -> int:
    v = d.get(name, default)
    if v is None and default is not None:
        v = default
    if type(v) is not int:
        raise ValueError(f"field {name!r}: expected a non-negative integer, got {v!r:.60}")
    if v < 0 or v > _MAX_INT:
        raise ValueError(f"field {name!r}: out of range: {v}")
    return v


def _bool(d: dict, name: str, default: bool | None = None) -> bool:
    v = d.get(name, default)
    if type(v) is not bool:
        raise ValueError(f"field {name!r}: expected true or false, got {v!r:.60}")
    return v


def _str(d: dict, name: str) -> str:
    v = d.get(name)
    if type(v) is not str or not v or len(v) > 256:
        raise ValueError(f"field {name!r}: expected a node id string, got {v!r:.60}")
    return v


def entry_from_dict(d: Any, where: str = "entry") -> LogEntry:
    """A LogEntry from a JSON dict {"term": int, "command": any}; ValueError if bad."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
    try:
        term = _int(d, "term")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return LogEntry(term, d.get("command"))


def message_from_dict(d: Any) -> Message:
    """Rebuild a message from a dict decoded from the network (untrusted).

    Raises ValueError with one line naming the field when `d` is malformed.
    """
    if not isinstance(d, dict):
        raise ValueError(f"message: expected an object, got {type(d).__name__}")
    kind = d.get("type")
    if kind == "AppendEntries":
        raw = d.get("entries", [])
        if not isinstance(raw, list):
            raise ValueError("field 'entries': expected a list")
        entries = [entry_from_dict(e, f"field 'entries'[{i}]") for i, e in enumerate(raw)]
        return AppendEntries(term=_int(d, "term"), sender=_str(d, "sender"),
                             prev_log_index=_int(d, "prev_log_index"),
                             prev_log_term=_int(d, "prev_log_term"), entries=entries,
                             leader_commit=_int(d, "leader_commit", 0),
                             read_ctx=_int(d, "read_ctx", 0))
    if kind == "AppendEntriesReply":
        return AppendEntriesReply(term=_int(d, "term"), sender=_str(d, "sender"),
                                  success=_bool(d, "success"),
                                  match_index=_int(d, "match_index", 0),
                                  conflict_index=_int(d, "conflict_index", 0),
                                  conflict_term=_int(d, "conflict_term", 0),
                                  reject_index=_int(d, "reject_index", 0),
                                  read_ctx=_int(d, "read_ctx", 0))
    if kind == "RequestVote":
        return RequestVote(term=_int(d, "term"), sender=_str(d, "sender"),
                           last_log_index=_int(d, "last_log_index"),
                           last_log_term=_int(d, "last_log_term"),
                           pre_vote=_bool(d, "pre_vote", False))
    if kind == "RequestVoteReply":
        return RequestVoteReply(term=_int(d, "term"), sender=_str(d, "sender"),
                                granted=_bool(d, "granted"),
                                pre_vote=_bool(d, "pre_vote", False))
    if kind == "InstallSnapshot":
        data = d.get("data")
        if type(data) is not str:
            raise ValueError("field 'data': expected a string")
        return InstallSnapshot(term=_int(d, "term"), sender=_str(d, "sender"),
                               last_included_index=_int(d, "last_included_index"),
                               last_included_term=_int(d, "last_included_term"),
                               offset=_int(d, "offset"), data=data, done=_bool(d, "done"),
                               read_ctx=_int(d, "read_ctx", 0))
    if kind == "InstallSnapshotReply":
        return InstallSnapshotReply(term=_int(d, "term"), sender=_str(d, "sender"),
                                    last_included_index=_int(d, "last_included_index", 0),
                                    offset=_int(d, "offset", 0), done=_bool(d, "done", False),
                                    read_ctx=_int(d, "read_ctx", 0))
    raise ValueError(f"field 'type': unknown message type {kind!r:.60}")
