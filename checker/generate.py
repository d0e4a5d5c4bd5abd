"""Generated histories: seeded random register / cas-register histories for testing checkers.

A generated history is linearizable by construction: the generator runs a real
register (one per key) and N client processes, and gives every op three moments,
in this order: its invoke, the instant it takes effect on the register (its
linearization point), and its completion. Fates follow SPEC section 2:

- ok: took effect at its linearization point (a cas whose ``from`` does not match
  completes as ``fail`` with ``precondition-failed``: it saw the register);
- fail (``temporarily-unavailable``): did not take effect;
- info (``timeout``): took effect or not, at random; the process then continues
  under a new id (as Jepsen does);
- an op still open when the history ends has no completion (counts as info).

`mutate` then changes one thing (a value read, a cas outcome, an interval, an
info or fail turned ok...) so that the history may or may not stay linearizable;
a checker's verdict on it is compared with an oracle's, never assumed.

`generate_large` is the benchmark's history: 100,000 ops over 10 keys, 20
processes, 5% info ops, unique written values.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from history.ops import FAIL, INFO, INVOKE, OK, Op

PRECONDITION_FAILED = "precondition-failed"
UNAVAILABLE = "temporarily-unavailable"
TIMEOUT = "timeout"


@dataclass
class GenConfig:
    """What to generate. ``keys == 0`` writes a single-register history (no key field)."""

    ops: int = 10                 # operations (each an invoke and, mostly, a completion)
    processes: int = 3            # concurrent client processes
    keys: int = 0
    values: int = 4               # written values drawn from 0..values-1; 0 = unique per key
    cas: bool = True              # False: the register model (read/write only)
    read_rate: float = 0.4
    cas_rate: float = 0.3         # of the non-read ops
    info_rate: float = 0.1
    fail_rate: float = 0.1
    pending_rate: float = 0.3     # chance that each op still open at the end stays open
    cas_match_rate: float = 0.6   # chance that a cas's `from` is the register's current value
    processes_per_key: int = 0    # > 0: process p only ever uses key p // processes_per_key


@dataclass
class _OpenOp:
    """An op between its invoke and its completion, and what the generator decided."""

    f: str
    key: Any
    value: Any
    fate: str                     # OK, FAIL or INFO
    decided: bool = False         # its linearization point has passed
    result: Any = None            # the value a read saw
    cas_failed: bool = False      # a cas whose `from` did not match


@dataclass
class _Slot:
    """One client: its current process id, its key (`processes_per_key`), its op."""

    process: int
    op: _OpenOp | None = None
    key: Any = None


class _Generator:
    def __init__(self, cfg: GenConfig, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = rng
        self.ops: list[Op] = []
        self.state: dict[Any, Any] = {}
        self.counter: dict[Any, int] = {}
        self.time = 0
        self.next_process = cfg.processes

    def emit(self, type_: str, process: int, f: str, key: Any, value: Any,
             error: str | None = None) -> None:
        self.time += self.rng.randint(1, 1000)
        kw = {} if key is None else {"key": key}
        self.ops.append(Op(index=len(self.ops), time=self.time, type=type_, process=process,
                           f=f, value=value, error=error, **kw))

    def fresh_value(self, key: Any) -> Any:
        if self.cfg.values > 0:
            return self.rng.randrange(self.cfg.values)
        self.counter[key] = self.counter.get(key, 0) + 1
        return self.counter[key]

    def invoke(self, slot: _Slot) -> None:
        cfg, rng = self.cfg, self.rng
        if cfg.processes_per_key > 0:
            key = slot.key
        else:
            key = rng.randrange(cfg.keys) if cfg.keys > 0 else None
        if rng.random() < cfg.read_rate:
            f, value = "read", None
        elif cfg.cas and rng.random() < cfg.cas_rate:
            cur = self.state.get(key)
            if cur is not None and rng.random() < cfg.cas_match_rate:
                frm = cur
            elif cfg.values > 0:
                frm = rng.randrange(cfg.values + 1)  # may be a value never written
            else:
                frm = rng.randint(1, max(self.counter.get(key, 0), 1))
            f, value = "cas", [frm, self.fresh_value(key)]
        else:
            f, value = "write", self.fresh_value(key)
        r = rng.random()
        fate = INFO if r < cfg.info_rate else FAIL if r < cfg.info_rate + cfg.fail_rate else OK
        slot.op = _OpenOp(f=f, key=key, value=value, fate=fate)
        self.emit(INVOKE, slot.process, f, key, value)

    def take_effect(self, slot: _Slot) -> None:
        """The op's linearization point: apply it to the register, or decide it never will."""
        op = slot.op
        assert op is not None
        op.decided = True
        if not (op.fate == OK or (op.fate == INFO and self.rng.random() < 0.5)):
            return
        cur = self.state.get(op.key)
        if op.f == "read":
            op.result = cur
        elif op.f == "write":
            self.state[op.key] = op.value
        elif cur == op.value[0]:
            self.state[op.key] = op.value[1]
        else:
            op.cas_failed = True

    def complete(self, slot: _Slot) -> None:
        op = slot.op
        assert op is not None
        f, key = op.f, op.key
        if op.fate == OK and op.cas_failed:
            self.emit(FAIL, slot.process, f, key, op.value, error=PRECONDITION_FAILED)
        elif op.fate == OK:
            self.emit(OK, slot.process, f, key, op.result if f == "read" else op.value)
        elif op.fate == FAIL:
            self.emit(FAIL, slot.process, f, key, op.value, error=UNAVAILABLE)
        else:
            self.emit(INFO, slot.process, f, key, op.value, error=TIMEOUT)
            slot.process = self.next_process
            self.next_process += 1
        slot.op = None

    def run(self) -> list[Op]:
        cfg, rng = self.cfg, self.rng
        per = cfg.processes_per_key
        slots = [_Slot(process=p, key=p // per if per > 0 else None)
                 for p in range(cfg.processes)]
        invoked = 0
        wound_down = False
        while True:
            if invoked >= cfg.ops and not wound_down:
                # wind down: each open op stays open for good (pending_rate) or completes
                wound_down = True
                for s in slots:
                    if s.op is not None and rng.random() < cfg.pending_rate:
                        if not s.op.decided:
                            self.take_effect(s)
                        s.op = None
            if wound_down and all(s.op is None for s in slots):
                return self.ops
            slot = rng.choice(slots)
            if slot.op is None:
                if invoked < cfg.ops:
                    self.invoke(slot)
                    invoked += 1
            elif not slot.op.decided:
                self.take_effect(slot)
            else:
                self.complete(slot)


def generate(seed: int, cfg: GenConfig | None = None, **overrides: Any) -> list[Op]:
    """A linearizable history, the same for the same seed and config."""
    cfg = replace(cfg or GenConfig(), **overrides)
    if cfg.processes < 1 or cfg.ops < 0:
        raise ValueError("need at least one process and a non-negative op count")
    return _Generator(cfg, random.Random(seed)).run()


LARGE = GenConfig(ops=100_000, processes=20, keys=10, values=0, info_rate=0.05,
                  fail_rate=0.0, pending_rate=0.5)


def generate_large(seed: int = 1, **overrides: Any) -> list[Op]:
    """The scaling history: 100,000 ops over 10 keys, 20 processes, 5% info ops."""
    return generate(seed, LARGE, **overrides)


# The other shape of issue 12: each key has its own 4 processes (as a Jepsen
# independent workload gives each key its own threads).
LARGE_PER_KEY = replace(LARGE, processes=40, processes_per_key=4)


# ---- mutations ----

def _reindex(ops: list[Op]) -> list[Op]:
    """Indices 0..n-1 and times that never go back (an op may have moved)."""
    times = sorted(op.time for op in ops)
    return [replace(op, index=i, time=t) for i, (op, t) in enumerate(zip(ops, times))]


def _pairs(ops: list[Op]) -> list[tuple[int, int | None]]:
    """(invoke position, completion position or None) for every op, by process."""
    open_: dict[Any, int] = {}
    pairs: dict[int, int | None] = {}
    for i, op in enumerate(ops):
        if op.type == INVOKE:
            open_[op.process] = i
            pairs[i] = None
        elif op.process in open_:
            pairs[open_.pop(op.process)] = i
    return sorted(pairs.items())


def _values_seen(ops: list[Op]) -> list[Any]:
    seen: set[Any] = {None}
    for op in ops:
        if op.f == "write":
            seen.add(op.value)
        elif op.f == "cas":
            seen.update(op.value)
    return sorted(seen, key=repr)


MUTATIONS = ("read-value", "cas-flip", "shrink-interval", "info-to-ok", "fail-to-ok",
             "write-value")


def mutate(ops: list[Op], rng: random.Random) -> tuple[list[Op], str]:
    """One random change that may break linearizability; returns (history, description).

    The result is still well-formed (one open op per process, matching f and key).
    Returns the history unchanged, with description "none", when nothing applies.
    """
    ops = list(ops)
    pairs = _pairs(ops)
    values = _values_seen(ops)
    kinds = list(MUTATIONS)
    rng.shuffle(kinds)
    for kind in kinds:
        cands = []
        for inv, done in pairs:
            c = ops[done] if done is not None else None
            f = ops[inv].f
            if kind == "read-value" and c is not None and c.type == OK and f == "read":
                cands.append((inv, done))
            elif kind == "cas-flip" and c is not None and f == "cas" and (
                    c.type == OK or c.error == PRECONDITION_FAILED):
                cands.append((inv, done))
            elif kind == "shrink-interval" and c is not None and c.type in (OK, FAIL) \
                    and done is not None and done > inv + 1:
                cands.append((inv, done))
            elif kind == "info-to-ok" and c is not None and c.type == INFO and f != "read":
                cands.append((inv, done))
            elif kind == "fail-to-ok" and c is not None and c.type == FAIL \
                    and c.error != PRECONDITION_FAILED and f != "read":
                cands.append((inv, done))
            elif kind == "write-value" and f == "write":
                cands.append((inv, done))
        if not cands:
            continue
        inv, done = rng.choice(cands)
        c = ops[done] if done is not None else None
        if kind == "read-value":
            assert c is not None and done is not None
            others = [v for v in values if v != c.value] or [-1]
            ops[done] = replace(c, value=rng.choice(others))
        elif kind == "cas-flip":
            assert c is not None and done is not None
            if c.type == OK:
                ops[done] = replace(c, type=FAIL, error=PRECONDITION_FAILED)
            else:
                ops[done] = replace(c, type=OK, error=None)
        elif kind == "shrink-interval":
            assert c is not None and done is not None
            del ops[done]
            ops.insert(rng.randint(inv + 1, done - 1), c)
        elif kind in ("info-to-ok", "fail-to-ok"):
            assert c is not None and done is not None
            ops[done] = replace(c, type=OK, error=None)
        elif kind == "write-value":
            others = [v for v in values if v is not None and v != ops[inv].value] or [-1]
            v = rng.choice(others)
            ops[inv] = replace(ops[inv], value=v)
            if c is not None and done is not None:
                ops[done] = replace(c, value=v)
        return _reindex(ops), f"{kind} at index {inv}"
    return _reindex(ops), "none"


def write_jsonl(ops: list[Op], path: Path | str) -> None:
    """Write a history.jsonl (SPEC section 2)."""
    with open(path, "w", encoding="utf-8") as f:
        for op in ops:
            f.write(op.to_json() + "\n")


def main(argv: list[str] | None = None) -> int:
    """python -m checker.generate [options] OUT.jsonl: write one generated history."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m checker.generate", description=main.__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--large", action="store_true",
                    help="the scaling history: 100,000 ops, 10 keys, 20 processes, 5%% info")
    ap.add_argument("--ops", type=int)
    ap.add_argument("--processes", type=int)
    ap.add_argument("--processes-per-key", type=int, metavar="N",
                    help="process p only uses key p // N (with --keys K: K*N processes)")
    ap.add_argument("--keys", type=int)
    ap.add_argument("--values", type=int, help="value range; 0 = unique values")
    ap.add_argument("--info-rate", type=float)
    ap.add_argument("--fail-rate", type=float)
    ap.add_argument("--no-cas", action="store_true", help="read/write only (the register model)")
    ap.add_argument("--mutate", type=int, default=0, metavar="N",
                    help="apply N random mutations (the result may not be linearizable)")
    args = ap.parse_args(argv)
    overrides = {k: v for k, v in (("ops", args.ops), ("processes", args.processes),
                                   ("keys", args.keys), ("values", args.values),
                                   ("info_rate", args.info_rate),
                                   ("fail_rate", args.fail_rate),
                                   ("processes_per_key", args.processes_per_key))
                 if v is not None}
    if args.processes_per_key and args.processes is None:
        overrides["processes"] = args.processes_per_key * (
            args.keys if args.keys is not None else (10 if args.large else 1))
    if args.no_cas:
        overrides["cas"] = False
    ops = generate(args.seed, LARGE if args.large else GenConfig(), **overrides)
    rng = random.Random(args.seed)
    for _ in range(args.mutate):
        ops, what = mutate(ops, rng)
        print(f"mutation: {what}", file=sys.stderr)
    write_jsonl(ops, args.out)
    print(f"{args.out}: {len(ops)} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
