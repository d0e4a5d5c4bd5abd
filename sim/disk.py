"""A simulated disk: one node's WAL image in memory, with fsync and power loss.

A *SimDisk* holds the bytes of `raft.wal` as node.shell.storage writes them
(`encode_batch`) and replays them as the node does on start (`decode_wal`). Written
bytes stay in the page cache (`pending`) until `sync()`; a crash loses them, except,
for a crash in the middle of a write, a prefix of them (a torn record, which recovery
must cut off). Beside the bytes it keeps the durable log and hard state decoded, so
the invariants can ask which committed entries would survive a crash right now.
"""

from __future__ import annotations

from node.core.messages import LogEntry
from node.core.state import HardState, Ready
from node.shell.storage import decode_wal, encode_batch


class SimDisk:
    """One node's WAL: durable bytes, unsynced bytes, and the durable state decoded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.durable = bytearray()
        self.pending = b""
        self._pending_ops: list[tuple[HardState | None, int | None,
                                      list[tuple[int, LogEntry]]]] = []
        self.log: list[LogEntry] = []          # the durable log
        self.hard_state = HardState()          # the durable hard state
        self.lowest_cut: int | None = None     # lowest durable index lost since asked
        self.torn = False                      # a torn write since the last load

    def write(self, rd: Ready) -> None:
        """Write a Ready's records (into the page cache: not durable yet)."""
        self.pending += encode_batch(rd.hard_state, rd.truncate_from, rd.entries)
        self._pending_ops.append((rd.hard_state, rd.truncate_from, list(rd.entries)))

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
                if index <= len(self.log):
                    self._cut(index)
                self.log.append(entry)
        self._pending_ops = []

    def crash(self, keep_share: float | None = None) -> int:
        """Power loss: unsynced bytes are lost; in the middle of a write, the first
        `keep_share` of them reach the disk (a torn write). Returns the bytes kept."""
        keep = int(len(self.pending) * keep_share) if keep_share else 0
        torn = self.pending[:keep]
        self.pending, self._pending_ops = b"", []
        if keep:
            before = self.log
            self.durable += torn
            self.torn = True
            wal = decode_wal(bytes(self.durable), self.name)
            self.hard_state, self.log = wal.hard_state, wal.entries
            first_diff = next((i for i, (a, b) in enumerate(zip(before, self.log)) if a != b),
                              min(len(before), len(self.log)))
            if first_diff < len(before):
                self._mark_cut(first_diff + 1)
        return keep

    def load(self) -> tuple[HardState, list[LogEntry], int]:
        """What the node recovers on start: (hard state, log, torn bytes cut off).
        The bytes are replayed with the node's own decoder after a torn write; a
        WAL made of whole synced batches decodes to the state kept beside it, which
        is returned without replaying (tests/test_sim_parts.py checks they agree)."""
        if not self.torn:
            return self.hard_state, list(self.log), 0
        wal = decode_wal(bytes(self.durable), self.name)
        if wal.torn_bytes:
            del self.durable[wal.valid_length:]
        self.torn = False
        return wal.hard_state, wal.entries, wal.torn_bytes

    def replay(self) -> tuple[HardState, list[LogEntry]]:
        """Decode the durable bytes as the node's recovery does (for checks)."""
        wal = decode_wal(bytes(self.durable), self.name)
        return wal.hard_state, wal.entries

    def take_lowest_cut(self) -> int | None:
        """The lowest index removed from the durable log since the last call."""
        cut, self.lowest_cut = self.lowest_cut, None
        return cut

    def _cut(self, index: int) -> None:
        if index <= len(self.log):
            self._mark_cut(index)
            del self.log[index - 1:]

    def _mark_cut(self, index: int) -> None:
        if self.lowest_cut is None or index < self.lowest_cut:
            self.lowest_cut = index
