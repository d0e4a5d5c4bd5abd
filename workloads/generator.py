"""The register op generator: which op a client runs next.

Jepsen's linearizable-register shape: *independent keys*, each key a small register
history of its own, with a per-key op limit so that keys rotate (a checker's cost grows
fast with the length of one key's history, not with the number of keys). The mix is
read / write / cas; every written value is unique across the whole run, so that a read
names the write it saw. A cas compares against a value the generator last saw for
that key (so a good share of them succeed) and swaps in a fresh unique value.

The generator is deterministic for a given seed and call order; it does no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

READ, WRITE, CAS = "read", "write", "cas"


@dataclass
class RegisterOp:
    """One op to invoke: f is read, write or cas; value as in SPEC section 2."""

    f: str
    key: int
    value: Any = None  # read: None; write: the value; cas: [from, to]


class RegisterGenerator:
    """Seeded source of read / write / cas ops over rotating independent keys."""

    def __init__(self, rng: random.Random, ops_per_key: int = 100, active_keys: int = 2,
                 mix: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        if ops_per_key < 1:
            raise ValueError("ops_per_key must be >= 1")
        if active_keys < 1:
            raise ValueError("active_keys must be >= 1")
        self.rng = rng
        self.ops_per_key = ops_per_key
        self.mix = mix
        self._next_key = 0
        self._next_value = 0
        self._active: list[int] = []
        self._counts: dict[int, int] = {}
        self._last_seen: dict[int, Any] = {}
        self.keys: list[int] = []  # every key handed out, in order
        for _ in range(active_keys):
            self._active.append(self._new_key())

    def _new_key(self) -> int:
        key = self._next_key
        self._next_key += 1
        self._counts[key] = 0
        self.keys.append(key)
        return key

    def fresh_value(self) -> int:
        """A value never written before in this run."""
        self._next_value += 1
        return self._next_value

    def observe(self, key: int, value: Any) -> None:
        """Remember a value a client saw for `key` (an ok read, write or cas)."""
        if value is not None:
            self._last_seen[key] = value

    def _next_key_used(self) -> int:
        # an active key, counted; retired once it reached its op limit
        slot = self.rng.randrange(len(self._active))
        key = self._active[slot]
        self._counts[key] += 1
        if self._counts[key] >= self.ops_per_key:
            self._active[slot] = self._new_key()
        return key

    def next_read(self) -> RegisterOp:
        """A read of an active key (a read-only client's next op)."""
        return RegisterOp(READ, self._next_key_used())

    def next_op(self) -> RegisterOp:
        """The next op; retires a key once it reached its op limit."""
        key = self._next_key_used()
        f = self.rng.choices((READ, WRITE, CAS), weights=self.mix)[0]
        if f == CAS and key not in self._last_seen:
            f = WRITE  # nothing to compare against yet
        if f == READ:
            return RegisterOp(READ, key)
        if f == WRITE:
            value = self.fresh_value()
            return RegisterOp(WRITE, key, value)
        return RegisterOp(CAS, key, [self._last_seen[key], self.fresh_value()])
