"""Network partitions as grudges (Jepsen's `jepsen.nemesis`).

A *grudge* maps a node to the nodes it no longer hears from:
`{"n1": ["n2", "n3"], ...}`. It is applied as one-way cuts through the proxies: "n1
does not hear from n2" is a cut of the link n2 -> n1 (proxy `n2-to-n1`, SPEC section
6). A symmetric partition is a grudge in which every hate is mutual; Jepsen's shapes
(below) are built from components with `complete_grudge`.

Shapes:
  one             isolate one node from all others (both ways).
  majority        split the nodes in two halves, the smaller first (Jepsen's bisect).
  majorities-ring every node hears a majority, but no two nodes hear the same one
                  (Jepsen's majorities-ring: windows of a majority around a ring).
  bridge          two halves that still both hear one bridge node, which hears all.
  one-way         one node hears no one, but everyone still hears it (asymmetric).
  leader-chain    isolate the leader, then each new leader the moment it is elected,
                  reconnecting the one before (nemesis.schedule chases them): every
                  leader gets a few milliseconds to replicate, and deposed leaders
                  return with entries of their own terms, as in the paper's Figure 8.
  follower-then-leader  isolate a follower, which falls behind; then, in one hop,
                  isolate the leader and reconnect the follower (nemesis.schedule):
                  the new leader must repair the lagging follower before an entry
                  of its own term commits, while its commit index lags its
                  predecessor's (dissertation 6.4, ReadIndex).

Node order comes from a seeded rng. When the current leader is known, `leader_first`
puts it at the position that gets cut off (the isolated node, the smaller half, the
deaf node), so that a partition exercises a leader change.
"""

from __future__ import annotations

import random

from cluster.toxiproxy import Toxiproxy

SHAPES = ("one", "majority", "majorities-ring", "bridge", "one-way", "leader-chain",
          "follower-then-leader")
HOPPING = ("leader-chain", "follower-then-leader")   # shapes the schedule moves

Grudge = dict[str, list[str]]


def majority(n: int) -> int:
    """The size of a majority of n nodes."""
    return n // 2 + 1


def complete_grudge(components: list[list[str]]) -> Grudge:
    """Every node hates every node outside its own component (Jepsen)."""
    grudge: Grudge = {}
    every = [n for comp in components for n in comp]
    for comp in components:
        others = sorted(n for n in every if n not in comp)
        for node in comp:
            if others:
                grudge[node] = list(others)
    return _canonical(grudge)


def grudge_for(shape: str, nodes: list[str], rng: random.Random,
               leader: str | None = None, leader_first: bool = False) -> Grudge:
    """The grudge of one partition of `shape` over `nodes`, drawn with `rng`.

    Always draws the same amount of randomness for a given shape and node count, so a
    seed gives the same sequence of partitions whether or not a leader was found.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown partition shape {shape!r} (choose from {', '.join(SHAPES)})")
    order = list(nodes)
    rng.shuffle(order)
    if leader_first and leader in order:
        order.remove(leader)
        order.insert(0, leader)
    n = len(order)
    if n < 2:
        return {}
    if shape in ("one",) + HOPPING:
        return complete_grudge([order[:1], order[1:]])
    if shape == "majority":
        return complete_grudge([order[:n // 2], order[n // 2:]])
    if shape == "majorities-ring":
        return _majorities_ring(order)
    if shape == "bridge":
        return _bridge(order)
    return _canonical({order[0]: [x for x in order if x != order[0]]})  # one-way


def _majorities_ring(ring: list[str]) -> Grudge:
    """Each window of a majority around the ring: its middle node hears only it."""
    n = len(ring)
    m = majority(n)
    grudge: Grudge = {}
    for start in range(n):
        window = [ring[(start + k) % n] for k in range(m)]
        middle = window[len(window) // 2]
        grudge[middle] = [x for x in ring if x not in window]
    return _canonical(grudge)


def _bridge(order: list[str]) -> Grudge:
    """Halves [0, n/2) and [n/2, n); the first node of the second half is the
    bridge: it keeps both ways of every link, the halves lose each other."""
    n = len(order)
    first, second = order[:n // 2], order[n // 2:]
    bridge = second[0]
    grudge = complete_grudge([first, second])
    grudge.pop(bridge, None)
    return _canonical({k: [x for x in v if x != bridge] for k, v in grudge.items()})


def _canonical(grudge: Grudge) -> Grudge:
    """Sorted keys and values, nodes that hear everyone left out."""
    return {k: sorted(v) for k, v in sorted(grudge.items()) if v}


def cuts(grudge: Grudge) -> list[tuple[str, str]]:
    """The links (src, dst) to cut: dst no longer hears from src."""
    return sorted((src, dst) for dst, srcs in grudge.items() for src in srcs)


def apply_grudge(toxiproxy: Toxiproxy, grudge: Grudge) -> None:
    """Cut every link of the grudge (raises ToxiproxyError on any failed call)."""
    for src, dst in cuts(grudge):
        toxiproxy.cut(src, dst)


def describe(grudge: Grudge, nodes: list[str]) -> str:
    """A short text for a progress line, e.g. "n1 | n2 n3" for a symmetric split,
    or "n1 deaf to n2 n3" for one-way hates."""
    if not grudge:
        return "no cut"
    hears = {n: frozenset(x for x in nodes if x not in grudge.get(n, ())) for n in nodes}
    groups: list[list[str]] = []
    for n in nodes:
        for g in groups:
            if hears[g[0]] == hears[n] and n in hears[g[0]]:
                g.append(n)
                break
        else:
            groups.append([n])
    symmetric = all(src in grudge.get(dst, ()) and dst in grudge.get(src, ())
                    for src, dst in cuts(grudge))
    if symmetric and all(hears[g[0]] == frozenset(g) for g in groups):
        return " | ".join(" ".join(g) for g in groups)
    return "; ".join(f"{k} deaf to {' '.join(v)}" for k, v in grudge.items())
