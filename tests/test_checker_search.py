"""The search: verdicts on hand-made histories, info/fail semantics, budgets, keys,
and agreement with brute force over every order on thousands of random histories."""

from __future__ import annotations

import random

from checker import check, partition
from history.ops import Op
from checker.models import INFO, Illegal, get_model
from checker.partition import _check_parallel, operations
from checker.search import search


def hist(*events):
    """events: (type, process, f, value[, key[, error]]) in history order."""
    ops = []
    for i, ev in enumerate(events):
        typ, proc, f, value = ev[:4]
        kw = {}
        if len(ev) > 4 and ev[4] is not None:
            kw["key"] = ev[4]
        err = ev[5] if len(ev) > 5 else None
        ops.append(Op(i, i, typ, proc, f, value, error=err, **kw))
    return ops


def test_sequential_valid_and_stale_read_invalid():
    ok = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
              ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    assert check(ok).valid is True
    stale = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
                 ("invoke", 0, "write", 2), ("ok", 0, "write", 2),
                 ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    assert check(stale).valid is False


def test_concurrent_ops_may_take_effect_in_either_order():
    h = hist(("invoke", 0, "write", 1), ("invoke", 1, "write", 2),
             ("invoke", 2, "read", None), ("ok", 2, "read", 1),
             ("ok", 0, "write", 1), ("ok", 1, "write", 2),
             ("invoke", 2, "read", None), ("ok", 2, "read", 2))
    assert check(h).valid is True
    bad = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
               ("invoke", 1, "write", 2), ("ok", 1, "write", 2),
               ("invoke", 2, "read", None), ("ok", 2, "read", 1))
    assert check(bad).valid is False


def test_info_ops_are_optional_anywhere_after_invoke():
    # An info write may have happened, late...
    late = hist(("invoke", 0, "write", 5), ("info", 0, "write", 5, None, "timeout"),
                ("invoke", 1, "read", None), ("ok", 1, "read", None),
                ("invoke", 1, "read", None), ("ok", 1, "read", 5))
    assert check(late).valid is True
    # ...or never, and an invoke with no completion counts as info.
    never = hist(("invoke", 0, "write", 5), ("invoke", 1, "read", None),
                 ("ok", 1, "read", None))
    assert check(never).valid is True
    # But not before its invoke.
    early = hist(("invoke", 1, "read", None), ("ok", 1, "read", 5),
                 ("invoke", 0, "write", 5), ("info", 0, "write", 5))
    assert check(early).valid is False


def test_fail_dropped_but_precondition_failed_cas_observes():
    # A failed write (definite) did not happen.
    h = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
             ("invoke", 0, "write", 2), ("fail", 0, "write", 2, None, "not-leader"),
             ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    assert check(h).valid is True
    # cas 1->3 failed with precondition-failed while the register surely held 1.
    obs = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
               ("invoke", 1, "cas", [1, 3]),
               ("fail", 1, "cas", [1, 3], None, "precondition-failed"))
    r = check(obs)
    assert r.valid is False
    assert "precondition-failed" in r.failures[0]["reason"]
    # Any other cas failure is dropped.
    other = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
                 ("invoke", 1, "cas", [1, 3]),
                 ("fail", 1, "cas", [1, 3], None, "key-does-not-exist"))
    assert check(other).valid is True


def test_nothing_observed_is_linearizable_with_a_note():
    # As Knossos and Porcupine say: no completed op, so every order is legal. Whether
    # that proves anything is the test runner's vacuity rule, not the checker's.
    r = check([])
    assert r.valid is True and r.nothing_observed
    assert r.to_dict()["note"].startswith("nothing observed")
    assert "unknown_reason" not in r.to_dict()
    only_info = hist(("invoke", 0, "write", 1), ("info", 0, "write", 1),
                     ("invoke", 1, "read", None), ("fail", 1, "read", None))
    r = check(only_info)
    assert r.valid is True and r.nothing_observed and "nothing observed" in r.explain()
    seen = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1))
    assert check(seen).valid is True and not check(seen).nothing_observed
    assert "note" not in check(seen).to_dict()


def _hard_invalid(n=14):
    # n concurrent writes, then a read of a value nobody wrote: every order fails.
    ev = [("invoke", p, "write", p) for p in range(n)]
    ev += [("ok", p, "write", p) for p in range(n)]
    ev += [("invoke", 99, "read", None), ("ok", 99, "read", 1000)]
    return hist(*ev)


def test_time_budget_ends_in_unknown_saying_how_far():
    r = check(_hard_invalid(), time_limit=0.001)
    assert r.valid == "unknown"
    assert "time limit" in r.unknown_reason and "configurations" in r.unknown_reason
    assert r.to_dict()["unknown_reason"] == r.unknown_reason


def test_memory_budget_ends_in_unknown():
    r = check(_hard_invalid(), memory_limit_mb=0.01)
    assert r.valid == "unknown" and "memory limit" in r.unknown_reason
    assert r.stats["explored"] * 200 <= 0.01 * 2 ** 20 + 200 * 2048 * 2


def test_keys_checked_independently():
    h = hist(("invoke", 0, "write", 1, "a"), ("invoke", 1, "write", 1, "b"),
             ("ok", 0, "write", 1, "a"), ("ok", 1, "write", 1, "b"),
             ("invoke", 0, "read", None, "a"), ("ok", 0, "read", 1, "a"),
             ("invoke", 1, "read", None, "b"), ("ok", 1, "read", 2, "b"))
    r = check(h)
    assert r.valid is False
    d = r.to_dict()
    assert set(d["keys"]) == {'"a"', '"b"'}
    assert d["keys"]['"a"']["valid"] is True and d["keys"]['"b"']["valid"] is False
    assert [f["key"] for f in d["failures"]] == ["b"]


def test_parallel_processes_give_the_same_verdicts():
    ev = []
    for k in range(3):
        ev += [("invoke", k, "write", k, k), ("ok", k, "write", k, k),
               ("invoke", k, "read", None, k), ("ok", k, "read", k if k != 2 else 7, k)]
    m = get_model("cas-register")
    parts, _ = operations(hist(*ev), m)
    res = _check_parallel(parts, m, None, None, None, workers=2)
    assert res[2].valid is False
    # a failing key does not stop the others: every key is decided
    assert res[0].valid is True and res[1].valid is True


INVALID_KEYS = [0, 2, 3, 5, 8, 10, 11]


def _many_keys(n=12, invalid=INVALID_KEYS):
    """n keys, in history order 0..n-1; a stale read in each key of `invalid`."""
    ev = []
    for k in range(n):
        ev += [("invoke", k, "write", 1, k), ("ok", k, "write", 1, k),
               ("invoke", k, "write", 2, k), ("ok", k, "write", 2, k),
               ("invoke", k, "read", None, k),
               ("ok", k, "read", 1 if k in invalid else 2, k)]
    return hist(*ev)


def test_every_invalid_key_is_reported():
    r = check(_many_keys())
    assert r.valid is False
    d = r.to_dict()
    assert all(kd["valid"] is (int(k) not in INVALID_KEYS) for k, kd in d["keys"].items())
    # in the order the keys appear in the history (not "0", "10", "11", "2", ...)
    assert [f["key"] for f in d["failures"]] == INVALID_KEYS
    for f in d["failures"]:
        assert {"op", "line", "invoke_line", "concurrent", "prefix", "state", "reason",
                "description", "shrunk"} <= set(f)
        assert f["op"]["f"] == "read" and f["op"]["value"] == 1 and f["op"]["key"] == f["key"]
        assert f["reason"].startswith("read 1") and f["state"] == 2
    # the first 5 failing keys are shrunk, the others are not
    assert all(f["shrunk"] for f in d["failures"][:5])
    assert all(f["shrunk"] == [] for f in d["failures"][5:])
    text = r.explain()
    assert "7 of 12 keys not linearizable: 0, 2, 3, 5, 8, 10, 11" in text.splitlines()[1]
    assert "not decided" not in text and "unknown" not in text
    assert all(f"key {k}: not linearizable" in text for k in INVALID_KEYS)


def test_every_invalid_key_is_reported_by_parallel_processes(monkeypatch):
    import checker.partition as partition
    m = get_model("cas-register")
    parts, _ = operations(_many_keys(), m)
    res = _check_parallel(parts, m, None, None, None, workers=2)
    assert [k for k, r in res.items() if r.valid is False] == INVALID_KEYS
    assert all(r.valid is True for k, r in res.items() if k not in INVALID_KEYS)
    # and through check(), when the history is big enough for processes
    monkeypatch.setattr(partition, "PARALLEL_MIN_OPS", 0)
    r = check(_many_keys(), shrink=False)
    assert r.valid is False and [f["key"] for f in r.failures] == INVALID_KEYS


def _failure_then_hard_key():
    """Key "a": a stale read (found at once); key "b": a search too big to finish."""
    ev = [("invoke", 100, "write", 1, "a"), ("ok", 100, "write", 1, "a"),
          ("invoke", 100, "write", 2, "a"), ("ok", 100, "write", 2, "a"),
          ("invoke", 100, "read", None, "a"), ("ok", 100, "read", 1, "a")]
    n = 18
    ev += [("invoke", p, "write", p, "b") for p in range(n)]
    ev += [("ok", p, "write", p, "b") for p in range(n)]
    ev += [("invoke", 99, "read", None, "b"), ("ok", 99, "read", 1000, "b")]
    ev += [("invoke", 101, "write", 5, "c"), ("ok", 101, "write", 5, "c")]
    return hist(*ev)


def test_budget_running_out_after_a_failure_gives_false_and_unknown_keys():
    r = check(_failure_then_hard_key(), time_limit=1.0)
    assert r.valid is False
    assert [f["key"] for f in r.failures] == ["a"]
    d = r.to_dict()
    assert d["keys"]['"c"']["valid"] is True
    b = d["keys"]['"b"']
    assert b["valid"] == "unknown"
    assert "time limit" in b["unknown_reason"] and "configurations" in b["unknown_reason"]
    assert "unknown_reason" not in d   # the verdict is false, not unknown
    text = r.explain()
    assert text.splitlines()[0].startswith("valid: false")
    assert '1 of 3 keys not linearizable: "a"' in text
    assert "1 other key not decided (a budget, or the grace after a failure, ran out):" in text
    assert 'key "b": unknown: time limit reached on key "b"' in text
    # the same with parallel processes and the memory budget
    m = get_model("cas-register")
    parts, _ = operations(_failure_then_hard_key(), m)
    res = _check_parallel(parts, m, None, 2 * 2 ** 20, None, workers=2)
    assert res["a"].valid is False and res["c"].valid is True
    assert res["b"].valid == "unknown" and "memory limit" in res["b"].unknown_reason


def test_after_a_failure_other_keys_get_only_a_grace_period(monkeypatch):
    """No budget at all: a hard key still ends soon after another key failed."""
    monkeypatch.setattr(partition, "FAILURE_GRACE_S", 0.5)
    r = check(_failure_then_hard_key(), shrink=False)
    assert r.valid is False and [f["key"] for f in r.failures] == ["a"]
    b = r.to_dict()["keys"]['"b"']
    assert b["valid"] == "unknown"
    assert 'after key "a" was found not linearizable' in b["unknown_reason"]
    # the same with parallel processes
    m = get_model("cas-register")
    parts, _ = operations(_failure_then_hard_key(), m)
    res = _check_parallel(parts, m, None, None, None, workers=2)
    assert res["a"].valid is False and res["c"].valid is True
    assert res["b"].valid == "unknown"
    assert 'after key "a" was found not linearizable' in res["b"].unknown_reason


# ---------------------------------------------------------------- brute force oracle

def brute_force(ops, model):
    """Linearizable? Try every order of every subset of info ops (tiny histories)."""
    n = len(ops)
    required = {o.id for o in ops if o.status != INFO}

    def rec(done, state):
        if required <= done:
            return True
        for o in ops:
            if o.id in done:
                continue
            # every op that completed before o was invoked must come first
            if any(p.id not in done and p.status != INFO and p.ret < o.call
                   for p in ops):
                continue
            ns = model.step(state, o)
            if isinstance(ns, Illegal):
                continue
            if rec(done | {o.id}, ns):
                return True
        return False

    return rec(frozenset(), model.init()) if n else True


def random_history(rng, n_ops, n_procs, model_name):
    values = [None, 0, 1, 2] if model_name != "kv" else ["", "a", "ab", "b", "ba"]
    fs = {"register": ["read", "write"], "cas-register": ["read", "write", "cas"],
          "kv": ["get", "put", "append"]}[model_name]
    events, open_, started, next_proc = [], {}, 0, n_procs
    procs = list(range(n_procs))
    while started < n_ops or open_:
        p = rng.choice(procs)
        if p not in open_:
            if started >= n_ops:
                continue
            f = rng.choice(fs)
            if f in ("read", "get"):
                v = None
            elif f == "cas":
                v = [rng.choice([0, 1, 2]), rng.choice([0, 1, 2])]
            elif model_name == "kv":
                v = rng.choice(["a", "b"])
            else:
                v = rng.choice([0, 1, 2])
            open_[p] = (f, v)
            started += 1
            events.append(("invoke", p, f, v))
            continue
        f, v = open_.pop(p)
        roll = rng.random()
        if roll < 0.12:
            if rng.random() < 0.5:
                events.append(("info", p, f, v, None, "timeout"))
            # else: never completes (crashed client)
            procs[procs.index(p)] = next_proc   # continue as a new process
            next_proc += 1
        elif roll < 0.2 and f == "cas":
            events.append(("fail", p, f, v, None, "precondition-failed"))
        elif roll < 0.24:
            events.append(("fail", p, f, v, None, "temporarily-unavailable"))
        else:
            out = rng.choice(values) if f in ("read", "get") else v
            events.append(("ok", p, f, out))
    return hist(*events)


def test_agrees_with_brute_force_on_random_histories():
    rng = random.Random(20260126)
    counts = {True: 0, False: 0}
    for model_name in ("register", "cas-register", "kv"):
        m = get_model(model_name)
        for _ in range(700):
            h = random_history(rng, rng.randint(1, 8), rng.randint(1, 4), model_name)
            parts, _ = operations(h, m)
            for ops in parts.values():
                got = search(ops, m).valid
                want = brute_force(ops, m)
                assert got == want, (model_name, [o.to_dict() for o in h])
                counts[want] += 1
    # both verdicts are well represented
    assert counts[True] > 300 and counts[False] > 300, counts
