"""A cluster: the Raft nodes under test, their Toxiproxy, and their life cycle.

A `Cluster` is what the runner and the nemesis drive: it starts N register nodes
(ids n1..nN) wired to each other through one Toxiproxy server (SPEC section 6: one
proxy per ordered pair, `ni-to-nj`, N(N-1) proxies), lets faults kill, restart,
pause and resume nodes, and tears everything down. Backends implement the protocol:
`cluster.local.LocalCluster` (processes on loopback, the default) and
`cluster.containers.DockerCluster` (containers). Both build the same topology
(cluster.topology) and speak to nodes through the same status helpers (below).
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import requests

from history.errors import BadInput
from cluster.toxiproxy import Toxiproxy

BACKENDS = {
    "local": ("cluster.local", "LocalCluster"),
    "docker": ("cluster.containers", "DockerCluster"),
}

class ClusterError(Exception):
    """The cluster could not do what was asked (a node did not start, ...)."""


@runtime_checkable
class Cluster(Protocol):
    """The life cycle of one test's cluster (docs/internals.md, "Runner").

    Contract for every backend:
    - `node_ids`: ["n1", ..., "nN"], fixed at construction.
    - `toxiproxy`: a `cluster.toxiproxy.Toxiproxy` adapter for this cluster's server,
      usable once `start()` returned; its proxies are named by `proxy_name(i, j)`.
    - `start()`: starts the toxiproxy server, creates the N(N-1) proxies, writes the
      cluster file, starts the nodes; returns when every node answers GET /status.
      Raises `BadInput` for a problem the user can fix (no toxiproxy binary, a busy
      port) and `ClusterError` otherwise; in both cases everything already started is
      stopped again.
    - `client_url(id)`: "http://host:port" of the node's client API (SPEC section 4),
      reached directly, not through a proxy.
    - `kill(id)`: SIGKILL (no goodbye, no flush), returning once the node is gone.
      With `crash_fs`, then a power cut of the node's data directory (a faultfs
      crash: every write it did not fsync is lost); returns the bytes lost (0 for a
      no-op), or None without crash_fs. `restart(id)`: starts a killed node again on
      the same addresses and the same data (what it fsynced survives); returns when it
      answers GET /status. `pause(id)`: SIGSTOP. `resume(id)`: SIGCONT. Each is a
      no-op when the node is already in the wanted state. A faultfs that died is a
      ClusterError at kill and restart.
    - `crash_fs`: True when node data directories are faultfs mounts (cluster.faultfs).
    - `unexpected_exits()`: every node process or container that ended without
      kill() or teardown (one found dead at restart too) and every faultfs that died:
      `[{"node": id, "code": exit status, "detail": its last log line}]`. Usable
      during the run and after teardown.
    - `collect_logs(run_dir)`: makes sure run_dir/nodes/<id>.log and
      run_dir/toxiproxy.log exist (copying them out if they live elsewhere); returns
      the paths.
    - `teardown()`: idempotent; stops every process / container the cluster started,
      paused ones included, and frees every port. Also called on Ctrl-C, SIGTERM and
      at interpreter exit; children die with the runner even if it is SIGKILLed.
      With crash_fs it unmounts after the nodes stopped, dropping what they did not
      fsync: run_dir/data/<id> then holds each node's durable data.
    """

    node_ids: list[str]
    toxiproxy: Toxiproxy
    crash_fs: bool

    def start(self) -> None: ...
    def client_url(self, node_id: str) -> str: ...
    def kill(self, node_id: str) -> int | None: ...
    def unexpected_exits(self) -> list[dict]: ...
    def restart(self, node_id: str) -> None: ...
    def pause(self, node_id: str) -> None: ...
    def resume(self, node_id: str) -> None: ...
    def collect_logs(self, run_dir: Path | str) -> list[Path]: ...
    def teardown(self) -> None: ...


class SignalTeardown:
    """Mixin for backends: start once, and tear down on failure, exit, SIGTERM, SIGHUP.

    The backend sets ``self._lock``, ``self._started = False``, ``self._prev_handlers =
    {}`` and ``self.node_ids``, and provides ``_start()`` (the real start-up) and an
    idempotent ``teardown()``; ``_before_start()`` is an optional hook run under the
    lock. Signal handlers can only be set from the main thread; from any other thread
    they are left alone.
    """

    _prev_handlers: dict[int, Any]
    _started: bool
    _lock: Any
    node_ids: list[str]

    def teardown(self) -> None:  # provided by the backend
        raise NotImplementedError

    def _start(self) -> None:  # provided by the backend
        raise NotImplementedError

    def _before_start(self) -> None:
        """Hook: set-up that must happen under the lock before start-up."""

    def start(self) -> None:
        """Start the cluster once; if start-up fails, tear down what was started."""
        with self._lock:
            if self._started:
                raise ClusterError("cluster already started")
            self._started = True
            self._before_start()
            atexit.register(self.teardown)
            self._install_signal_handlers()
        try:
            self._start()
        except BaseException:
            self.teardown()
            raise

    def _known(self, node_id: str) -> str:
        if node_id not in self.node_ids:
            raise ClusterError(f"no node {node_id!r} (nodes: {', '.join(self.node_ids)})")
        return node_id

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._prev_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, prev in self._prev_handlers.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, prev)
        self._prev_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        prev = self._prev_handlers.get(signum, signal.SIG_DFL)
        self.teardown()
        if callable(prev):
            prev(signum, frame)
        elif prev != signal.SIG_IGN:
            # A signal handler's exception can land where Python ignores exceptions
            # (a weakref callback, a __del__): then the process would run on with
            # its cluster gone. If it is still alive after the grace, the signal
            # comes again, to the default action teardown restored.
            threading.Thread(target=_resend, args=(signum,), name="signal-resend",
                             daemon=True).start()
            raise SystemExit(128 + signum)


SIGNAL_RESEND_S = 10.0   # a process still alive this long after SIGTERM gets it again


def _resend(signum: int) -> None:
    """Deliver `signum` again after SIGNAL_RESEND_S, if its handler is the default by
    then (the exit the first one started was lost, or is stuck)."""
    time.sleep(SIGNAL_RESEND_S)
    if signal.getsignal(signum) == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def make_cluster(backend: str, node_count: int, run_dir: Path | str,
                 bug: str | None = None, node_options: dict | None = None,
                 crash_fs: bool = False, **backend_options: Any) -> Cluster:
    """Build (not start) a cluster of `node_count` nodes with the named backend.

    `node_options` are node settings written to the cluster file (fsync,
    heartbeat_ms, election_timeout_ms, ...); `bug` is passed as `--bug` to every node.
    `crash_fs` puts every node's data directory on a faultfs mount, so that a kill
    loses what the node did not fsync (cluster.faultfs.available() says whether this
    machine can; start() raises BadInput when it cannot). `backend_options` go to the
    backend's constructor (local: `base_port`).
    """
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r} (choose from "
                       f"{', '.join(BACKENDS)})", field="backend")
    if not isinstance(node_count, int) or node_count < 1:
        raise BadInput(f"node count must be a positive integer, got {node_count!r}",
                       field="nodes")
    module_name, class_name = BACKENDS[backend]
    module = importlib.import_module(module_name)  # lazily: docker loads its SDK
    cls = getattr(module, class_name)
    return cls(node_count, run_dir, bug=bug, node_options=node_options, crash_fs=crash_fs,
               **backend_options)


def fetch_status(client_url: str, timeout_s: float = 1.0,
                 session: requests.Session | None = None) -> dict | None:
    """GET /status of one node (SPEC section 4); None if it does not answer well."""
    http = session or requests
    try:
        resp = http.get(client_url + "/status", timeout=timeout_s)
        data = resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_leader(cluster: Cluster, timeout_s: float = 1.0,
                node_ids: list[str] | None = None) -> str | None:
    """The node that says it leads in the highest term, or None.

    Asks every node's GET /status (a paused or killed node simply does not count).
    """
    session = requests.Session()
    session.trust_env = False
    best: tuple[int, str] | None = None
    try:
        for nid in node_ids or cluster.node_ids:
            st = fetch_status(cluster.client_url(nid), timeout_s, session)
            if st and st.get("role") == "leader" and isinstance(st.get("term"), int):
                if best is None or st["term"] > best[0]:
                    best = (st["term"], nid)
    finally:
        session.close()
    return best[1] if best else None


def wait_for_status(client_urls: dict[str, str], timeout_s: float,
                    alive: Any = None) -> None:
    """Return when every node answers GET /status with its own id.

    `alive(id) -> str | None` may report why a node can no longer answer (it
    exited); that, or the deadline, raises ClusterError naming the nodes.
    """
    session = requests.Session()
    session.trust_env = False
    waiting = dict(client_urls)
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            for nid, url in list(waiting.items()):
                st = fetch_status(url, 0.5, session)
                if st is not None and st.get("id") == nid:
                    del waiting[nid]
                elif alive is not None:
                    why = alive(nid)
                    if why:
                        raise ClusterError(why)
            if waiting and time.monotonic() > deadline:
                raise ClusterError(f"nodes {sorted(waiting)} did not answer GET /status "
                                   f"within {timeout_s:g} s")
            if waiting:
                time.sleep(0.05)
    finally:
        session.close()
