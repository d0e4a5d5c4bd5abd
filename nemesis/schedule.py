"""The nemesis schedule: when faults start and stop, and their record in the history.

`Nemesis.run(stop)` alternates, like Jepsen's generator `(cycle [(sleep dt) start
(sleep dt) stop])`: a quiet period, one fault started, a faulty period, that fault
stopped; each period lasts the interval times a seeded jitter (0.5 .. 1.5). At most
one fault is active at a time. Every start and stop is written to the history as two
`info` ops of process "nemesis" (SPEC section 7): the invoke says what is asked, the
completion what was done (or carries an `error`). `heal_all()` ends whatever is
active, verifies the network is healed, and is always called when `run` returns, so
a run ends healed; a heal that cannot be done raises `NemesisError`.

Faults: partition (a grudge of a seeded shape, nemesis.partition), latency (a
latency toxic with jitter on every link), kill (SIGKILL, then restart) and pause
(SIGSTOP, then resume) of seeded targets (nemesis.process).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cluster.base import Cluster, ClusterError
from cluster.topology import proxy_pairs
from history.errors import BadInput
from history.ops import INFO, NEMESIS
from history.writer import HistoryWriter
from nemesis import partition, process
from cluster.toxiproxy import ToxiproxyError

log = logging.getLogger("raftcheck.nemesis")

FAULTS = ("partition", "kill", "pause", "latency")
DEFAULT_TARGETS = ("one", "minority", "majority", "leader")
LATENCIES_MS = (50, 100, 200)
HEAL_ATTEMPTS = 3


class NemesisError(Exception):
    """A fault could not be ended: the cluster is not healed."""


@dataclass
class _Active:
    """The fault in force: its kind, the nodes it holds, a short text."""

    kind: str
    nodes: list[str] = field(default_factory=list)
    text: str = ""


class Nemesis:
    """Starts and stops faults on `cluster` on a seeded schedule (module doc).

    `faults` is a subset of FAULTS; `targets` (for kill and pause) a subset of
    nemesis.process.TARGETS (default: one, minority, majority, leader; "all" only when
    asked); `shapes` a subset of nemesis.partition.SHAPES (default: all of them).
    `leader_bias` is the chance that a partition cuts off the current leader's side.
    """

    def __init__(self, cluster: Cluster, faults: list[str], interval_s: float = 10.0,
                 seed: int = 0, history: HistoryWriter | None = None,
                 targets: list[str] | None = None, shapes: list[str] | None = None,
                 latencies_ms: list[int] | None = None, leader_bias: float = 0.5) -> None:
        self.cluster = cluster
        self.faults = _subset(faults, FAULTS, "nemesis")
        self.targets = _subset(targets or list(DEFAULT_TARGETS), process.TARGETS,
                               "nemesis-targets")
        self.shapes = _subset(shapes or list(partition.SHAPES), partition.SHAPES,
                              "partition-shapes")
        self.latencies_ms = list(latencies_ms or LATENCIES_MS)
        if not interval_s > 0:
            raise BadInput(f"nemesis interval must be > 0 seconds, got {interval_s!r}",
                           field="nemesis-interval")
        self.interval_s = float(interval_s)
        self.seed = seed
        self.rng = random.Random(seed)
        self.history = history
        self.leader_bias = leader_bias
        self.active: str | None = None  # a short text of the current fault
        self.counts: dict[str, int] = {}  # faults started, by kind
        self._current: _Active | None = None
        self._lock = threading.RLock()

    # --- the schedule -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Alternate quiet and faulty periods until `stop` is set; end healed."""
        try:
            while self.faults and not stop.is_set():
                if stop.wait(self._period()):
                    break
                self.start_fault()
                if stop.wait(self._period()):
                    break
                self.stop_fault()
            stop.wait()  # no faults, or stop set: nothing more to do
        finally:
            self.heal_all()

    def _period(self) -> float:
        return self.interval_s * self.rng.uniform(0.5, 1.5)

    # --- one fault ------------------------------------------------------------------

    def start_fault(self, kind: str | None = None) -> None:
        """Start one fault (a seeded choice among `faults`, unless `kind` is given)."""
        with self._lock:
            if self._current is not None:
                self.stop_fault()
                if self._current is not None:  # still not undone: no second fault
                    return
            kind = kind or self.rng.choice(self.faults)
            if kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}")
            self.counts[kind] = self.counts.get(kind, 0) + 1
            try:
                getattr(self, "_start_" + kind)()
            except (ClusterError, ToxiproxyError) as e:
                # recorded as the completion's error; the stop (or heal_all) undoes it
                log.warning("nemesis: starting %s failed: %s", self.active, e)

    def stop_fault(self) -> None:
        """Stop the active fault, if any (errors are recorded; heal_all retries)."""
        with self._lock:
            current = self._current
            if current is None:
                return
            try:
                self._stop(current)
            except (ClusterError, ToxiproxyError) as e:
                log.warning("nemesis: stopping %s failed: %s", current.text, e)

    def heal_all(self) -> None:
        """End every active fault and verify the network is healed; record it.

        Raises NemesisError if the cluster cannot be brought back."""
        with self._lock:
            current = self._current
            last: Exception | None = None
            for attempt in range(HEAL_ATTEMPTS):
                try:
                    if current is not None and self._current is not None:
                        self._stop(current)
                    self._verify_or_heal()
                    return
                except (ClusterError, ToxiproxyError) as e:
                    last = e
                    log.warning("nemesis: heal attempt %d failed: %s", attempt + 1, e)
                    time.sleep(0.5 * (attempt + 1))
            raise NemesisError(f"the cluster could not be healed: {last}") from last

    def _verify_or_heal(self) -> None:
        """Verify no toxic is left; if one is, heal (recorded) and verify again."""
        try:
            self.cluster.toxiproxy.verify_healed()
        except ToxiproxyError as e:
            log.warning("nemesis: network not healed (%s); healing", e)
            self._record("stop-partition", None,
                         lambda: (self.cluster.toxiproxy.heal(), "network-healed")[1])

    # --- starts -----------------------------------------------------------------------

    def _start_partition(self) -> None:
        shape = self.rng.choice(self.shapes)
        cut_leader = self.rng.random() < self.leader_bias
        leader = process.leader_of(self.cluster) if cut_leader else None
        grudge = partition.grudge_for(shape, self.cluster.node_ids, self.rng,
                                      leader=leader, leader_first=cut_leader)
        text = f"partition {shape} {partition.describe(grudge, self.cluster.node_ids)}"
        self._set(_Active("partition", text=text))

        def act() -> Any:
            partition.apply_grudge(self.cluster.toxiproxy, grudge)
            return grudge
        self._record("start-partition", shape, act)

    def _start_latency(self) -> None:
        ms = int(self.rng.choice(self.latencies_ms))
        value = {"latency": ms, "jitter": ms // 2}
        self._set(_Active("latency", text=f"latency {ms}±{ms // 2} ms"))

        def act() -> Any:
            for src, dst in proxy_pairs(self.cluster.node_ids):
                self.cluster.toxiproxy.add_latency(src, dst, ms, ms // 2)
            return dict(value)
        self._record("start-latency", value, act)

    def _start_kill(self) -> None:
        nodes = self._targets()
        self._set(_Active("kill", nodes, f"kill {' '.join(nodes)}"))
        self._record("kill", nodes, lambda: process.kill(self.cluster, nodes))

    def _start_pause(self) -> None:
        nodes = self._targets()
        self._set(_Active("pause", nodes, f"pause {' '.join(nodes)}"))
        self._record("pause", nodes, lambda: process.pause(self.cluster, nodes))

    def _targets(self) -> list[str]:
        target = self.rng.choice(self.targets)
        leader = process.leader_of(self.cluster) if target == "leader" else None
        return process.pick_targets(target, self.cluster.node_ids, self.rng, leader)

    # --- stops ------------------------------------------------------------------------

    def _stop(self, current: _Active) -> None:
        """Undo `current`; clears it only when that worked (else raises)."""
        tp = self.cluster.toxiproxy
        if current.kind in ("partition", "latency"):
            self._record(f"stop-{current.kind}", None,
                         lambda: (tp.heal(), "network-healed")[1])
        elif current.kind == "kill":
            self._record("start", current.nodes,
                         lambda: process.restart(self.cluster, current.nodes))
        elif current.kind == "pause":
            self._record("resume", current.nodes,
                         lambda: process.resume(self.cluster, current.nodes))
        self._set(None)

    # --- bookkeeping ------------------------------------------------------------------

    def _set(self, current: _Active | None) -> None:
        self._current = current
        self.active = current.text if current else None
        if current:
            log.info("nemesis: %s", current.text)

    def _record(self, f: str, value: Any, act: Any) -> Any:
        """Write the invoke, do `act()`, write the completion (with `error` if it
        raised, and re-raise)."""
        if self.history is not None:
            self.history.append(INFO, NEMESIS, f, value=value)
        try:
            result = act()
        except (ClusterError, ToxiproxyError) as e:
            if self.history is not None:
                self.history.append(INFO, NEMESIS, f, value=value, error=str(e))
            raise
        if self.history is not None:
            self.history.append(INFO, NEMESIS, f, value=result)
        return result


def _subset(chosen: list[str], allowed: tuple[str, ...], name: str) -> list[str]:
    out = []
    for item in chosen:
        if item not in allowed:
            raise BadInput(f"unknown value {item!r} (choose from {', '.join(allowed)})",
                           field=name)
        if item not in out:
            out.append(item)
    return out
