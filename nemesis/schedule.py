"""The nemesis schedule: when faults start and stop, whom they hit, and their record.

Like Jepsen's combined nemesis (`jepsen.nemesis.combined`), faults come in
*packages* that run side by side, each cycling `(sleep quiet) start (sleep hold)
stop` on its own seeded clock, so that faults of different packages overlap (a
partition while a node is down, on slow links):

  partition  a grudge of a seeded shape (nemesis.partition): cut links
  latency    a latency toxic with as much jitter on every link: messages a node
             sends on two connections overtake each other, elections split
  process    kill (SIGKILL, then restart on the same data), pause (SIGSTOP, then
             SIGCONT), restart (kill every node, then start them all)

Within a package one fault holds at a time; kinds are drawn with weights (WEIGHTS).
Periods are the interval times a seeded factor (QUIET, HOLD, FIRST_QUIET), so a short
run still sees many faults. A stop removes only its own toxics and checks that none
is left.

Faults follow the leader (nemesis.observe asks GET /status). A partition puts the
leader on the side it cuts off with probability `leader_bias` (waiting a moment for
a leader when an election is under way), and its shape is drawn with weights
(SHAPE_WEIGHTS) that favour cutting one node off from a majority: a deposed leader
that clients still reach. Kill and pause draw a target (nemesis.process) with weights
(TARGET_WEIGHTS) that favour the leader. For new-leader and candidate the nemesis
hits the current leader, watches the election closely, hits the winner (or the
candidate) the moment it shows and brings the previous node back at once, up to
MAX_CHAIN times in a row for new-leader: leaders fall right after their election and
old ones return with their logs, as in the paper's Figure 8. A followers fault stops
a majority but not the leader, which keeps accepting ops it cannot commit. Of the
whole-cluster restarts, some strike the moment a candidate of a newer term shows (the
nemesis kills the leader to cause one), when votes and terms were just granted, and
some bring the old leader back last, once the others elected a leader without it:
what followers acknowledged but did not sync is then lost for good.

Half of the `one` partitions that cut off the leader also pause it at once, and
resume it while it is still cut off (target cut-leader): a leader whose own ticks
stopped meanwhile (a GC pause), as a lease counted in local time assumes they do not.

The leader-chain partition shape cuts the leader off, then for CHAIN_HOLD x 1 s cuts
off each new leader the moment it is elected and reconnects the one before it (each
hop a start-partition, then a stop-partition whose value names what stays in force):
leaders that win an election and lose their majority before their own term commits,
as in the paper's Figure 8.

Faults overlap, with two rules that keep the scenarios that expose bugs: a partition
while a node is down cuts that node off instead of the leader when cutting off the
leader would leave no majority of live nodes that hear each other (none could elect
and commit; a deposed leader is stale only once another leader commits); and a
process fault starts only once the partition in force is SETTLE x interval old, so the
majority side has elected and committed, and the deposed leader served its clients.

Every action is two `info` ops of process "nemesis" (SPEC section 7: `target`,
`term`, `lost_bytes`; an `error` when a step failed). `heal_all()` ends whatever is in force, verifies the network is healed
and that no node is still held, and is always called when `run` returns, so a run
ends healed; a heal that cannot be done raises `NemesisError`. A node that no
restart can bring back because it exits by itself is the node's failure, not the
nemesis's: each failed start is recorded with its error, the heal gives that node
up (`abandoned`) and the run reports it.

Size: over 600 lines, because `Nemesis` is one scheduler whose packages share the
held-fault state, the leader observer and the rules for overlapping faults.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from cluster.base import Cluster, ClusterError
from cluster.toxiproxy import CUT, LATENCY, ToxiproxyError, proxy_name
from cluster.topology import proxy_pairs
from history.errors import BadInput
from history.ops import INFO, NEMESIS
from history.writer import HistoryWriter
from nemesis import partition, process
from nemesis.observe import CANDIDATE, LEADER, Observer

log = logging.getLogger("raftcheck.nemesis")

PACKAGES: dict[str, tuple[str, ...]] = {
    "partition": ("partition",),
    "latency": ("latency",),
    "process": ("kill", "pause", "restart"),
}
# how often a package picks each kind, relatively: latency shares the network
# package with partitions, which expose more
WEIGHTS = {"partition": 2, "latency": 1, "kill": 2, "pause": 2, "restart": 2}
# partition shapes, relatively: the shapes that cut one node (the leader, mostly) off
# from a majority come more often, as they make a deposed leader that still serves;
# the leader chain most (about a third of partitions, so that nearly every 30 s run
# has one): only it makes leaders whose logs are longer but of older terms
SHAPE_WEIGHTS = {"one": 3, "majority": 2, "majorities-ring": 1, "bridge": 1, "one-way": 1,
                 "leader-chain": 5, "follower-then-leader": 2}
LEADER_WAIT_S = 1.5             # a partition aimed at the leader waits this long for one
# kill and pause targets, relatively: the leader's faults expose the most, and the
# followers' crashes what they acknowledged but did not make durable
TARGET_WEIGHTS = {"leader": 3, "new-leader": 2, "candidate": 2, "followers": 3, "one": 2,
                  "minority": 1, "majority": 1, "all": 1}
SETTLE = 0.75                   # x interval: a partition's age before a process fault
MAX_CHAIN = 3                   # new-leader: up to this many leaders hit in a row
ELECTION_RESTART_SHARE = 0.4    # restarts timed to an election
LEADER_LAST_SHARE = 0.6         # the others: the old leader comes back last
FAULTS = ("partition", "kill", "pause", "restart", "latency")
DEFAULT_TARGETS = ("one", "minority", "followers", "leader", "new-leader", "candidate")
LATENCIES_MS = (10, 25, 50)     # each with a jitter as large: delays of 0 .. 2x
DEFAULT_INTERVAL_S = 2.0
DEFAULT_LEADER_BIAS = 0.75
FIRST_QUIET = (0.1, 0.5)        # factors of the interval
QUIET = (0.2, 1.0)
HOLD = (0.3, 1.5)
RESTART_HOLD = (0.05, 0.5)      # a whole-cluster restart: down briefly
CHAIN_HOLD = (1.0, 3.0)         # a leader-chain partition chases leaders this long
CHAIN_WAIT_S = 2.0              # a leader chain waits this long for every node to be up
SWAP_HOLD = (0.5, 1.0)          # follower-then-leader: the follower lags this long
CUT_PAUSE_SHARE = 0.5           # leader cut off alone: paused at once this often
CUT_PAUSE_HOLD = (0.6, 1.2)     # ... for this long (x interval), still cut off after
HEAL_ATTEMPTS = 3
DOWN_KINDS = ("kill", "pause", "restart")
MAX_EXACT_NODES = 9             # above: a majority is judged by the count of live nodes
JOIN_S = 90.0                   # a package's action in hand when the run stops

# the stop of each start, by fault kind
STOP_F = {"partition": "stop-partition", "latency": "stop-latency", "kill": "start",
          "pause": "resume", "restart": "start-cluster"}
START_F = {"partition": "start-partition", "latency": "start-latency", "kill": "kill",
           "pause": "pause", "restart": "kill-cluster"}


class NemesisError(Exception):
    """A fault could not be ended: the cluster is not healed."""


@dataclass
class Held:
    """A fault in force: its kind, the nodes it holds, how they were chosen."""

    kind: str
    nodes: list[str] = field(default_factory=list)
    target: str | None = None
    text: str = ""
    grudge: dict | None = None     # a partition's: who no longer hears whom
    since: float = field(default_factory=time.monotonic)
    term: int | None = None        # the leader's term when it was struck
    last: str | None = None        # a restart's old leader: back once others elected


@dataclass
class _Done:
    """What an action did: the completion's value and extra fields."""

    value: Any
    extra: dict = field(default_factory=dict)


class Nemesis:
    """Starts and stops faults on `cluster` on a seeded schedule (module doc).

    `faults` is a subset of FAULTS; `targets` (for kill and pause) a subset of
    nemesis.process.TARGETS (default DEFAULT_TARGETS; "all" only when asked: the
    restart fault covers it); `shapes` a subset of nemesis.partition.SHAPES (default:
    all of them). `interval_s` scales every period. `leader_bias` is the chance that
    a partition cuts off the current leader's side.
    """

    def __init__(self, cluster: Cluster, faults: list[str],
                 interval_s: float = DEFAULT_INTERVAL_S, seed: int = 0,
                 history: HistoryWriter | None = None, targets: list[str] | None = None,
                 shapes: list[str] | None = None, latencies_ms: list[int] | None = None,
                 leader_bias: float = DEFAULT_LEADER_BIAS) -> None:
        self.cluster = cluster
        self.faults = _subset(faults, FAULTS, "nemesis")
        self.targets = _subset(targets or list(DEFAULT_TARGETS), process.TARGETS,
                               "nemesis-targets")
        self.shapes = _subset(shapes or list(partition.SHAPES), partition.SHAPES,
                              "partition-shapes")
        self.latencies_ms = list(latencies_ms or LATENCIES_MS)
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) \
                or not interval_s > 0:
            raise BadInput(f"nemesis interval must be > 0 seconds, got {interval_s!r}",
                           field="nemesis-interval")
        if not 0.0 <= leader_bias <= 1.0:
            raise BadInput(f"must be between 0 and 1, got {leader_bias!r}",
                           field="leader-bias")
        self.interval_s = float(interval_s)
        self.seed = seed
        self.history = history
        self.leader_bias = leader_bias
        self.packages = {pkg: [k for k in kinds if k in self.faults]
                         for pkg, kinds in PACKAGES.items()}
        self.packages = {pkg: kinds for pkg, kinds in self.packages.items() if kinds}
        self._rngs = {pkg: random.Random(f"{seed}/{pkg}") for pkg in PACKAGES}
        self._rng = random.Random(seed)
        self.counts: Counter[str] = Counter()          # faults started, by kind
        self.target_counts: Counter[str] = Counter()   # "kill new-leader": n
        self.lost_bytes = 0                            # unsynced bytes lost by kills
        self.errors: list[BaseException] = []
        self.abandoned: list[str] = []                 # nodes heal_all gave up on
        self.observer = Observer(cluster)
        self._held: dict[str, list[Held]] = {pkg: [] for pkg in PACKAGES}
        self._locks = {pkg: threading.RLock() for pkg in PACKAGES}
        self._state = threading.Lock()
        self._stop = threading.Event()

    # --- what is in force -----------------------------------------------------------

    @property
    def active(self) -> str | None:
        """A short text of every fault in force ("partition one n1 | n2 n3 + kill n2
        (leader)"), or None."""
        with self._state:
            texts = [h.text for pkg in PACKAGES for h in self._held[pkg]]
        return " + ".join(texts) if texts else None

    def held(self) -> list[Held]:
        with self._state:
            return [h for pkg in PACKAGES for h in self._held[pkg]]

    def _live(self) -> list[str]:
        """Nodes not killed or paused by the nemesis (the only ones status polls ask)."""
        down = self._in_force()[0]
        return [n for n in self.cluster.node_ids if n not in down]

    def _in_force(self) -> tuple[set[str], list[dict]]:
        """The nodes held down and the grudges of the partitions in force."""
        held = self.held()
        return ({n for h in held if h.kind in DOWN_KINDS for n in h.nodes},
                [h.grudge for h in held if h.grudge is not None])

    def _majority_left(self, down: set[str], grudges: list[dict]) -> bool:
        """Is there a majority of live nodes that all hear each other, one that can
        elect a leader and commit (paper section 5.2)? Most scenarios that expose a
        bug need one: a deposed leader is only stale once another leader commits."""
        ids = self.cluster.node_ids
        live = [n for n in ids if n not in down]
        need = partition.majority(len(ids))
        if len(live) < need:
            return False
        if not grudges or len(live) > MAX_EXACT_NODES:
            return True

        def hear(a: str, b: str) -> bool:
            return all(a not in g.get(b, ()) and b not in g.get(a, ()) for g in grudges)
        return any(all(hear(a, b) for a, b in itertools.combinations(group, 2))
                   for group in itertools.combinations(live, need))

    def _acting(self) -> list[str]:
        """Live nodes not cut off from a majority by the partition in force: where a
        leader that can still commit is. Process faults follow that leader; the one a
        partition deposed already has its fault."""
        cut: set[str] = set()
        need = partition.majority(len(self.cluster.node_ids))
        for h in self.held():
            if h.grudge is not None:
                cut |= {n for n in self.cluster.node_ids
                        if len(self.cluster.node_ids) - len(h.grudge.get(n, ())) < need}
        return [n for n in self._live() if n not in cut]

    # --- the schedule -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run every package until `stop` is set; end healed (module doc)."""
        self._stop = stop
        threads = [threading.Thread(target=self._package_loop, args=(pkg, stop),
                                    name=f"nemesis-{pkg}", daemon=True)
                   for pkg in self.packages]
        try:
            for t in threads:
                t.start()
            stop.wait()
            for t in threads:
                t.join(timeout=JOIN_S)
        finally:
            try:
                self.heal_all()
            finally:
                self.observer.close()
        if self.errors:
            raise self.errors[0]

    def _package_loop(self, pkg: str, stop: threading.Event) -> None:
        rng = self._rngs[pkg]
        try:
            quiet = self._period(rng, FIRST_QUIET)
            while not stop.wait(quiet):
                kinds = self.packages[pkg]
                kind = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
                self.start_fault(kind)
                hold = self._period(rng, RESTART_HOLD if kind == "restart" else HOLD)
                if stop.wait(hold):
                    break
                self.stop_fault(pkg)
                quiet = self._period(rng, QUIET)
        except BaseException as e:  # noqa: BLE001 - handed to run()
            log.error("nemesis %s package failed: %s", pkg, e, exc_info=True)
            self.errors.append(e)

    def _period(self, rng: random.Random, factors: tuple[float, float]) -> float:
        return self.interval_s * rng.uniform(*factors)

    # --- one fault ------------------------------------------------------------------

    def start_fault(self, kind: str | None = None) -> None:
        """Start one fault of `kind` (default: a seeded choice among `faults`). A
        fault of the same package still in force is stopped first; if it cannot be,
        nothing starts."""
        if kind is None:
            kind = self._rng.choice(self.faults)
        if kind not in self.faults:
            raise ValueError(f"fault {kind!r} not enabled (enabled: {self.faults})")
        pkg = _package_of(kind)
        with self._locks[pkg]:
            if self._held[pkg]:
                self.stop_fault(pkg)
                if self._held[pkg]:  # still not undone: no second fault
                    return
            try:
                getattr(self, "_start_" + kind)(self._rngs[pkg])
            except (ClusterError, ToxiproxyError) as e:
                # recorded as the completion's error; the stop (or heal_all) undoes it
                log.warning("nemesis: starting %s failed: %s", kind, e)

    def stop_fault(self, package: str | None = None) -> None:
        """Stop the faults in force (of one package, or all); errors are recorded and
        the fault stays held (heal_all retries)."""
        for pkg in ([package] if package else list(PACKAGES)):
            with self._locks[pkg]:
                for held in reversed(list(self._held[pkg])):
                    try:
                        self._undo(pkg, held)
                    except (ClusterError, ToxiproxyError) as e:
                        log.warning("nemesis: stopping %s failed: %s", held.text, e)

    def heal_all(self) -> None:
        """End every fault in force, verify the network is healed and no node is
        held; record it. Raises NemesisError if the cluster cannot be brought back.

        A killed node that exits by itself at every restart (a node that cannot
        recover: see Cluster.unexpected_exits) is given up after the last attempt,
        with a line in `abandoned`, rather than failing the run: that is the node's
        failure, which the run reports, not the nemesis's."""
        for lock in self._locks.values():
            lock.acquire()
        try:
            last: Exception | None = None
            for attempt in range(HEAL_ATTEMPTS):
                try:
                    for pkg in PACKAGES:
                        for held in reversed(list(self._held[pkg])):
                            self._undo(pkg, held)
                    self._verify_or_heal()
                    return
                except (ClusterError, ToxiproxyError) as e:
                    last = e
                    log.warning("nemesis: heal attempt %d failed: %s", attempt + 1, e)
                    time.sleep(0.5 * (attempt + 1))
            if self._give_up_on_crashed_nodes():
                return
            raise NemesisError(f"the cluster could not be healed: {last}") from last
        finally:
            for lock in self._locks.values():
                lock.release()

    def _give_up_on_crashed_nodes(self) -> bool:
        """If all that is left are killed nodes that exit by themselves when started,
        forget them (noted in `abandoned`) and say True."""
        held = self.held()
        if not held or any(h.kind not in ("kill", "restart") for h in held):
            return False
        try:
            self.cluster.toxiproxy.verify_healed()
        except ToxiproxyError:
            return False
        exited = {e.get("node") for e in self.cluster.unexpected_exits()}
        up = set(self.observer.statuses())
        down = sorted({n for h in held for n in h.nodes if n not in up})
        if not down or not all(n in exited for n in down):
            return False
        for n in down:
            self.abandoned.append(f"{n} could not be started again: it exits by "
                                  "itself (see its log)")
            log.warning("nemesis: %s", self.abandoned[-1])
        with self._state:
            for pkg in PACKAGES:
                self._held[pkg].clear()
        return True

    def _verify_or_heal(self) -> None:
        """Verify no toxic is left; if one is, heal (recorded) and verify again."""
        try:
            self.cluster.toxiproxy.verify_healed()
        except ToxiproxyError as e:
            log.warning("nemesis: network not healed (%s); healing", e)
            self._record("stop-partition", None, self._heal_network)
        if self.held():
            raise ClusterError(f"faults still in force: {self.active}")

    # --- starts -----------------------------------------------------------------------

    def _start_partition(self, rng: random.Random) -> None:
        shape = rng.choices(self.shapes, [SHAPE_WEIGHTS[x] for x in self.shapes])[0]
        hops = shape in partition.HOPPING
        cut_leader = rng.random() < self.leader_bias or hops
        if hops:
            self._wait_all_up(CHAIN_WAIT_S)  # a hop needs every node to elect with
        seen = None
        if cut_leader:  # no leader right now (an election): wait a moment for one
            seen = self.observer.leader(self._live()) or self.observer.wait_for_election(
                0, LEADER, self._live, LEADER_WAIT_S, self._stop, gap_s=0.05)
        leader = seen.node if seen else None
        nodes = self.cluster.node_ids
        first, target = leader, "leader" if leader else "random"
        if shape == "follower-then-leader" and leader is not None:
            first, target = rng.choice([n for n in nodes if n != leader]), "follower"
        grudge = partition.grudge_for(shape, nodes, rng, leader=first,
                                      leader_first=cut_leader)
        down, _ = self._in_force()
        if down and not self._majority_left(down, [grudge]):
            # with a node down this cut would leave no majority that can elect and
            # commit: cut off a node that is down instead, if that leaves one
            grudge = partition.grudge_for(shape, nodes, rng, leader=sorted(down)[0],
                                          leader_first=True)
            target = "down-node"
            if not self._majority_left(down, [grudge]):
                log.info("nemesis: no %s partition leaves a majority now; skipped", shape)
                return
        text = f"partition {shape} {partition.describe(grudge, nodes)}"
        held = Held("partition", [], target, text, grudge)
        self._hold("partition", held)

        def act() -> Any:
            partition.apply_grudge(self.cluster.toxiproxy, grudge)
            return grudge
        self._record("start-partition", shape, act, target=target,
                     **({"term": seen.term} if seen else {}))
        if shape == "leader-chain" and target == "leader" and seen is not None:
            self._chase_leaders(rng, held, seen.term)
        elif shape == "follower-then-leader" and target == "follower":
            self._swap_to_leader(rng, held)
        elif (shape == "one" and target == "leader" and seen is not None
              and "pause" in self.faults and "leader" in self.targets
              and rng.random() < CUT_PAUSE_SHARE):
            self._pause_cut_leader(rng, seen)

    def _pause_cut_leader(self, rng: random.Random, seen: Any) -> None:
        """Pause the leader this partition just cut off alone, before its CheckQuorum
        (dissertation 6.2) can notice, for CUT_PAUSE_HOLD: the majority elects a
        leader and commits meanwhile. Then resume it, still cut off: it counted no
        ticks while stopped, so a leader that trusts a lease counted in its own ticks
        (dissertation 6.4.1) answers its clients from a stale state until its next
        CheckQuorum; a correct one confirms each read with a quorum it cannot reach.
        The pause is held by the partition package (heal_all resumes it)."""
        held = self._strike("pause", [seen.node], "cut-leader", seen.term, "partition")
        if self._stop.wait(self._period(rng, CUT_PAUSE_HOLD)):
            return
        self._undo("partition", held)

    def _wait_all_up(self, timeout_s: float) -> None:
        """Wait (bounded) until no node is held down by another package."""
        deadline = time.monotonic() + timeout_s
        while self._in_force()[0] and time.monotonic() < deadline:
            if self._stop.wait(0.02):
                return

    def _chase_leaders(self, rng: random.Random, held: Held, term: int) -> None:
        """The leader-chain partition (nemesis.partition): for one hold period, cut off
        each new leader the moment it shows (section 5.2: it won a majority a few
        milliseconds ago), then reconnect the node cut off before it. Each hop is a
        start-partition (the new leader's cuts) and a stop-partition (the previous
        cuts), in that order, so that two leaders are never both reachable."""
        deadline = time.monotonic() + self._period(rng, CHAIN_HOLD)
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            found = self.observer.wait_for_election(term, LEADER, self._live, left,
                                                    self._stop)
            if found is None:
                return
            held, term = self._hop(held, "leader-chain", found, "new-leader"), found.term

    def _hop(self, old: Held, shape: str, seen: Any, target: str) -> Held:
        """Move partition `old` onto the leader `seen`: cut it off alone (a
        start-partition), then remove the cuts of `old` it does not share (a
        stop-partition), in that order, so that two leaders are never both
        reachable. The Held of the new cuts."""
        nodes = self.cluster.node_ids
        grudge = partition.complete_grudge(
            [[seen.node], [n for n in nodes if n != seen.node]])
        new = Held("partition", [], target,
                   f"partition {shape} {partition.describe(grudge, nodes)}", grudge)
        self._hold("partition", new)
        self._record("start-partition", shape,
                     lambda: (partition.apply_grudge(self.cluster.toxiproxy, grudge),
                              grudge)[1], target=target, term=seen.term)
        self._record("stop-partition", None,
                     lambda: self._remove_cuts(old.grudge or {}, grudge, nodes))
        with self._state:
            if old in self._held["partition"]:
                self._held["partition"].remove(old)
        return new

    def _swap_to_leader(self, rng: random.Random, held: Held) -> None:
        """The follower-then-leader partition: after SWAP_HOLD, in one hop, cut off the
        leader and reconnect the follower cut off so far. The new leader must bring
        that lagging follower up to date before an entry of its own term commits;
        until then its commit index may miss entries its predecessor committed and
        acknowledged (a follower learns of a commit with the next message, which the
        cut lost), so the reads it serves meanwhile must wait (dissertation 6.4,
        ReadIndex step 1). No hop when it would leave no majority (a node is down)."""
        if self._stop.wait(self._period(rng, SWAP_HOLD)):
            return
        isolated = [n for n, v in (held.grudge or {}).items()
                    if len(v) == len(self.cluster.node_ids) - 1]
        seen = self.observer.leader([n for n in self._live() if n not in isolated])
        if seen is None:
            return
        down = self._in_force()[0]
        if down and not self._majority_left(down, [partition.complete_grudge(
                [[seen.node], [n for n in self.cluster.node_ids if n != seen.node]])]):
            return
        self._hop(held, "follower-then-leader", seen, "leader")

    def _remove_cuts(self, old: dict, keep: dict, nodes: list[str]) -> str:
        """Remove the cuts of grudge `old` that grudge `keep` does not have; what is
        left in force, as text."""
        tp = self.cluster.toxiproxy
        for src, dst in sorted(set(partition.cuts(old)) - set(partition.cuts(keep))):
            tp.remove_toxic(proxy_name(src, dst), CUT)
        return f"reconnected; in force: {partition.describe(keep, nodes)}"

    def _start_latency(self, rng: random.Random) -> None:
        ms = int(rng.choice(self.latencies_ms))
        value = {"latency": ms, "jitter": ms}
        self._hold("latency", Held("latency", [], "all-links",
                                   f"latency {ms}±{ms} ms"))

        def act() -> Any:
            for src, dst in proxy_pairs(self.cluster.node_ids):
                self.cluster.toxiproxy.add_latency(src, dst, ms, ms)
            return dict(value)
        self._record("start-latency", value, act, target="all-links")

    def _start_kill(self, rng: random.Random) -> None:
        self._process_fault("kill", rng)

    def _start_pause(self, rng: random.Random) -> None:
        self._process_fault("pause", rng)

    def _start_restart(self, rng: random.Random) -> None:
        """Crash every node at once, after a moment (the partition in force settled).
        ELECTION_RESTART_SHARE of the time while an election is under way: votes and
        terms just granted are then lost if the nodes did not make them durable.
        LEADER_LAST_SHARE of the time the old leader comes back last, once the
        others elected a leader of a newer term: entries committed on followers'
        acknowledgements must be on their disks (Figure 2, persist before replying),
        or the new leader, which lacks them, overwrites them on the old one."""
        self._settle()
        trigger = last = None
        target, term = "all", None
        draw = rng.random()
        if ELECTION_RESTART_SHARE <= draw < ELECTION_RESTART_SHARE + LEADER_LAST_SHARE:
            seen = self.observer.leader(self._acting())
            if seen is not None:
                target, term, last = "leader-last", seen.term, seen.node
        elif draw < ELECTION_RESTART_SHARE:
            seen = self.observer.leader(self._acting())
            above = seen.term if seen else self.observer.highest_term(
                self.observer.statuses(self._acting()))
            trigger = self._strike("kill", [seen.node], "leader", seen.term) if seen else None
            found = self.observer.wait_for_election(above, CANDIDATE, self._acting,
                                                    stop=self._stop)
            if found is not None:
                target, term = "election", found.term
        nodes = sorted(self._live())
        if not nodes:
            return
        label = f" ({target})" if trigger else f" (leader-last {last})" if last else ""
        self._hold("process", Held("restart", nodes, target,
                                   f"restart {' '.join(nodes)}{label}", term=term,
                                   last=last if last in nodes else None))
        self._record("kill-cluster", nodes, lambda: self._kill(nodes), target=target,
                     **({"term": term} if term is not None else {}))

    def _settle(self) -> None:
        """Wait until the partition in force (if any) is SETTLE x interval old: the
        majority side has elected a leader and committed under it, and the deposed
        one has served its stale clients, before a process fault stops more nodes."""
        now = time.monotonic()
        ages = [now - h.since for h in self.held() if h.grudge is not None]
        if ages:
            self._stop.wait(max(0.0, SETTLE * self.interval_s - min(ages)))

    def _process_fault(self, kind: str, rng: random.Random) -> None:
        self._settle()
        target = rng.choices(self.targets, [TARGET_WEIGHTS[t] for t in self.targets])[0]
        seen = (self.observer.leader(self._acting())
                if target in process.LEADER_TARGETS else None)
        nodes = process.pick_targets(target, self.cluster.node_ids, rng,
                                     seen.node if seen else None)
        down = self._in_force()[0]   # held by another package (a cut leader's pause)
        nodes = [n for n in nodes if n not in down]
        if not nodes:
            return
        if target in process.ELECTION_TARGETS:
            rounds = rng.randint(1, MAX_CHAIN) if target == "new-leader" else 1
            self._strike_election(kind, target, seen, rounds)
            return
        if target in process.LEADER_TARGETS and seen is None:
            target = "one" if target == "leader" else "majority"  # no leader answered
        self._strike(kind, nodes, target, seen.term if seen else None)

    def _strike_election(self, kind: str, target: str, seen: Any, rounds: int) -> None:
        """Hit the leader, watch the election, hit its winner (or a candidate) the
        moment it shows, then bring the previous node back; `rounds` times in a row
        (module doc: Figure 8)."""
        # a newer term than the leader's: a node that ran alone (a stale candidate
        # behind a partition) may hold a higher term without ever leading
        above = seen.term if seen else self.observer.highest_term(
            self.observer.statuses(self._acting()))
        previous = self._strike(kind, [seen.node], "leader", seen.term) if seen else None
        want = CANDIDATE if target == "candidate" else LEADER
        for _ in range(rounds):
            found = self.observer.wait_for_election(above, want, self._acting,
                                                    stop=self._stop)
            if found is None:
                return  # no election in time: the last node hit is the fault in force
            actual = "candidate" if found.role == CANDIDATE else "new-leader"
            struck = self._strike(kind, [found.node], actual, found.term)
            if previous is not None:
                self._undo("process", previous)
            previous, above = struck, found.term

    def _strike(self, kind: str, nodes: list[str], target: str,
                term: int | None, pkg: str = "process") -> Held:
        """Kill or pause `nodes` (recorded; held by package `pkg`); the Held that
        undoes it."""
        label = f"{kind} {' '.join(nodes)}" + (f" ({target})" if target else "")
        held = Held(kind, list(nodes), target, label, term=term)
        self._hold(pkg, held)
        extra: dict[str, Any] = {"target": target}
        if term is not None:
            extra["term"] = term
        if kind == "kill":
            self._record("kill", nodes, lambda: self._kill(nodes), **extra)
        else:
            self._record("pause", nodes, lambda: process.pause(self.cluster, nodes),
                         **extra)
        return held

    def _kill(self, nodes: list[str]) -> _Done:
        lost = process.kill(self.cluster, nodes)
        counted = {n: b for n, b in lost.items() if b is not None}
        self.lost_bytes += sum(counted.values())
        return _Done(list(nodes), {"lost_bytes": counted} if counted else {})

    # --- stops ------------------------------------------------------------------------

    def _undo(self, pkg: str, held: Held) -> None:
        """Undo `held`; forget it only when that worked (else raises)."""
        f = STOP_F[held.kind]
        if held.kind in ("partition", "latency"):
            toxic = CUT if held.kind == "partition" else LATENCY
            self._record(f, None, lambda: self._remove_toxics(toxic))
        elif held.kind == "pause":
            self._record(f, held.nodes, lambda: process.resume(self.cluster, held.nodes))
        else:  # kill, restart
            if held.last is not None:
                self._start_leader_last(held)
            self._record(f, held.nodes, lambda: self._restart(held.nodes))
        with self._state:
            if held in self._held[pkg]:
                self._held[pkg].remove(held)

    def _start_leader_last(self, held: Held) -> None:
        """The first half of a leader-last restart's stop: start every node but the
        old leader (a `start` op), wait (bounded) until they elect a leader of a newer
        term, and leave only the old leader held."""
        others = [n for n in held.nodes if n != held.last]
        if others:
            self._record("start", others, lambda: self._restart(others))
            held.nodes = [n for n in held.nodes if n == held.last]
            self.observer.wait_for_election(held.term or 0, LEADER, self._live,
                                            stop=self._stop)
        held.last = None

    def _remove_toxics(self, name: str) -> str:
        """Remove every toxic called `name` (a partition's cuts, or the latency) and
        verify with GET /proxies that none is left; the other kind may still hold."""
        tp = self.cluster.toxiproxy
        for proxy, p in tp.proxies_raw().items():
            if any(t.get("name") == name for t in p.get("toxics") or []):
                tp.remove_toxic(proxy, name)
        left = sorted(proxy for proxy, p in tp.proxies_raw().items()
                      if any(t.get("name") == name for t in p.get("toxics") or []))
        if left:
            raise ToxiproxyError(f"toxics {name!r} still on {', '.join(left)}")
        return "network-healed"

    def _heal_network(self) -> str:
        self.cluster.toxiproxy.heal()
        return "network-healed"

    def _restart(self, nodes: list[str]) -> list[str]:
        """Start killed nodes (all at once); raises ClusterError naming every node
        that did not come back (the fault stays held)."""
        errors = {n: e for n, e in process.restart_each(self.cluster, nodes).items()
                  if e is not None}
        if errors:
            raise ClusterError("; ".join(str(e) for e in errors.values()))
        return list(nodes)

    # --- bookkeeping ------------------------------------------------------------------

    def _hold(self, pkg: str, held: Held) -> None:
        with self._state:
            self._held[pkg].append(held)
        self.counts[held.kind] += 1
        self.target_counts[f"{held.kind} {held.target}"] += 1
        log.info("nemesis: %s", held.text)

    def _record(self, f: str, value: Any, act: Callable[[], Any], **extra: Any) -> Any:
        """Write the invoke (with `extra`), do `act()`, write the completion (with
        `error` if it raised, and re-raise)."""
        if self.history is not None:
            self.history.append(INFO, NEMESIS, f, value=value, **extra)
        try:
            result = act()
        except (ClusterError, ToxiproxyError) as e:
            if self.history is not None:
                self.history.append(INFO, NEMESIS, f, value=value, error=str(e), **extra)
            raise
        done = result if isinstance(result, _Done) else _Done(result)
        if self.history is not None:
            self.history.append(INFO, NEMESIS, f, value=done.value, **extra, **done.extra)
        return done.value


def _package_of(kind: str) -> str:
    return next(pkg for pkg, kinds in PACKAGES.items() if kind in kinds)


def _subset(chosen: list[str], allowed: tuple[str, ...], name: str) -> list[str]:
    out = []
    for item in chosen:
        if item not in allowed:
            raise BadInput(f"unknown value {item!r} (choose from {', '.join(allowed)})",
                           field=name)
        if item not in out:
            out.append(item)
    return out
