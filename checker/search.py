"""The linearizability search: Wing & Gong's algorithm with Lowe's memoization.

*Linearizable* means: each op can be given one instant between its invoke and its
completion such that, in the order of those instants, the ops are a legal run of
the model. The search (as Porcupine's checker.go and Knossos's wgl.clj) keeps the
ops not yet linearized in doubly-linked lists in history order (dancing links: an
op is lifted out when linearized and put back when the search backtracks). The
*candidates* are the ops invoked before the first completion still pending; the
search linearizes one if the model allows it and the configuration (set of
linearized ops, model state) was never seen, and starts again; when no candidate
works, that first pending completion cannot be passed: it backtracks.

Candidates are tried in an order that never changes the verdict but shortens the
search: first a *forced move*, then the required ops in call order, then the
``info`` ops. A pure op (one that never changes the state: a read, an observing cas
fail) that is legal now can be linearized now without loss (moving it first keeps
any completion legal): when there is one, it is the only move tried. Info ops have no completion: they may be linearized anywhere after
their invoke, or never (Knossos's treatment); the search succeeds once every
required op (ok, or an observing cas fail) is linearized.

Sets of linearized ops are Python ints used as bitsets, one for required ops (kept
small: a base below which every required op is linearized, and the bits above it)
and one for info ops. Seen configurations: (required bitset, state) -> the info bitsets
seen with them. A configuration whose info bitset includes one already seen is
dominated (an info op left out may stay out forever) and skipped, as is an info op
that would not change the state. For models where it holds (`Model.info_unlocks`),
an info op is only tried when it makes some candidate legal that is not legal now.
The model is called once per (op, state).

*Interchangeable* info ops (`Model.interchangeable`, issue 12: for the registers, info
writes and cas of a value nobody observed) only ever matter by making a
precondition-failed cas legal. They sit in a list of their own, left out of the scan
above, and are tried (when some candidate needs the state to change) in call order
up to the first unused *free* one only: that one may stand for any of those after it,
so a search that tries them all finds nothing more (tests/test_checker_prepare.py
compares with brute force). A 1,000,000-op history has tens of thousands of them;
scanning them all at every step made the search quadratic.

More exact rules, for models that say they hold (issue 12; the kv model's appends
only lengthen a value): states that no op of the key can tell apart are kept as one
(`Model.collapse`: appends that a put will overwrite unobserved leave one state
whatever their order), and in such an *inert* state an op that must come before
any reset is a forced move; a configuration is abandoned as soon as an ok read can
no longer be linearized in it (the dead-read rule: `Model.reachable`,
`Model.resets`) rather than when its completion is reached.
tests/test_checker_kv.py compares them with brute force and with no pruning.

The search is a generator that yields every few thousand steps, so that a driver
checks budgets (a deadline; a memory budget, against both an estimate of the seen
configurations and the growth of the process's resident memory: running out ends in
"unknown" saying how far it got) and can interleave several keys fairly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Generator, Hashable

from checker.models import INFO, Illegal, Model, Operation

_MISS = object()
_ILLEGAL = object()
TICK = 2048                  # search steps between yields
_ENTRY_OVERHEAD = 200        # bytes per seen configuration besides its bitsets
try:
    import os as _os
    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE = 4096


@dataclass
class SearchResult:
    """The outcome of searching one key's history."""

    valid: bool | str                     # True, False or "unknown"
    explored: int = 0                     # configurations visited
    elapsed_s: float = 0.0
    # the longest linearizable prefix found: op ids in order, model state after each
    prefix: list[tuple[int, Hashable]] = field(default_factory=list)
    blocked: int | None = None            # op whose completion no order could pass
    unknown_reason: str | None = None


class Progress:
    """How far a running search got (updated at every yield)."""

    __slots__ = ("explored", "depth", "best")

    def __init__(self) -> None:
        self.explored = 0
        self.depth = 0
        self.best = 0


def search_steps(ops: list[Operation], model: Model, where: Progress,
                 prune: bool = True) -> Generator[None, None, SearchResult]:
    """The search as a generator: yields every TICK steps, returns a SearchResult.
    `prune` False: no interchangeable ops (every info op is tried: for the tests
    that prove the pruning exact)."""
    start = time.monotonic()
    n = len(ops)
    # Entries 0..7 are the sentinels (head, tail) of four lists: required calls (Q),
    # info calls (I), returns of required ops (R) and interchangeable info calls (J,
    # `Model.interchangeable`: only the first is ever a candidate); op entries follow.
    QH, QT, IH, IT, RH, RT, JH, JT = range(8)
    inf = 1 << 62
    size = 8 + 2 * n
    junk = model.interchangeable(ops) if prune else {}
    pos = [inf] * size
    e_op = [-1] * size
    e_ret = [0] * size          # call entry -> its return entry (0: an info op)
    nxt = [0] * size
    prv = [0] * size
    q_calls: list[tuple[int, int]] = []
    i_calls: list[tuple[int, int]] = []
    j_calls: list[tuple[int, int]] = []
    rets: list[tuple[int, int]] = []
    for op in ops:
        c = 8 + 2 * op.id
        pos[c] = op.call
        e_op[c] = op.id
        if op.status == INFO:
            (j_calls if op.id in junk else i_calls).append((op.call, c))
        else:
            r = c + 1
            pos[r] = op.ret  # type: ignore[assignment]
            e_op[r] = op.id
            e_ret[c] = r
            q_calls.append((op.call, c))
            rets.append((op.ret, r))  # type: ignore[arg-type]
    bitno = [0] * n             # required ops and info ops each numbered in call order
    for rank, (_, e) in enumerate(sorted(i_calls + j_calls)):
        bitno[e_op[e]] = rank
    for head, tail, items in ((QH, QT, q_calls), (IH, IT, i_calls), (RH, RT, rets),
                              (JH, JT, j_calls)):
        chain = [head] + [e for _, e in sorted(items)] + [tail]
        if head == QH:
            for rank, e in enumerate(chain[1:-1]):
                bitno[e_op[e]] = rank
        for a, b in zip(chain, chain[1:]):
            nxt[a] = b
            prv[b] = a
        pos[head] = -1
    remaining = len(rets)
    trans: list[dict] = [{} for _ in range(n)]
    step = model.step
    canon = model.collapse(ops) if prune else None
    if canon is not None:
        # states no op can tell apart are one state (`Model.collapse`)
        raw_step = step

        def step(st: Hashable, op: Operation) -> Hashable | Illegal:
            ns = raw_step(st, op)
            return ns if type(ns) is Illegal else canon(ns)  # type: ignore[misc]
    # A pure op never changes the state. A required pure op that is legal now can be
    # linearized now without loss (moving it first keeps any completion legal), so
    # it is a forced move: no other candidate is tried in its place.
    # pure[i]: 0 not pure; 1 legal iff state == pval[i]; 2 iff state != pval[i];
    # 3 ask the model
    pre = [model.precondition(op) for op in ops]
    pure = [0 if op.status == INFO or not (op.f in model.read_fs or op.status == "fail")
            else {"eq": 1, "ne": 2}.get(pre[i][0], 3) for i, op in enumerate(ops)]
    pval = [p[1] for p in pre]
    # jfree[i]: an interchangeable op legal in every state (a write): in the J list,
    # the ops after the first unused one are never tried (it can stand for them)
    jfree = [junk.get(i) is True for i in range(n)]
    unlock = model.info_unlocks
    needs: tuple = (set(), False)
    # The dead-read rule (`Model.reachable`, `Model.resets`): a required read of v
    # (dread) not linearized yet can never be linearized, and the configuration is
    # dead, when the state cannot reach v and no unlinearized reset invoked before
    # the read returned leaves a state that can. The resets in call order: rs_call
    # (an infinite sentinel at the end), the state each leaves (rs_to), which are
    # linearized (rs_lin); rp: the first one not linearized.
    reach = model.reachable if prune else None
    # An *inert* state (`Model.collapse`; kv: the unseen value): every op but a
    # reset leaves it as it is or is illegal in it. There, a required op that is
    # legal and that must be linearized before any reset can be (it returns before
    # every unlinearized reset is invoked) is a forced move: in any completion, the
    # ops before it keep the state inert, so it may as well come first.
    inert = getattr(canon, "inert", _MISS)
    rs_idx = [-1] * n
    dread = [False] * n
    rs_call = [inf]
    rs_lin = [False]
    rs_to: list = []
    if reach is not None or inert is not _MISS:
        init = model.init()
        rs = sorted((op.call, op.id) for op in ops if model.resets(op))
        rs_call = [x for x, _ in rs] + [inf]
        rs_lin = [False] * (len(rs) + 1)
        rs_to = [step(init, ops[oid]) for _, oid in rs]
        for i, (_, oid) in enumerate(rs):
            rs_idx[oid] = i
        if reach is not None:
            dread = [pure[i] == 1 and op.status != INFO for i, op in enumerate(ops)]
    rp = 0
    dead = -1

    def legal(st: Hashable, oid: int) -> object:
        t = trans[oid]
        ns = t.get(st, _MISS)
        if ns is _MISS:
            ns = step(st, ops[oid])
            if type(ns) is Illegal:
                ns = _ILLEGAL
            t[st] = ns
        return ns

    state: Hashable = model.init() if canon is None else canon(model.init())
    # Linearized required ops: all those numbered below `base`, and those whose bit
    # is set in `rbits` (bit i: number base + i); so bitsets stay as small as the
    # window of concurrent ops, however long the history. Info ops: `ibits`.
    base = 0
    rbits = 0
    ibits = 0
    # before each linearized op: (entry, state, rbits, base, ibits, phase, needs)
    calls: list[tuple] = []
    cache: dict[tuple[int, Hashable], list[int]] = {}
    cache_get = cache.get
    explored = 0
    best: list[tuple] | None = None       # the stack at the deepest dead end
    best_state: Hashable = state
    blocked: int | None = None
    tick = TICK
    # phase 0: look for a forced move; 1: required calls; 2: info calls; 4: the
    # interchangeable info calls up to the first unused free one (c = JT: none
    # left, backtrack);
    # 3 (in a stack frame): a forced move
    phase = 0
    limit = pos[nxt[RH]]
    c = 0
    while remaining:
        tick -= 1
        if not tick:
            tick = TICK
            where.explored = explored
            where.depth = len(calls)
            yield
        if phase == 0:
            # A forced move first: a pure op that is legal now.
            limit = pos[nxt[RH]]
            c = nxt[QH]
            stuck = state is inert and rs_call[rp]
            while pos[c] < limit:
                oid = e_op[c]
                k = pure[oid]
                if k and ((state == pval[oid]) if k == 1 else (state != pval[oid])
                          if k == 2 else (legal(state, oid) is not _ILLEGAL)):
                    break
                if stuck and pos[e_ret[c]] < stuck and rs_idx[oid] < 0 \
                        and legal(state, oid) is state:
                    break       # a forced move in an inert state (see above)
                if dread[oid] and not reach(state, pval[oid]):  # type: ignore[misc]
                    # the dead-read rule: can a reset still help this read?
                    v = pval[oid]
                    gr = pos[e_ret[c]]
                    i = rp
                    while rs_call[i] < gr:
                        if not rs_lin[i] and reach(rs_to[i], v):  # type: ignore[misc]
                            break
                        i += 1
                    else:
                        dead = oid      # no: abandon this configuration
                        phase = 4
                        c = JT
                        break
                c = nxt[c]
            else:
                phase = 1
                c = nxt[QH]
                continue
            if dead >= 0:
                continue
        elif pos[c] >= limit:
            if phase == 1:
                phase = 2
                c = nxt[IH]
                if unlock and (c != IT or nxt[JH] != JT):
                    # Which candidates are illegal now? Only an info op that makes
                    # one of them legal is worth trying (see `Model.info_unlocks`):
                    # one that sets a state some candidate needs, or leaves a state
                    # some candidate needs not to be.
                    wanted = set()
                    avoid = False
                    for head in (QH, IH, JH):
                        y = nxt[head]
                        while pos[y] < limit:
                            oid = e_op[y]
                            if legal(state, oid) is _ILLEGAL:
                                kind, v = pre[oid]
                                if kind == "eq":
                                    wanted.add(v)
                                else:       # "ne" (or not said): any change may do
                                    avoid = True
                            y = JT if jfree[oid] else nxt[y]
                    needs = (wanted, avoid)
                    if not wanted and not avoid:
                        c = IT
                continue
            if phase == 2:
                # Interchangeable info ops: in call order, up to the first unused
                # free one (which may stand for any of those after it).
                phase = 4
                c = nxt[JH]
                if unlock and not needs[1]:
                    c = JT  # it only ever makes a "not equal" candidate legal
                continue
            # No candidate fits before the first pending return (or a read is
            # dead, and it is the op this branch cannot get past): backtrack.
            if best is None or len(calls) > len(best):
                best = calls[:]
                best_state = state
                blocked = e_op[nxt[RH]] if dead < 0 else dead
                where.best = len(best)
            dead = -1
            if not calls:
                break
            c, state, rbits, base, ibits, phase, needs = calls.pop()
            i = rs_idx[e_op[c]]
            if i >= 0:
                rs_lin[i] = False
                if i < rp:
                    rp = i
            m = e_ret[c]
            p = prv[c]
            q = nxt[c]
            nxt[p] = c
            prv[q] = c
            if m:
                p = prv[m]
                q = nxt[m]
                nxt[p] = m
                prv[q] = m
                remaining += 1
            limit = pos[nxt[RH]]
            if phase == 0:
                phase = 1
                c = nxt[QH]
            elif phase == 3:
                phase = 4       # a forced move failed: so does its configuration
                c = JT
            elif phase == 4:
                c = JT if jfree[e_op[c]] else nxt[c]
            else:
                c = nxt[c]
            continue
        # Try to linearize the op of call entry c now.
        oid = e_op[c]
        if phase == 1 and pure[oid]:
            c = nxt[c]      # phase 0 found no legal pure op here
            continue
        if phase >= 2 and unlock:
            ns = legal(state, oid)
            if ns is _ILLEGAL or ns == state or not (needs[1] or ns in needs[0]):
                c = (JT if jfree[oid] else nxt[c]) if phase == 4 else nxt[c]
                continue
        t = trans[oid]
        ns = t.get(state, _MISS)
        if ns is _MISS:
            ns = step(state, ops[oid])
            if type(ns) is Illegal:
                ns = _ILLEGAL
            t[state] = ns
        m = e_ret[c]
        if ns is not _ILLEGAL and (m or ns != state):
            if m:
                b = bitno[oid] - base
                nr = rbits | (1 << b)
                nbase = base
                if not b:
                    # shift out the run of linearized ops at the bottom
                    b = (~nr & (nr + 1)).bit_length() - 1
                    nr >>= b
                    nbase = base + b
                ni = ibits
            else:
                nr = rbits
                nbase = base
                ni = ibits | (1 << bitno[oid])
            k = (nbase, nr, ns)
            seen = cache_get(k)
            new = True
            if seen is None:
                cache[k] = [ni]
            else:
                for x in seen:
                    if x | ni == ni:
                        new = False
                        break
                else:
                    seen.append(ni)
            if phase == 0:      # (only a forced move is tried in phase 0)
                if not new:
                    phase = 4   # the forced move leads to a failed configuration
                    c = JT
                    continue
                fphase = 3
            else:
                fphase = phase
            if new:
                explored += 1
                calls.append((c, state, rbits, base, ibits, fphase, needs))
                state = ns
                rbits = nr
                base = nbase
                ibits = ni
                p = prv[c]
                q = nxt[c]
                nxt[p] = q
                prv[q] = p
                if m:
                    p = prv[m]
                    q = nxt[m]
                    nxt[p] = q
                    prv[q] = p
                    remaining -= 1
                i = rs_idx[oid]
                if i >= 0:
                    rs_lin[i] = True
                    while rs_lin[rp]:
                        rp += 1
                phase = 0
                continue
        if phase == 0:
            phase = 1
            c = nxt[QH]
        elif phase == 4:
            c = JT if jfree[oid] else nxt[c]
        else:
            c = nxt[c]
    where.explored = explored
    elapsed = time.monotonic() - start
    if not remaining:
        return SearchResult(True, explored, elapsed)
    # Invalid: the longest prefix, with the state after each op.
    frames = best or []
    prefix: list[tuple[int, Hashable]] = []
    if canon is None:
        for i, fr in enumerate(frames):
            after = frames[i + 1][1] if i + 1 < len(frames) else best_state
            prefix.append((e_op[fr[0]], after))
    else:
        # the states the ops really leave, not their collapsed representatives
        after = model.init()
        for fr in frames:
            oid = e_op[fr[0]]
            after = model.step(after, ops[oid])
            prefix.append((oid, after))
    return SearchResult(False, explored, elapsed, prefix=prefix, blocked=blocked)


def rss_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def memory_per_config(n_ops: int) -> int:
    """Rough bytes per seen configuration of an n-op key (for the memory budget)."""
    return _ENTRY_OVERHEAD + n_ops // 64


def budget_reason(why: str, where: Progress, n_ops: int, label: str = "") -> str:
    return (f"{why} reached{label} after {where.explored:,} configurations explored; "
            f"linearized {max(where.best, where.depth):,} of {n_ops:,} ops at best")


def search(ops: list[Operation], model: Model, deadline: float | None = None,
           memory_limit_bytes: int | None = None,
           progress: Callable[[str], None] | None = None,
           label: str = "", stop: Callable[[], bool] | None = None,
           prune: bool = True) -> SearchResult:
    """Decide whether `ops` (one key; `op.id` = position) is linearizable under `model`.

    Ends in "unknown" when `deadline` (time.monotonic()) passes, the seen
    configurations would exceed `memory_limit_bytes`, or `stop()` says so.
    """
    start = time.monotonic()
    where = Progress()
    gen = search_steps(ops, model, where, prune)
    cap = None if memory_limit_bytes is None else \
        max(1, memory_limit_bytes // memory_per_config(len(ops)))
    rss0 = rss_bytes() if memory_limit_bytes is not None else 0
    last = start
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value
        why = None
        if deadline is not None or progress is not None:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                why = "time limit"
            elif progress is not None and now - last >= 2.0:
                last = now
                progress(f"searching{label}: {where.explored:,} configurations, "
                         f"{where.depth:,}/{len(ops):,} ops linearized")
        if why is None and cap is not None and (
                where.explored >= cap or rss_bytes() - rss0 >= memory_limit_bytes):
            why = "memory limit"
        if why is None and stop is not None and stop():
            why = "stopped"
        if why:
            gen.close()
            return SearchResult("unknown", where.explored, time.monotonic() - start,
                                unknown_reason=budget_reason(why, where, len(ops), label))


def search_subset(ops: list[Operation], model: Model, keep: list[int],
                  deadline: float | None = None) -> SearchResult:
    """Check only the ops whose ids are in `keep` (renumbered: the result's op ids
    are positions in `keep`); used by shrinking."""
    sub = [_renumbered(ops[i], j) for j, i in enumerate(keep)]
    return search(sub, model, deadline=deadline)


def _renumbered(op: Operation, new_id: int) -> Operation:
    return Operation(new_id, op.process, op.f, op.key, op.input, op.output, op.status,
                     op.call, op.ret, op.invoke, op.completion)


__all__ = ["SearchResult", "Progress", "search", "search_steps", "search_subset",
           "memory_per_config", "budget_reason", "TICK"]
