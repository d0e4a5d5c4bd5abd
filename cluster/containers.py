"""The docker backend: a cluster of node containers and a Toxiproxy container.

`DockerCluster` runs the same topology as the local backend (SPEC section 6), but
every node is a container of the `raftcheck/node` image and the Toxiproxy server is a
container of `raftcheck/toxiproxy` (docker/build-images.sh builds both), all on one
bridge network made for the run. Peers reach each other only through the proxies
(node i dials `ni-to-nj` on the toxiproxy container); clients reach the nodes directly
on client ports published on 127.0.0.1, and the runner reaches the Toxiproxy API the
same way. Faults are the engine's: kill = `docker kill` (SIGKILL), restart = start the
same container again (its named data volume keeps what the node fsynced), pause =
`docker pause` (the freezer cgroup), resume = `docker unpause`.

With `crash_fs`, a node's /data is not a volume but a faultfs mount made on the host
(cluster.faultfs: run_dir/mnt/<id> over run_dir/data/<id>), bind-mounted into its
container; the container restarts on the same mount. A kill is then a power cut:
once the container has stopped, every write the node did not fsync is dropped.

A *run* is everything one cluster made: containers, a network and volumes, each
labelled `raftcheck.run=<run id>` and `raftcheck.owner=<host>:<pid>:<start time>`
(the runner process). `teardown()` removes them all; it also runs at interpreter
exit and on SIGTERM / SIGHUP (Ctrl-C reaches it through the runner's `finally`).
What a SIGKILLed runner leaves behind, `raftcheck clean` removes by those labels.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import secrets
import socket
import tarfile
import threading
from pathlib import Path
from typing import Any

import yaml

from cluster.base import ClusterError, SignalTeardown, wait_for_status
from cluster.faultfs import FaultFS, available as faultfs_available, unmount_all
from cluster.topology import (cluster_config, node_ids, peers_from_proxies, proxy_specs,
                              write_cluster_file)
from cluster.local import free_port
from history.errors import BadInput
from cluster.toxiproxy import Toxiproxy, ToxiproxyError

log = logging.getLogger("raftcheck.docker")

NODE_IMAGE = "raftcheck/node:latest"
TOXIPROXY_IMAGE = "raftcheck/toxiproxy:latest"
HOST = "127.0.0.1"           # where published ports listen on the host
CLIENT_PORT = 8000           # inside a node container (see docker/Dockerfile.node)
PEER_PORT = 9000
TOXIPROXY_API_PORT = 8474
CONFIG_DIR = "/etc/raftcheck"
DATA_DIR = "/data"
LABEL_RUN = "raftcheck.run"
LABEL_OWNER = "raftcheck.owner"
LABEL_ROLE = "raftcheck.role"
LABEL_RUN_DIR = "raftcheck.run_dir"
START_TIMEOUT_S = 40.0
RESTART_TIMEOUT_S = 20.0
BUILD_HINT = "build them with: bash docker/base-image.sh && bash docker/build-images.sh"


def docker_client(timeout_s: float = 30.0) -> Any:
    """A client of the engine named by the environment (DOCKER_HOST respected).

    No engine answering is a BadInput that says how to get one."""
    import docker  # the SDK pulls in requests and more: only the docker backend needs it
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as e:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise BadInput(f"no Docker engine answers at {where} ({_short(e)}); start one "
                       f"(bash scripts/docker-engine.sh)", field="backend") from None
    return client


def owner_label() -> str:
    """This process as a run owner: host, pid and the pid's start time (pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_proc_start(os.getpid()) or '?'}"


def owner_alive(label: str | None) -> bool | None:
    """Is the process that owns a run still there? None when it cannot be told
    (another host, an unreadable label)."""
    try:
        host, pid_text, start = (label or "").rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    now = _proc_start(pid)
    return now is not None and (start == "?" or now == start)


def _proc_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


class DockerCluster(SignalTeardown):
    """N node containers plus one toxiproxy container on a private network.

    Implements `cluster.base.Cluster` (see the module doc). `node_image` and
    `toxiproxy_image` default to $RAFTCHECK_NODE_IMAGE / $RAFTCHECK_TOXIPROXY_IMAGE,
    else raftcheck/node:latest and raftcheck/toxiproxy:latest. `crash_fs`: node data
    on faultfs mounts (see the module doc).
    """

    def __init__(self, node_count: int, run_dir: Path | str, bug: str | None = None,
                 node_options: dict | None = None, node_image: str | None = None,
                 toxiproxy_image: str | None = None, seed: int | None = None,
                 log_level: str | None = None, crash_fs: bool = False,
                 **_ignored: Any) -> None:
        if _ignored.pop("base_port", None) is not None:
            raise BadInput("fixed ports are for the local backend; the docker backend "
                           "publishes free ports of 127.0.0.1", field="--base-port")
        if _ignored:
            log.debug("docker backend ignores options %s", sorted(_ignored))
        self.node_ids = node_ids(node_count)
        self.crash_fs = bool(crash_fs)
        self._faultfs: dict[str, FaultFS] = {}
        self._unexpected: list[dict] = []
        self._expected_stop: set[str] = set()   # nodes whose stop we caused
        self._exit_noted: set[str] = set()      # nodes (or "faultfs-<id>") recorded
        self.run_dir = Path(run_dir).resolve()
        self.bug = bug
        self.node_options = dict(node_options or {})
        self.node_image = node_image or os.environ.get("RAFTCHECK_NODE_IMAGE", NODE_IMAGE)
        self.toxiproxy_image = (toxiproxy_image
                                or os.environ.get("RAFTCHECK_TOXIPROXY_IMAGE", TOXIPROXY_IMAGE))
        self.seed = seed
        self.log_level = log_level
        self.run_id = secrets.token_hex(4)
        self.prefix = f"raftcheck-{self.run_id}"
        self.labels = {LABEL_RUN: self.run_id, LABEL_OWNER: owner_label(),
                       LABEL_RUN_DIR: str(self.run_dir)}
        self.toxiproxy: Toxiproxy = None  # type: ignore[assignment]  # set by start()
        self.config_path = self.run_dir / "cluster.yaml"
        self.client_ports: dict[str, int] = {}
        self._client: Any = None
        self._network: Any = None
        self._containers: dict[str, Any] = {}   # node id or "toxiproxy" -> Container
        self._volumes: list[Any] = []
        self._lock = threading.RLock()
        self._started = False
        self._torn_down = False
        self._prev_handlers: dict[int, Any] = {}

    # --- Cluster protocol -------------------------------------------------------

    def client_url(self, node_id: str) -> str:
        return f"http://{HOST}:{self.client_ports[self._known(node_id)]}"

    def kill(self, node_id: str) -> int | None:
        """`docker kill` (SIGKILL), then wait until the container has stopped; a
        no-op when the node is not running. With crash_fs, then crash its faultfs and
        return the bytes of unsynced writes lost (0 for a no-op); else None."""
        with self._lock:
            c = self._node(node_id)
            if c.status not in ("running", "paused"):
                self._note_exit(node_id, c)
                return 0 if self.crash_fs else None
            self._expected_stop.add(node_id)
            self._engine(f"kill {node_id}", c.kill, signal="SIGKILL")
            self._engine(f"wait for {node_id}", c.wait, timeout=20)
            c.reload()
            log.info("killed %s", node_id)
            if not self.crash_fs:
                return None
            lost = self._faultfs[node_id].crash()
            log.info("%s: the crash lost %d bytes of unsynced writes", node_id, lost)
            return lost

    def restart(self, node_id: str) -> None:
        """Start a killed node's container again (same volume, same ports)."""
        with self._lock:
            c = self._node(node_id)
            if c.status in ("running", "paused"):
                return
            self._note_exit(node_id, c)
            if self.crash_fs:
                why = self._faultfs[node_id].exited()
                if why:
                    raise ClusterError(f"cannot restart {node_id}: {why}")
            self._engine(f"start {node_id}", c.start)
            self._expected_stop.discard(node_id)
            self._exit_noted.discard(node_id)
        wait_for_status({node_id: self.client_url(node_id)}, RESTART_TIMEOUT_S,
                        alive=self._exited)
        log.info("restarted %s", node_id)

    def pause(self, node_id: str) -> None:
        with self._lock:
            c = self._node(node_id)
            if c.status == "paused":
                return
            if c.status != "running":
                raise ClusterError(f"cannot pause {node_id}: it is {c.status}")
            self._engine(f"pause {node_id}", c.pause)
            c.reload()
            log.info("paused %s", node_id)

    def resume(self, node_id: str) -> None:
        with self._lock:
            c = self._node(node_id)
            if c.status != "paused":
                return
            self._engine(f"unpause {node_id}", c.unpause)
            c.reload()
            log.info("resumed %s", node_id)

    def collect_logs(self, run_dir: Path | str) -> list[Path]:
        """Write each container's log (every start of it) to run_dir/nodes/<id>.log
        and run_dir/toxiproxy.log; returns the paths written."""
        run_dir = Path(run_dir)
        out = []
        with self._lock:
            items = list(self._containers.items())
        for name, c in items:
            path = (run_dir / "toxiproxy.log" if name == "toxiproxy"
                    else run_dir / "nodes" / f"{name}.log")
            try:
                data = c.logs(stdout=True, stderr=True)
            except Exception as e:  # a log we cannot read must not hide the result
                log.warning("cannot read the log of %s: %s", name, _short(e))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".log.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            out.append(path)
        return out

    def unexpected_exits(self) -> list[dict]:
        """Every node container that stopped without kill() or teardown (also one
        found stopped at restart), and every faultfs that died: {"node", "code",
        "detail"} (code: the container's exit code; detail: its last log line)."""
        with self._lock:
            if not self._torn_down:
                self._note_exits()
            return [dict(e) for e in self._unexpected]

    def faultfs(self, node_id: str) -> FaultFS | None:
        """The node's faultfs (None without crash_fs)."""
        return self._faultfs.get(self._known(node_id))

    def teardown(self) -> None:
        """Collect the logs, then remove every container, volume and the network of
        this run, and unmount the faultfs mounts (idempotent). Failures are logged
        with a hint to `raftcheck clean`."""
        with self._lock:
            if self._torn_down or not self._started:
                self._torn_down = True
                return
            self._torn_down = True
            self._note_exits()
            self._expected_stop.update(self.node_ids)
            if self._containers:
                self.collect_logs(self.run_dir)
            problems = []
            for name, c in list(self._containers.items()):
                try:
                    c.remove(force=True)
                except Exception as e:
                    if not _not_found(e):
                        problems.append(f"container {name}: {_short(e)}")
            unmount_all(self._faultfs)
            for v in self._volumes:
                try:
                    v.remove(force=True)
                except Exception as e:
                    if not _not_found(e):
                        problems.append(f"volume {v.name}: {_short(e)}")
            if self._network is not None:
                try:
                    self._network.remove()
                except Exception as e:
                    if not _not_found(e):
                        problems.append(f"network {self._network.name}: {_short(e)}")
            if self.toxiproxy is not None:
                self.toxiproxy.close()
            if self._client is not None:
                self._client.close()
            self._restore_signal_handlers()
            atexit.unregister(self.teardown)
            if problems:
                log.warning("run %s: could not remove %s; `raftcheck clean` removes "
                            "leftovers", self.run_id, "; ".join(problems))
            else:
                log.info("run %s torn down (containers, volumes, network removed)",
                         self.run_id)

    # --- start-up -----------------------------------------------------------------

    def _start(self) -> None:
        if self.crash_fs:
            why = faultfs_available()
            if why:
                raise BadInput(f"crash_fs needs faultfs: {why}", field="crash_fs")
        self._client = docker_client()
        self._check_images()
        self._warn_leftovers()
        (self.run_dir / "nodes").mkdir(parents=True, exist_ok=True)
        net_name = f"{self.prefix}-net"
        self._network = self._engine("create network", self._client.networks.create,
                                     net_name, driver="bridge",
                                     labels=dict(self.labels, **{LABEL_ROLE: "network"}))
        self._start_toxiproxy()
        names = {nid: f"{self.prefix}-{nid}" for nid in self.node_ids}
        peer_addr = {nid: f"{names[nid]}:{PEER_PORT}" for nid in self.node_ids}
        n = len(self.node_ids)
        try:
            created = self.toxiproxy.create_proxies(
                proxy_specs(self.node_ids, peer_addr, "0.0.0.0", 0))
        except ToxiproxyError as e:
            raise ClusterError(f"creating the {n * (n - 1)} proxies failed: {e}") from e
        peers = peers_from_proxies(self.node_ids, {k: p.listen for k, p in created.items()},
                                   host=self._containers["toxiproxy"].name)
        nodes = {nid: {"client": f"{names[nid]}:{CLIENT_PORT}", "peer": peer_addr[nid]}
                 for nid in self.node_ids}
        config = cluster_config(nodes, peers, data_dir=DATA_DIR,
                                node_options=self.node_options)
        write_cluster_file(self.config_path, config)
        config_tar = _tar_file("cluster.yaml", yaml.safe_dump(config, sort_keys=False))
        for nid in self.node_ids:
            self._start_node(nid, names[nid], config_tar)
        wait_for_status({i: self.client_url(i) for i in self.node_ids}, START_TIMEOUT_S,
                        alive=self._exited)
        log.info("run %s: %d node containers up on network %s (toxiproxy %s)",
                 self.run_id, n, net_name, self.toxiproxy.url)

    def _check_images(self) -> None:
        import docker
        for image in (self.node_image, self.toxiproxy_image):
            try:
                self._client.images.get(image)
            except docker.errors.ImageNotFound:
                raise BadInput(f"docker image {image} not found; {BUILD_HINT}",
                               field="backend") from None

    def _warn_leftovers(self) -> None:
        try:
            stale = {container_labels(c).get(LABEL_RUN)
                     for c in labelled_containers(self._client, LABEL_RUN)
                     if owner_alive(container_labels(c).get(LABEL_OWNER)) is False}
        except Exception:  # only a hint: never fail a run for it
            return
        if stale:
            log.warning("%d crashed run(s) left containers behind; `raftcheck clean` "
                        "removes them", len(stale))

    def _start_toxiproxy(self) -> None:
        command = ["-seed", str(self.seed)] if self.seed is not None else []
        c, port = self._run_published("toxiproxy", f"{self.prefix}-toxiproxy",
                                      self.toxiproxy_image, command, TOXIPROXY_API_PORT)
        self.toxiproxy = Toxiproxy(HOST, port)
        try:
            self.toxiproxy.wait_ready(15.0)
        except ToxiproxyError as e:
            c.reload()
            raise ClusterError(f"toxiproxy container is {c.status} and its API does not "
                               f"answer: {e} (see {self.run_dir / 'toxiproxy.log'})") from e

    def _start_node(self, nid: str, name: str, config_tar: bytes) -> None:
        if self.crash_fs:
            fs = FaultFS(self.run_dir / "data" / nid, self.run_dir / "mnt" / nid,
                         log_path=self.run_dir / "faultfs" / f"{nid}.log", name=nid)
            self._faultfs[nid] = fs
            fs.start()
            data = {str(fs.mountpoint): {"bind": DATA_DIR, "mode": "rw"}}
        else:
            volume = self._engine(f"create volume for {nid}", self._client.volumes.create,
                                  name=f"{name}-data",
                                  labels=dict(self.labels, **{LABEL_ROLE: "data"}))
            self._volumes.append(volume)
            data = {volume.name: {"bind": DATA_DIR, "mode": "rw"}}
        command = ["--config", f"{CONFIG_DIR}/cluster.yaml", "--id", nid,
                   "--listen-host", "0.0.0.0", "--data-dir", DATA_DIR]
        if self.bug:
            command += ["--bug", self.bug]
        if self.log_level:
            command += ["--log-level", self.log_level]
        _, port = self._run_published(
            nid, name, self.node_image, command, CLIENT_PORT, config_tar=config_tar,
            volumes=data)
        self.client_ports[nid] = port

    def _run_published(self, key: str, name: str, image: str, command: list[str],
                       port: int, config_tar: bytes | None = None,
                       **kwargs: Any) -> tuple[Any, int]:
        """Create and start a container with `port` published on a free host port of
        127.0.0.1 (fixed, so that a restart keeps it); a port taken in between is
        retried with another one."""
        for attempt in range(3):
            host_port = free_port(HOST)
            c = self._engine(f"create {key}", self._client.containers.create, image,
                             command=command, name=name, detach=True,
                             network=self._network.name, hostname=key,
                             labels=dict(self.labels, **{LABEL_ROLE: key}),
                             ports={f"{port}/tcp": (HOST, host_port)}, **kwargs)
            self._containers[key] = c
            if config_tar is not None:
                self._engine(f"copy the cluster file into {key}", c.put_archive,
                             CONFIG_DIR, config_tar)
            try:
                c.start()
            except Exception as e:
                busy = "already allocated" in str(e) or "address already in use" in str(e)
                if busy and attempt < 2:
                    log.debug("port %d was taken; retrying %s", host_port, key)
                    c.remove(force=True)
                    continue
                raise ClusterError(f"cannot start container {name}: {_short(e)}") from e
            c.reload()
            return c, host_port
        raise AssertionError("unreachable")

    # --- helpers ------------------------------------------------------------------

    def _engine(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One engine call; a failure is a ClusterError naming what we were doing."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise ClusterError(f"docker: {what} ({self.run_id}): {_short(e)}") from e

    def _node(self, node_id: str) -> Any:
        c = self._containers.get(self._known(node_id))
        if c is None:
            raise ClusterError(f"node {node_id} has no container (cluster not started)")
        self._engine(f"inspect {node_id}", c.reload)
        return c

    def _note_exit(self, nid: str, c: Any) -> None:
        """Record a stop of node `nid`'s container that no one asked for (caller
        holds the lock; `c` freshly reloaded)."""
        if (c.status not in ("exited", "dead") or nid in self._expected_stop
                or nid in self._exit_noted):
            return
        self._exit_noted.add(nid)
        try:
            tail = c.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
        except Exception:
            tail = []
        code = c.attrs.get("State", {}).get("ExitCode")
        detail = tail[-1].strip()[:300] if tail else "(no output)"
        self._unexpected.append({"node": nid, "code": code, "detail": detail})
        log.warning("%s's container exited unexpectedly with code %s: %s", nid, code,
                    detail)

    def _note_exits(self) -> None:
        for nid in self.node_ids:
            c = self._containers.get(nid)
            if c is None:
                continue
            try:
                c.reload()
            except Exception as e:
                log.debug("cannot inspect %s: %s", nid, _short(e))
                continue
            self._note_exit(nid, c)
        for nid, fs in self._faultfs.items():
            why = fs.exited()
            if why and f"faultfs-{nid}" not in self._exit_noted:
                self._exit_noted.add(f"faultfs-{nid}")
                self._unexpected.append({"node": nid, "code": fs.popen.returncode,
                                         "detail": why})
                log.warning("%s", why)

    def _exited(self, nid: str) -> str | None:
        """Why node `nid` cannot answer any more, or None while it runs."""
        if nid in self._faultfs and self._faultfs[nid].exited():
            return self._faultfs[nid].exited()
        c = self._containers[nid]
        try:
            c.reload()
        except Exception as e:
            return f"node {nid}'s container is gone: {_short(e)}"
        if c.status in ("running", "paused", "created", "restarting"):
            return None
        try:
            tail = c.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
        except Exception:
            tail = []
        code = c.attrs.get("State", {}).get("ExitCode")
        return (f"node {nid}'s container exited with code {code} before answering "
                f"GET /status: {tail[-1] if tail else '(no output)'}")



def _tar_file(name: str, text: str) -> bytes:
    """A tar archive holding one world-readable file (for `put_archive`)."""
    data = text.encode("utf-8")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def labelled_containers(client: Any, label: str) -> list[Any]:
    """Every container (running or not) that carries `label`, from one list call
    (docker-py's sparse list: a full list inspects each container in turn, and one
    removed meanwhile fails the whole call with 404 Not Found)."""
    return client.containers.list(all=True, filters={"label": label}, sparse=True)


def container_labels(c: Any) -> dict[str, str]:
    """The labels of a container from a sparse list (or a full one)."""
    attrs = getattr(c, "attrs", None) or {}
    return attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}


def container_name(c: Any) -> str:
    """The name of a container from a sparse list (or a full one)."""
    attrs = getattr(c, "attrs", None) or {}
    names = attrs.get("Names") or [attrs.get("Name") or c.id[:12]]
    return str(names[0]).lstrip("/")


def _not_found(e: Exception) -> bool:
    return type(e).__name__ == "NotFound"


def _short(e: BaseException) -> str:
    text = getattr(e, "explanation", None) or str(e) or type(e).__name__
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(e).__name__
