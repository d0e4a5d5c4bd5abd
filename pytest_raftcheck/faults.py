"""Faults a test injects by hand, each recorded in the history as the nemesis records
its own (docs/spec.md section 7: two `info` ops of process "nemesis", the invoke
saying what was asked and the completion what was done).

`partition(shape, target)` cuts links through Toxiproxy with the nemesis's own shapes
(nemesis.partition); `kill`, `restart`, `pause`, `resume` act on processes or
containers; `latency(ms)` slows every link; `heal()` ends every fault in force and
verifies the network is healed. A target is a node id, or "leader" (the node that
leads now; the call waits up to `wait_s` for one).
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from cluster.base import Cluster, find_leader
from cluster.topology import proxy_pairs
from history.ops import INFO, NEMESIS
from history.writer import HistoryWriter
from nemesis import partition as shapes
from nemesis import process

LEADER_WAIT_S = 10.0


class Faults:
    """The hand-driven nemesis of one test (see the module docstring)."""

    def __init__(self, cluster: Cluster, history: HistoryWriter, seed: int = 0) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(seed)
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.cut = False
        self.slowed = False

    # ---- targets ----------------------------------------------------------------

    def leader(self, among: list[str] | None = None, wait_s: float = LEADER_WAIT_S) -> str:
        """The node that leads now (among `among`), waiting up to `wait_s` for one."""
        deadline = time.monotonic() + wait_s
        while True:
            found = find_leader(self.cluster, node_ids=among)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no leader among {among or self.cluster.node_ids} "
                                     f"within {wait_s:g} s")
            time.sleep(0.05)

    def _node(self, target: str) -> str:
        if target == "leader":
            return self.leader([n for n in self.cluster.node_ids if n not in self.killed
                                and n not in self.paused])
        if target not in self.cluster.node_ids:
            raise ValueError(f"unknown node {target!r} (nodes: "
                             f"{', '.join(self.cluster.node_ids)})")
        return target

    # ---- faults -----------------------------------------------------------------

    def partition(self, shape: str = "one", target: str | None = "leader") -> dict:
        """Cut the links of a partition of this shape (nemesis.partition.SHAPES); with
        a target, that node is on the side cut off. The grudge applied."""
        nodes = self.cluster.node_ids
        focus = self._node(target) if target else None
        grudge = shapes.grudge_for(shape, nodes, self.rng, focus, leader_first=bool(focus))

        def act() -> dict:
            shapes.apply_grudge(self.cluster.toxiproxy, grudge)
            self.cut = True
            return grudge
        return self._record("start-partition", shape, act, target=target or "random")

    def latency(self, ms: int, jitter_ms: int | None = None) -> dict:
        """Delay every peer link by `ms` (with `jitter_ms`, default as much)."""
        jitter = ms if jitter_ms is None else jitter_ms
        value = {"latency": ms, "jitter": jitter}

        def act() -> dict:
            for src, dst in proxy_pairs(self.cluster.node_ids):
                self.cluster.toxiproxy.add_latency(src, dst, ms, jitter)
            self.slowed = True
            return value
        return self._record("start-latency", value, act, target="all-links")

    def kill(self, target: str) -> str:
        """SIGKILL (or `docker kill`) one node; it stays down until `restart`."""
        node = self._node(target)
        self._record("kill", [node], lambda: (process.kill(self.cluster, [node]),
                                               self.killed.add(node), [node])[-1],
                     target=target)
        return node

    def restart(self, node: str) -> None:
        """Start a killed node again, on its data."""
        self._record("start", [node], lambda: (self.cluster.restart(node),
                                                self.killed.discard(node), [node])[-1])

    def pause(self, target: str) -> str:
        """SIGSTOP (or `docker pause`) one node; it stays stopped until `resume`."""
        node = self._node(target)
        self._record("pause", [node], lambda: (self.cluster.pause(node),
                                                self.paused.add(node), [node])[-1],
                     target=target)
        return node

    def resume(self, node: str) -> None:
        self._record("resume", [node], lambda: (self.cluster.resume(node),
                                                 self.paused.discard(node), [node])[-1])

    def heal(self) -> None:
        """End every fault in force: the network healed (and verified), paused nodes
        resumed, killed nodes restarted."""
        if self.cut:
            self._record("stop-partition", None, self._heal_network)
            self.cut = False
        if self.slowed:
            self._record("stop-latency", None, self._heal_network)
            self.slowed = False
        for node in sorted(self.paused):
            self.resume(node)
        for node in sorted(self.killed):
            self.restart(node)

    def _heal_network(self) -> str:
        self.cluster.toxiproxy.heal()
        self.cluster.toxiproxy.verify_healed()
        return "network-healed"

    def _record(self, f: str, value: Any, act: Callable[[], Any], **extra: Any) -> Any:
        self.history.append(INFO, NEMESIS, f, value=value, **extra)
        try:
            done = act()
        except Exception as e:
            self.history.append(INFO, NEMESIS, f, value=value, error=str(e), **extra)
            raise
        self.history.append(INFO, NEMESIS, f, value=done, **extra)
        return done
