"""Process faults: which nodes to hit, and how (Jepsen's `jepsen.nemesis.combined`).

A *target* names a set of nodes, chosen when the fault starts:
  one       one node at random
  minority  a random minority: (N-1)//2 nodes (at least one)
  majority  a random majority: N//2 + 1 nodes
  all       every node
  leader    the node that leads in the highest term (asked with GET /status);
            a random node when no leader answers.
The faults themselves are the cluster's: kill (SIGKILL) then restart on the same data,
pause (SIGSTOP) then resume (SIGCONT). Node lists are sorted, as in the history.
"""

from __future__ import annotations

import random
from typing import Callable

from cluster.base import Cluster, find_leader
from nemesis.partition import majority

TARGETS = ("one", "minority", "majority", "all", "leader")


def pick_targets(target: str, nodes: list[str], rng: random.Random,
                 leader: str | None = None) -> list[str]:
    """The nodes `target` names (sorted). Draws the same randomness whether or not a
    leader is known, so a seed gives the same choices."""
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
    elif target == "all":
        chosen = order
    else:
        chosen = [leader] if leader in nodes else order[:1]
    return sorted(chosen)


def leader_of(cluster: Cluster) -> str | None:
    """The current leader, or None (a short timeout: paused nodes do not answer)."""
    return find_leader(cluster, timeout_s=0.5)


def _each(action: Callable[[str], None], nodes: list[str]) -> list[str]:
    """Apply a cluster action to every node in turn; the nodes it was applied to."""
    for n in nodes:
        action(n)
    return list(nodes)


def kill(cluster: Cluster, nodes: list[str]) -> list[str]:
    """SIGKILL every node (a crash: nothing unsynced survives)."""
    return _each(cluster.kill, nodes)


def restart(cluster: Cluster, nodes: list[str]) -> list[str]:
    """Start killed nodes again on their data."""
    return _each(cluster.restart, nodes)


def pause(cluster: Cluster, nodes: list[str]) -> list[str]:
    """SIGSTOP every node (a long GC pause or a frozen VM)."""
    return _each(cluster.pause, nodes)


def resume(cluster: Cluster, nodes: list[str]) -> list[str]:
    """SIGCONT paused nodes."""
    return _each(cluster.resume, nodes)
