"""The simulated network between nodes: delays, loss, duplicates, reordering, cuts.

A *message* from one node to another is delivered after a random delay of
1..delay_max ms, so messages overtake each other. Messages are handed over as the
core made them (no node changes a message it sent or received; node.core.messages
round-trips through JSON in the node's own tests), which keeps a seed cheap.
While faults are on, a share is lost and a share duplicated; during a `reorder`
fault a share of the replies is held 70 ms to over a second (6.824's labrpc "long
reordering": 2 replies in 3 held 200 + rand(1 + rand(2000)) ms, with election
timeouts about three times ours); a message
between two nodes that a partition cuts is lost when sent and when it arrives.
After the faults stop the network is reliable. Each directed link draws from its
own stream (`Random("<seed>-network-<from>-<to>")`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from node.core.messages import AppendEntriesReply, RequestVoteReply


if TYPE_CHECKING:
    from sim.simulation import Simulation

Link = tuple[str, str]
REPLIES = (RequestVoteReply, AppendEntriesReply)
REORDER_MIN_MS = 70


class Network:
    """Message delivery between the nodes of one run."""

    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.p = sim.p
        # One stream per directed link: a fault that changes one link's traffic
        # leaves the others' draws alone, which keeps shrinking (sim.shrink) local.
        self.rngs = {(a, b): random.Random(f"{sim.seed}-network-{a}-{b}")
                     for a in sim.ids for b in sim.ids if a != b}
        self._cuts: dict[int, set[Link]] = {}   # fault id -> the links it cuts
        self.cut: set[Link] = set()              # their union
        self.reordering = 0                      # reorder faults in force

    # ------------------------------------------------------------------ cuts
    def add_cut(self, fault_id: int, links: set[Link]) -> None:
        self._cuts[fault_id] = links
        self.cut = set().union(*self._cuts.values())

    def remove_cut(self, fault_id: int) -> None:
        if self._cuts.pop(fault_id, None) is not None:
            self.cut = set().union(*self._cuts.values()) if self._cuts else set()

    def heal(self) -> None:
        self._cuts.clear()
        self.cut = set()
        self.reordering = 0

    def connected(self, node_id: str) -> bool:
        """Not cut off from every other node in either direction."""
        others = [n for n in self.sim.ids if n != node_id]
        return not all((node_id, o) in self.cut or (o, node_id) in self.cut for o in others)

    # ------------------------------------------------------------------ delivery
    def send(self, src: str, dst: str, m: Any) -> None:
        sim, rng, stats = self.sim, self.rngs[(src, dst)], self.sim.stats
        stats["messages"] += 1
        faults = sim.faults_on
        if faults and ((src, dst) in self.cut or rng.random() < self.p.drop):
            stats["dropped"] += 1
            return
        copies = 2 if faults and self.p.dup and rng.random() < self.p.dup else 1
        stats["duplicated"] += copies - 1
        for _ in range(copies):
            delay = rng.randint(1, self.p.delay_max)
            if self.reordering and isinstance(m, REPLIES) \
                    and rng.random() < self.p.reorder_share:
                delay = REORDER_MIN_MS + rng.randint(0, rng.randint(0, self.p.reorder_max))
                stats["reordered"] += 1
            sim.schedule(sim.now + delay, "deliver", (src, dst, m))

    def deliver(self, src: str, dst: str, m: Any) -> None:
        sim = self.sim
        node = sim.nodes[dst]
        if not node.up or (sim.faults_on and (src, dst) in self.cut):
            return
        if node.paused_until > sim.now:  # a stopped process reads its socket later
            sim.schedule(node.resume_time(src), "deliver", (src, dst, m))
            return
        sim.guard(node, lambda: (node.core.step(m), node.drain()))
