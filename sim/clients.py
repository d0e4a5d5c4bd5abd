"""Simulated clients: closed-loop processes that drive the register and record a history.

A *client* is one process of SPEC section 2: one open op at a time (read, write or
cas on a few keys), each with a client id and a sequence number for exactly-once.
A *home* client starts every op at its home node, as the real workload's clients
(and Jepsen's) do, so that every node, a deposed leader included, keeps being
asked; a *leader* client starts at the node it last found leading. Either follows
`not-leader` hints, retries on silence, and gives up at the op's deadline or after
`max_attempts` attempts (the real workload makes at most three). An op is `ok` only
when its result came from an applied entry (or a ReadIndex read served once its
read index was applied), `fail` only when every attempt got a definite answer,
`info` otherwise; after an `info` the process gets a new number, as in Jepsen.

Ops go to a few keys at a time, and to fresh keys after `ops_per_key` ops, or
INFOS_PER_KEY infos, per key. Each client draws from its own stream
(`Random("<seed>-client-<n>")`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from history.ops import Op
from sim.node import Request

INFOS_PER_KEY = 24

if TYPE_CHECKING:
    from sim.node import SimNode
    from sim.simulation import Simulation


class SimClient:
    """A closed-loop client process (SPEC section 2): one open op at a time."""

    def __init__(self, seed: int, n: int, home: str, sticky: bool) -> None:
        self.cid = f"c{n}"
        self.process = n
        self.seq = 0
        self.op: dict | None = None
        self.home = home
        self.sticky = sticky           # a leader client (else a home client)
        self.target = home
        self.rng = random.Random(f"{seed}-client-{n}")  # its own stream
        self.attempt = 0
        self.last_read: dict[Any, Any] = {}


class Clients:
    """Every client of a run, and the history they record."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.p = sim.p
        self.ops: list[Op] = []
        routing = sim.p.routing
        self.clients = [SimClient(sim.seed, n, sim.ids[n % len(sim.ids)],
                                  routing == "leader" or (routing == "mixed" and n % 2 == 1))
                        for n in range(sim.p.clients)]
        self.first_ok_after_heal: int | None = None
        self._last_time = -1
        self._next_process = sim.p.clients
        self._value = 0
        self._generation = self._gen_ops = self._gen_infos = 0

    def start(self) -> None:
        for c in self.clients:
            self.sim.schedule(c.rng.randint(0, 50), "next-op", c)

    def counts(self) -> dict[str, int]:
        out = {t: 0 for t in ("invoke", "ok", "fail", "info")}
        for o in self.ops:
            out[o.type] += 1
        return out

    # ------------------------------------------------------------------ the history
    def _time_ns(self) -> int:
        t = max(self._last_time + 1, self.sim.now * 1_000_000)
        self._last_time = t
        return t

    def record(self, type_: str, c: SimClient, f: str, key: Any, value: Any,
               error_name: str | None = None, node: str | None = None) -> None:
        self.ops.append(Op(index=len(self.ops), time=self._time_ns(), type=type_,
                           process=c.process, f=f, value=value, key=key, node=node,
                           error=error_name))

    # ------------------------------------------------------------------ ops
    def next_op(self, c: SimClient) -> None:
        sim, rng = self.sim, c.rng
        if c.op is not None or sim.now >= sim.end_clients:
            return
        r = rng.random()
        # Independent keys, as Jepsen's independent checker wants them: after
        # `ops_per_key` ops, or INFOS_PER_KEY ops of unknown outcome, on average per
        # key, the clients move on to fresh keys, so that each key's history stays
        # small enough to check (every info op may take effect at any later time).
        keys = self.p.keys
        if self._gen_ops >= keys * self.p.ops_per_key or self._gen_infos >= keys * INFOS_PER_KEY:
            self._generation += 1
            self._gen_ops = self._gen_infos = 0
        key = f"k{self._generation}.{rng.randrange(keys)}"
        self._gen_ops += 1
        c.seq += 1
        if not c.sticky:
            c.target = c.home
        if r < 0.4:
            f, value = "read", None
            cmd: dict[str, Any] = {"op": "read", "key": key}
            if rng.random() < self.p.read_index_share:
                cmd["via"] = "read-index"
        elif r < 0.8:
            self._value += 1
            f, value = "write", self._value
            cmd = {"op": "write", "key": key, "value": value}
        else:
            self._value += 1
            frm = c.last_read.get(key)
            if frm is None or rng.random() < 0.2:
                frm = rng.randint(max(1, self._value - 5), self._value)
            f, value = "cas", [frm, self._value]
            cmd = {"op": "cas", "key": key, "from": frm, "to": self._value}
        cmd["client"], cmd["seq"] = c.cid, c.seq
        c.op = {"f": f, "key": key, "value": value, "cmd": cmd, "seq": c.seq,
                "deadline": sim.now + self.p.op_deadline, "open": set(), "sent": []}
        self.record("invoke", c, f, key, value)
        self.send_attempt(c)

    def send_attempt(self, c: SimClient) -> None:
        sim, op = self.sim, c.op
        assert op is not None
        c.attempt += 1
        req = Request(c, op["seq"], c.attempt, op["cmd"])
        op["open"].add(c.attempt)
        op["sent"].append(c.attempt)
        if not sim.faults_on or c.rng.random() >= self.p.drop:
            sim.schedule(sim.now + c.rng.randint(1, 5), "request", (c.target, req))
        sim.schedule(sim.now + self.p.attempt_timeout, "attempt-timeout",
                     (c, op["seq"], c.attempt))

    def reply(self, node: "SimNode", req: Request, result: dict) -> None:
        """A node answers an attempt: the answer travels back (or is lost)."""
        sim, rng = self.sim, req.client.rng
        if sim.faults_on and rng.random() < self.p.drop:
            return
        sim.schedule(sim.now + rng.randint(1, 5), "reply", (node.id, req, result))

    def on_reply(self, node_id: str, req: Request, result: dict) -> None:
        c = req.client
        op = c.op
        if op is None or req.op_seq != op["seq"]:
            return  # an answer to an op already completed
        op["open"].discard(req.attempt)
        if result.get("ok"):
            value = result.get("value") if op["f"] == "read" else op["value"]
            if op["f"] == "read":
                c.last_read[op["key"]] = value
            self.complete(c, "ok", value, node=node_id)
            return
        if result.get("code") in (20, 22):
            self.complete(c, "fail", op["value"], error_name=result["error"], node=node_id)
            return
        if not result.get("definite"):
            op["maybe"] = True
        c.target = result.get("leader") or c.rng.choice(self.sim.ids)
        self.retry(c, req.attempt)

    def on_attempt_timeout(self, c: SimClient, seq: int, attempt: int) -> None:
        op = c.op
        if op is None or op["seq"] != seq or attempt not in op["open"]:
            return
        op["open"].discard(attempt)
        op["maybe"] = True  # no answer: it may have taken effect
        c.target = c.rng.choice(self.sim.ids)
        self.retry(c, attempt)

    def retry(self, c: SimClient, attempt: int) -> None:
        sim, op = self.sim, c.op
        assert op is not None
        if attempt != c.attempt:
            return  # a newer attempt is already out
        if sim.now >= op["deadline"] or len(op["sent"]) >= self.p.max_attempts:
            if op.get("maybe") and op["f"] != "read":
                self.complete(c, "info", op["value"], error_name="timeout")
            else:
                self.complete(c, "fail", op["value"], error_name="unavailable")
            return
        sim.schedule(sim.now + c.rng.randint(5, 30), "retry", (c, op["seq"]))

    def on_retry(self, c: SimClient, seq: int) -> None:
        if c.op is not None and c.op["seq"] == seq:
            self.send_attempt(c)

    def complete(self, c: SimClient, type_: str, value: Any, error_name: str | None = None,
                 node: str | None = None) -> None:
        sim, op = self.sim, c.op
        assert op is not None
        self.record(type_, c, op["f"], op["key"], value, error_name, node)
        if type_ == "ok" and sim.now >= sim.end_faults and self.first_ok_after_heal is None:
            self.first_ok_after_heal = sim.now
        c.op = None
        if type_ == "info":
            if op["key"].startswith(f"k{self._generation}."):
                self._gen_infos += 1
            c.process = self._next_process
            self._next_process += 1
        sim.schedule(sim.now + c.rng.randint(0, 80), "next-op", c)
