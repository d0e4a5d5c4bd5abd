"""Differential tests: our checker against Porcupine (the Go oracle) and brute force.

Thousands of small generated histories, linearizable ones and mutated ones, are checked
by our checker and by Porcupine (checker/porcupine_oracle, one process in batch mode);
the verdicts must be equal. Tiny histories are also checked by a brute force written
here, over every order of the ops, under both treatments of uncertain ops:

- optional (Knossos, our checker): an info op is linearized somewhere after its
  invoke, or not at all;
- return at infinity (Porcupine): every op is linearized; an info op's output is
  unknown, so any state accepts it (a write still writes, a matching cas still swaps).

For registers the two give the same verdict (a pending op can always go last, where it
constrains nothing; and an info cas that does not match changes nothing, like one left
out). `test_uncertain_semantics_agree` checks that claim on every tiny history.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from typing import Any

import pytest

from checker.generate import (PRECONDITION_FAILED, GenConfig, generate, generate_large, mutate,
                              write_jsonl)
from history.ops import FAIL, INFO, INVOKE, OK, Op
from tests.support import require

INF = float("inf")


# ---- brute force, over all orders ----

@dataclass
class _Rec:
    call: int
    ret: float
    f: str
    key: Any
    value: Any
    outcome: str  # "ok", "cas-fail" (precondition-failed) or "unknown"


def _records(ops: list[Op]) -> list[_Rec]:
    open_: dict[Any, tuple[int, Op]] = {}
    recs = []
    for pos, op in enumerate(ops):
        if op.process == "nemesis":
            continue
        key = op.key if op.has_key else None
        if op.type == INVOKE:
            open_[op.process] = (pos, op)
            continue
        call, inv = open_.pop(op.process)
        if op.type == FAIL:
            if op.f == "cas" and op.error == PRECONDITION_FAILED:
                recs.append(_Rec(call, pos, op.f, key, inv.value, "cas-fail"))
        elif op.type == INFO:
            recs.append(_Rec(call, INF, op.f, key, inv.value, "unknown"))
        else:
            recs.append(_Rec(call, pos, op.f, key, op.value if op.f == "read" else inv.value, "ok"))
    for call, inv in open_.values():
        recs.append(_Rec(call, INF, inv.f, inv.key if inv.has_key else None, inv.value, "unknown"))
    return recs


def _step(state: dict, r: _Rec, knossos: bool) -> dict | None:
    """The model: the next state, or None when the op cannot happen here."""
    cur = state.get(r.key)
    if r.f == "read":
        return state if r.outcome == "unknown" or r.value == cur else None
    if r.f == "write":
        return {**state, r.key: r.value}
    frm, to = r.value
    if r.outcome == "ok" or (r.outcome == "unknown" and knossos):
        return {**state, r.key: to} if cur == frm else None
    if r.outcome == "cas-fail":
        return state if cur != frm else None
    return {**state, r.key: to} if cur == frm else state  # Porcupine: unknown cas


def brute_force(ops: list[Op], optional_info: bool = True) -> bool:
    """Is there an order of the ops that respects real time and the register model?"""
    recs = _records(ops)

    def search(state: dict, remaining: list[_Rec]) -> bool:
        if all(r.outcome == "unknown" for r in remaining) and (optional_info or not remaining):
            return True
        for i, r in enumerate(remaining):
            if any(o.ret < r.call for o in remaining if o is not r):
                continue  # some op finished before this one began: it goes first
            nxt = _step(state, r, knossos=optional_info)
            if nxt is not None and search(nxt, remaining[:i] + remaining[i + 1:]):
                return True
        return False

    return search({}, recs)


# ---- corpora of generated histories ----

def _tiny(seed: int) -> list[Op]:
    rng = random.Random(seed)
    cfg = GenConfig(ops=rng.randint(1, 6), processes=rng.randint(1, 3), keys=rng.choice([0, 0, 1, 2]),
                    values=rng.randint(2, 3), cas=rng.random() < 0.8, info_rate=0.25,
                    fail_rate=0.15)
    ops = generate(seed, cfg)
    if rng.random() < 0.6:
        ops, _ = mutate(ops, rng)
    return ops


def _small(seed: int, cas: bool = True) -> list[Op]:
    rng = random.Random(seed)
    cfg = GenConfig(ops=rng.randint(4, 24), processes=rng.randint(2, 5), keys=rng.choice([0, 1, 2, 3]),
                    values=rng.choice([2, 3, 5, 0]), cas=cas, info_rate=rng.choice([0.0, 0.1, 0.25]),
                    fail_rate=0.1)
    ops = generate(seed, cfg)
    if rng.random() < 0.6:
        for _ in range(rng.randint(1, 2)):
            ops, _ = mutate(ops, rng)
    return ops


def _medium(seed: int) -> list[Op]:
    # more concurrency and few values: many orders to try. Info ops stay few, since
    # Porcupine's return-at-infinity search grows exponentially with them.
    rng = random.Random(seed)
    cfg = GenConfig(ops=rng.randint(20, 60), processes=rng.randint(3, 8), keys=rng.choice([0, 1, 2]),
                    values=rng.choice([2, 3, 0]), info_rate=rng.choice([0.0, 0.05, 0.1]),
                    fail_rate=rng.choice([0.0, 0.1]), pending_rate=0.5)
    ops = generate(seed, cfg)
    if rng.random() < 0.6:
        for _ in range(rng.randint(1, 3)):
            ops, _ = mutate(ops, rng)
    return ops


TINY = [h for h in (_tiny(s) for s in range(600)) if h]
SMALL = [h for h in (_small(10_000 + s) for s in range(2000)) if h]
SMALL_REGISTER = [h for h in (_small(50_000 + s, cas=False) for s in range(500)) if h]
MEDIUM = [_medium(200_000 + s) for s in range(400)]


def _expected(ops: list[Op], reference: bool | str) -> bool | str:
    """What our checker must say, given the reference verdict (Porcupine's or brute
    force's): the same, also on a history with no completed op (true, with a "nothing
    observed" note: the vacuity rule belongs to test runs, not to the checker)."""
    return reference


def _ours(ops: list[Op], model: str = "cas-register") -> bool | str:
    import checker
    check = getattr(checker, "check", None)
    require(check is not None, "checker.check is not available yet")
    return check(ops, model=model, time_limit=30, shrink=False).valid


@pytest.fixture(scope="session")
def oracle():
    from checker import porcupine_oracle
    require(shutil.which("go") is not None, "'go' not found on PATH (Go builds the Porcupine oracle)")
    try:
        porcupine_oracle.build()
    except porcupine_oracle.OracleUnavailable as e:  # e.g. offline with an empty module cache
        require(False, str(e))
    return porcupine_oracle


def _show(ops: list[Op]) -> str:
    return "\n".join(op.to_json() for op in ops)


# ---- the tests ----

def test_generated_histories_are_linearizable():
    for seed in range(300):
        ops = generate(seed, ops=6, processes=3, keys=seed % 3, values=3, info_rate=0.2)
        assert brute_force(ops), _show(ops)


def test_generated_histories_are_valid_history_files(tmp_path):
    from history.formats import read_history
    for seed in range(50):
        ops = _small(seed)
        write_jsonl(ops, tmp_path / "h.jsonl")
        assert [o.to_dict() for o in read_history(tmp_path / "h.jsonl", format="jsonl")] == \
            [o.to_dict() for o in ops]
        assert all(a.time <= b.time for a, b in zip(ops, ops[1:]))  # a monotonic clock


def test_generator_is_seeded():
    assert [o.to_dict() for o in _small(7)] == [o.to_dict() for o in _small(7)]
    assert [o.to_dict() for o in _small(7)] != [o.to_dict() for o in _small(8)]


def test_large_history_shape():
    ops = generate_large(1)
    invokes = [o for o in ops if o.type == INVOKE]
    assert len(invokes) == 100_000
    assert {o.key for o in ops} == set(range(10))
    infos = sum(o.type == INFO for o in ops) + len(invokes) - sum(o.type != INVOKE for o in ops)
    assert 0.04 < infos / len(invokes) < 0.06
    open_: set = set()
    most = 0
    for o in ops:
        (open_.add if o.type == INVOKE else open_.discard)(o.process)
        most = max(most, len(open_))
    assert most == 20  # 20 client processes at once, never more


def test_oracle_rejects_a_malformed_history(oracle, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index":0,"time":0,"type":"invoke","process":0,"f":"write","value":1}\n'
                   '{"index":1,"time":1,"type":"ok","process":1,"f":"write","value":1}\n')
    with pytest.raises(oracle.OracleUnavailable, match=r"bad.jsonl:2: type: ok without an invoke"):
        oracle.check_files([bad])


def test_mutations_break_some_histories():
    broken = sum(not brute_force(h) for h in TINY)
    assert broken > len(TINY) // 10, broken
    assert broken < len(TINY), broken


def test_uncertain_semantics_agree():
    for ops in TINY:
        assert brute_force(ops, optional_info=True) == brute_force(ops, optional_info=False), _show(ops)


def test_oracle_matches_brute_force(oracle):
    verdicts = oracle.check_histories(TINY)
    for ops, v in zip(TINY, verdicts):
        assert v.valid == brute_force(ops), f"oracle said {v.valid} on\n{_show(ops)}"


def test_checker_matches_brute_force():
    for ops in TINY:
        assert _ours(ops) == _expected(ops, brute_force(ops)), _show(ops)


def test_checker_matches_oracle(oracle):
    verdicts = oracle.check_histories(SMALL)
    valid = sum(v.valid is True for v in verdicts)
    assert 0 < valid < len(SMALL)  # both kinds are present
    for ops, v in zip(SMALL, verdicts):
        assert v.valid in (True, False)
        assert _ours(ops) == _expected(ops, v.valid), f"Porcupine said {v.valid} on\n{_show(ops)}"


def test_checker_matches_oracle_register_model(oracle):
    verdicts = oracle.check_histories(SMALL_REGISTER, model="register")
    for ops, v in zip(SMALL_REGISTER, verdicts):
        assert _ours(ops, model="register") == _expected(ops, v.valid), f"Porcupine said {v.valid} on\n{_show(ops)}"


def test_checker_matches_oracle_on_larger_histories(oracle):
    verdicts = oracle.check_histories(MEDIUM, timeout_s=5)
    decided = [(ops, v) for ops, v in zip(MEDIUM, verdicts) if v.valid != "unknown"]
    assert len(decided) >= 0.95 * len(MEDIUM)
    assert {v.valid for _, v in decided} == {True, False}
    for ops, v in decided:
        assert _ours(ops) == _expected(ops, v.valid), f"Porcupine said {v.valid} on\n{_show(ops)}"


def _h(*rows: tuple) -> list[Op]:
    """A history from rows (type, process, f, value[, error])."""
    ops = []
    for i, row in enumerate(rows):
        type_, process, f, value = row[:4]
        ops.append(Op(index=i, time=i, type=type_, process=process, f=f, value=value,
                      error=row[4] if len(row) > 4 else None))
    return ops


CRAFTED = {
    # a pending cas that must have happened for the read to see 2
    "pending-cas-needed": (_h((INVOKE, 0, "write", 1), (OK, 0, "write", 1),
                              (INVOKE, 1, "cas", [1, 2]),
                              (INVOKE, 2, "read", None), (OK, 2, "read", 2)), True),
    # a pending cas whose from never matched cannot explain the read
    "pending-cas-impossible": (_h((INVOKE, 0, "write", 1), (OK, 0, "write", 1),
                                  (INVOKE, 1, "cas", [3, 2]),
                                  (INVOKE, 2, "read", None), (OK, 2, "read", 2)), False),
    # an info cas that happened, then its effect was overwritten
    "info-cas-then-overwrite": (_h((INVOKE, 1, "cas", [None, 5]), (INFO, 1, "cas", [None, 5], "timeout"),
                                   (INVOKE, 0, "write", 1), (OK, 0, "write", 1),
                                   (INVOKE, 2, "read", None), (OK, 2, "read", 1)), True),
    # precondition-failed is an observation: the register did not hold 1
    "cas-fail-observation": (_h((INVOKE, 0, "write", 1), (OK, 0, "write", 1),
                                (INVOKE, 1, "cas", [1, 2]), (FAIL, 1, "cas", [1, 2], PRECONDITION_FAILED)),
                             False),
    # other fails are dropped
    "unavailable-dropped": (_h((INVOKE, 0, "write", 1), (OK, 0, "write", 1),
                               (INVOKE, 1, "cas", [1, 2]), (FAIL, 1, "cas", [1, 2], "temporarily-unavailable"),
                               (INVOKE, 1, "read", None), (OK, 1, "read", 1)), True),
    # a stale read after a completed write
    "stale-read": (_h((INVOKE, 0, "write", 1), (OK, 0, "write", 1),
                      (INVOKE, 1, "read", None), (OK, 1, "read", None)), False),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_histories(name, oracle):
    ops, expected = CRAFTED[name]
    assert brute_force(ops) is expected
    assert oracle.check_histories([ops])[0].valid is expected
    assert _ours(ops) is expected


def test_values_compare_as_json(oracle):
    """1 and 1.0 are one JSON number; true is not a number (Porcupine's view)."""
    def read_after_write(w, r):
        return _h((INVOKE, 0, "write", w), (OK, 0, "write", w), (INVOKE, 1, "read", None), (OK, 1, "read", r))
    same, bool_int = read_after_write(1, 1.0), read_after_write(True, 1)
    assert [v.valid for v in oracle.check_histories([same, bool_int])] == [True, False]
    assert _ours(same) is True


def test_checker_tells_json_types_apart():
    for w, r in ((True, 1), (False, 0), ({"a": 1}, [["a", 1]])):
        ops = _h((INVOKE, 0, "write", w), (OK, 0, "write", w), (INVOKE, 1, "read", None), (OK, 1, "read", r))
        assert _ours(ops) is False, (w, r)
