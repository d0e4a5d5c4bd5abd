"""Explanations and shrinking: the failing op, its line, concurrent ops, prefix with
states, the one-line reason, and a shrunk sub-history that is still invalid."""

from __future__ import annotations

import json

from checker import check
from history.ops import Op


def hist(*events):
    ops = []
    for i, ev in enumerate(events):
        typ, proc, f, value = ev[:4]
        kw = {"key": ev[4]} if len(ev) > 4 and ev[4] is not None else {}
        ops.append(Op(i, i, typ, proc, f, value, **kw))
    return ops


def stale_read_history():
    # 0-1 write 3; 2-3 write 4; then, long after, reads; op 57-style: read 3 stale.
    ev = [("invoke", 0, "write", 3), ("ok", 0, "write", 3),
          ("invoke", 1, "write", 4), ("ok", 1, "write", 4)]
    # noise: unrelated concurrent reads of 4 that are fine
    ev += [("invoke", 2, "read", None), ("invoke", 3, "read", None),
           ("ok", 2, "read", 4), ("ok", 3, "read", 3)]
    ev += [("invoke", 4, "write", 5), ("ok", 4, "write", 5)]
    return hist(*ev)


def test_failure_names_op_line_concurrent_prefix_reason():
    r = check(stale_read_history())
    assert r.valid is False
    d = r.to_dict()
    json.dumps(d)                         # JSON as documented
    assert set(d) >= {"valid", "model", "op_count", "keys", "failures", "stats"}
    assert d["op_count"] == 10 and d["model"] == "cas-register"
    (f,) = d["failures"]
    assert set(f) >= {"key", "op", "line", "concurrent", "prefix", "state", "reason",
                      "shrunk"}
    assert f["key"] is None
    assert f["op"]["index"] == 7 and f["op"]["value"] == 3 and f["op"]["type"] == "ok"
    assert f["line"] == 8
    assert f["concurrent"] == [6]
    assert f["reason"] == "read 3, but the register holds 4, written by op 3"
    assert f["state"] == 4
    assert [p["index"] for p in f["prefix"]] == [1, 3, 6]
    assert [p["state"] for p in f["prefix"]] == [3, 4, 4]


def test_explain_text_has_lines_and_reason():
    text = check(stale_read_history()).explain()
    assert "valid: false" in text
    assert "history.txt line 8" in text
    assert "read 3, but the register holds 4, written by op 3" in text
    assert "op 3 (line 4) write(4) -> state 4" in text
    assert "concurrent ops: 6 (line 7)" in text


def test_valid_result_has_no_failures_and_short_text():
    h = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
             ("invoke", 0, "read", None), ("ok", 0, "read", 1))
    r = check(h)
    assert r.valid is True and r.failures == []
    assert "unknown_reason" not in r.to_dict()
    assert r.explain().startswith("valid: true")


def test_shrunk_history_is_small_paired_and_still_invalid():
    # 30 good sequential write/read pairs on the side, one stale read in the middle.
    ev = []
    for i in range(15):
        ev += [("invoke", 0, "write", i), ("ok", 0, "write", i),
               ("invoke", 1, "read", None), ("ok", 1, "read", i)]
        if i == 9:
            ev += [("invoke", 2, "read", None), ("ok", 2, "read", 3)]
    ops = hist(*ev)
    r = check(ops)
    assert r.valid is False
    shrunk = r.failures[0]["shrunk"]
    assert 2 <= len(shrunk) <= 8
    # invokes and completions stay together
    by_proc = {}
    for o in shrunk:
        by_proc.setdefault(o["process"], []).append(o["type"])
    for types in by_proc.values():
        assert len(types) % 2 == 0
    # the stale read and a write of the value it saw are kept
    assert any(o["f"] == "read" and o["value"] == 3 and o["type"] == "ok" for o in shrunk)
    assert any(o["f"] == "write" and o["value"] == 3 for o in shrunk)
    # still invalid once re-indexed as its own history
    again = [Op(i, i, o["type"], o["process"], o["f"], o.get("value"))
             for i, o in enumerate(shrunk)]
    assert check(again, shrink=False).valid is False
    assert f"shrunk to {len(shrunk) // 2} ops" in r.explain()


def test_no_shrink_leaves_shrunk_empty():
    r = check(stale_read_history(), shrink=False)
    assert r.failures[0]["shrunk"] == []


def test_multi_key_failure_names_key_and_progress_is_reported():
    ev = [("invoke", 0, "write", 1, "x"), ("ok", 0, "write", 1, "x"),
          ("invoke", 0, "read", None, "x"), ("ok", 0, "read", 2, "x"),
          ("invoke", 1, "write", 1, "y"), ("ok", 1, "write", 1, "y")]
    seen = []
    r = check(hist(*ev), progress=seen.append)
    (f,) = r.failures
    assert f["key"] == "x" and "initial value" not in f["reason"]
    assert "key \"x\"" in r.explain()
    assert any("shrinking" in s for s in seen)
