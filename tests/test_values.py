"""Register values (node.core.values): strict JSON, bounded depth, JSON equality, and
the register machine's refusal of a committed command that breaks them."""

from __future__ import annotations

import pytest

from node.core.messages import CommitEntry
from node.core.register import RegisterMachine, validate_command
from node.core.values import (MAX_DEPTH, NotStrictJSON, loads_strict, same_value,
                              too_deep, value_problem)
from node.shell.server import Malformed, parse_request


def nested(levels: int):
    v: object = 0
    for _ in range(levels):
        v = [v]
    return v


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "[1,",
                                  "[" * 5000 + "]" * 5000, b"\xff"])
def test_loads_strict_refuses_what_is_not_strict_json(text):
    with pytest.raises(NotStrictJSON):
        loads_strict(text)


def test_loads_strict_keeps_json():
    assert loads_strict('{"a": [1, 2.5, true, null, "x"]}') == {"a": [1, 2.5, True, None, "x"]}


def test_depth_bound():
    assert not too_deep(nested(MAX_DEPTH)) and too_deep(nested(MAX_DEPTH + 1))
    assert not too_deep(7) and not too_deep({"a": {"b": []}}, limit=3)
    assert too_deep({"a": {"b": []}}, limit=2) and not too_deep({"a": 1, "b": [2]}, limit=2)
    assert "nested more than 32" in value_problem(nested(100_000), "value")
    assert "NaN" in value_problem({"x": [float("nan")]}, "to")
    assert value_problem([1, {"a": "b"}], "value") is None


@pytest.mark.parametrize("a,b,equal", [
    (True, 1, False), (1, True, False), (False, 0, False), ([True], [1], False),
    ({"a": True}, {"a": 1}, False), (1, 1.0, True), ([1, [2]], [1, [2]], True),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True), ([1], [1, 2], False), ({"a": 1}, [1], False),
    (None, None, True), ("1", 1, False), (nested(50_000), nested(50_000), True),
])
def test_same_value_is_json_equality(a, b, equal):
    assert same_value(a, b) is equal


def test_cas_from_one_does_not_match_a_stored_true():
    m = RegisterMachine()
    assert m.apply(CommitEntry({"op": "write", "key": "k", "value": True}, 1, 1)) == {"ok": True}
    assert m.apply(CommitEntry({"op": "cas", "key": "k", "from": 1, "to": 2}, 2, 1))["code"] == 22
    assert m.apply(CommitEntry({"op": "cas", "key": "k", "from": True, "to": 2}, 3, 1)) == {"ok": True}


def test_a_committed_command_too_deep_is_applied_as_nothing_with_an_error():
    """An entry no state machine may apply (from a node that did not check it) is the
    same malformed-request result on every node, and the machine goes on."""
    m = RegisterMachine()
    r = m.apply(CommitEntry({"op": "write", "key": "k", "value": nested(974)}, 1, 1))
    assert r["code"] == 12 and r["definite"] is True
    assert m.last_applied == 1 and m.read("k") == {"ok": True, "value": None}
    assert m.apply(CommitEntry({"op": "write", "key": "k", "value": 1}, 2, 1)) == {"ok": True}


@pytest.mark.parametrize("body", [b'{"op":"write","key":"a","value":NaN}',
                                  b'{"op":"write","key":"a","value":' + b"[" * 974 + b"]" * 974 + b"}",
                                  b'{"op":"cas","key":"a","from":Infinity,"to":1}'])
def test_parse_request_refuses_hostile_values(body):
    with pytest.raises(Malformed):
        parse_request(body)


def test_validate_command_names_the_field():
    assert "'to'" in validate_command({"op": "cas", "key": 1, "from": 1, "to": nested(40)})


@pytest.mark.parametrize("field", ["term", "last_log_index", "last_log_term"])
def test_message_terms_and_indexes_are_bounded_below_2_to_53(field):
    """A frame with a term or index beyond MAX_MESSAGE_INT (2^48) is malformed: a
    forged term of 2^63-1 would otherwise leave the cluster without a leader."""
    from node.core.messages import MAX_MESSAGE_INT, message_from_dict
    ok = {"type": "RequestVote", "term": 3, "sender": "n2", "last_log_index": 1,
          "last_log_term": 1}
    assert message_from_dict(dict(ok, **{field: MAX_MESSAGE_INT})).term >= 3
    for big in (MAX_MESSAGE_INT + 1, 2 ** 53, 2 ** 63 - 1):
        with pytest.raises(ValueError, match="out of range"):
            message_from_dict(dict(ok, **{field: big}))
