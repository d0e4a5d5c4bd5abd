"""Watching the cluster's roles: who leads, who runs for election, and when.

Faults that follow the leader need to know, at the moment they strike, which node
leads (Raft paper section 5.2: at most one leader per term, the one a majority voted
for) and, to hit a node right after an election, when a node becomes a candidate or
the leader of a newer term. An `Observer` asks every live node's GET /status (SPEC
section 4) in parallel, with a short timeout, and `wait_for_election` polls that
closely (every few milliseconds) for a bounded time: a candidate's term lasts one
vote round (a few milliseconds on loopback), and a new leader's first moments (its
no-op not yet committed, section 8) not much longer.

Nodes the nemesis holds down (killed or paused) are left out of the polls: a paused
node would only make every poll wait for its timeout.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import requests

from cluster.base import Cluster, fetch_status

POLL_TIMEOUT_S = 0.25     # one GET /status; a paused node does not answer
POLL_GAP_S = 0.005        # between two rounds while watching an election
ELECTION_WATCH_S = 3.0    # how long to wait for an election (timeouts are 300-600 ms)

LEADER, CANDIDATE = "leader", "candidate"


@dataclass(frozen=True)
class Sighting:
    """A node seen in a role at a term."""

    node: str
    role: str
    term: int


class Observer:
    """Parallel GET /status of a cluster's nodes (thread-safe; `close()` when done)."""

    def __init__(self, cluster: Cluster, poll_timeout_s: float = POLL_TIMEOUT_S) -> None:
        self.cluster = cluster
        self.poll_timeout_s = poll_timeout_s
        self._pool: ThreadPoolExecutor | None = None
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()

    def _session(self, node: str) -> requests.Session:
        with self._lock:
            s = self._sessions.get(node)
            if s is None:
                s = requests.Session()
                s.trust_env = False  # loopback: never through an HTTP proxy
                self._sessions[node] = s
            return s

    def statuses(self, nodes: list[str] | None = None) -> dict[str, dict]:
        """{node: its GET /status} for the nodes that answered in time."""
        nodes = list(self.cluster.node_ids if nodes is None else nodes)
        if not nodes:
            return {}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.cluster.node_ids),
                                                thread_name_prefix="observer")
            pool = self._pool

        def one(node: str) -> dict | None:
            return fetch_status(self.cluster.client_url(node), self.poll_timeout_s,
                                self._session(node))
        answers = dict(zip(nodes, pool.map(one, nodes)))
        return {n: st for n, st in answers.items() if st is not None}

    def leader(self, nodes: list[str] | None = None) -> Sighting | None:
        """The node that says it leads in the highest term, or None."""
        return _best(self.statuses(nodes), LEADER)

    def highest_term(self, statuses: dict[str, dict]) -> int:
        terms = [st["term"] for st in statuses.values() if isinstance(st.get("term"), int)]
        return max(terms, default=0)

    def wait_for_election(self, above_term: int, want: str,
                          nodes_fn: Callable[[], list[str]],
                          timeout_s: float = ELECTION_WATCH_S,
                          stop: threading.Event | None = None,
                          gap_s: float = POLL_GAP_S) -> Sighting | None:
        """Poll until a node is a candidate (want="candidate") or the leader (either
        want) of a term above `above_term`; the first such sighting, or None when
        `timeout_s` passes (or `stop` is set). A candidate is preferred when wanted;
        a leader seen first is returned too, as the election is then already over."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            statuses = self.statuses(nodes_fn())
            fresh = {n: st for n, st in statuses.items()
                     if isinstance(st.get("term"), int) and st["term"] > above_term}
            if want == CANDIDATE:
                seen = _best(fresh, CANDIDATE)
                if seen is not None:
                    return seen
            seen = _best(fresh, LEADER)
            if seen is not None:
                return seen
            time.sleep(gap_s)
        return None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            sessions, self._sessions = self._sessions, {}
        if pool is not None:
            pool.shutdown(wait=True)
        for s in sessions.values():
            s.close()


def _best(statuses: dict[str, dict], role: str) -> Sighting | None:
    """The node in `role` with the highest term (ties: the first node id)."""
    best: Sighting | None = None
    for node in sorted(statuses):
        st = statuses[node]
        if st.get("role") == role and isinstance(st.get("term"), int):
            if best is None or st["term"] > best.term:
                best = Sighting(node, role, st["term"])
    return best
