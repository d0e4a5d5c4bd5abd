"""A seeded deterministic simulation of a Raft register cluster.

A *simulation run* drives 3 or 5 real `RaftCore`s, each with a `RegisterMachine`,
over a simulated network and simulated disks, with simulated clients, from one seed.
Everything random comes from the seed, so a run is reproduced exactly by

    python -m sim --seed N [--nodes 3|5] [--steps S]

What is simulated (all in simulated milliseconds, driven by one event queue):
- network: per-message delay (so reordering), drops, duplicates, and partitions
  (one node isolated, a minority/majority split, a "bridge"), healed later;
- crashes: a node is killed between events (everything it fsync'd survives) or in
  the middle of persisting a Ready: then only a random prefix of the unsynced bytes
  reaches the disk (a torn write) and nothing of that Ready was sent or applied;
  a restart replays the WAL image with node.shell.storage.decode_wal;
- clients: closed-loop processes issuing read/write/cas with a client id and seq,
  retrying at the leader hint; reads go through the log or through ReadIndex.
  An op is `ok` only when its result came from an applied entry (or a ReadIndex
  read served after its read index was applied), `fail` only when every attempt got
  a definite answer, `info` otherwise (SPEC section 2).

Each run checks the client history with `checker.check(ops, model="cas-register")`
(skipped with a note if the checker is not importable) and Raft's safety properties
(paper Figure 3): election safety (one leader per term), log matching, leader
completeness, state machine safety (the same entry applied at an index everywhere),
plus: a term never decreases, not even across restarts; one vote per term, even
across restarts; and a liveness check after the faults stop.
"""

from __future__ import annotations

import heapq
import random
import sys
import time as _time
from typing import Any

from checker import check
from history.ops import Op
from node.core.messages import CommitEntry, LogEntry, message_from_dict
from node.core.raft import LEADER
from node.core.state import RaftConfig
from sim.model import TICK_MS, Request, SimClient, SimNode, SimParams


class Simulation:
    """One seeded run (see the module docstring)."""

    def __init__(self, seed: int, params: SimParams, check_linearizability: bool = True,
                 verbose: bool = False) -> None:
        self.seed = seed
        self.p = params
        self.rng = random.Random(seed)
        self.verbose = verbose
        self.check_lin = check_linearizability
        self.ids = [f"n{i + 1}" for i in range(params.nodes)]
        self.raft_config = RaftConfig(election_ticks_min=10, election_ticks_max=20,
                                      heartbeat_ticks=2, max_batch_entries=32,
                                      pre_vote=params.pre_vote,
                                      check_quorum=params.check_quorum)
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, str, Any]] = []
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.stats: dict[str, int] = {k: 0 for k in (
            "messages", "dropped", "duplicated", "crashes", "crash_in_write", "restarts",
            "torn_tails", "partitions", "pauses", "elections", "log_checks", "applied")}
        self.faults_on = True
        self.cut: set[tuple[str, str]] = set()
        self.leaders: dict[int, str] = {}
        self.votes: dict[tuple[str, int], str] = {}
        self.applied: dict[int, tuple[int, Any]] = {}
        self.committed: dict[int, tuple[int, LogEntry]] = {}  # index -> (commit term, entry)
        self.max_commit = 0
        self.ops: list[Op] = []
        self._last_time = -1
        self._next_process = params.clients
        self._value = 0
        self.nodes = {i: SimNode(self, i) for i in self.ids}
        self.clients = [SimClient(self, n) for n in range(params.clients)]
        self.end_faults = params.steps * TICK_MS
        self.end_clients = self.end_faults + params.heal_ms
        self.first_ok_after_heal: int | None = None

    # ------------------------------------------------------------------ plumbing
    def next_id(self) -> int:
        self._seq += 1
        return self._seq

    def schedule(self, at: int, kind: str, payload: Any = None) -> None:
        heapq.heappush(self._queue, (at, self.next_id(), kind, payload))

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"{self.now:>7} ms  {text}", file=sys.stderr)

    def violation(self, text: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(f"t={self.now}ms: {text}")
        self.log("VIOLATION " + text)

    # ------------------------------------------------------------------ network
    def send(self, src: str, dst: str, m: Any) -> None:
        self.stats["messages"] += 1
        if self.faults_on and ((src, dst) in self.cut or self.rng.random() < self.p.drop):
            self.stats["dropped"] += 1
            return
        d = m.to_dict()
        copies = 2 if self.faults_on and self.rng.random() < self.p.dup else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            self.schedule(self.now + self.rng.randint(1, self.p.delay_max), "deliver",
                          (src, dst, d))

    def deliver(self, src: str, dst: str, d: dict) -> None:
        node = self.nodes[dst]
        if not node.up or (self.faults_on and (src, dst) in self.cut):
            return
        if node.paused_until > self.now:  # a paused process reads its socket later
            self.schedule(node.paused_until, "deliver", (src, dst, d))
            return
        self.guard(node, lambda: (node.core.step(message_from_dict(d)), node.drain()))

    def guard(self, node: SimNode, fn: Any) -> None:
        """Run a node's work; an exception in the core is a violation and stops it."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported, and the node stops
            self.violation(f"{node.id} raised {type(e).__name__}: {e}")
            node.crash()

    # ------------------------------------------------------------------ invariants
    def record_vote(self, voter: str, term: int, candidate: str) -> None:
        prev = self.votes.setdefault((voter, term), candidate)
        if prev != candidate:
            self.violation(f"{voter} voted for {prev} and {candidate} in term {term}")

    def observe(self, node: SimNode) -> None:
        core = node.core
        if core.term < node.last_term:
            self.violation(f"{node.id}: term went back from {node.last_term} to {core.term}")
        node.last_term = core.term
        if core.role != LEADER:
            return
        prev = self.leaders.setdefault(core.term, node.id)
        if prev != node.id:
            self.violation(f"two leaders in term {core.term}: {prev} and {node.id}")
        if node.led_term != core.term:
            node.led_term = core.term
            self.stats["elections"] += 1
            self.log(f"{node.id} leader at term {core.term}")
            # Leader completeness (Figure 3): every entry committed in an earlier
            # term is in the new leader's log.
            n = core.log_length()
            for index, (cterm, entry) in self.committed.items():
                if cterm < core.term and (index > n or core.entry(index) != entry):
                    self.violation(f"leader completeness: {node.id} leads term {core.term} "
                                   f"without entry {index} committed at term {cterm}")
                    break
        # Record what this leader has committed, with the term it was committed in.
        for index in range(self.max_commit + 1, core.commit_index + 1):
            self.committed[index] = (core.term, core.entry(index))
        self.max_commit = max(self.max_commit, core.commit_index)

    def check_applied(self, node: SimNode, ce: CommitEntry) -> None:
        # State machine safety (Figure 3): one entry per index, everywhere.
        self.stats["applied"] += 1
        prev = self.applied.setdefault(ce.index, (ce.term, ce.command))
        if prev != (ce.term, ce.command):
            self.violation(f"state machine safety: {node.id} applied {(ce.term, ce.command)} "
                           f"at {ce.index}, another node applied {prev}")
        committed = self.committed.get(ce.index)
        if committed is not None and committed[1] != LogEntry(ce.term, ce.command):
            self.violation(f"{node.id} applied at {ce.index} an entry that differs from the "
                           f"one a leader committed")

    def check_logs(self) -> None:
        # Log matching (Figure 3): same index and term => identical logs up to there.
        self.stats["log_checks"] += 1
        logs = [(n.id, n.core.entries()) for n in self.nodes.values() if n.up]
        for a in range(len(logs)):
            for b in range(a + 1, len(logs)):
                (ia, la), (ib, lb) = logs[a], logs[b]
                i = min(len(la), len(lb))
                while i > 0 and la[i - 1].term != lb[i - 1].term:
                    i -= 1
                if la[:i] != lb[:i]:
                    j = next(k for k in range(i) if la[k] != lb[k])
                    self.violation(f"log matching: {ia} and {ib} agree on the term at {i} "
                                   f"but differ at {j + 1}")

    # ------------------------------------------------------------------ nemesis
    def schedule_restart(self, node: SimNode) -> None:
        self.schedule(self.now + self.rng.randint(100, 1500), "restart", node.id)

    def nemesis(self) -> None:
        if not self.faults_on:
            return
        actions = []
        if self.p.partitions:
            actions += ["partition", "heal"]
        if self.p.crashes:
            actions += ["crash"]
        if self.p.pauses:
            actions += ["pause"]
        if actions:
            action = self.rng.choice(actions)
            if action == "partition":
                self.partition()
            elif action == "heal":
                self.cut.clear()
                self.log("healed")
            elif action == "pause":
                # SIGSTOP: no ticks, messages and requests wait in the socket buffers
                node = self.rng.choice(list(self.nodes.values()))
                node.paused_until = self.now + self.rng.randint(100, 1500)
                self.stats["pauses"] += 1
                self.log(f"{node.id} paused until {node.paused_until}")
            else:
                live = [n for n in self.nodes.values() if n.up]
                if live:
                    node = self.rng.choice(live)
                    self.stats["crashes"] += 1
                    self.log(f"{node.id} killed")
                    node.crash()
                    self.schedule_restart(node)
        self.schedule(self.now + self.rng.randint(1, 2 * self.p.nemesis_every), "nemesis")

    def partition(self) -> None:
        ids = list(self.ids)
        self.rng.shuffle(ids)
        shape = self.rng.choice(["one", "majority", "bridge", "one-way"])
        self.cut.clear()
        if shape == "one":
            groups = [ids[:1], ids[1:]]
        else:
            k = len(ids) // 2
            groups = [ids[:k], ids[k:]]
        for x in groups[0]:
            for y in groups[1]:
                self.cut.add((x, y))
                if shape != "one-way":
                    self.cut.add((y, x))
        if shape == "bridge" and len(ids) >= 3:
            # the bridge node (first of the second group) hears and reaches everyone
            bridge = groups[1][0]
            self.cut = {(x, y) for x, y in self.cut if bridge not in (x, y)}
        self.stats["partitions"] += 1
        self.log(f"partition {shape}: cut {sorted(self.cut)}")

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.up:
            return
        self.stats["restarts"] += 1
        try:
            node.start()
        except Exception as e:  # a WAL the simulation wrote must always load
            self.violation(f"{node_id} cannot restart: {e}")
            return
        self.log(f"{node_id} restarted at term {node.core.term}, log {node.core.log_length()}")

    def tick(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.up and node.paused_until <= self.now:
            self.guard(node, lambda: (node.core.tick(), node.drain()))
        jitter = self.rng.randint(-2, 2) if self.faults_on else 0
        self.schedule(self.now + TICK_MS + jitter, "tick", node_id)

    # ------------------------------------------------------------------ clients
    def _time_ns(self) -> int:
        t = max(self._last_time + 1, self.now * 1_000_000)
        self._last_time = t
        return t

    def record(self, type_: str, c: SimClient, f: str, key: Any, value: Any,
               error_name: str | None = None, node: str | None = None) -> None:
        self.ops.append(Op(index=len(self.ops), time=self._time_ns(), type=type_,
                           process=c.process, f=f, value=value, key=key, node=node,
                           error=error_name))

    def start_op(self, c: SimClient) -> None:
        if self.now >= self.end_clients:
            return
        r = self.rng.random()
        key = f"k{self.rng.randrange(self.p.keys)}"
        c.seq += 1
        if r < 0.4:
            f, value = "read", None
            cmd = {"op": "read", "key": key}
            if self.rng.random() < self.p.read_index_share:
                cmd["via"] = "read-index"
        elif r < 0.8:
            self._value += 1
            f, value = "write", self._value
            cmd = {"op": "write", "key": key, "value": value}
        else:
            self._value += 1
            frm = c.last_read.get(key)
            if frm is None or self.rng.random() < 0.2:
                frm = self.rng.randint(max(1, self._value - 5), self._value)
            f, value = "cas", [frm, self._value]
            cmd = {"op": "cas", "key": key, "from": frm, "to": self._value}
        cmd["client"], cmd["seq"] = c.cid, c.seq
        c.op = {"f": f, "key": key, "value": value, "cmd": cmd, "seq": c.seq,
                "deadline": self.now + 1000}
        self.record("invoke", c, f, key, value)
        self.attempt(c)

    def attempt(self, c: SimClient) -> None:
        op = c.op
        assert op is not None
        c.attempt += 1
        req = Request(c, op["seq"], c.attempt, op["cmd"])
        op.setdefault("open_attempts", set()).add(c.attempt)
        if self.rng.random() >= self.p.drop or not self.faults_on:
            self.schedule(self.now + self.rng.randint(1, 5), "request", (c.target, req))
        self.schedule(self.now + 250, "attempt-timeout", (c, op["seq"], c.attempt))

    def client_reply(self, node: SimNode, req: Request, result: dict) -> None:
        if self.faults_on and self.rng.random() < self.p.drop:
            return
        self.schedule(self.now + self.rng.randint(1, 5), "reply", (node.id, req, result))

    def on_reply(self, node_id: str, req: Request, result: dict) -> None:
        c = req.client
        op = c.op
        if op is None or req.op_seq != op["seq"]:
            return  # an answer to an op already completed
        op["open_attempts"].discard(req.attempt)
        if result.get("ok"):
            value = result.get("value") if op["f"] == "read" else op["value"]
            if op["f"] == "read":
                c.last_read[op["key"]] = value
            self.complete(c, "ok", value, node=node_id)
            return
        code = result.get("code")
        if code in (20, 22):
            self.complete(c, "fail", op["value"], error_name=result["error"], node=node_id)
            return
        if not result.get("definite"):
            op["maybe"] = True
        if result.get("leader"):
            c.target = result["leader"]
        else:
            c.target = self.rng.choice(self.ids)
        self.retry(c, req.attempt)

    def on_attempt_timeout(self, c: SimClient, seq: int, attempt: int) -> None:
        op = c.op
        if op is None or op["seq"] != seq or attempt not in op["open_attempts"]:
            return
        op["open_attempts"].discard(attempt)
        op["maybe"] = True  # no answer: it may have taken effect
        c.target = self.rng.choice(self.ids)
        self.retry(c, attempt)

    def retry(self, c: SimClient, attempt: int) -> None:
        op = c.op
        assert op is not None
        if attempt != c.attempt:
            return  # a newer attempt is already out
        if self.now >= op["deadline"]:
            if op.get("maybe") and op["f"] != "read":
                self.complete(c, "info", op["value"], error_name="timeout")
            else:
                self.complete(c, "fail", op["value"], error_name="unavailable")
            return
        self.schedule(self.now + self.rng.randint(5, 30), "retry", (c, op["seq"]))

    def complete(self, c: SimClient, type_: str, value: Any, error_name: str | None = None,
                 node: str | None = None) -> None:
        op = c.op
        assert op is not None
        self.record(type_, c, op["f"], op["key"], value, error_name, node)
        if type_ == "ok" and self.now >= self.end_faults and self.first_ok_after_heal is None:
            self.first_ok_after_heal = self.now
        c.op = None
        if type_ == "info":
            c.process = self._next_process
            self._next_process += 1
        self.schedule(self.now + self.rng.randint(0, 20), "next-op", c)

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict:
        t0 = _time.monotonic()
        for i, nid in enumerate(self.ids):
            self.schedule(self.rng.randint(0, TICK_MS - 1), "tick", nid)
        for c in self.clients:
            self.schedule(self.rng.randint(0, 50), "next-op", c)
        self.schedule(self.rng.randint(200, 2 * self.p.nemesis_every), "nemesis")
        self.schedule(self.end_faults, "heal")
        end = self.end_clients + 2000
        next_log_check = 500
        while self._queue:
            at, _, kind, payload = heapq.heappop(self._queue)
            if at > end:
                break
            self.now = at
            if kind == "tick":
                self.tick(payload)
            elif kind == "deliver":
                self.deliver(*payload)
            elif kind == "request":
                node_id, req = payload
                node = self.nodes[node_id]
                if node.up and node.paused_until > self.now:
                    self.schedule(node.paused_until, "request", payload)
                elif node.up:
                    self.guard(node, lambda: node.handle_request(req))
            elif kind == "reply":
                self.on_reply(*payload)
            elif kind == "attempt-timeout":
                self.on_attempt_timeout(*payload)
            elif kind == "retry":
                c, seq = payload
                if c.op is not None and c.op["seq"] == seq:
                    self.attempt(c)
            elif kind == "next-op":
                if payload.op is None:
                    self.start_op(payload)
            elif kind == "nemesis":
                self.nemesis()
            elif kind == "restart":
                self.restart(payload)
            elif kind == "heal":
                self.faults_on = False
                self.cut.clear()
                self.log("faults off: healed, restarting every node")
                for node in self.nodes.values():
                    node.paused_until = min(node.paused_until, self.now)
                for node in self.nodes.values():
                    if not node.up:
                        self.restart(node.id)
            if self.now >= next_log_check:
                next_log_check = self.now + 500
                self.check_logs()
        self.check_logs()
        return self.finish(_time.monotonic() - t0)

    def finish(self, elapsed: float) -> dict:
        counts = {t: sum(1 for o in self.ops if o.type == t) for t in ("invoke", "ok", "fail", "info")}
        if counts["ok"] == 0:
            self.violation("no operation succeeded (vacuous run)")
        if self.first_ok_after_heal is None:
            self.violation(f"liveness: no op succeeded in the {self.p.heal_ms} ms after "
                           f"the faults stopped")
        lin: Any = "skipped"
        if self.check_lin:
            res = check(self.ops, model="cas-register", time_limit=60)
            lin = res.valid
            if res.valid is False:
                self.violation("history is not linearizable: " + res.explain()[:2000])
            elif res.valid != True:  # noqa: E712
                self.notes.append(f"linearizability unknown: "
                                  f"{res.to_dict().get('unknown_reason')}")
        return {"seed": self.seed, "nodes": self.p.nodes, "steps": self.p.steps,
                "params": self.p.__dict__, "ops": counts, "stats": self.stats,
                "max_term": max(n.core.term for n in self.nodes.values()),
                "linearizable": lin, "violations": self.violations, "notes": self.notes,
                "elapsed_s": round(elapsed, 3)}
