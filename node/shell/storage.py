"""Durable Raft state: a write-ahead log of records, each with a length and a CRC32.

The *WAL* holds what Figure 2 calls persistent state (currentTerm, votedFor, log[]),
plus the commit index as etcd's HardState keeps it, as a sequence of records appended
to one file, `raft.wal`:

    record  = length (4 bytes, big-endian) | crc32(payload) (4 bytes) | payload
    payload = a JSON object, one of
      {"k": "hs", "term": T, "vote": ID|null, "commit": C}   hard state
      {"k": "e", "i": INDEX, "t": TERM, "c": CMD}   entry append (index = length+1)
      {"k": "tr", "i": INDEX}                        truncation: drop entries >= INDEX
      {"k": "snap", "i": INDEX, "t": TERM}           the log starts after INDEX, whose
                                                     term is TERM (section 7): before
                                                     any entry, in a compacted WAL

A hard-state record without "commit" (written before the commit index was kept)
reads as commit 0. The commit index in a record covers only entries stored before it
(node.core.raft keeps it so); `decode_wal` returns it as stored, and the core clamps
it to the log it recovers.

`Storage.save(hard_state, truncate_from, entries)` appends the records of one Ready
with a single write and a single fsync (the batch), *before* the caller sends any
message that depends on them (persist before send, Figure 2 "updated on stable
storage before responding to RPCs"). `sync=False` writes without the fsync: right for
a Ready that only moves the commit index (etcd's MustSync), and what two planted bugs
do where it is wrong.

Recovery (`load`): records are replayed in order. Only an *incomplete* final record
(a header cut short, or a length that runs past the end of the file) is a *torn
tail*, the last write interrupted by a crash and never acknowledged, and it is cut
off, as etcd's WAL cuts an unexpected EOF. Everything else that is bad is damage, and
`StorageCorrupted` is raised with the file, record and offset, so the node stops
rather than silently lose acknowledged entries: a complete record whose CRC does not
match (even the last one: it was written whole, so it may have been acknowledged), a
zero length (a zero-filled file or tail), a bad record followed by a valid one.
`load(repair=True)` (`raftcheck node --repair-wal`) cuts the file at the first bad
record instead, and `WalContents.damage` says what was dropped.
When most records are dead (overwritten terms, truncated entries) the file is
compacted on load: rewritten to a temporary file, fsync'd and renamed over.

A data directory that ever held a WAL says so in `raft.wal.created`, written (and
fsynced, with the directory) only after the WAL's own creation is durable: a WAL that
is missing beside it was lost or deleted, and the node refuses to start with an empty
log, which would let it vote and acknowledge as if it had never promised anything.

The data directory is locked (`flock` on `LOCK`, which holds the owner's pid) before
anything in it is read or written, and stays locked until `close()`: a second node
started on the same directory gets `DataDirLocked` and changes nothing, where it
would otherwise cut or append to the running node's WAL.

*Snapshots* (paper section 7). `raft.snap` holds the state machine after applying
the entries up to its last included index: one record, in the WAL's record format,
whose payload is {"k": "snapshot", "i": INDEX, "t": TERM, "d": DATA} (DATA the
machine's state as JSON text). `save_snapshot` writes it to `raft.snap.tmp`, fsyncs,
renames it over `raft.snap` and fsyncs the directory; only then is the WAL rewritten
the same way (tmp, fsync, rename, fsync the directory) to hold the hard state, a
"snap" record and the entries after INDEX. A crash at any point leaves the old
snapshot and WAL, or the new snapshot and the old WAL (recovery then finishes the
compaction: Figure 13's rule, the entries after INDEX are kept if the WAL holds
INDEX at TERM, else dropped), or both new. A snapshot file that does not decode is
damage (it was renamed into place whole): `StorageCorrupted`, whatever `repair` says;
so is a compacted WAL without a snapshot, or one compacted past it.

`encode_batch` and `decode_wal` are pure functions, so sim.simulation can keep a WAL in
memory and crash in the middle of a write.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from node.core.messages import LogEntry
from node.core.state import HardState, Snapshot

WAL_NAME = "raft.wal"
SNAP_NAME = "raft.snap"
LOCK_NAME = "LOCK"
MARKER_NAME = "raft.wal.created"  # written once the WAL's creation is durable
_HEADER = struct.Struct(">II")
MAX_RECORD = 64 * 1024 * 1024

_log = logging.getLogger("raftcheck.node.storage")


class StorageCorrupted(Exception):
    """The WAL is corrupted before its end: the node must stop (never drop entries)."""


class DataDirLocked(Exception):
    """Another process holds the data directory's lock: this node must not touch it."""


def _record(obj: dict) -> bytes:
    payload = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def encode_batch(hard_state: HardState | None, truncate_from: int | None,
                 entries: Iterable[tuple[int, LogEntry]]) -> bytes:
    """The records for one save(), in replay order: hard state, truncation, entries."""
    parts = []
    if hard_state is not None:
        parts.append(_record({"k": "hs", "term": hard_state.term, "vote": hard_state.voted_for,
                              "commit": hard_state.commit}))
    if truncate_from is not None:
        parts.append(_record({"k": "tr", "i": truncate_from}))
    for index, e in entries:
        parts.append(_record({"k": "e", "i": index, "t": e.term, "c": e.command}))
    return b"".join(parts)


def encode_wal(hard_state: HardState, entries: Iterable[tuple[int, LogEntry]],
               base: int = 0, base_term: int = 0) -> bytes:
    """A whole (compacted) WAL image: the hard state, the "snap" record if the log
    starts after a snapshot at `base` (section 7), and the entries."""
    head = _record({"k": "snap", "i": base, "t": base_term}) if base else b""
    hs = encode_batch(hard_state, None, [])
    return hs + head + encode_batch(None, None, entries)


def encode_snapshot(snap: Snapshot) -> bytes:
    """The bytes of `raft.snap` (see the module docstring)."""
    return _record({"k": "snapshot", "i": snap.index, "t": snap.term, "d": snap.data})


def decode_snapshot(data: bytes, name: str = SNAP_NAME) -> Snapshot:
    """Read `raft.snap`; StorageCorrupted (one line) if it is not one whole, valid
    snapshot record."""
    why = None
    if len(data) < _HEADER.size:
        why = f"{len(data)} bytes, shorter than a record header"
    else:
        length, crc = _HEADER.unpack_from(data, 0)
        payload = data[_HEADER.size:_HEADER.size + length]
        if length == 0 or _HEADER.size + length != len(data):
            why = f"record length {length} does not match the file's {len(data)} bytes"
        elif zlib.crc32(payload) != crc:
            why = "CRC mismatch"
        else:
            try:
                obj = json.loads(payload)
                if not isinstance(obj, dict) or obj.get("k") != "snapshot":
                    raise ValueError("not a snapshot record")
                if type(obj.get("d")) is not str:
                    raise ValueError("field 'd': expected a string")
                return Snapshot(_int_field(obj, "i"), _int_field(obj, "t"), obj["d"])
            except ValueError as e:
                why = str(e)
    raise StorageCorrupted(f"{name}: the snapshot is damaged ({why}); refusing to start "
                           f"(it was written whole, so this is not a torn write)")


def reconcile(wal: "WalContents", snap: Snapshot | None, wal_name: str = WAL_NAME,
              snap_name: str = SNAP_NAME) -> bool:
    """Fit a decoded WAL to the snapshot beside it (section 7), in place; True if a
    compaction a crash interrupted must be finished (the WAL rewritten behind the
    snapshot). StorageCorrupted if the two cannot both be right."""
    if snap is None:
        if wal.base:
            raise StorageCorrupted(f"{wal_name}: the log starts after index {wal.base}, "
                                   f"but {snap_name} is missing; refusing to start")
        return False
    if wal.base > snap.index or (wal.base == snap.index and wal.base_term != snap.term):
        raise StorageCorrupted(
            f"{wal_name}: the log starts after index {wal.base} (term {wal.base_term}), "
            f"which {snap_name} (index {snap.index}, term {snap.term}) does not cover; "
            f"refusing to start")
    if wal.base == snap.index:
        return False
    # A crash after the snapshot's rename, before the WAL's: Figure 13, rules 6 and 7.
    at = snap.index - wal.base
    if 0 < at <= len(wal.entries) and wal.entries[at - 1].term == snap.term:
        wal.entries = wal.entries[at:]
    else:
        wal.entries = []
    wal.base, wal.base_term = snap.index, snap.term
    return True


@dataclass
class WalContents:
    """The result of replaying a WAL image. `entries` follow `base` (a compacted
    WAL's snapshot index, 0 if none), whose term is `base_term`."""

    hard_state: HardState = field(default_factory=HardState)
    entries: list[LogEntry] = field(default_factory=list)
    base: int = 0
    base_term: int = 0
    valid_length: int = 0      # bytes up to the end of the last good record
    records: int = 0
    torn_bytes: int = 0        # bytes cut off as a torn tail (or, repairing, as damage)
    damage: str | None = None  # repairing: what was wrong where the file was cut


def _valid_at(data: bytes, pos: int) -> bool:
    n = len(data)
    if pos + _HEADER.size > n:
        return False
    length, crc = _HEADER.unpack_from(data, pos)
    end = pos + _HEADER.size + length
    if length == 0 or end > n or data[pos + _HEADER.size] != 0x7B:  # '{'
        return False
    return zlib.crc32(data[pos + _HEADER.size:end]) == crc


def _valid_record_after(data: bytes, pos: int) -> int | None:
    """The offset of a valid record starting after `pos`, or None."""
    p = data.find(b"{", pos + 1 + _HEADER.size)
    while p != -1:
        start = p - _HEADER.size
        if start > pos and _valid_at(data, start):
            return start
        p = data.find(b"{", p + 1)
    return None


def _int_field(obj: dict, name: str) -> int:
    v = obj.get(name)
    if type(v) is not int or v < 0:
        raise ValueError(f"field {name!r}: expected a non-negative integer")
    return v


def _problem(data: bytes, off: int) -> tuple[str | None, bool]:
    """What is wrong with the record at `off` (None: nothing), and whether that is
    an incomplete record (a torn write) rather than damage."""
    n = len(data)
    if n - off < _HEADER.size:
        return "short header", True
    length, crc = _HEADER.unpack_from(data, off)
    end = off + _HEADER.size + length
    if length == 0:
        rest = data[off:]
        return ("zero-filled to the end of the file" if not rest.strip(b"\0")
                else "zero length"), False
    if end > n:
        return f"length {length} runs past the end of the file", True
    if length > MAX_RECORD:
        return f"bad length {length}", False
    if zlib.crc32(data[off + _HEADER.size:end]) != crc:
        return "CRC mismatch in a complete record", False
    return None, False


def decode_wal(data: bytes, name: str = WAL_NAME, repair: bool = False) -> WalContents:
    """Replay a WAL image. Cuts an incomplete final record (a torn write); raises
    StorageCorrupted for any other bad record, or a good record that does not make
    sense. `repair`: cut at the first bad record instead, saying why in `damage`."""
    out = WalContents()
    n = len(data)
    off = 0
    log = out.entries
    while off < n:
        bad, incomplete = _problem(data, off)
        if bad is not None:
            where = f"{name}: record {out.records + 1} at offset {off}: {bad}"
            later = _valid_record_after(data, off)
            if repair:
                out.torn_bytes = n - off
                out.damage = where + (f" (a valid-looking record follows at offset {later})"
                                      if later is not None else "")
                break
            if later is not None:
                raise StorageCorrupted(
                    f"{where}, but a valid record follows at offset {later}: the log is "
                    f"corrupted, not torn; refusing to start (raftcheck node --repair-wal "
                    f"cuts it there)")
            if not incomplete:
                raise StorageCorrupted(
                    f"{where}: not a torn write, so it may hold acknowledged data; "
                    f"refusing to start (raftcheck node --repair-wal cuts it there)")
            out.torn_bytes = n - off
            break
        length = _HEADER.unpack_from(data, off)[0]
        end = off + _HEADER.size + length
        try:
            obj = json.loads(data[off + _HEADER.size:end])
            if not isinstance(obj, dict):
                raise ValueError("expected an object")
            kind = obj.get("k")
            if kind == "e":
                i, t = _int_field(obj, "i"), _int_field(obj, "t")
                if i != out.base + len(log) + 1:
                    raise ValueError(f"entry index {i}, expected {out.base + len(log) + 1}")
                log.append(LogEntry(t, obj.get("c")))
            elif kind == "snap":
                i, t = _int_field(obj, "i"), _int_field(obj, "t")
                if log or out.base:
                    raise ValueError("a snap record after the log began")
                out.base, out.base_term = i, t
            elif kind == "hs":
                term = _int_field(obj, "term")
                vote = obj.get("vote")
                if vote is not None and type(vote) is not str:
                    raise ValueError("field 'vote': expected a node id or null")
                if term < out.hard_state.term:
                    raise ValueError(f"term went back from {out.hard_state.term} to {term}")
                commit = _int_field(obj, "commit") if "commit" in obj else 0
                out.hard_state = HardState(term, vote, commit)
            elif kind == "tr":
                i = _int_field(obj, "i")
                b = out.base
                if not b + 1 <= i <= b + len(log) + 1:
                    raise ValueError(f"truncation at {i} outside the log "
                                     f"({b + 1}..{b + len(log) + 1})")
                del log[i - b - 1:]
            else:
                raise ValueError(f"field 'k': unknown record kind {kind!r:.40}")
        except ValueError as e:
            raise StorageCorrupted(f"{name}: record {out.records + 1} at offset {off}: {e}") from None
        out.records += 1
        off = end
        out.valid_length = off
    return out


class Storage:
    """The WAL file of one node (see the module docstring). Call `load()` first."""

    def __init__(self, dir: str | os.PathLike, fsync: bool = True,
                 node_id: str | None = None) -> None:
        self.dir = Path(dir)
        self.log = logging.LoggerAdapter(_log, {"node": node_id or self.dir.name})
        self.path = self.dir / WAL_NAME
        self.fsync = fsync
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self.snap_path = self.dir / SNAP_NAME
        self.last_repair: str | None = None
        self.snapshot: Snapshot | None = None   # the one load() found or save wrote
        self._hs = HardState()
        self._base = 0
        self._length = 0          # the last index the WAL holds
        self.writes = 0
        self.fsyncs = 0

    def load(self, repair: bool = False) -> tuple[HardState, list[LogEntry]]:
        """Recover (hard state, log); cut a torn tail; compact a mostly dead file.
        With a snapshot (then in `self.snapshot`), the log holds the entries after
        its last included index. `repair`: also cut damage at the tail of the WAL
        (see the module docstring); `last_repair` then says what was dropped."""
        self._close_wal()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        marker = self.dir / MARKER_NAME
        missing = None
        try:
            if not self.path.exists() and marker.exists():
                lost = (f"{self.path}: the write-ahead log is missing, but {marker} says "
                        f"this directory held one")
                if not repair:
                    raise StorageCorrupted(
                        f"{lost}: refusing to start from an empty log (raftcheck node "
                        f"--repair-wal starts it empty)")
                missing = f"{lost}; started from an empty log"
                self.log.warning("[%s] repairing: %s", self.log.extra["node"], missing)
            data = self.path.read_bytes() if self.path.exists() else b""
            wal = decode_wal(data, str(self.path), repair=repair)
            for stale in (SNAP_NAME + ".tmp", WAL_NAME + ".tmp"):
                if (self.dir / stale).exists():   # a crash before its rename
                    (self.dir / stale).unlink()
            self.snapshot = (decode_snapshot(self.snap_path.read_bytes(), str(self.snap_path))
                             if self.snap_path.exists() else None)
            finish = reconcile(wal, self.snapshot, str(self.path), str(self.snap_path))
        except BaseException:
            self.close()  # a node that cannot start leaves the directory free
            raise
        self.last_repair = wal.damage or missing
        if wal.damage:
            self.log.warning("[%s] repairing: cutting %d bytes at %s",
                             self.log.extra["node"], wal.torn_bytes, wal.damage)
        if wal.torn_bytes:
            if not wal.damage:
                self.log.warning("[%s] %s: cutting a torn tail of %d bytes at offset %d",
                                 self.log.extra["node"], self.path, wal.torn_bytes,
                                 wal.valid_length)
            with open(self.path, "r+b") as f:
                f.truncate(wal.valid_length)
                f.flush()
                os.fsync(f.fileno())
        live = len(wal.entries) + 1
        if finish or wal.records > 2 * live + 64:
            self.log.info("[%s] %s: compacting (%d records, %d live%s)",
                          self.log.extra["node"], self.path, wal.records, live,
                          ", behind the snapshot" if finish else "")
            self._rewrite(wal.hard_state, wal.entries, wal.base, wal.base_term)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not data:
            self._sync_dir()
        if not marker.exists():
            self._write_marker(marker)
        self._hs = wal.hard_state
        self._base = wal.base
        self._length = wal.base + len(wal.entries)
        return wal.hard_state, wal.entries

    def _lock(self) -> None:
        """Take the directory's lock (once per Storage); DataDirLocked if another
        process holds it."""
        if self._lock_fd is not None:
            return
        path = self.dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirLocked(
                    f"{self.dir}: the data directory is in use by another node"
                    + (f" (pid {holder})" if holder else "") + f"; {path} is locked"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _write_marker(self, marker: Path) -> None:
        """Record, durably, that this directory holds a WAL (its creation is durable)."""
        with open(marker, "w", encoding="ascii") as f:
            f.write(f"{WAL_NAME}\n")
            f.flush()
            os.fsync(f.fileno())
        self._sync_dir()

    def _rewrite(self, hs: HardState, entries: list[LogEntry], base: int = 0,
                 base_term: int = 0) -> None:
        self._replace(self.path, encode_wal(hs, ((base + i + 1, e) for i, e in
                                                 enumerate(entries)), base, base_term))

    def _replace(self, path: Path, data: bytes) -> None:
        """Write `data` to `path` atomically: a tmp file, fsync, rename, fsync the dir."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            self._sync_dir()

    def write_snapshot(self, snap: Snapshot) -> None:
        """Step 1 of section 7's compaction: make `raft.snap` durable (atomically)."""
        self._replace(self.snap_path, encode_snapshot(snap))
        self.snapshot = snap

    def compact(self, snap: Snapshot, tail: list[tuple[int, LogEntry]],
                hard_state: HardState | None = None) -> None:
        """Step 2: rewrite the WAL behind the snapshot (written first): the hard
        state, the snap record and `tail`, the entries after it the WAL holds."""
        if self._fd is None:
            raise ValueError("compact before load")
        if tail and tail[0][0] != snap.index + 1:
            raise ValueError(f"tail starts at {tail[0][0]}, the snapshot ends at {snap.index}")
        hs = hard_state if hard_state is not None else self._hs
        self._close_wal()
        self._replace(self.path, encode_wal(hs, tail, snap.index, snap.term))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o644)
        self._hs, self._base = hs, snap.index
        self._length = tail[-1][0] if tail else snap.index
        self.writes += 1

    def save_snapshot(self, snap: Snapshot, tail: list[tuple[int, LogEntry]],
                      hard_state: HardState | None = None) -> None:
        """Section 7: save the snapshot, then compact the WAL behind it."""
        self.write_snapshot(snap)
        self.compact(snap, tail, hard_state)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save(self, hard_state: HardState | None, truncate_from: int | None,
             entries: list[tuple[int, LogEntry]], sync: bool = True,
             snapshot: Snapshot | None = None) -> None:
        """Append one Ready's records with one write and (if `sync`) one fsync; a
        snapshot from the leader (Figure 13) is saved first, the WAL emptied behind it."""
        if self._fd is None:
            self.load()
        if snapshot is not None:
            self.save_snapshot(snapshot, [], hard_state)
            hard_state = None
        if hard_state is None and truncate_from is None and not entries:
            return
        length = self._length
        if truncate_from is not None:
            if not self._base + 1 <= truncate_from <= length + 1:
                raise ValueError(f"truncate_from {truncate_from} outside "
                                 f"{self._base + 1}..{length + 1}")
            length = truncate_from - 1
        if entries and entries[0][0] != length + 1:
            raise ValueError(f"entries start at {entries[0][0]}, the log ends at {length}")
        data = encode_batch(hard_state, truncate_from, entries)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]
        self.writes += 1
        if self.fsync and sync:
            os.fsync(self._fd)  # type: ignore[arg-type]
            self.fsyncs += 1
        if hard_state is not None:
            self._hs = hard_state
        self._length = length + len(entries)

    def _close_wal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the WAL and release the directory's lock."""
        self._close_wal()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
