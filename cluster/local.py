"""The local backend: a cluster of node processes on loopback, and their Toxiproxy.

`LocalCluster` runs N `raftcheck node` processes and one real toxiproxy server
process on 127.0.0.1, on free ports, with everything of the run under its folder:
the cluster file (cluster.yaml), node data (data/<id>), node logs (nodes/<id>.log)
and the toxiproxy log (toxiproxy.log). Faults are Unix signals: kill = SIGKILL,
pause = SIGSTOP, resume = SIGCONT; restart starts the node again on its old data.

With `crash_fs`, each node's data directory is a faultfs mount (cluster.faultfs) at
mnt/<id> over data/<id>, and a kill is a power cut: after the SIGKILL, every write
the node did not fsync is dropped. Teardown is one too: after it, data/<id> holds
exactly what each node fsync'd (faultfs logs: faultfs/<id>.log).

No orphans: each child runs in its own process group and dies with the runner
(cluster.processes: one spawner thread, PR_SET_PDEATHSIG), and `teardown()` runs on
exit, on SIGTERM / SIGHUP and from the runner's own `finally`. A faultfs process
unmounts itself when the runner is gone.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import random
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cluster.base import ClusterError, SignalTeardown, wait_for_status
from cluster.executables import find_executable
from cluster.faultfs import FaultFS, available as faultfs_available, unmount_all
from cluster.processes import (Child, Spawner, child_setup, last_line, signal_group, tail,
                               wait_state)
from cluster.topology import (cluster_config, node_ids, peers_from_proxies, proxy_specs,
                              write_cluster_file)
from history.errors import BadInput
from cluster.toxiproxy import Toxiproxy, ToxiproxyError

log = logging.getLogger("raftcheck.local")

HOST = "127.0.0.1"
INSTALL_HINT = "go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0"
START_TIMEOUT_S = 30.0      # every node answers GET /status
RESTART_TIMEOUT_S = 20.0
RESTART_ATTEMPTS = 3
STOP_GRACE_S = 2.0          # SIGTERM, then SIGKILL
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def find_toxiproxy() -> str:
    """The toxiproxy server binary: $RAFTCHECK_TOXIPROXY, else `toxiproxy-server` on
    PATH, else $(go env GOPATH)/bin/server. Missing: BadInput saying how to install."""
    return find_executable("RAFTCHECK_TOXIPROXY", "toxiproxy-server", "server",
                           "toxiproxy server", f"`{INSTALL_HINT}`", "toxiproxy")


NODE_COMMAND_FIELDS = ("config", "id", "data_dir", "bug")


def node_command_argv(command: Any) -> list[str]:
    """A --node-command as argv: shell words, each with `{config}`, `{id}`,
    `{data_dir}` and `{bug}` filled in per node (docs/node-contract.md). BadInput
    naming node_command for an empty command or an unknown placeholder."""
    if not isinstance(command, str) or not command.strip():
        raise BadInput("expected a command line", field="node_command")
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise BadInput(f"cannot split {command!r}: {e}", field="node_command") from None
    probe = {k: "x" for k in NODE_COMMAND_FIELDS}
    for word in argv:
        try:
            word.format(**probe)
        except (KeyError, IndexError, ValueError) as e:
            raise BadInput(f"{word!r}: unknown placeholder {e} (known: "
                           + ", ".join("{" + k + "}" for k in NODE_COMMAND_FIELDS) + ")",
                           field="node_command") from None
    return argv


def free_port(host: str = HOST) -> int:
    """A port that is free now (the kernel picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def node_port(host: str = HOST, rng: random.Random | None = None) -> int:
    """A free port for a node, below the kernel's ephemeral range when possible.

    A node keeps its ports across kill and restart. A port from the ephemeral range
    (what port 0 gives) can be taken meanwhile by any outgoing connection on the
    machine, and the restart would fail; ports below that range are never handed out
    by the kernel, only taken by servers that ask for them.
    """
    rng = rng or random.Random()
    low = _ephemeral_low()
    if low > 20000:
        for _ in range(50):
            port = rng.randrange(10000, low)
            if port_is_free(port, host):
                return port
    return free_port(host)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class LocalCluster(SignalTeardown):
    """N node processes on loopback plus one toxiproxy server (see module doc).

    Implements `cluster.base.Cluster`. `base_port` (optional) fixes the ports
    instead of picking free ones: node i (1-based) listens for clients on
    base_port + 2(i-1) and for peers on base_port + 2(i-1) + 1; the toxiproxy API is on
    base_port + 2N; a busy one is a BadInput. Proxies always get free ports.
    `node_command` replaces the command that runs a node (default: this Python with
    `-m node`); `--config`, `--id` and `--bug` are appended. `crash_fs`: data
    directories on faultfs mounts (see the module doc).
    """

    def __init__(self, node_count: int, run_dir: Path | str, bug: str | None = None,
                 node_options: dict | None = None, base_port: int | None = None,
                 node_command: list[str] | None = None, seed: int | None = None,
                 log_level: str | None = None, crash_fs: bool = False) -> None:
        self.node_ids = node_ids(node_count)
        self.crash_fs = bool(crash_fs)
        self._faultfs: dict[str, FaultFS] = {}
        self._unexpected: list[dict] = []
        self._faultfs_noted: set[str] = set()
        self.run_dir = Path(run_dir).resolve()
        self.bug = bug
        self.node_options = dict(node_options or {})
        self.base_port = base_port
        self.node_command = list(node_command or [sys.executable, "-m", "node"])
        self.seed = seed
        self.log_level = log_level
        self.toxiproxy: Toxiproxy = None  # type: ignore[assignment]  # set by start()
        self.config_path = self.run_dir / "cluster.yaml"
        self.addresses: dict[str, dict[str, str]] = {}
        self._proxy_ports: list[int] = []
        self.restart_attempts = RESTART_ATTEMPTS
        self._nodes: dict[str, Child] = {}
        self._proxy_server: Child | None = None
        self._lock = threading.RLock()
        self._started = False
        self._torn_down = False
        self._spawner: Spawner | None = None
        self._prev_handlers: dict[int, Any] = {}
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self._libc.prctl  # noqa: B018 - Linux only
        except (OSError, AttributeError):
            self._libc = None

    # --- Cluster protocol -------------------------------------------------------

    def client_url(self, node_id: str) -> str:
        return f"http://{self.addresses[self._known(node_id)]['client']}"

    def _before_start(self) -> None:
        self._spawner = Spawner(f"spawner-{self.run_dir.name}")

    def kill(self, node_id: str) -> int | None:
        """SIGKILL the node's process group and wait until it is gone (a no-op if it
        is not running). With crash_fs, then crash its faultfs and return the bytes
        of unsynced writes lost (0 for a no-op); without, return None."""
        with self._lock:
            child = self._nodes[self._known(node_id)]
            if not child.running():
                self._note_exit(node_id, child)
                return 0 if self.crash_fs else None
            child.expected_exit = True
            signal_group(child.popen, signal.SIGKILL)
            child.popen.wait(timeout=10)
            child.paused = False
            log.info("killed %s (pid %d)", node_id, child.popen.pid)
            if not self.crash_fs:
                return None
            lost = self._faultfs[node_id].crash()
            log.info("%s: the crash lost %d bytes of unsynced writes", node_id, lost)
            return lost

    def restart(self, node_id: str) -> None:
        """Start a killed node again with its data; return when it answers /status.

        Its ports may still be held for a moment (a port in use by a connection):
        a start that fails on a busy port is retried a few times."""
        for attempt in range(self.restart_attempts):
            with self._lock:
                child = self._nodes[self._known(node_id)]
                if child.running():
                    return
                self._note_exit(node_id, child)
                if self.crash_fs:
                    why = self._faultfs[node_id].exited()
                    if why:
                        raise ClusterError(f"cannot restart {node_id}: {why}")
                self._spawn(child)
            try:
                wait_for_status({node_id: self.client_url(node_id)}, RESTART_TIMEOUT_S,
                                alive=lambda nid: self._exited(nid, starting=False))
                log.info("restarted %s (pid %d)", node_id, child.popen.pid)
                return
            except _PortTaken:
                if attempt == self.restart_attempts - 1:
                    raise ClusterError(f"{node_id} could not restart: its port stays "
                                       f"busy (see {child.log_path})") from None
                log.warning("%s: port busy at restart, retrying", node_id)
                time.sleep(0.5 * (attempt + 1))

    def pause(self, node_id: str) -> None:
        self._stop_cont(node_id, signal.SIGSTOP, True)

    def resume(self, node_id: str) -> None:
        self._stop_cont(node_id, signal.SIGCONT, False)

    def collect_logs(self, run_dir: Path | str) -> list[Path]:
        """Copy the logs to run_dir (a no-op for the run's own folder); their paths."""
        run_dir = Path(run_dir).resolve()
        sources = [self.run_dir / "nodes" / f"{n}.log" for n in self.node_ids]
        sources.append(self.run_dir / "toxiproxy.log")
        sources += [fs.log_path for fs in self._faultfs.values()]
        out = []
        for src in sources:
            dst = run_dir / src.relative_to(self.run_dir)
            if src.exists() and dst != src:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            if dst.exists():
                out.append(dst)
        return out

    def teardown(self) -> None:
        """Stop every process this cluster started (idempotent)."""
        with self._lock:
            if self._torn_down or not self._started:
                self._torn_down = True
                return
            self._torn_down = True
            self._note_exits()
            for c in self._nodes.values():
                c.expected_exit = True
            children = list(self._nodes.values())
            if self._proxy_server is not None:
                children.append(self._proxy_server)
            live = [c for c in children if c.running()]
            for c in live:
                signal_group(c.popen, signal.SIGTERM)
                signal_group(c.popen, signal.SIGCONT)  # a paused node must see it
            deadline = time.monotonic() + STOP_GRACE_S
            for c in live:
                try:
                    c.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    signal_group(c.popen, signal.SIGKILL)
                    c.popen.wait(timeout=10)
                # anything left in the group (a grandchild) goes too
                signal_group(c.popen, signal.SIGKILL)
            for c in children:
                if c.log_file is not None:
                    c.log_file.close()
                    c.log_file = None
            unmount_all(self._faultfs)
            if self.toxiproxy is not None:
                self.toxiproxy.close()
            if self._spawner is not None:
                self._spawner.stop()
            self._restore_signal_handlers()
            atexit.unregister(self.teardown)
            log.info("cluster in %s torn down", self.run_dir)

    def unexpected_exits(self) -> list[dict]:
        """Every node process that ended without kill() or teardown (also one found
        dead at restart), and every faultfs that died: {"node", "code", "detail"}
        (code: the exit status, negative for a signal; detail: its last log line)."""
        with self._lock:
            if not self._torn_down:
                self._note_exits()
            return [dict(e) for e in self._unexpected]

    # --- more than the protocol ---------------------------------------------------

    def faultfs(self, node_id: str) -> FaultFS | None:
        """The node's faultfs (None without crash_fs)."""
        return self._faultfs.get(self._known(node_id))

    def pids(self) -> dict[str, int]:
        """Process ids of the running children (nodes and "toxiproxy")."""
        out = {n: c.popen.pid for n, c in self._nodes.items() if c.running()}
        if self._proxy_server is not None and self._proxy_server.running():
            out["toxiproxy"] = self._proxy_server.popen.pid
        return out

    def ports(self) -> list[int]:
        """Every port this cluster listens on (nodes, toxiproxy API, proxies)."""
        ports = [int(a.rsplit(":", 1)[1]) for addrs in self.addresses.values()
                 for a in (addrs["client"], addrs["peer"])]
        ports += self._proxy_ports
        return ports

    # --- start-up -----------------------------------------------------------------

    def _start(self) -> None:
        binary = find_toxiproxy()
        if self.crash_fs:
            why = faultfs_available()
            if why:
                raise BadInput(f"crash_fs needs faultfs: {why}", field="crash_fs")
        n = len(self.node_ids)
        for sub in ("nodes", "data"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        api_port = self._plan_ports()
        self._start_toxiproxy(binary, api_port)
        peer_addr = {i: a["peer"] for i, a in self.addresses.items()}
        try:
            created = self.toxiproxy.create_proxies(proxy_specs(self.node_ids, peer_addr, HOST))
        except ToxiproxyError as e:
            raise ClusterError(f"creating the {n * (n - 1)} proxies failed: {e}") from e
        listen = {name: p.listen for name, p in created.items()}
        self._proxy_ports = [int(a.rsplit(":", 1)[1]) for a in listen.values()]
        data_dir = self.run_dir / ("mnt" if self.crash_fs else "data")
        config = cluster_config(self.addresses, peers_from_proxies(self.node_ids, listen),
                                data_dir=str(data_dir / "{id}"),
                                node_options=self.node_options)
        write_cluster_file(self.config_path, config)
        for nid in self.node_ids:
            (self.run_dir / "data" / nid).mkdir(parents=True, exist_ok=True)
            if self.crash_fs:
                fs = FaultFS(self.run_dir / "data" / nid, self.run_dir / "mnt" / nid,
                             log_path=self.run_dir / "faultfs" / f"{nid}.log", name=nid)
                self._faultfs[nid] = fs
                fs.start()
            argv = self._node_argv(nid, data_dir / nid)
            child = Child(nid, argv, self.run_dir / "nodes" / f"{nid}.log")
            self._nodes[nid] = child
            self._check_free(nid)
            with self._lock:
                self._spawn(child)
        wait_for_status({i: self.client_url(i) for i in self.node_ids}, START_TIMEOUT_S,
                        alive=self._exited)
        log.info("cluster of %d nodes up in %s (toxiproxy %s)", n, self.run_dir,
                 self.toxiproxy.url)

    def _node_argv(self, nid: str, data_dir: Path) -> list[str]:
        """The command of node `nid`: raftcheck's node with its flags, or a node
        command whose `{config}`, `{id}`, `{data_dir}` and `{bug}` are filled in
        (docs/node-contract.md)."""
        if any("{" in word for word in self.node_command):
            fields = {"config": str(self.config_path), "id": nid,
                      "data_dir": str(data_dir), "bug": self.bug or ""}
            return [word.format(**fields) for word in self.node_command]
        argv = self.node_command + ["--config", str(self.config_path), "--id", nid]
        if self.bug:
            argv += ["--bug", self.bug]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        return argv

    def _plan_ports(self) -> int:
        """Choose the node and API ports; a busy fixed port is a BadInput."""
        n = len(self.node_ids)
        if self.base_port is None:
            taken: set[int] = set()
            for nid in self.node_ids:
                ports = []
                while len(ports) < 2:
                    port = node_port()
                    if port not in taken:
                        taken.add(port)
                        ports.append(port)
                self.addresses[nid] = {"client": f"{HOST}:{ports[0]}",
                                       "peer": f"{HOST}:{ports[1]}"}
            return free_port()
        base = int(self.base_port)
        if not 1 <= base <= 65535 - 2 * n:
            raise BadInput(f"base port {base} out of range (1..{65535 - 2 * n})",
                           field="base_port")
        for k, nid in enumerate(self.node_ids):
            self.addresses[nid] = {"client": f"{HOST}:{base + 2 * k}",
                                   "peer": f"{HOST}:{base + 2 * k + 1}"}
        for nid in self.node_ids:
            self._check_free(nid)
        if not port_is_free(base + 2 * n):
            raise _busy(base + 2 * n, "the toxiproxy API")
        return base + 2 * n

    def _check_free(self, nid: str) -> None:
        for kind in ("client", "peer"):
            port = int(self.addresses[nid][kind].rsplit(":", 1)[1])
            if not port_is_free(port):
                raise _busy(port, f"{nid}'s {kind} port")

    def _start_toxiproxy(self, binary: str, api_port: int) -> None:
        """Start the toxiproxy server; a dynamic port that turns busy is retried."""
        for attempt in range(3):
            argv = [binary, "-host", HOST, "-port", str(api_port)]
            if self.seed is not None:
                argv += ["-seed", str(self.seed)]
            child = Child("toxiproxy", argv, self.run_dir / "toxiproxy.log")
            self._proxy_server = child
            with self._lock:
                self._spawn(child)
            self.toxiproxy = Toxiproxy(HOST, api_port)
            try:
                self._wait_toxiproxy(child)
                return
            except _PortTaken:
                if self.base_port is not None:
                    raise _busy(api_port, "the toxiproxy API") from None
                if attempt == 2:
                    raise ClusterError(f"toxiproxy could not bind a free port "
                                       f"(see {child.log_path})") from None
                self.toxiproxy.close()
                if child.log_file is not None:
                    child.log_file.close()
                api_port = free_port()

    def _wait_toxiproxy(self, child: Child) -> None:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self.toxiproxy.version()
                return
            except ToxiproxyError as e:
                if not child.running():
                    text = tail(child.log_path, since=child.log_offset)
                    if "address already in use" in text.lower():
                        raise _PortTaken() from None
                    raise ClusterError(f"toxiproxy server exited with code "
                                       f"{child.popen.returncode}: {last_line(text)} "
                                       f"(see {child.log_path})") from None
                if time.monotonic() > deadline:
                    raise ClusterError(f"toxiproxy server did not answer: {e}") from None
                time.sleep(0.05)

    # --- processes ------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        """Start `child` from the spawner thread (caller holds the lock)."""
        if self._torn_down or self._spawner is None:
            raise ClusterError("cluster is torn down")
        if child.log_file is None:
            child.log_path.parent.mkdir(parents=True, exist_ok=True)
            child.log_file = open(child.log_path, "ab")
        child.log_offset = child.log_file.tell()
        child.expected_exit = child.exit_noted = False
        parent = os.getpid()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # the node runs this source tree, installed or not
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE_ROOT),
                                                          env.get("PYTHONPATH")]))

        def popen() -> subprocess.Popen:
            return subprocess.Popen(child.argv, stdin=subprocess.DEVNULL,
                                    stdout=child.log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, env=env,
                                    cwd=str(self.run_dir),
                                    preexec_fn=child_setup(parent, self._libc))
        try:
            child.popen = self._spawner.call(popen)
        except OSError as e:
            raise ClusterError(f"cannot start {child.name}: {child.argv[0]}: "
                               f"{e.strerror}") from e
        child.paused = False
        log.debug("started %s (pid %d): %s", child.name, child.popen.pid,
                  " ".join(child.argv))

    def _exited(self, nid: str, starting: bool = True) -> str | None:
        """Why node `nid` cannot answer any more, or None while it runs. A busy port
        is a BadInput at start-up, and raises _PortTaken at a restart."""
        if nid in self._faultfs and self._faultfs[nid].exited():
            return self._faultfs[nid].exited()
        child = self._nodes[nid]
        if child.running():
            return None
        text = tail(child.log_path, since=child.log_offset)
        if "address already in use" in text.lower():
            if not starting:
                raise _PortTaken()
            raise BadInput(f"{nid} could not listen: {last_line(text)} (a busy port; "
                           f"see {child.log_path})", field="port")
        code = child.popen.returncode if child.popen else None
        return (f"node {nid} exited with code {code} before answering GET /status: "
                f"{last_line(text)} (see {child.log_path})")

    def _note_exit(self, nid: str, child: Child) -> None:
        """Record the exit of a node incarnation that no one asked for (caller holds
        the lock)."""
        if (child.popen is None or child.running() or child.expected_exit
                or child.exit_noted):
            return
        child.exit_noted = True
        detail = last_line(tail(child.log_path, since=child.log_offset))
        self._unexpected.append({"node": nid, "code": child.popen.returncode,
                                 "detail": detail})
        log.warning("%s exited unexpectedly with code %s: %s", nid,
                    child.popen.returncode, detail)

    def _note_exits(self) -> None:
        for nid, child in self._nodes.items():
            self._note_exit(nid, child)
        for nid, fs in self._faultfs.items():
            why = fs.exited()
            if why and nid not in self._faultfs_noted:
                self._faultfs_noted.add(nid)
                self._unexpected.append({"node": nid, "code": fs.popen.returncode,
                                         "detail": why})
                log.warning("%s", why)

    def _stop_cont(self, node_id: str, sig: int, paused: bool) -> None:
        with self._lock:
            child = self._nodes[self._known(node_id)]
            if child.paused == paused:
                return
            if not child.running():
                raise ClusterError(f"cannot {'pause' if paused else 'resume'} "
                                   f"{node_id}: it is not running")
            signal_group(child.popen, sig)
            wait_state(child.popen.pid, stopped=paused)
            child.paused = paused
            log.info("%s %s", "paused" if paused else "resumed", node_id)



class _PortTaken(Exception):
    pass


def _busy(port: int, what: str) -> BadInput:
    return BadInput(f"port {port} ({what}) is busy; stop what uses it or choose "
                    f"another base port", field="port")
