"""Run parameters of a simulation: the fault mix, the network, the load, the timing.

A *mix* is a family of runs: which faults a seed's schedule draws and how the
network behaves. Each seed draws its mix, its length and its parameters from its own
random stream (`Random("params-<seed>")`), so a seed names one configuration:

- `classic`: random partitions (one node, a majority split, a bridge, one-way),
  crashes with restarts, pauses, torn writes; a mildly lossy network.
- `figure8`: MIT 6.824's Figure8Unreliable test (raft/test_test.go): an unreliable
  network (10% of messages lost, delays up to 27 ms), long reply reordering after
  the first fifth of the run, and the leader cut off or crashed quickly and often
  (every few milliseconds, half the time), while a node is brought back whenever
  fewer than a majority is up and connected. It builds the divergent logs of the
  paper's Figure 8: leaders of several terms with uncommitted entries at the same
  indexes.

Timing is in simulated milliseconds; the core ticks every TICK_MS. Elections time
out after 10-20 ticks (100-200 ms), as a real cluster's 300-600 ms scaled down.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

TICK_MS = 10
MIXES = ("classic", "figure8")
ELECTION_TICKS = (10, 20)
HEARTBEAT_TICKS = 2


@dataclass
class SimParams:
    """Everything a run draws besides its fault schedule (see the module docstring)."""

    nodes: int = 3
    mix: str = "classic"
    steps: int = 1500              # ticks of simulated time with faults on
    clients: int = 4
    keys: int = 2
    ops_per_key: int = 150         # then the clients move on to fresh keys
    # network
    drop: float = 0.02
    dup: float = 0.01
    delay_max: int = 10            # ms; min is 1
    reorder_share: float = 0.0     # during a `reorder` fault: share of replies held long
    reorder_max: int = 700         # ms: a held reply waits 70 + rand(1 + rand(max))
    # the core
    pre_vote: bool = True
    check_quorum: bool = True
    max_batch_entries: int = 32
    # clients and the server shell
    read_index_share: float = 0.5  # reads through ReadIndex rather than the log
    routing: str = "mixed"         # clients start ops at: home | leader | mixed
    attempt_timeout: int = 250     # ms a client waits for one attempt's answer
    op_deadline: int = 1000        # ms after which a client gives up on an op
    max_attempts: int = 100        # attempts per op (the real workload: 3)
    request_timeout: int = 2000    # ms the server waits for a proposal to commit
    heal_ms: int = 4000            # fault-free time at the end, with clients on
    # the schedule (sim.schedule draws it with these)
    nemesis_every: int = 1500      # classic: mean ms between fault actions
    partitions: bool = True
    crashes: bool = True
    pauses: bool = True
    torn_writes: float = 0.5       # classic: torn writes per simulated second
    clock_skew: bool = False
    keep_majority: bool = False    # figure8: restore a node when a majority is down
    # snapshots (section 7), drawn from their own stream ("snapshots-<seed>")
    snapshot_entries: int = 0      # snapshot every N applied entries (0: never)
    snapshot_chunk_chars: int = 65536  # InstallSnapshot chunk size (Figure 13)
    snapshot_crash: float = 0.0    # share of snapshots cut by a crash between the
                                   # snapshot file and the WAL's compaction

    @property
    def end_faults(self) -> int:
        return self.steps * TICK_MS

    @property
    def quorum(self) -> int:
        return self.nodes // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_seed(cls, seed: int, nodes: int = 3, steps: int | None = None,
                  mix: str | None = None,
                  snapshot_entries: int | None = None) -> "SimParams":
        """The parameters seed `seed` draws; `steps`, `mix` and `snapshot_entries`
        override the draw."""
        r = random.Random(f"params-{seed}")
        drawn_mix = r.choice(MIXES)
        drawn_steps = r.choice([1500, 1500, 3000, 6000])  # longer runs now and then
        p = cls(nodes=nodes, mix=mix or drawn_mix, steps=steps or drawn_steps)
        p.clients = r.choice([3, 5, 8, 12])
        p.keys = r.choice([1, 2, 3])
        p.pre_vote = r.random() < 0.8
        p.check_quorum = r.random() < 0.8
        p.max_batch_entries = r.choice([4, 32, 32])
        p.read_index_share = r.choice([0.5, 1.0, 1.0])  # the server: ReadIndex only
        p.attempt_timeout = r.choice([100, 250, 500])
        p.request_timeout = r.choice([300, 2000])
        p.routing = r.choice(["home", "leader", "mixed"])
        p.max_attempts = r.choice([3, 100])
        if p.mix == "figure8":
            p.drop, p.dup, p.delay_max = 0.1, 0.0, 27
            p.reorder_share = r.choice([1 / 3, 2 / 3])  # 6.824: 2/3
            p.reorder_max = r.choice([700, 1400])
            p.partitions = p.pauses = False
            p.crashes = True
            p.torn_writes = r.choice([0.0, 0.2])
            p.keep_majority = True
        else:
            p.drop = r.choice([0.0, 0.01, 0.05, 0.1])
            p.dup = r.choice([0.0, 0.01, 0.05])
            p.delay_max = r.choice([2, 5, 10, 30])
            p.reorder_share = r.choice([0.0, 0.0, 0.3])
            p.partitions = r.random() < 0.8
            p.crashes = r.random() < 0.8
            p.pauses = r.random() < 0.5
            p.torn_writes = r.choice([0.0, 0.1, 0.5])
            p.nemesis_every = r.choice([300, 800, 1500])
            p.clock_skew = r.random() < 0.5
        # Snapshots: a stream of their own, so the draws above stay what they were.
        rs = random.Random(f"snapshots-{seed}")
        p.snapshot_entries = rs.choice([0, 8, 20, 50])
        p.snapshot_chunk_chars = rs.choice([16, 200, 65536])
        p.snapshot_crash = rs.choice([0.0, 0.05, 0.2])
        if snapshot_entries is not None:
            p.snapshot_entries = snapshot_entries
        return p
