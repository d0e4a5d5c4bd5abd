"""A seeded deterministic simulation of a Raft register cluster.

A *simulation run* drives 3 or 5 real `RaftCore`s, each with a `RegisterMachine`,
over a simulated network (sim.network) and simulated disks (sim.disk), with
simulated clients (sim.clients), under a fault schedule (sim.schedule, played by
sim.nemesis), all from one seed, in simulated milliseconds on one event queue. Every
random choice comes from a stream named after the seed and its purpose (parameters,
faults, each network link, each client, each node's timing and core), so a seed and
a schedule are one run, reproduced exactly by

    raftcheck sim --seed N [--nodes 3|5] [--bug NAMES] [--faults SCHEDULE]

The nodes run the core with the planted bugs asked for (node.bugs), configured as
the server configures them. The run checks Raft's safety properties as it goes
(sim.invariants) and, at the end, liveness after the faults stop and the client
history with `checker.check(ops, model="cas-register")`.
"""

from __future__ import annotations

import heapq
import logging
import sys
import time as _time
from typing import Any, Callable

from checker import check
from node.bugs import core_options
from node.core.state import RaftConfig
from sim.clients import Clients
from sim.invariants import SafetyMonitor
from sim.nemesis import Nemesis
from sim.network import Network
from sim.node import SimNode
from sim.params import ELECTION_TICKS, HEARTBEAT_TICKS, TICK_MS, SimParams
from sim.schedule import Fault, generate

# The cores log as the node does; a run prints only what the simulation says (-v).
logging.getLogger("raftcheck.node").addHandler(logging.NullHandler())

LOG_CHECK_EVERY_MS = 500
STATS = ("messages", "dropped", "duplicated", "reordered", "faults", "crashes",
         "torn_writes", "restarts", "torn_tails", "pauses", "elections", "log_checks",
         "applied", "snapshots", "snapshot_crashes", "snapshots_installed")


def raft_config(p: SimParams, bugs: frozenset[str]) -> RaftConfig:
    """The core's configuration: the seed's draws, with what the bugs need off turned
    off (node.bugs.core_options, as the server applies it)."""
    opts = core_options(bugs)
    return RaftConfig(election_ticks_min=ELECTION_TICKS[0],
                      election_ticks_max=ELECTION_TICKS[1],
                      heartbeat_ticks=HEARTBEAT_TICKS,
                      max_batch_entries=p.max_batch_entries,
                      pre_vote=p.pre_vote and opts["pre_vote"],
                      check_quorum=p.check_quorum and opts["check_quorum"],
                      snapshot_chunk_chars=p.snapshot_chunk_chars, bugs=bugs)


class Simulation:
    """One seeded run (see the module docstring)."""

    def __init__(self, seed: int, params: SimParams, faults: list[Fault] | None = None,
                 bugs: frozenset[str] = frozenset(), check_linearizability: bool = True,
                 verbose: bool = False) -> None:
        self.seed = seed
        self.p = params
        self.bugs = frozenset(bugs)
        self.verbose = verbose
        self.check_lin = check_linearizability
        self.ids = [f"n{i + 1}" for i in range(params.nodes)]
        self.raft_config = raft_config(params, self.bugs)
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, str, Any]] = []
        self.stats: dict[str, int] = {k: 0 for k in STATS}
        self.faults_on = True
        self.end_faults = params.end_faults
        self.end_clients = self.end_faults + params.heal_ms
        self.schedule_given = faults is not None
        self.faults = generate(seed, params) if faults is None else list(faults)
        self.monitor = SafetyMonitor(self)
        self.network = Network(self)
        self.nemesis = Nemesis(self, self.faults)
        self.nodes = {i: SimNode(self, i) for i in self.ids}
        self.clients = Clients(self)
        self.notes: list[str] = []
        self.check_result: Any = None
        self._handlers: dict[str, Callable[[Any], None]] = {
            "tick": self.tick,
            "deliver": lambda a: self.network.deliver(*a),
            "request": self.request,
            "request-timeout": lambda a: a[0].request_timeout(*a[1:]),
            "reply": lambda a: self.clients.on_reply(*a),
            "attempt-timeout": lambda a: self.clients.on_attempt_timeout(*a),
            "retry": lambda a: self.clients.on_retry(*a),
            "next-op": self.clients.next_op,
            "fault": self.nemesis.begin,
            "fault-end": self.nemesis.end,
            "majority-check": lambda _: self.nemesis.majority_check(),
            "heal": lambda _: self.heal(),
            "restart": self.restart,
        }

    @property
    def ops(self) -> list:
        return self.clients.ops

    # ------------------------------------------------------------------ plumbing
    def next_id(self) -> int:
        self._seq += 1
        return self._seq

    def schedule(self, at: int, kind: str, payload: Any = None) -> None:
        heapq.heappush(self._queue, (at, self.next_id(), kind, payload))

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"{self.now:>7} ms  {text}", file=sys.stderr)

    def guard(self, node: SimNode, fn: Callable[[], Any]) -> None:
        """Run a node's work; an exception in the core is a violation and stops it, and
        so is (without stopping it) a message the core refused because it contradicts
        a committed entry."""
        core = node.core
        refused = core.contradictions
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported, and the node stops
            self.monitor.violation("core-error", f"{node.id} raised {type(e).__name__}: {e}")
            node.crash()
            return
        if node.core is core and core.contradictions > refused:
            self.monitor.violation("core-error", f"{node.id}: {core.last_contradiction}")

    # ------------------------------------------------------------------ events
    def tick(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.up and node.paused_until <= self.now:
            self.guard(node, lambda: (node.core.tick(), node.drain()))
        jitter = node.jitter.randint(-2, 2) if self.faults_on else 0
        self.schedule(self.now + max(1, int(TICK_MS * node.clock_factor) + jitter),
                      "tick", node_id)

    def request(self, payload: tuple) -> None:
        node_id, req = payload
        node = self.nodes[node_id]
        if node.up and node.paused_until > self.now:
            self.schedule(node.resume_time(req.client.cid), "request", payload)
        elif node.up:
            self.guard(node, lambda: node.handle_request(req))

    def restart(self, node: SimNode) -> None:
        if node.up:
            return
        self.stats["restarts"] += 1
        try:
            node.start()
        except Exception as e:  # a WAL the simulation wrote must always load
            self.monitor.violation("wal", f"{node.id} cannot restart: {e}")
            return
        self.log(f"{node.id} restarted at term {node.core.term}, log {node.core.log_length()}")

    def heal(self) -> None:
        self.log("faults off: healed, restarting every node")
        self.nemesis.heal()
        self.faults_on = False

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict:
        t0 = _time.monotonic()
        for nid in self.ids:
            self.schedule(self.nodes[nid].jitter.randint(0, TICK_MS - 1), "tick", nid)
        self.clients.start()
        self.nemesis.start()
        self.schedule(self.end_faults, "heal")
        end = self.end_clients + 2000
        next_log_check = LOG_CHECK_EVERY_MS
        handlers, queue = self._handlers, self._queue
        while queue:
            at, _, kind, payload = heapq.heappop(queue)
            if at > end:
                break
            self.now = at
            handlers[kind](payload)
            if self.now >= next_log_check:
                next_log_check = self.now + LOG_CHECK_EVERY_MS
                self.monitor.check_logs()
        self.monitor.check_logs()
        return self.finish(_time.monotonic() - t0)

    def finish(self, elapsed: float) -> dict:
        counts = self.clients.counts()
        mon = self.monitor
        if counts["ok"] == 0:
            mon.violation("vacuous", "no operation succeeded")
        if self.clients.first_ok_after_heal is None:
            mon.violation("liveness", f"no op succeeded in the {self.p.heal_ms} ms after "
                                      f"the faults stopped")
        lin: Any = "skipped"
        if self.check_lin:
            res = check(self.ops, model="cas-register", time_limit=60)
            self.check_result = res
            lin = res.valid
            if res.valid is False:
                first = (res.to_dict().get("failures") or [{}])[0]
                op_time = (first.get("op") or {}).get("time")
                mon.violation("linearizability", "the history is not linearizable: "
                              + str(first.get("reason") or first.get("description") or ""),
                              at_ms=None if op_time is None else op_time // 1_000_000)
            elif res.valid is not True:
                self.notes.append(f"linearizability unknown: "
                                  f"{res.to_dict().get('unknown_reason')}")
        return {"seed": self.seed, "nodes": self.p.nodes, "mix": self.p.mix,
                "steps": self.p.steps, "bugs": sorted(self.bugs),
                "params": self.p.to_dict(), "ops": counts, "stats": dict(self.stats),
                "faults": len(self.faults), "effective_faults": len(self.nemesis.effective),
                "schedule_given": self.schedule_given,
                "max_term": max(n.core.term for n in self.nodes.values()),
                "linearizable": lin, "violations": mon.violations, "notes": self.notes,
                "elapsed_s": round(elapsed, 3)}
