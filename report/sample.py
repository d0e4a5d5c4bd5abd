"""Synthetic runs: a report drawn without a cluster (the report tests, bench/report.py).

`synthetic_history(n_ops, ...)` simulates clients on a real register: every op gets a
linearization point inside its interval and its result comes from applying ops in
that order, so the history is linearizable; `stale_read=True` then rewrites one read
to return an older value (a stale read), which makes its key not linearizable.
Partitions are recorded as nemesis ops (SPEC section 7), and ops during a partition
fail or time out more often.

`results_for(ops)` checks the history with the real checker when it exists
(checker.check), and otherwise builds a result shaped as docs/internals.md says.
"""

from __future__ import annotations

import random
from typing import Any

from history.ops import Op

MS = 1_000_000


def synthetic_history(n_ops: int, seed: int = 1, processes: int = 5, keys: int = 8,
                      stale_read: bool = False) -> list[Op]:
    rng = random.Random(seed)
    n_client = max(1, n_ops // 2)
    events: list[tuple[int, int, dict]] = []   # (time, order, fields)
    lin: list[tuple[int, int, dict, dict]] = []  # (point, seq, invoke, completion)
    clock = [rng.randint(0, 5) * MS for _ in range(processes)]
    proc_ids = list(range(processes))
    duration_guess = n_client * 10 * MS // processes
    partitions = []
    t = 200 * MS
    while t < duration_guess:
        partitions.append((t, t + 300 * MS))
        t += 1000 * MS

    def in_partition(x: int) -> bool:
        return any(a <= x <= b for a, b in partitions)

    seq = 0
    for i in range(n_client):
        lane = i % processes
        start = clock[lane] + rng.randint(0, 3) * MS
        dur = rng.randint(1, 12) * MS
        f = rng.choice(["read", "read", "write", "cas"])
        key = rng.randrange(keys)
        if f == "write":
            val: Any = rng.randint(0, 9)
        elif f == "cas":
            val = [rng.randint(0, 9), rng.randint(0, 9)]
        else:
            val = None
        outcome = "ok"
        if in_partition(start):
            outcome = rng.choices(["ok", "fail", "info"], [45, 45, 10])[0]
            dur += rng.randint(0, 40) * MS
        inv = {"process": proc_ids[lane], "f": f, "key": key, "value": val,
               "node": f"n{1 + key % 3}", "type": "invoke", "time": start}
        comp = {"process": proc_ids[lane], "f": f, "key": key, "value": val,
                "node": inv["node"], "type": outcome, "time": start + dur}
        if outcome == "fail":
            comp["error"] = "temporarily-unavailable"
        elif outcome == "info":
            comp["error"] = "timeout"
        point = rng.randint(start, start + dur)
        if outcome != "fail" and not (outcome == "info" and f == "read"):
            lin.append((point, seq, inv, comp))
        seq += 1
        events.append((start, 2 * seq, inv))
        events.append((start + dur, 2 * seq + 1, comp))
        clock[lane] = start + dur
        if outcome == "info":  # the client goes on under a new process id
            proc_ids[lane] += processes
    # apply in linearization order: reads see the register, cas may fail its precondition
    reg: dict[int, Any] = {}
    history_of: dict[int, list[Any]] = {}
    for _, _, inv, comp in sorted(lin, key=lambda x: (x[0], x[1])):
        k = inv["key"]
        if inv["f"] == "read":
            comp["value"] = reg.get(k)
        elif inv["f"] == "write":
            reg[k] = inv["value"]
            history_of.setdefault(k, []).append(inv["value"])
        else:
            frm, to = inv["value"]
            if reg.get(k) == frm:
                reg[k] = to
                history_of.setdefault(k, []).append(to)
            elif comp["type"] == "ok":
                comp["type"], comp["error"] = "fail", "precondition-failed"
    if stale_read:
        _make_stale(lin, rng)
    end = max(e[0] for e in events) if events else 0
    for a, b in partitions:
        if a > end:
            break
        events.append((a, -4, {"process": "nemesis", "type": "info", "f": "start-partition",
                               "value": "majority", "time": a}))
        events.append((a + MS, -3, {"process": "nemesis", "type": "info",
                                    "f": "start-partition", "time": a + MS,
                                    "value": {"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}}))
        events.append((b, -2, {"process": "nemesis", "type": "info", "f": "stop-partition",
                               "value": None, "time": b}))
        events.append((b + MS, -1, {"process": "nemesis", "type": "info",
                                    "f": "stop-partition", "value": "network-healed",
                                    "time": b + MS}))
    events.sort(key=lambda e: (e[0], e[1]))
    ops = []
    for i, (_, _, ev) in enumerate(events):
        extra = {"key": ev["key"]} if "key" in ev else {}
        ops.append(Op(index=i, time=ev["time"], type=ev["type"], process=ev["process"],
                      f=ev["f"], value=ev.get("value"), node=ev.get("node"),
                      error=ev.get("error"), **extra))
    return ops


def _make_stale(lin: list, rng: random.Random) -> None:
    """Rewrite one ok read, late in the run, to return a value overwritten long before."""
    order = sorted(lin, key=lambda x: (x[0], x[1]))
    for pos in range(len(order) * 2 // 3, len(order)):
        _, _, inv, comp = order[pos]
        if inv["f"] != "read" or comp["type"] != "ok":
            continue
        k = inv["key"]
        seen = [c["value"] if i["f"] == "write" else i["value"][1]
                for _, _, i, c in order[:pos]
                if i["key"] == k and c["type"] == "ok" and i["f"] in ("write", "cas")]
        older = [v for v in seen if v != comp["value"]]
        if older:
            comp["value"] = 100 + rng.randint(0, 9)  # never written: surely stale/invalid
            return


def results_for(ops: list[Op], use_checker: bool = True) -> dict:
    """results.json content: the real checker when present, else a built result."""
    check = None
    if use_checker:
        try:
            import checker
            check = checker.check
        except (ImportError, AttributeError):
            check = None
    if check is not None:
        res = check(ops).to_dict()
    else:
        res = _built_result(ops)
    return {"valid": res["valid"], "checkers": {"linearizable": res},
            "stats": {"ops": len(ops)}}


def _built_result(ops: list[Op]) -> dict:
    bad = next((o for o in ops if o.type == "ok" and o.f == "read"
                and isinstance(o.value, int) and o.value >= 100), None)
    if bad is None:
        return {"valid": True, "model": "cas-register", "op_count": len(ops),
                "keys": {}, "failures": [], "stats": {}}
    inv = next(o for o in reversed(ops[: bad.index])
               if o.process == bad.process and o.type == "invoke")
    same = [o for o in ops if o.has_key and o.key == bad.key and o.process != "nemesis"]
    prefix, state = [], None
    for o in same:
        if o.time >= inv.time or o.type != "ok":
            continue
        if o.f == "write":
            state = o.value
        elif o.f == "cas":
            state = o.value[1]
        prefix.append({"index": o.index, "state": state})
    conc = [o.index for o in same if o.type == "invoke" and o.index != inv.index
            and abs(o.time - inv.time) < 5 * MS]
    return {"valid": False, "model": "cas-register", "op_count": len(ops),
            "keys": {str(bad.key): {"valid": False, "ops": len(same)}},
            "failures": [{"key": bad.key, "op": bad.to_dict(), "line": bad.index + 1,
                          "concurrent": conc, "prefix": prefix, "state": state,
                          "reason": f"read {bad.value}, but the register holds {state}",
                          "shrunk": [inv.to_dict(), bad.to_dict()]}],
            "stats": {}}
