"""A simulated disk: one node's WAL and snapshot in memory, with fsync and power loss.

A *SimDisk* holds the bytes of `raft.wal` as node.shell.storage writes them
(`encode_batch`) and replays them as the node does on start (`decode_wal`). Written
bytes stay in the page cache (`pending`) until `sync()`; a crash loses them, except,
for a crash in the middle of a write, a prefix of them (a torn record, which recovery
must cut off). Beside the bytes it keeps the durable log and hard state decoded, so
the invariants can ask which committed entries would survive a crash right now.

Snapshots (paper section 7) go as node.shell.storage saves them: `raft.snap` is
replaced atomically and durably, then the WAL is rewritten (durably) behind it; a
crash between the two (`write_snapshot` without `compact`) leaves the new snapshot
beside the old WAL, which `load` reconciles with the node's own `reconcile`.
"""

from __future__ import annotations

from node.core.messages import LogEntry
from node.core.state import HardState, Ready, Snapshot
from node.shell.storage import decode_wal, encode_batch, encode_wal, reconcile


class SimDisk:
    """One node's WAL and snapshot: durable bytes, unsynced bytes, the durable state
    decoded (the log after `base`, the snapshot's last index)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.durable = bytearray()
        self.pending = b""
        self._pending_ops: list[tuple[HardState | None, int | None,
                                      list[tuple[int, LogEntry]]]] = []
        self.log: list[LogEntry] = []          # the durable log, after `base`
        self.base = 0                          # the durable WAL starts after it
        self.hard_state = HardState()          # the durable hard state
        self.last_hs = HardState()             # the last one written (Storage._hs)
        self.snapshot: Snapshot | None = None  # raft.snap (always durable)
        self.lowest_cut: int | None = None     # lowest durable index lost since asked
        self.torn = False                      # a torn write since the last load
        self.unfinished = False                # a snapshot beside an uncompacted WAL

    def holds(self, index: int, entry: LogEntry) -> bool:
        """Whether a crash now would leave `entry` at `index` (or a snapshot past it)."""
        if self.snapshot is not None and index <= self.snapshot.index:
            return True
        return (self.base < index <= self.base + len(self.log)
                and self.log[index - self.base - 1] == entry)

    def write(self, rd: Ready) -> None:
        """Write a Ready's records (into the page cache: not durable yet); a snapshot
        from the leader is saved first, durably, the WAL emptied behind it."""
        hs = rd.hard_state
        if rd.snapshot is not None:
            self.save_snapshot(rd.snapshot, [], hs)
            hs = None
        if hs is not None:
            self.last_hs = hs
        self.pending += encode_batch(hs, rd.truncate_from, rd.entries)
        self._pending_ops.append((hs, rd.truncate_from, list(rd.entries)))

    def write_snapshot(self, snap: Snapshot) -> None:
        """Section 7, step 1: raft.snap replaced (tmp, fsync, rename, fsync dir)."""
        self.snapshot = snap
        self.unfinished = True

    def compact(self, snap: Snapshot, tail: list[tuple[int, LogEntry]],
                hs: HardState | None = None) -> None:
        """Step 2: the WAL rewritten behind the snapshot, durably; unsynced writes
        of the old file are gone (what the tail and hard state hold is kept)."""
        hs = hs if hs is not None else self.last_hs
        self.durable = bytearray(encode_wal(hs, tail, snap.index, snap.term))
        self.pending, self._pending_ops = b"", []
        self.last_hs = self.hard_state = hs
        old_last = self.base + len(self.log)
        self.base, self.log = snap.index, [e for _, e in tail]
        if old_last > self.base + len(self.log):
            self._mark_cut(self.base + len(self.log) + 1)
        self.unfinished = False

    def save_snapshot(self, snap: Snapshot, tail: list[tuple[int, LogEntry]],
                      hs: HardState | None = None) -> None:
        """Storage.save_snapshot: the snapshot, then the WAL compacted behind it."""
        self.write_snapshot(snap)
        self.compact(snap, tail, hs)

    def sync(self) -> None:
        """fsync: every written byte is durable."""
        self.durable += self.pending
        self.pending = b""
        for hs, trunc, entries in self._pending_ops:
            if hs is not None:
                self.hard_state = hs
            if trunc is not None:
                self._cut(trunc)
            for index, entry in entries:
                if index <= self.base + len(self.log):
                    self._cut(index)
                self.log.append(entry)
        self._pending_ops = []

    def crash(self, keep_share: float | None = None) -> int:
        """Power loss: unsynced bytes are lost; in the middle of a write, the first
        `keep_share` of them reach the disk (a torn write). Returns the bytes kept."""
        keep = int(len(self.pending) * keep_share) if keep_share else 0
        torn = self.pending[:keep]
        self.pending, self._pending_ops = b"", []
        self.last_hs = self.hard_state
        if keep:
            before, base = self.log, self.base
            self.durable += torn
            self.torn = True
            wal = decode_wal(bytes(self.durable), self.name)
            self.hard_state, self.log, self.base = wal.hard_state, wal.entries, wal.base
            first_diff = next((i for i, (a, b) in enumerate(zip(before, self.log)) if a != b),
                              min(len(before), len(self.log)))
            if first_diff < len(before):
                self._mark_cut(base + first_diff + 1)
        return keep

    def load(self) -> tuple[HardState, list[LogEntry], int]:
        """What the node recovers on start: (hard state, log after the snapshot,
        torn bytes cut off). The bytes are replayed with the node's own decoder
        after a torn write or an unfinished compaction; a WAL made of whole synced
        batches decodes to the state kept beside it, which is returned without
        replaying (tests/test_sim_parts.py checks they agree)."""
        if not self.torn and not self.unfinished:
            return self.hard_state, list(self.log), 0
        wal = decode_wal(bytes(self.durable), self.name)
        if wal.torn_bytes:
            del self.durable[wal.valid_length:]
        self.torn = False
        if reconcile(wal, self.snapshot, self.name):
            assert self.snapshot is not None
            self.compact(self.snapshot, [(wal.base + 1 + k, e) for k, e in
                                         enumerate(wal.entries)], wal.hard_state)
        self.hard_state = self.last_hs = wal.hard_state
        self.base, self.log = wal.base, list(wal.entries)
        return wal.hard_state, list(wal.entries), wal.torn_bytes

    def replay(self) -> tuple[HardState, list[LogEntry]]:
        """Decode the durable bytes as the node's recovery does (for checks)."""
        wal = decode_wal(bytes(self.durable), self.name)
        return wal.hard_state, wal.entries

    def take_lowest_cut(self) -> int | None:
        """The lowest index removed from the durable log since the last call."""
        cut, self.lowest_cut = self.lowest_cut, None
        return cut

    def _cut(self, index: int) -> None:
        if index <= self.base + len(self.log):
            self._mark_cut(index)
            del self.log[index - self.base - 1:]

    def _mark_cut(self, index: int) -> None:
        if self.lowest_cut is None or index < self.lowest_cut:
            self.lowest_cut = index
