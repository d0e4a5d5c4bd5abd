"""The Raft log with an offset: the entries after the last snapshot (paper section 7).

A *RaftLog* holds log[] of Figure 2 as the entries after a *base*: the last index
and term a snapshot includes (Figure 13, lastIncludedIndex / lastIncludedTerm).
Indexes are the paper's, 1-based and absolute: entry `i` is `entries[i - base - 1]`
for `base < i <= last_index()`; the term at `base` is the snapshot's (0 at base 0,
the empty log); indexes below the base are compacted and have no term here.
"""

from __future__ import annotations

from node.core.messages import LogEntry


class RaftLog:
    """log[] (Figure 2) behind a snapshot at (base, base_term) (section 7)."""

    __slots__ = ("base", "base_term", "_entries")

    def __init__(self, entries: list[LogEntry] | None = None, base: int = 0,
                 base_term: int = 0) -> None:
        self.base = base
        self.base_term = base_term
        self._entries: list[LogEntry] = list(entries or [])

    def last_index(self) -> int:
        """The index of the last entry (the base when no entry follows it)."""
        return self.base + len(self._entries)

    def last_term(self) -> int:
        """The term of the last entry (section 5.4.1's up-to-date comparison)."""
        return self._entries[-1].term if self._entries else self.base_term

    def term_at(self, index: int) -> int | None:
        """The term at `index`: the snapshot's at the base, None if compacted or
        past the end (Figure 2, AppendEntries receiver 2 compares it)."""
        if index == self.base:
            return self.base_term
        if self.base < index <= self.base + len(self._entries):
            return self._entries[index - self.base - 1].term
        return None

    def entry(self, index: int) -> LogEntry:
        """The entry at `index` (base < index <= last_index())."""
        if not self.base < index <= self.base + len(self._entries):
            raise IndexError(f"log index {index} outside {self.base + 1}.."
                             f"{self.base + len(self._entries)}")
        return self._entries[index - self.base - 1]

    def slice(self, lo: int, hi: int) -> list[LogEntry]:
        """Entries lo..hi inclusive (both after the base)."""
        return self._entries[lo - self.base - 1:hi - self.base]

    def entries(self) -> list[LogEntry]:
        """A copy of the entries after the base."""
        return list(self._entries)

    def append(self, entry: LogEntry) -> None:
        """Append one entry (section 5.3)."""
        self._entries.append(entry)

    def extend(self, entries: list[LogEntry]) -> None:
        """Append entries (Figure 2, AppendEntries receiver 4)."""
        self._entries.extend(entries)

    def truncate(self, index: int) -> None:
        """Drop `index` and everything after it (Figure 2, receiver 3); index > base."""
        if index <= self.base:
            raise ValueError(f"truncating at {index}, inside the snapshot (base {self.base})")
        del self._entries[index - self.base - 1:]

    def compact(self, index: int) -> None:
        """Section 7: discard the entries a snapshot taken at `index` includes."""
        term = self.term_at(index)
        if term is None or index < self.base:
            raise ValueError(f"compacting at {index}, outside {self.base}..{self.last_index()}")
        del self._entries[:index - self.base]
        self.base, self.base_term = index, term

    def install(self, index: int, term: int) -> bool:
        """Figure 13, InstallSnapshot receiver 6 and 7: keep the entries after the
        snapshot if the log holds its last included entry, else discard the whole
        log. True if entries were kept."""
        keep = index >= self.base and self.term_at(index) == term
        if keep:
            del self._entries[:index - self.base]
        else:
            self._entries = []
        self.base, self.base_term = index, term
        return keep
