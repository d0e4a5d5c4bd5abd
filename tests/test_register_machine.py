"""The register state machine (node/core/register.py): SPEC section 4 results and the
replicated exactly-once table."""

from __future__ import annotations

import pytest

from node.core.messages import CommitEntry
from node.core.register import RegisterMachine


class Feed:
    def __init__(self):
        self.sm = RegisterMachine()
        self.index = 0

    def __call__(self, cmd, term=1):
        self.index += 1
        return self.sm.apply(CommitEntry(cmd, self.index, term))


def test_read_write_cas():
    f = Feed()
    assert f({"op": "read", "key": "x"}) == {"ok": True, "value": None}
    assert f({"op": "cas", "key": "x", "from": 1, "to": 2}) == {
        "ok": False, "code": 20, "error": "key-does-not-exist", "definite": True}
    assert f({"op": "write", "key": "x", "value": 1}) == {"ok": True}
    assert f({"op": "cas", "key": "x", "from": 5, "to": 2}) == {
        "ok": False, "code": 22, "error": "precondition-failed", "definite": True}
    assert f({"op": "cas", "key": "x", "from": 1, "to": 2}) == {"ok": True}
    assert f({"op": "read", "key": "x"}) == {"ok": True, "value": 2}
    assert f({"op": "read", "key": 7}) == {"ok": True, "value": None}  # keys by key
    assert f.sm.read("x") == {"ok": True, "value": 2}


def test_cas_compares_json_values_not_python_truthiness():
    f = Feed()
    f({"op": "write", "key": "x", "value": 1})
    assert f({"op": "cas", "key": "x", "from": True, "to": 2})["code"] == 22
    f({"op": "write", "key": "y", "value": {"a": [1, None]}})
    assert f({"op": "cas", "key": "y", "from": {"a": [1, None]}, "to": 0}) == {"ok": True}


def test_noop_is_ignored_but_counts_as_applied():
    f = Feed()
    assert f(None) is None
    assert f({"op": "write", "key": "x", "value": 1}) == {"ok": True}
    assert f.sm.last_applied == 2


def test_retry_returns_the_original_result_and_does_not_apply_twice():
    f = Feed()
    f({"op": "write", "key": "x", "value": 1})
    first = f({"op": "cas", "key": "x", "from": 1, "to": 2, "client": "c1", "seq": 1})
    assert first == {"ok": True}
    f({"op": "write", "key": "x", "value": 1, "client": "c2", "seq": 1})
    # the same cas again (a client retry that was also committed): not applied again
    again = f({"op": "cas", "key": "x", "from": 1, "to": 2, "client": "c1", "seq": 1})
    assert again == first and f.sm.values["x"] == 1
    # a failed cas's result is stored too
    f({"op": "write", "key": "y", "value": 0})
    fail = f({"op": "cas", "key": "y", "from": 9, "to": 3, "client": "c3", "seq": 4})
    f({"op": "write", "key": "y", "value": 9})
    assert f({"op": "cas", "key": "y", "from": 9, "to": 3, "client": "c3", "seq": 4}) == fail
    assert f.sm.values["y"] == 9
    # a write retried after another client's write does not clobber it
    f({"op": "write", "key": "z", "value": "a", "client": "c1", "seq": 2})
    f({"op": "write", "key": "z", "value": "b", "client": "c2", "seq": 2})
    f({"op": "write", "key": "z", "value": "a", "client": "c1", "seq": 2})
    assert f.sm.values["z"] == "b"


def test_overtaken_seq_is_not_applied_and_is_indefinite():
    f = Feed()
    f({"op": "write", "key": "x", "value": 2, "client": "c", "seq": 2})
    r = f({"op": "write", "key": "x", "value": 1, "client": "c", "seq": 1})
    assert r["ok"] is False and r["definite"] is False
    assert f.sm.values["x"] == 2


@pytest.mark.parametrize("cmd", [
    "write", 3, [], {}, {"op": "delete", "key": "x"}, {"op": "read"},
    {"op": "read", "key": [1]}, {"op": "read", "key": None}, {"op": "write", "key": "x"},
    {"op": "cas", "key": "x", "from": 1}, {"op": "write", "key": "x", "value": 1, "seq": "1",
                                           "client": "c"},
])
def test_malformed_commands_get_code_12_without_crashing(cmd):
    f = Feed()
    r = f(cmd)
    assert r["ok"] is False and r["code"] == 12 and r["definite"] is True
    assert f.sm.values == {} and f.sm.last_applied == 1


def test_entries_must_come_in_order_exactly_once():
    sm = RegisterMachine()
    sm.apply(CommitEntry(None, 1, 1))
    with pytest.raises(ValueError):
        sm.apply(CommitEntry(None, 1, 1))
    with pytest.raises(ValueError):
        sm.apply(CommitEntry(None, 3, 1))


def test_replicas_fed_the_same_log_agree():
    cmds = [{"op": "write", "key": k % 3, "value": k, "client": f"c{k % 4}", "seq": k // 4}
            for k in range(40)]
    cmds += [{"op": "cas", "key": 1, "from": 37, "to": 99, "client": "c1", "seq": 10}] * 2
    a, b = Feed(), Feed()
    ra = [a(c) for c in cmds]
    rb = [b(c) for c in cmds]
    assert ra == rb and a.sm.values == b.sm.values and a.sm.sessions == b.sm.sessions
    assert a.sm.values[1] == 99
