"""Models: init, step (new state or Illegal with a reason), describe, hashable states."""

from __future__ import annotations

import pytest

from history.errors import BadInput
from history.ops import Op
from checker.models import (FAIL, INFO, OK, Illegal, MODELS, Operation, freeze,
                            get_model, thaw)


def op(f, inp=None, out=None, status=OK):
    inv = Op(0, 0, "invoke", 0, f, inp)
    return Operation(0, 0, f, None, inp, out, status, 0, 1, inv, None)


def test_registry_and_unknown_model():
    assert set(MODELS) == {"register", "cas-register", "kv", "mutex", "multi-register"}
    assert get_model("register").name == "register"
    with pytest.raises(BadInput) as e:
        get_model("queue")
    assert e.value.field == "--model" and "cas-register" in str(e.value)


def test_register_read_write():
    m = get_model("register")
    s = m.init()
    assert s is None
    assert m.step(s, op("read", out=None)) is None
    s = m.step(s, op("write", 3))
    assert s == 3
    assert m.step(s, op("read", out=3)) == 3
    bad = m.step(s, op("read", out=4))
    assert isinstance(bad, Illegal)
    assert bad.reason == "read 4, but the register holds 3"
    assert m.describe(op("write", 3)) == "write(3)"
    assert m.describe(op("read", out=3)) == "read() -> 3"


def test_register_rejects_cas_op():
    m = get_model("register")
    with pytest.raises(BadInput) as e:
        m.check_op(Op(4, 0, "invoke", 0, "cas", [1, 2]))
    assert "'cas' is not an operation of the register model" in str(e.value)
    assert "line 5" in str(e.value)


def test_cas_register_ok_fail_info():
    m = get_model("cas-register")
    assert m.step(1, op("cas", [1, 2])) == 2
    bad = m.step(3, op("cas", [1, 2]))
    assert isinstance(bad, Illegal) and "holds 3" in bad.reason
    # precondition-failed: an observation that the register did not hold `from`
    assert m.step(3, op("cas", [1, 2], status=FAIL)) == 3
    assert isinstance(m.step(1, op("cas", [1, 2], status=FAIL)), Illegal)
    # info cas: takes effect only when it can
    assert m.step(1, op("cas", [1, 2], status=INFO)) == 2
    assert isinstance(m.step(5, op("cas", [1, 2], status=INFO)), Illegal)
    assert m.describe(op("cas", [1, 2], status=FAIL)) == "cas(1, 2) -> fail"
    with pytest.raises(BadInput):
        m.check_op(Op(0, 0, "invoke", 0, "cas", 7))
    with pytest.raises(BadInput):
        m.check_op(Op(0, 0, "invoke", 0, "append", 7))


def test_states_are_hashable_and_values_frozen():
    m = get_model("cas-register")
    s = m.step(None, op("write", [1, [2, 3]]))
    assert s == (1, (2, 3))
    hash(s)
    assert m.step(s, op("read", out=[1, [2, 3]])) == s
    # JSON types stay apart: true is not 1, an object is not a list of pairs
    assert freeze(True) != 1 and freeze(False) != 0 and freeze(True) == freeze(True)
    assert freeze({"b": [1], "a": 2}) != freeze([["a", 2], ["b", [1]]])
    assert freeze({"b": [1], "a": 2}) == freeze({"a": 2, "b": [1]})
    assert thaw(freeze({"a": [True, None]})) == {"a": [True, None]}
    assert isinstance(m.step(m.step(None, op("write", True)), op("read", out=1)), Illegal)


def test_kv_model_get_put_append():
    m = get_model("kv")
    s = m.init()
    assert s == ""
    assert m.step(s, op("get", out=None)) == ""
    s = m.step(s, op("append", "x 1 y"))
    s = m.step(s, op("append", "x 2 y"))
    assert s == "x 1 yx 2 y"
    assert m.step(s, op("get", out="x 1 yx 2 y")) == s
    assert isinstance(m.step(s, op("get", out="x 1 y")), Illegal)
    assert m.step(s, op("put", "z")) == "z"
    assert m.describe(op("append", "a")) == 'append("a")'


def test_step_never_mutates_state():
    m = get_model("kv")
    s = "abc"
    m.step(s, op("append", "d"))
    assert s == "abc"


def test_info_unlock_preconditions_match_step():
    # The search relies on precondition() agreeing with step() for register models.
    m = get_model("cas-register")
    cases = [op("read", out=2), op("cas", [2, 3]), op("cas", [2, 3], status=FAIL),
             op("cas", [2, 3], status=INFO), op("write", 9)]
    for o in cases:
        kind, v = m.precondition(o)
        for s in (None, 1, 2, 3):
            legal = not isinstance(m.step(s, o), Illegal)
            expected = {"eq": s == v, "ne": s != v, "any": True}[kind]
            assert legal == expected, (o, s)


def test_mutex_model_follows_knossos():
    m = get_model("mutex")
    assert m.init() == "free"
    assert m.step("free", op("acquire")) == "locked"
    assert m.step("locked", op("release")) == "free"
    bad = m.step("locked", op("acquire"))
    assert isinstance(bad, Illegal) and bad.reason == "acquire, but the lock is already held"
    bad = m.step("free", op("release"))
    assert isinstance(bad, Illegal) and bad.reason == "release, but the lock is not held"
    assert m.describe(op("acquire")) == "acquire()"
    assert m.describe(op("release", status=INFO)) == "release() -> ?"
    with pytest.raises(BadInput):
        m.check_op(Op(0, 0, "invoke", 0, "read", None))
    # the search may rely on precondition() for info ops (info_unlocks)
    for o in (op("acquire"), op("release"), op("acquire", status=INFO)):
        kind, v = m.precondition(o)
        for s in ("free", "locked"):
            assert (not isinstance(m.step(s, o), Illegal)) == (s == v), (o, s)


def test_mutex_histories():
    from checker import check

    def h(*events):
        return [Op(i, i, t, p, f, None) for i, (t, p, f) in enumerate(events)]
    two_holders = h(("invoke", 0, "acquire"), ("ok", 0, "acquire"),
                    ("invoke", 1, "acquire"), ("ok", 1, "acquire"))
    r = check(two_holders, "mutex")
    assert r.valid is False
    assert r.failures[0]["reason"] == ("acquire, but the lock is already held, set by "
                                       "op 1 (acquire())")
    # an uncertain release in between may have freed it; a failed one did not
    maybe = h(("invoke", 0, "acquire"), ("ok", 0, "acquire"), ("invoke", 0, "release"),
              ("info", 0, "release"), ("invoke", 1, "acquire"), ("ok", 1, "acquire"))
    assert check(maybe, "mutex").valid is True
    failed = h(("invoke", 0, "acquire"), ("ok", 0, "acquire"), ("invoke", 0, "release"),
               ("fail", 0, "release"), ("invoke", 1, "acquire"), ("ok", 1, "acquire"))
    assert check(failed, "mutex").valid is False
    assert check(two_holders[:2], "mutex").valid is True
    locked = get_model("mutex", "locked")
    assert check(two_holders[:2], locked).valid is False


def txn(inp, out=None, status=OK):
    return op("txn", inp, out, status)


def test_multi_register_model_follows_knossos():
    m = get_model("multi-register")
    s = m.init()
    assert dict(s) == {}
    s = m.step(s, txn(None, [["write", "x", 1], ["write", 2, [3]], ["read", "x", 1]]))
    assert thaw(s) == {"x": 1, 2: [3]}
    hash(s)
    # reads see the writes before them in the same txn; a read of null is always legal
    assert m.step(s, txn(None, [["read", "x", None], ["read", "y", None]])) == s
    bad = m.step(s, txn(None, [["write", "x", 5], ["read", "x", 1]]))
    assert isinstance(bad, Illegal) and bad.reason == 'read 1 from "x", but it holds 5'
    assert isinstance(m.step(s, txn(None, [["read", "y", 0]])), Illegal)
    # an info txn runs as invoked (its reads are null); an ok one as completed
    info = txn([["write", "y", 7], ["read", "x", None]], None, INFO)
    assert thaw(m.step(s, info)) == {"x": 1, 2: [3], "y": 7}
    assert m.describe(txn(None, [["read", "x", 1], ["write", "y", 2]])) == \
        'txn[read("x") -> 1, write("y", 2)]'
    assert m.describe(info) == 'txn[write("y", 7), read("x") -> ?]'
    assert dict(get_model("multi-register", {"x": 0}).init()) == {"x": 0}


@pytest.mark.parametrize("value", [7, None, [["read", "x"]], [["cas", "x", 1]],
                                   [["read", ["x"], 1]], [[1, 2, 3]]])
def test_multi_register_rejects_malformed_txns(value):
    m = get_model("multi-register")
    with pytest.raises(BadInput) as e:
        m.check_op(Op(3, 0, "ok", 0, "txn", value))
    assert e.value.field == "value" and "line 4" in str(e.value)
    m.check_op(Op(3, 0, "info", 0, "txn", value))     # an info completion's value: unused


@pytest.mark.parametrize("name, initial", [("kv", 3), ("mutex", "open"),
                                           ("multi-register", [1])])
def test_initial_states_a_model_cannot_take(name, initial):
    with pytest.raises(BadInput) as e:
        get_model(name, initial)
    assert e.value.field == "--initial" and name in str(e.value)
    assert get_model("cas-register", {"any": ["json"]}).init() == freeze({"any": ["json"]})


def _random_history(rng, model: str) -> list[Op]:
    """A few overlapping ops, each on its own process: ok, info (or never completed) or
    fail, with random real-time intervals."""
    events = []
    for p in range(rng.randint(1, 6)):
        call = rng.random()
        ret = call + rng.random() * 0.6
        status = rng.choice(["ok", "ok", "ok", "info", "fail", None])
        if model == "mutex":
            f, inv, out = rng.choice(["acquire", "release"]), None, None
        else:
            f = "txn"
            micro = [[rng.choice(["read", "write"]), rng.choice("xy"), rng.randint(0, 1)]
                     for _ in range(rng.randint(1, 2))]
            inv = [[m[0], m[1], None if m[0] == "read" else m[2]] for m in micro]
            out = [[m[0], m[1], rng.choice([None, m[2]]) if m[0] == "read" else m[2]]
                   for m in micro]
        events.append((call, "invoke", p, f, inv))
        if status:
            events.append((ret, status, p, f, out if status == "ok" else inv))
    events.sort(key=lambda e: e[0])
    return [Op(i, i, t, p, f, v) for i, (_, t, p, f, v) in enumerate(events)]


def _brute_force(ops: list[Op], m) -> bool:
    """Every order that respects real time; info ops optional, fail ops dropped."""
    from checker.partition import operations
    parts, _ = operations(ops, m)
    todo = parts.get(None, [])
    inf = float("inf")

    def search(state, remaining) -> bool:
        if all(o.status == INFO for o in remaining):
            return True
        for i, o in enumerate(remaining):
            if any((x.ret if x.ret is not None else inf) < o.call for x in remaining):
                continue
            nxt = m.step(state, o)
            if not isinstance(nxt, Illegal) and search(nxt, remaining[:i] + remaining[i + 1:]):
                return True
        return False
    return search(m.init(), todo)


@pytest.mark.parametrize("model", ["mutex", "multi-register"])
def test_knossos_models_agree_with_a_brute_force(model):
    import random
    from checker import check
    rng = random.Random(12)
    verdicts = set()
    for _ in range(400):
        ops = _random_history(rng, model)
        m = get_model(model)
        expected = _brute_force(ops, m)
        verdicts.add(expected)
        assert check(ops, m, shrink=False).valid is expected, [o.to_dict() for o in ops]
    assert verdicts == {True, False}
