"""The kv model's exact pruning: the dead-read rule (`Model.resets`, `Model.reachable`),
collapsed unseen states (`Model.collapse`) and the forced moves in the inert unseen
state, all in checker.search.

Hand-made histories show each rule pruning where it may and not where it must not
(a put that can still reset the value; a value some get may still see; an append
that a put may precede); random kv histories (puts, appends, gets, info ops, reads
that lie) are checked with every rule, with each left out, and with no pruning, and
tiny ones also by brute force; the verdicts must be equal, and the tests count that
each rule did prune, so that they cannot pass vacuously.
"""

from __future__ import annotations

import random

from checker import check
from checker.models import KVModel, get_model
from checker.partition import operations
from checker.search import search
from tests.test_checker_search import brute_force, hist

KV = get_model("kv")


def _ops(h):
    parts, _ = operations(h, KV)
    return parts.get(None, [])


def _explored(h, prune=True):
    r = search(_ops(h), KV, prune=prune)
    return r.valid, r.explored


def test_dead_read_abandons_a_state_the_get_can_no_longer_reach():
    # get 1 (invoked first, returns last) saw "ab"; the appends of "b" then "a"
    # leave "ba", which appends can never turn into "ab": no put left, dead
    h = hist(("invoke", 0, "get", None),
             ("invoke", 1, "append", "b"), ("ok", 1, "append", "b"),
             ("invoke", 1, "append", "a"), ("ok", 1, "append", "a"),
             ("ok", 0, "get", "ab"))
    assert KV.reachable("a", "ab") and not KV.reachable("ba", "ab")
    assert check(h, "kv", shrink=False).valid is False
    assert check(h, "kv", shrink=False, prune=False).valid is False


def test_dead_read_rule_waits_for_a_put_that_can_still_reset():
    # After append "x" the value is "x", no prefix of "yz"; but the put of "y",
    # invoked before the get returned, can still reset it: must NOT prune.
    h = hist(("invoke", 0, "append", "x"), ("ok", 0, "append", "x"),
             ("invoke", 1, "get", None),
             ("invoke", 2, "put", "y"),
             ("invoke", 3, "append", "z"),
             ("ok", 2, "put", "y"), ("ok", 3, "append", "z"),
             ("ok", 1, "get", "yz"))
    assert check(h, "kv", shrink=False).valid is True
    # an info put (it may have happened) can reset it too
    h2 = hist(("invoke", 0, "append", "x"), ("ok", 0, "append", "x"),
              ("invoke", 1, "get", None),
              ("invoke", 2, "put", "y"), ("info", 2, "put", "y", None, "timeout"),
              ("ok", 1, "get", "y"))
    assert check(h2, "kv", shrink=False).valid is True
    # a put invoked only after the get returned cannot
    h3 = hist(("invoke", 0, "append", "x"), ("ok", 0, "append", "x"),
              ("invoke", 1, "get", None), ("ok", 1, "get", "y"),
              ("invoke", 2, "put", "y"), ("ok", 2, "put", "y"))
    assert check(h3, "kv", shrink=False).valid is False
    # a put whose value cannot lead to the get's value does not help either
    h4 = hist(("invoke", 0, "append", "x"), ("ok", 0, "append", "x"),
              ("invoke", 1, "get", None),
              ("invoke", 2, "put", "w"), ("ok", 2, "put", "w"),
              ("ok", 1, "get", "yz"))
    assert check(h4, "kv", shrink=False).valid is False


def test_unseen_states_collapse_into_one():
    ops = _ops(hist(("invoke", 0, "get", None), ("ok", 0, "get", "abc"),
                    ("invoke", 0, "get", None), ("ok", 0, "get", "xy")))
    canon = KV.collapse(ops)
    assert canon is not None
    # a prefix of a value some get saw is kept as it is...
    for s in ("", "a", "ab", "abc", "x", "xy"):
        assert canon(s) == s
    # ...any other value is unseen: one representative, itself unseen
    sink = canon("b")
    assert canon("abcd") == canon("ac") == canon("y") == canon(sink) == sink
    assert canon(sink + "a") == sink and not any(v.startswith(sink) for v in ("abc", "xy"))
    # a get of something other than a string: no collapsing
    odd = _ops(hist(("invoke", 0, "get", None), ("ok", 0, "get", 5)))
    assert KV.collapse(odd) is None


def test_unobserved_appends_before_a_put_are_not_permuted():
    # 7 concurrent appends, and a put concurrent with them; the get saw a value
    # nobody wrote, so every order must be tried. Values no get saw are one state
    # whatever the appends' order: about 2^7 configurations, not 7! orders.
    ev = [("invoke", p, "append", f"v{p}") for p in range(7)]
    ev += [("invoke", 9, "put", "p")]
    ev += [("ok", p, "append", f"v{p}") for p in range(7)]
    ev += [("ok", 9, "put", "p"), ("invoke", 10, "get", None), ("ok", 10, "get", "q")]
    h = hist(*ev)
    valid, explored = _explored(h)
    plain_valid, plain_explored = _explored(h, prune=False)
    assert valid is plain_valid is False
    assert explored < 1000 < plain_explored


def test_collapse_keeps_a_state_some_get_may_still_see():
    # "a" then "b" is "ab", which the get saw: that order must stay apart from "ba"
    h = hist(("invoke", 0, "append", "a"), ("invoke", 1, "append", "b"),
             ("ok", 0, "append", "a"), ("ok", 1, "append", "b"),
             ("invoke", 2, "get", None), ("ok", 2, "get", "ab"))
    assert check(h, "kv", shrink=False).valid is True
    bad = hist(("invoke", 0, "append", "a"), ("ok", 0, "append", "a"),
               ("invoke", 1, "append", "b"), ("ok", 1, "append", "b"),
               ("invoke", 2, "get", None), ("ok", 2, "get", "ba"))
    assert check(bad, "kv", shrink=False).valid is False


def test_inert_state_forces_only_ops_no_put_can_precede():
    # After append "c" the value is unseen (no get saw a value starting with "c"),
    # and append "a" is legal there, leaving it unseen; but the put of "b" may come
    # before "a" (it is invoked before "a" returns), and must: "a" is no forced move.
    h = hist(("invoke", 2, "append", "a"), ("invoke", 1, "put", "b"),
             ("invoke", 0, "append", "c"), ("ok", 0, "append", "c"),
             ("ok", 1, "put", "b"),
             ("invoke", 0, "append", "d"), ("ok", 0, "append", "d"),
             ("ok", 2, "append", "a"),
             ("invoke", 0, "get", None), ("invoke", 2, "append", "e"),
             ("ok", 0, "get", "bdae"), ("ok", 2, "append", "e"))
    assert brute_force(_ops(h), KV) is True
    assert [search(_ops(h), m).valid for m in (KV, _NoDeadRead(), _NoInert())] == [True] * 3


def test_explanation_shows_the_real_states_not_the_collapsed_one():
    h = hist(("invoke", 0, "append", "q"), ("ok", 0, "append", "q"),
             ("invoke", 0, "append", "r"), ("ok", 0, "append", "r"),
             ("invoke", 1, "get", None), ("ok", 1, "get", "rq"))
    r = check(h, "kv")
    assert r.valid is False
    f = r.failures[0]
    assert [p["state"] for p in f["prefix"]] == ["q", "qr"]
    assert f["state"] == "qr" and "\x00" not in f["reason"]
    assert f["shrunk"]          # the failing get alone is still invalid


def _random_kv(rng: random.Random, n_ops: int, n_procs: int) -> list:
    """A kv history run against a real value (so often linearizable), with some
    gets lying (an older value, a reordered one), info and never-completed ops."""
    events, open_, started, next_proc = [], {}, 0, n_procs
    procs = list(range(n_procs))
    value, seen = "", [""]
    fresh = iter("abcdefghijklmnopqrstuvwxyz" * 4)
    while started < n_ops or open_:
        p = rng.choice(procs)
        if p not in open_:
            if started >= n_ops:
                continue
            f = rng.choice(["get", "get", "append", "append", "append", "put"])
            v = None if f == "get" else next(fresh)
            open_[p] = [f, v, False]
            started += 1
            events.append(("invoke", p, f, v))
            if rng.random() < 0.5:        # takes effect now, else at completion
                value = _apply(open_[p], value, seen)
            continue
        op = open_.pop(p)
        f, v, done = op
        roll = rng.random()
        if roll < 0.15:
            if rng.random() < 0.5 and not done and f != "get":
                value = _apply(op, value, seen)
            if rng.random() < 0.6:
                events.append(("info", p, f, v, None, "timeout"))
            procs[procs.index(p)] = next_proc
            next_proc += 1
            continue
        if not done:
            value = _apply(op, value, seen)
        out = op[1] if f != "get" else op[2]
        if f == "get" and rng.random() < 0.4:          # a lie (or, by chance, the truth)
            out = rng.choice([rng.choice(seen), out[::-1], out[1:], out + "Z"])
        events.append(("ok", p, f, out))
    return hist(*events)


def _apply(op: list, value: str, seen: list) -> str:
    f, v, _ = op
    if f == "get":
        op[2] = value
        return value
    op[2] = True
    value = v if f == "put" else value + v
    seen.append(value)
    return value


class _NoCollapse(KVModel):
    """kv with the dead-read rule only."""

    def collapse(self, ops):
        return None


class _NoDeadRead(KVModel):
    """kv with collapsed unseen states only."""

    reachable = None


class _NoInert(KVModel):
    """kv without the forced moves in the inert (unseen) state."""

    def collapse(self, ops):
        canon = super().collapse(ops)
        return None if canon is None else (lambda s: canon(s))


def _verdicts(h) -> tuple[list, list]:
    """(verdicts, configurations explored): every rule; the dead-read rule alone;
    collapsing alone; all but the inert forced moves; none."""
    ops = _ops(h)
    runs = [search(ops, KV), search(ops, _NoCollapse()), search(ops, _NoDeadRead()),
            search(ops, _NoInert()), search(ops, KV, prune=False)]
    return [r.valid for r in runs], [r.explored for r in runs]


def _agreement(histories, reference=None) -> tuple[dict, list, int]:
    """Check each history with every rule set; all verdicts must equal `reference`'s
    (brute force) or, without one, each other. Returns the verdict counts, how often
    each rule alone explored fewer configurations than no pruning, and how often the
    inert forced moves did."""
    verdicts = {True: 0, False: 0}
    fewer = [0, 0, 0]
    inert = 0
    for h in histories:
        got, explored = _verdicts(h)
        want = reference(_ops(h), KV) if reference else got[0]
        assert got == [want] * 5, [o.to_dict() for o in h]
        verdicts[want] += 1
        for i in range(3):
            fewer[i] += explored[i] < explored[4]
        inert += explored[0] < explored[3]
    return verdicts, fewer, inert


def test_kv_pruning_agrees_with_brute_force_on_tiny_histories():
    rng = random.Random(20261201)
    verdicts, fewer, inert = _agreement(
        (_random_kv(rng, rng.randint(2, 7), rng.randint(1, 4)) for _ in range(3000)),
        brute_force)
    assert verdicts[True] > 1500 and verdicts[False] > 500, verdicts
    # each rule alone prunes some of them
    assert min(fewer) > 200 and inert > 20, (fewer, inert)


def test_kv_pruning_agrees_with_no_pruning_on_small_histories():
    rng = random.Random(12)
    verdicts, fewer, inert = _agreement(
        _random_kv(rng, rng.randint(8, 14), rng.randint(2, 5)) for _ in range(1500))
    assert verdicts[True] > 300 and verdicts[False] > 500, verdicts
    assert min(fewer) > 500 and inert > 50, (fewer, inert)
