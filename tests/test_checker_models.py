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
    assert set(MODELS) == {"register", "cas-register", "kv"}
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
