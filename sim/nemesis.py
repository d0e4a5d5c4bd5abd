"""The simulated nemesis: it plays a fault schedule (sim.schedule) against a run.

The *nemesis* starts each fault of the schedule at its time, resolves its target
(`leader`: the up node that leads the highest term at that moment), and ends it
after its duration, or when the faults stop. A fault that finds nothing to do (no
leader, a node already down) is a no-op and is left out of the run's *effective
schedule*: the same faults with concrete targets, which replays the same run and
is what sim.shrink shrinks.

With the figure8 mix's rule on (`keep_majority`), every 10 ms, when fewer than a
majority of nodes is up and connected, the nemesis picks a node at random (its own
stream, `Random("<seed>-restore")`) and, if that node is down or cut off, brings it
back, as 6.824's Figure8Unreliable does each iteration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.core.raft import LEADER as LEADER_ROLE
from sim.schedule import LEADER, NODE_KINDS, Fault

if TYPE_CHECKING:
    from sim.node import SimNode
    from sim.simulation import Simulation

CHECK_EVERY_MS = 10


@dataclass
class Active:
    """A fault in force: its index in the schedule and the node it hit, if any."""

    index: int
    fault: Fault
    node: str | None


class Nemesis:
    """Plays a schedule of faults against one run (see the module docstring)."""

    def __init__(self, sim: "Simulation", faults: list[Fault]) -> None:
        self.sim = sim
        self.faults = list(faults)
        self.rng = random.Random(f"{sim.seed}-restore")
        self.active: dict[int, Active] = {}
        self.effective: dict[int, Fault] = {}
        self.restored = 0

    def start(self) -> None:
        for i, f in enumerate(self.faults):
            self.sim.schedule(f.at, "fault", i)
        if self.sim.p.keep_majority:
            self.sim.schedule(CHECK_EVERY_MS, "majority-check")

    def effective_schedule(self) -> list[Fault]:
        return [self.effective[i] for i in sorted(self.effective)]

    # ------------------------------------------------------------------ targets
    def leader(self, exclude_isolated: bool) -> "SimNode | None":
        best = None
        for node in self.sim.nodes.values():
            if not node.up or node.core.role != LEADER_ROLE:
                continue
            if exclude_isolated and self.isolated(node.id):
                continue
            if best is None or node.core.term > best.core.term:
                best = node
        return best

    def isolated(self, node_id: str) -> bool:
        return any(a.fault.kind == "isolate" and a.node == node_id
                   for a in self.active.values())

    def _target(self, f: Fault) -> "SimNode | None":
        sim = self.sim
        node = (self.leader(f.kind == "isolate") if f.target == LEADER
                else sim.nodes[f.target])
        if node is None:
            return None
        applicable = {"isolate": not self.isolated(node.id),
                      "crash": node.up,
                      "torn-write": node.up and node.tear_share is None,
                      "pause": node.up and node.paused_until <= sim.now,
                      "clock": node.clock_factor == 1.0}
        return node if applicable[f.kind] else None

    # ------------------------------------------------------------------ start and end
    def begin(self, i: int) -> None:
        sim, f = self.sim, self.faults[i]
        if not sim.faults_on:
            return
        node = None
        if f.kind in NODE_KINDS:
            node = self._target(f)
            if node is None:
                return
        net = sim.network
        if f.kind in ("partition", "one-way"):
            groups = [g.split(",") for g in f.target.split("|")]
            links = set()
            for a, ga in enumerate(groups):
                for b, gb in enumerate(groups):
                    if a != b and (f.kind == "partition" or a == 1):
                        links |= {(x, y) for x in ga for y in gb}  # x -> y is lost
            net.add_cut(i, links)
        elif f.kind == "reorder":
            net.reordering += 1
        elif node is not None:
            if f.kind == "isolate":
                net.add_cut(i, {(node.id, o) for o in sim.ids if o != node.id}
                            | {(o, node.id) for o in sim.ids if o != node.id})
            elif f.kind == "crash":
                node.crash()
                sim.stats["crashes"] += 1
                sim.monitor.check_cuts(node)
            elif f.kind == "torn-write":
                node.tear_share = f.arg
            elif f.kind == "pause":
                node.pause(sim.now + f.duration)
                sim.stats["pauses"] += 1
            elif f.kind == "clock":
                node.clock_factor = f.arg or 1.0
        sim.stats["faults"] += 1
        target = node.id if node is not None else f.target
        self.effective[i] = Fault(f.at, f.kind, target, f.duration, f.arg)
        self.active[i] = Active(i, f, node.id if node is not None else None)
        sim.log(f"fault {f.kind} {target}" + (f" ({f.arg:g})" if f.arg is not None else "")
                + (f" for {f.duration} ms" if f.duration else ""))
        if f.duration and f.kind != "torn-write":
            sim.schedule(sim.now + f.duration, "fault-end", i)
        if f.kind in ("isolate", "crash"):
            self.keep_majority()

    def crashed_in_write(self, node: "SimNode") -> None:
        """A torn-write fault went off: the node restarts after the fault's duration."""
        self.sim.monitor.check_cuts(node)
        for a in self.active.values():
            if a.fault.kind == "torn-write" and a.node == node.id:
                if a.fault.duration:
                    self.sim.schedule(self.sim.now + a.fault.duration, "fault-end", a.index)
                return

    def end(self, i: int) -> None:
        a = self.active.pop(i, None)
        if a is None:
            return
        sim, f = self.sim, a.fault
        node = sim.nodes[a.node] if a.node else None
        if f.kind in ("partition", "one-way", "isolate"):
            sim.network.remove_cut(i)
        elif f.kind == "reorder":
            sim.network.reordering = max(0, sim.network.reordering - 1)
        elif node is not None:
            if f.kind in ("crash", "torn-write"):
                node.tear_share = None
                if not node.up:
                    sim.restart(node)
            elif f.kind == "pause":
                node.paused_until = min(node.paused_until, sim.now)
            elif f.kind == "clock":
                node.clock_factor = 1.0

    def heal(self) -> None:
        """The faults stop: end every fault in force, restart every node."""
        for i in list(self.active):
            self.end(i)
        self.sim.network.heal()
        for node in self.sim.nodes.values():
            node.paused_until = min(node.paused_until, self.sim.now)
            node.clock_factor = 1.0
            node.tear_share = None
            if not node.up:
                self.sim.restart(node)

    # ------------------------------------------------------------------ the figure8 rule
    def available(self, node_id: str) -> bool:
        return self.sim.nodes[node_id].up and not self.isolated(node_id)

    def keep_majority(self) -> None:
        """If fewer than a majority is up and connected, bring back one random node
        (when the one drawn is down; 6.824 draws again next iteration)."""
        sim = self.sim
        if not (sim.p.keep_majority and sim.faults_on):
            return
        if sum(self.available(n) for n in sim.ids) >= sim.p.quorum:
            return
        chosen = self.rng.choice(sim.ids)
        if self.available(chosen):
            return
        for i in [i for i, a in self.active.items()
                  if a.node == chosen and a.fault.kind in ("isolate", "crash", "torn-write")]:
            self.end(i)
        if not sim.nodes[chosen].up:  # down for no fault in force: restart it
            sim.restart(sim.nodes[chosen])
        self.restored += 1
        sim.log(f"{chosen} back: fewer than a majority was up")

    def majority_check(self) -> None:
        self.keep_majority()
        if self.sim.faults_on:
            self.sim.schedule(self.sim.now + CHECK_EVERY_MS, "majority-check")
