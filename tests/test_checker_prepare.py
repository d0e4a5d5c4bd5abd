"""The checker's exact pruning (checker.prepare, interchangeable ops in checker.search)
never changes a verdict.

Small random histories, linearizable or not, many of them with info writes and info
cas of values nobody observed and with precondition-failed cas (the only ops such
writes can help) are checked with the pruning and without it, and tiny ones also by
brute force over every order of every subset of info ops; the verdicts must be equal.
The tests also count that the pruning did happen, so that they cannot pass vacuously.
"""

from __future__ import annotations

import random

from checker import check
from checker.generate import GenConfig, generate, mutate
from checker.models import get_model
from checker.partition import operations
from checker.prepare import droppable, prepare
from checker.search import search
from tests.test_checker_search import brute_force, hist


def _random(rng: random.Random, n_ops: int, n_procs: int, unique: bool) -> list:
    """A random (mostly not linearizable) cas-register history, one key: writes of
    fresh values when `unique`, reads of written values, cas of any kind."""
    events, open_, started, next_proc = [], {}, 0, n_procs
    procs = list(range(n_procs))
    written = [None]
    fresh = iter(range(1, 1000))
    while started < n_ops or open_:
        p = rng.choice(procs)
        if p not in open_:
            if started >= n_ops:
                continue
            f = rng.choice(["read", "write", "write", "cas", "cas"])
            pool = written if unique else [None, 0, 1, 2]
            if f == "read":
                v = None
            elif f == "write":
                v = next(fresh) if unique else rng.choice([0, 1, 2])
            else:
                v = [rng.choice(pool), next(fresh) if unique else rng.choice([0, 1, 2])]
            if f != "read":
                written.append(v if f == "write" else v[1])
            open_[p] = (f, v)
            started += 1
            events.append(("invoke", p, f, v))
            continue
        f, v = open_.pop(p)
        roll = rng.random()
        if roll < 0.3:
            if rng.random() < 0.6:
                events.append(("info", p, f, v, None, "timeout"))
            procs[procs.index(p)] = next_proc
            next_proc += 1
        elif roll < 0.5 and f == "cas":
            events.append(("fail", p, f, v, None, "precondition-failed"))
        else:
            out = rng.choice(written) if f == "read" else v
            events.append(("ok", p, f, out))
    return hist(*events)


def _generated(seed: int, n_ops: int) -> list:
    """A generated history (unique values, many info ops), mutated half the time."""
    rng = random.Random(seed)
    ops = generate(seed, GenConfig(ops=n_ops, processes=rng.randint(2, 4), keys=1,
                                   values=rng.choice([0, 0, 3]), info_rate=0.3,
                                   fail_rate=0.05, cas_rate=0.5, cas_match_rate=0.4))
    if rng.random() < 0.5:
        ops, _ = mutate(ops, rng)
    return ops


def _interchangeable(h) -> tuple[int, int]:
    """(interchangeable info ops, of which droppable) in a history's keys."""
    m = get_model("cas-register")
    parts, _ = operations(h, m)
    j = sum(len(m.interchangeable(ops)) for ops in parts.values())
    d = sum(len(droppable(ops, m)) for ops in parts.values())
    return j, d


def test_pruning_agrees_with_brute_force_on_tiny_histories():
    rng = random.Random(20261130)
    m = get_model("cas-register")
    verdicts = {True: 0, False: 0}
    junk = dropped = 0
    for i in range(3000):
        h = _random(rng, rng.randint(2, 8), rng.randint(2, 4), unique=i % 2 == 0) \
            if i % 3 else _generated(i, rng.randint(2, 7))
        parts, _ = operations(h, m)
        want = all(brute_force(ops, m) for ops in parts.values())
        pruned = check(h, shrink=False).valid
        plain = check(h, shrink=False, prune=False).valid
        assert pruned == want == plain, [o.to_dict() for o in h]
        verdicts[want] += 1
        j, d = _interchangeable(h)
        junk += j > d
        dropped += d > 0
    # both verdicts, and both kinds of pruning, are well represented
    assert verdicts[True] > 600 and verdicts[False] > 600, verdicts
    assert junk > 250 and dropped > 400, (junk, dropped)


def test_pruning_agrees_with_no_pruning_on_small_histories():
    rng = random.Random(7)
    verdicts = {True: 0, False: 0}
    junk = 0
    for i in range(600):
        h = _random(rng, rng.randint(8, 24), rng.randint(2, 6), unique=i % 2 == 0) \
            if i % 2 else _generated(1000 + i, rng.randint(10, 40))
        pruned = check(h, shrink=False, time_limit=30).valid
        plain = check(h, shrink=False, time_limit=30, prune=False).valid
        assert pruned == plain, [o.to_dict() for o in h]
        verdicts[pruned] = verdicts.get(pruned, 0) + 1
        junk += _interchangeable(h)[0] > 1
    assert verdicts[True] > 100 and verdicts[False] > 100, verdicts
    assert junk > 100, junk


def test_unobserved_info_write_can_be_needed_by_a_failed_cas():
    # The info write of 9 (never read) is the only way the cas that found the
    # register not holding 1 can be linearized: it must not be dropped.
    h = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
             ("invoke", 1, "write", 9),
             ("invoke", 2, "cas", [1, 5]), ("fail", 2, "cas", [1, 5], None, "precondition-failed"),
             ("info", 1, "write", 9, None, "timeout"))
    m = get_model("cas-register")
    parts, _ = operations(h, m)
    assert droppable(parts[None], m) == set()
    assert len(m.interchangeable(parts[None])) == 1
    assert check(h).valid is True
    # without it, not linearizable
    assert check(h[:2] + h[3:5]).valid is False


def test_unobserved_info_write_after_every_failed_cas_is_dropped():
    h = hist(("invoke", 0, "write", 1), ("ok", 0, "write", 1),
             ("invoke", 2, "cas", [7, 5]), ("fail", 2, "cas", [7, 5], None, "precondition-failed"),
             ("invoke", 1, "write", 9), ("invoke", 3, "write", 4),
             ("info", 1, "write", 9, None, "timeout"),
             ("invoke", 0, "read", None), ("ok", 0, "read", 4))
    m = get_model("cas-register")
    parts, _ = operations(h, m)
    kept, counts = prepare(parts, m)
    assert counts == {"pruned": 1, "interchangeable": 0}
    assert [o.input for o in kept[None]] == [1, [7, 5], 4, None]
    assert [o.id for o in kept[None]] == [0, 1, 2, 3]
    res = check(h)
    assert res.valid is True and res.stats["pruned"] == 1


def test_observed_values_are_not_interchangeable():
    h = hist(("invoke", 0, "write", 3), ("info", 0, "write", 3, None, "timeout"),
             ("invoke", 1, "cas", [3, 4]), ("info", 1, "cas", [3, 4], None, "timeout"),
             ("invoke", 2, "cas", [8, 6]),
             ("invoke", 3, "read", None), ("ok", 3, "read", 4))
    m = get_model("cas-register")
    parts, _ = operations(h, m)
    ops = parts[None]
    # 3 is compared with, 4 is read; only the cas writing 6 is interchangeable
    assert m.interchangeable(ops) == {o.id: False for o in ops if o.input == [8, 6]}
    assert check(h).valid is True


def test_search_without_pruning_is_the_reference():
    # the prune switch really switches: the same search, more configurations
    rng = random.Random(3)
    m = get_model("cas-register")
    more = 0
    for _ in range(200):
        h = _random(rng, 16, 4, unique=True)
        parts, _ = operations(h, m)
        for ops in parts.values():
            a, b = search(ops, m), search(ops, m, prune=False)
            assert a.valid == b.valid
            more += b.explored > a.explored
    assert more > 0


def test_progress_line_says_keys_ops_and_memory(monkeypatch):
    from checker import partition
    monkeypatch.setattr(partition, "STATUS_S", 0.0)
    ops = generate(5, GenConfig(ops=6000, processes=6, keys=3, values=0))
    lines: list[str] = []
    assert check(ops, progress=lines.append).valid is True
    status = [s for s in lines if s.startswith("checking: ")]
    assert status and all(" keys done, " in s and " ops/s), memory " in s
                          for s in status), lines
    assert any(s.startswith("pairing: ") for s in lines), lines
    # without a progress callable nothing is built or said
    assert check(ops).valid is True
