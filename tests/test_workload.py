"""The register workload against small in-test HTTP register servers (real sockets).

The servers speak the node's client API (SPEC section 4): a correct one (one shared
register map with an exactly-once table), one that redirects to a leader, one that is
too slow, one that answers "indefinite", and a closed port.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections import Counter

from aiohttp import web

from history.writer import HistoryWriter
from workloads.generator import RegisterGenerator
from workloads.register import RegisterWorkload, WorkloadOptions


class Registers:
    """A linearizable register map with an exactly-once table (client -> (seq, result))."""

    def __init__(self) -> None:
        self.values: dict = {}
        self.done: dict = {}
        self.requests: list[dict] = []
        self.applied = 0

    def apply(self, req: dict) -> dict:
        client, seq = req.get("client"), req.get("seq")
        if client is not None and client in self.done and self.done[client][0] == seq:
            return self.done[client][1]
        key = req["key"]
        if req["op"] == "read":
            res = {"ok": True, "value": self.values.get(key)}
        elif req["op"] == "write":
            self.values[key] = req["value"]
            self.applied += 1
            res = {"ok": True}
        elif key not in self.values:
            res = {"ok": False, "code": 20, "error": "key-does-not-exist", "definite": True}
        elif self.values[key] != req["from"]:
            res = {"ok": False, "code": 22, "error": "precondition-failed", "definite": True}
        else:
            self.values[key] = req["to"]
            self.applied += 1
            res = {"ok": True}
        if client is not None:
            self.done[client] = (seq, res)
        return res


async def start_server(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/op", handler)

    async def status(request):
        return web.json_response({"role": "leader"})

    app.router.add_get("/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_well_formed(ops: list[dict]) -> None:
    """SPEC section 2: one open op per process, completions match, info retires."""
    open_ops: dict = {}
    retired: set = set()
    for i, op in enumerate(ops):
        assert op["index"] == i
        p = op["process"]
        assert p not in retired, f"process {p} reused after an info: {op}"
        if op["type"] == "invoke":
            assert p not in open_ops, f"two open ops for process {p}"
            open_ops[p] = op
        else:
            inv = open_ops.pop(p)
            assert (inv["f"], inv["key"]) == (op["f"], op["key"])
            assert op["time"] >= inv["time"]
            if op["type"] == "info":
                retired.add(p)
            if op["type"] == "fail":
                assert op.get("error"), op
    times = [op["time"] for op in ops]
    assert times == sorted(times)


def run_workload(tmp_path, urls: dict, **kw) -> tuple[list[dict], RegisterWorkload]:
    opts = WorkloadOptions(**{"rate": 200.0, "concurrency": 4, "time_limit": 1.0,
                              "op_timeout": 0.5, "final_timeout": 3.0, **kw})
    with HistoryWriter(tmp_path / "history.jsonl") as h:
        w = RegisterWorkload(h, urls, opts, seed=7)

        async def main():
            await w.run()
            return await w.final_reads()

        w.final_values = asyncio.run(main())
    return read_jsonl(tmp_path / "history.jsonl"), w


def with_servers(handlers: dict):
    """Run the servers for `handlers` ({id: handler}) on a background event loop."""
    import threading
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    started = {n: asyncio.run_coroutine_threadsafe(start_server(h), loop).result(5)
               for n, h in handlers.items()}

    def stop():
        for runner, _ in started.values():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)

    return {n: url for n, (_, url) in started.items()}, stop


def test_generator_rotates_keys_and_writes_unique_values():
    g = RegisterGenerator(random.Random(1), ops_per_key=5, active_keys=2)
    ops = [g.next_op() for _ in range(100)]
    per_key = Counter(op.key for op in ops)
    assert max(per_key.values()) <= 5
    assert len(per_key) >= 20
    written = [op.value for op in ops if op.f == "write"] + \
              [op.value[1] for op in ops if op.f == "cas"]
    assert len(written) == len(set(written))
    assert {op.f for op in ops} >= {"read", "write"}


def test_correct_server_history_is_well_formed(tmp_path):
    regs = Registers()

    async def handler(request):
        req = await request.json()
        regs.requests.append(req)
        return web.json_response(regs.apply(req))

    urls, stop = with_servers({"n1": handler, "n2": handler})
    try:
        ops, w = run_workload(tmp_path, urls, ops_per_key=10)
    finally:
        stop()
    check_well_formed(ops)
    types = Counter(op["type"] for op in ops)
    assert types["invoke"] >= 50
    assert types["info"] == 0
    fs = Counter(op["f"] for op in ops if op["type"] == "ok")
    assert fs["read"] and fs["write"] and fs["cas"]
    # keys rotate: no key got more than ops_per_key invocations before the final reads
    load = [op for op in ops if op["type"] == "invoke" and op["process"] < 4]
    assert max(Counter(op["key"] for op in load).values()) <= 10
    # unique write values, and the final phase read every key and saw its last value
    writes = [op["value"] for op in ops if op["type"] == "invoke" and op["f"] == "write"]
    assert len(writes) == len(set(writes))
    assert set(w.final_values) == set(w.generator.keys)
    assert w.final_values == {k: regs.values.get(k) for k in w.generator.keys}
    # every request carried a client id and a seq
    assert all("client" in r and isinstance(r["seq"], int) for r in regs.requests)


def test_not_leader_is_retried_on_the_leader_with_the_same_seq(tmp_path):
    regs = Registers()
    seen: dict[str, list] = {"n1": [], "n2": []}

    async def follower(request):
        req = await request.json()
        seen["n1"].append(req)
        return web.json_response({"ok": False, "code": 30, "error": "not-leader",
                                  "definite": True, "leader": "n2"})

    async def leader(request):
        req = await request.json()
        seen["n2"].append(req)
        return web.json_response(regs.apply(req))

    urls, stop = with_servers({"n1": follower, "n2": leader})
    urls = {"n0": closed_port_url(), **urls}  # refused: not sent, so tried elsewhere
    try:
        ops, _ = run_workload(tmp_path, urls, concurrency=2, time_limit=0.5)
    finally:
        stop()
    check_well_formed(ops)
    assert seen["n1"], "the follower was never asked"
    leader_ids = {(r["client"], r["seq"]) for r in seen["n2"]}
    assert all((r["client"], r["seq"]) in leader_ids for r in seen["n1"])
    assert not [op for op in ops if op["type"] == "fail" and op["error"] == "not-leader"]
    assert all(op["node"] == "n2" for op in ops if op["type"] == "ok")
    assert {op["node"] for op in ops if op["type"] == "invoke"} >= {"n0", "n1"}


def test_refused_connection_is_fail(tmp_path):
    ops, _ = run_workload(tmp_path, {"down": closed_port_url()}, concurrency=2,
                          time_limit=0.3, final_timeout=0.3)
    check_well_formed(ops)
    done = [op for op in ops if op["type"] != "invoke"]
    assert done and all(op["type"] == "fail" and op["error"] == "connection-refused"
                        for op in done)


def test_timeouts_indefinite_and_refused_without_retry(tmp_path):
    async def slow(request):
        await asyncio.sleep(2)
        return web.json_response({"ok": True})

    async def indefinite(request):
        return web.json_response({"ok": False, "code": 13, "error": "crash",
                                  "definite": False})

    async def unavailable(request):
        return web.json_response({"ok": False, "code": 20,
                                  "error": "key-does-not-exist", "definite": True})

    urls, stop = with_servers({"slow": slow, "crash": indefinite, "busy": unavailable})
    try:  # without retry mode: the first indefinite answer ends the op
        ops, _ = run_workload(tmp_path, urls, concurrency=4, time_limit=1.0,
                              op_timeout=0.3, attempt_timeout=0.3, final_timeout=0.5,
                              retry=False)
    finally:
        stop()
    check_well_formed(ops)
    done = [op for op in ops if op["type"] != "invoke"]
    by = {(op["node"], op["f"] == "read", op["type"], op.get("error")) for op in done}
    # a timeout: info for a write or cas, fail for a read; never ok
    assert ("slow", False, "info", "timeout") in by
    assert ("slow", True, "fail", "timeout") in by
    assert not any(n == "slow" and t == "fail" and not r for n, r, t, _ in by)
    # an indefinite error is info (or fail for a read), a definite one fail
    assert ("crash", False, "info", "crash") in by
    assert ("busy", False, "fail", "key-does-not-exist") in by
    assert not [op for op in done if op["type"] == "ok"]
    # after every info the worker went on under a fresh process id
    infos = [op for op in done if op["type"] == "info"]
    assert infos and len({op["process"] for op in infos}) == len(infos)


# --- retry mode: the same client/seq until a definite answer ----------------------------

def test_retry_mode_resends_the_same_client_seq_and_records_one_op(tmp_path):
    """A node that commits an op but answers "timeout" (its commit wait ran out) the
    first time it sees a (client, seq): the retry gets the stored result."""
    regs = Registers()
    attempts: Counter = Counter()

    async def handler(request):
        req = await request.json()
        regs.requests.append(req)
        ident = (req["client"], req["seq"])
        attempts[ident] += 1
        res = regs.apply(req)
        if attempts[ident] == 1 and req["op"] != "read":
            return web.json_response({"ok": False, "code": 0, "error": "timeout",
                                      "definite": False}, status=504)
        return web.json_response(res)

    urls, stop = with_servers({"n1": handler, "n2": handler})
    try:
        ops, w = run_workload(tmp_path, urls, concurrency=3, time_limit=0.8, op_timeout=3.0)
    finally:
        stop()
    check_well_formed(ops)
    done = [op for op in ops if op["type"] != "invoke"]
    writes = [op for op in done if op["f"] in ("write", "cas")]
    assert writes and not [op for op in done if op["type"] == "info"]
    # every write and cas was sent twice with the same client/seq, applied once
    resent = {i for i, n in attempts.items() if n >= 2}
    assert len(resent) == len(writes)
    assert all(n <= 2 for n in attempts.values())
    ok_effects = sum(1 for op in done if op["type"] == "ok" and op["f"] in ("write", "cas"))
    assert regs.applied == ok_effects
    # the history holds one op per request identity: one invoke, one completion
    invokes = [op for op in ops if op["type"] == "invoke"]
    assert len(invokes) == len(attempts)
    assert w.final_values == {k: regs.values.get(k) for k in w.generator.keys}


def test_retry_ends_indefinite_ops_as_info_at_the_deadline(tmp_path):
    """Indefinite, then "not executed here" forever: the first attempt may still take
    effect, so the op is info at its deadline, never fail; reads end as fail."""
    seen: list[tuple] = []

    async def lost(request):
        req = await request.json()
        seen.append((req["client"], req["seq"], "n1"))
        return web.json_response({"ok": False, "code": 0, "error": "timeout",
                                  "definite": False}, status=504)

    async def follower(request):
        req = await request.json()
        seen.append((req["client"], req["seq"], "n2"))
        return web.json_response({"ok": False, "code": 30, "error": "not-leader",
                                  "definite": True, "leader": "n1"}, status=503)

    urls, stop = with_servers({"n1": lost, "n2": follower})
    try:
        ops, _ = run_workload(tmp_path, urls, concurrency=2, time_limit=0.3, op_timeout=0.6,
                              final_timeout=0.3)
    finally:
        stop()
    check_well_formed(ops)
    done = [op for op in ops if op["type"] != "invoke"]
    assert done and not [op for op in done if op["type"] == "ok"]
    assert all(op["type"] == "info" and op["error"] == "timeout"
               for op in done if op["f"] != "read")
    assert all(op["type"] == "fail" for op in done if op["f"] == "read")
    # several attempts per op, on both nodes, always with the op's own client/seq
    per_op = Counter((c, q) for c, q, _ in seen)
    assert max(per_op.values()) >= 3
    assert {n for _, _, n in seen} == {"n1", "n2"}


def test_definite_not_executed_is_trusted(tmp_path):
    """"temporarily-unavailable" everywhere, and no attempt was uncertain: a write or
    cas definitely did not run, so it fails after at most two redirects, without
    waiting. A read (it changes nothing) waits for a node that can serve it, until its
    deadline."""
    seen: Counter = Counter()
    kind: dict = {}

    async def unavailable(request):
        req = await request.json()
        seen[(req["client"], req["seq"])] += 1
        kind[(req["client"], req["seq"])] = req["op"]
        return web.json_response({"ok": False, "code": 11,
                                  "error": "temporarily-unavailable", "definite": True},
                                 status=503)

    urls, stop = with_servers({"n1": unavailable, "n2": unavailable, "n3": unavailable})
    try:
        ops, _ = run_workload(tmp_path, urls, concurrency=3, time_limit=0.6, op_timeout=0.8,
                              final_timeout=0.3)
    finally:
        stop()
    check_well_formed(ops)
    done = [op for op in ops if op["type"] != "invoke"]
    assert done and all(op["type"] == "fail" and op["error"] == "temporarily-unavailable"
                        for op in done)
    writes = [n for ident, n in seen.items() if kind[ident] != "read"]
    reads = [n for ident, n in seen.items() if kind[ident] == "read"]
    assert writes and all(n == 3 for n in writes)  # the home node and two redirects
    assert reads and max(reads) > 3


def test_uncertain_op_waits_for_a_leader(tmp_path):
    """The first attempt timed out (it may have run); then no leader for a while: the
    op keeps its client/seq and waits for a node that answers from the state machine."""
    regs = Registers()
    attempts: Counter = Counter()

    async def electing(request):
        req = await request.json()
        ident = (req["client"], req["seq"])
        attempts[ident] += 1
        if attempts[ident] == 1 and req["op"] != "read":
            return web.json_response({"ok": False, "code": 0, "error": "timeout",
                                      "definite": False}, status=504)
        if attempts[ident] <= 5:
            return web.json_response({"ok": False, "code": 11,
                                      "error": "temporarily-unavailable",
                                      "definite": True}, status=503)
        return web.json_response(regs.apply(req))

    urls, stop = with_servers({"n1": electing, "n2": electing})
    try:
        ops, _ = run_workload(tmp_path, urls, concurrency=2, time_limit=0.5, op_timeout=4.0)
    finally:
        stop()
    check_well_formed(ops)
    done = [op for op in ops if op["type"] != "invoke"]
    writes = [op for op in done if op["f"] in ("write", "cas")]
    assert writes and all(op["type"] in ("ok", "fail") for op in writes)
    assert not [op for op in writes if op.get("error") == "temporarily-unavailable"]
    assert max(attempts.values()) == 6
