"""Process faults: which nodes to hit, and how (Jepsen's `jepsen.nemesis.combined`).

A *target* names a set of nodes, chosen when the fault starts:
  one         one node at random
  minority    a random minority: (N-1)//2 nodes (at least one)
  majority    a random majority: N//2 + 1 nodes
  followers   a majority of the nodes drawn from those that do not lead, so the
              leader stays up but cannot commit (paper section 5.3: an entry commits
              once a majority stores it) for as long as the fault lasts
  all         every node
  leader      the node that leads in the highest term (asked with GET /status);
              a random node when no leader answers
  new-leader  the leader of the next term, the moment it is seen (nemesis.observe):
              the nemesis first hits the current leader to cause an election
  candidate   a node the moment it is seen running for election (a candidate of a
              newer term), else the new leader if the election ended first
The last two are chosen by the schedule (nemesis.schedule), which watches the
election; `pick_targets` covers the others. The faults themselves are the cluster's:
kill (SIGKILL) then restart on the same data, pause (SIGSTOP) then resume
(SIGCONT). Node lists are sorted, as in the history.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from cluster.base import Cluster, ClusterError
from nemesis.partition import majority

TARGETS = ("one", "minority", "majority", "followers", "all", "leader", "new-leader",
           "candidate")
ELECTION_TARGETS = ("new-leader", "candidate")   # chosen by watching an election
LEADER_TARGETS = ("leader", "followers") + ELECTION_TARGETS   # need the leader first


def pick_targets(target: str, nodes: list[str], rng: random.Random,
                 leader: str | None = None) -> list[str]:
    """The nodes `target` names (sorted). Draws the same randomness whether or not a
    leader is known, so a seed gives the same choices. For new-leader and candidate
    this is the node that triggers the election: the leader."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    order = list(nodes)
    rng.shuffle(order)
    n = len(order)
    if target == "one":
        chosen = order[:1]
    elif target == "minority":
        chosen = order[:max(1, (n - 1) // 2)]
    elif target == "majority":
        chosen = order[:majority(n)]
    elif target == "followers":
        others = [x for x in order if x != leader] if leader in nodes else order
        chosen = others[:majority(n)] if len(others) >= majority(n) else order[:majority(n)]
    elif target == "all":
        chosen = order
    else:
        chosen = [leader] if leader in nodes else order[:1]
    return sorted(chosen)


def each(action: Callable[[str], object], nodes: list[str]) -> dict[str, object]:
    """Apply a cluster action to every node in turn; {node: what it returned}."""
    return {n: action(n) for n in nodes}


def kill(cluster: Cluster, nodes: list[str]) -> dict[str, int | None]:
    """SIGKILL every node (a crash: nothing unsynced survives). {node: bytes of
    unsynced writes lost, or None when the cluster does not count them}."""
    return each(cluster.kill, nodes)  # type: ignore[return-value]


def restart_each(cluster: Cluster, nodes: list[str]) -> dict[str, Exception | None]:
    """Start killed nodes again on their data, all at once (a node takes a good part
    of a second to load its log and answer); {node: the error, or None}."""
    if len(nodes) <= 1:
        return {n: _attempt(cluster.restart, n) for n in nodes}
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="restart") as pool:
        return dict(zip(nodes, pool.map(lambda n: _attempt(cluster.restart, n), nodes)))


def _attempt(action: Callable[[str], object], node: str) -> Exception | None:
    try:
        action(node)
        return None
    except ClusterError as e:
        return e


def pause(cluster: Cluster, nodes: list[str]) -> list[str]:
    """SIGSTOP every node (a long GC pause or a frozen VM)."""
    each(cluster.pause, nodes)
    return list(nodes)


def resume(cluster: Cluster, nodes: list[str]) -> list[str]:
    """SIGCONT paused nodes."""
    each(cluster.resume, nodes)
    return list(nodes)
