"""The simulated parts of a cluster: run parameters, disks, servers and clients.

A `SimNode` runs the real Raft core (node.core) and register machine behind the same
Ready loop as the server (node.shell.server), on a `SimDisk` that loses what was not
synced when the node crashes. A `SimClient` is one closed-loop client process. The
`Simulation` (sim.simulation) owns them and the clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.core.messages import CommitEntry, LogEntry, RequestVote, RequestVoteReply
from node.core.raft import RaftCore
from node.core.register import RegisterMachine, error
from node.core.state import HardState, Ready
from node.shell.storage import decode_wal, encode_batch

if TYPE_CHECKING:
    from sim.simulation import Simulation

TICK_MS = 10


@dataclass
class SimParams:
    """Fault and load parameters, drawn from the seed unless given."""

    nodes: int = 3
    steps: int = 1500              # ticks of simulated time with faults (10 ms each)
    clients: int = 4
    keys: int = 2
    drop: float = 0.02
    dup: float = 0.01
    delay_max: int = 10            # ms; min is 1
    partitions: bool = True
    crashes: bool = True
    pauses: bool = True
    pre_vote: bool = True
    check_quorum: bool = True
    crash_in_write: float = 0.002  # per Ready, while faults are on
    nemesis_every: int = 1500      # ms between fault actions (mean)
    read_index_share: float = 0.5
    heal_ms: int = 4000            # fault-free time at the end

    @classmethod
    def from_seed(cls, seed: int, nodes: int, steps: int) -> "SimParams":
        r = random.Random(f"params-{seed}")
        return cls(nodes=nodes, steps=steps, clients=r.choice([3, 4, 5]),
                   keys=r.choice([1, 2, 3]), drop=r.choice([0.0, 0.01, 0.05, 0.1]),
                   dup=r.choice([0.0, 0.01, 0.05]), delay_max=r.choice([2, 5, 10, 30]),
                   partitions=r.random() < 0.8, crashes=r.random() < 0.8,
                   pauses=r.random() < 0.5, pre_vote=r.random() < 0.8,
                   check_quorum=r.random() < 0.8,
                   crash_in_write=r.choice([0.0, 0.001, 0.005]),
                   nemesis_every=r.choice([300, 800, 1500]),
                   read_index_share=r.choice([0.0, 0.5, 1.0]))


class SimDisk:
    """A WAL image in memory: written bytes are lost on a crash unless synced."""

    def __init__(self) -> None:
        self.durable = bytearray()
        self.pending = b""

    def write(self, rd: Ready) -> None:
        self.pending += encode_batch(rd.hard_state, rd.truncate_from, rd.entries)

    def sync(self) -> None:
        self.durable += self.pending
        self.pending = b""

    def crash(self, rng: random.Random) -> int:
        """A torn write: a random prefix of the unsynced bytes survives."""
        keep = rng.randint(0, len(self.pending))
        self.durable += self.pending[:keep]
        self.pending = b""
        return keep

    def load(self, name: str) -> tuple[HardState, list[LogEntry], int]:
        wal = decode_wal(bytes(self.durable), name)
        if wal.torn_bytes:
            del self.durable[wal.valid_length:]
        return wal.hard_state, wal.entries, wal.torn_bytes


@dataclass
class Request:
    client: "SimClient"
    op_seq: int
    attempt: int
    command: dict


class SimNode:
    """One simulated server: a core, a disk, a register machine, pending requests."""

    def __init__(self, sim: "Simulation", node_id: str) -> None:
        self.sim = sim
        self.id = node_id
        self.disk = SimDisk()
        self.up = False
        self.incarnation = 0
        self.max_term_sent = 0
        self.last_term = 0
        self.led_term: int | None = None
        self.paused_until = 0
        self.core: RaftCore
        self.sm: RegisterMachine
        self.start()

    def start(self) -> None:
        hs, log, torn = self.disk.load(f"{self.id}/raft.wal")
        if torn:
            self.sim.stats["torn_tails"] += 1
        if hs.term < self.max_term_sent:
            self.sim.violation(f"{self.id} restarted at term {hs.term} but had sent "
                               f"messages at term {self.max_term_sent} (persist before send)")
        if hs.voted_for is not None:  # a durable vote counts as cast (one per term)
            self.sim.record_vote(self.id, hs.term, hs.voted_for)
        self.incarnation += 1
        rng = random.Random(f"{self.sim.seed}-{self.id}-{self.incarnation}")
        self.core = RaftCore(self.id, self.sim.ids, hs, log, self.sim.raft_config, rng)
        self.last_term = hs.term
        self.led_term = None
        self.paused_until = 0
        self.sm = RegisterMachine()
        self.pending: dict[int, list[tuple[int, Request]]] = {}
        self.reads: dict[int, Request] = {}
        self.read_waits: list[tuple[int, Request]] = []
        self.up = True

    def crash(self) -> None:
        self.up = False
        self.disk.pending = b""

    # -- inputs
    def handle_request(self, req: Request) -> None:
        cmd = req.command
        if cmd["op"] == "read" and cmd.get("via") == "read-index":
            rid = self.sim.next_id()
            if self.core.read_index(rid):
                self.reads[rid] = req
            else:
                self.reply(req, self.not_leader())
        else:
            index = self.core.propose({k: v for k, v in cmd.items() if k != "via"})
            if index is None:
                self.reply(req, self.not_leader())
            else:
                self.pending.setdefault(index, []).append((self.core.term, req))
        self.drain()

    def not_leader(self) -> dict:
        return error(30, "not-leader", True, leader=self.core.leader_id)

    def reply(self, req: Request, result: dict) -> None:
        self.sim.client_reply(self, req, result)

    # -- the Ready loop (the same contract as the server)
    def drain(self) -> None:
        sim = self.sim
        core = self.core
        rounds = 0
        while self.up and core.has_ready():
            rounds += 1
            if rounds > 10_000:
                sim.violation(f"{self.id}: Ready loop does not end")
                return
            rd = core.ready()
            # 1. persist (fsync) before sending
            if rd.must_sync():
                self.disk.write(rd)
                if sim.faults_on and sim.rng.random() < sim.p.crash_in_write:
                    kept = self.disk.crash(sim.rng)
                    sim.stats["crash_in_write"] += 1
                    sim.log(f"{self.id} crashed while persisting ({kept} bytes torn in)")
                    self.crash()
                    sim.schedule_restart(self)
                    return
                self.disk.sync()
            # 2. send
            for to, m in rd.messages:
                if not getattr(m, "pre_vote", False):  # a PreVote names a future term
                    self.max_term_sent = max(self.max_term_sent, m.term)
                if isinstance(m, RequestVoteReply) and m.granted and not m.pre_vote:
                    sim.record_vote(self.id, m.term, to)
                elif isinstance(m, RequestVote) and not m.pre_vote:
                    sim.record_vote(self.id, m.term, self.id)
                sim.send(self.id, to, m)
            # 3. apply
            for ce in rd.committed:
                self.apply(ce)
            # 4. reads
            for rid, index in rd.reads:
                req = self.reads.pop(rid, None)
                if req is not None:
                    self.read_waits.append((index, req))
            for rid in rd.dropped_reads:
                req = self.reads.pop(rid, None)
                if req is not None:
                    self.reply(req, self.not_leader())
            self.serve_reads()
            core.advance(rd)
            sim.observe(self)
        if self.up:
            sim.observe(self)

    def apply(self, ce: CommitEntry) -> None:
        sim = self.sim
        sim.check_applied(self, ce)
        try:
            result = self.sm.apply(ce)
        except ValueError as e:
            sim.violation(f"{self.id}: {e}")
            return
        for term, req in self.pending.pop(ce.index, []):
            if term == ce.term:
                self.reply(req, result if result is not None else {"ok": True})
            else:
                self.reply(req, error(11, "temporarily-unavailable", True,
                                      detail="entry overwritten by a new leader"))

    def serve_reads(self) -> None:
        if not self.read_waits:
            return
        keep = []
        for index, req in self.read_waits:
            if self.sm.last_applied >= index:
                self.reply(req, self.sm.read(req.command["key"]))
            else:
                keep.append((index, req))
        self.read_waits = keep


class SimClient:
    """A closed-loop client process (SPEC section 2): one open op at a time."""

    def __init__(self, sim: "Simulation", n: int) -> None:
        self.sim = sim
        self.cid = f"c{n}"
        self.process = n
        self.seq = 0
        self.op: dict | None = None
        self.target = sim.ids[n % len(sim.ids)]
        self.attempt = 0
        self.last_read: dict[Any, Any] = {}


