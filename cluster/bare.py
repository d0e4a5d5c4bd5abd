"""A bare cluster: node processes on loopback that talk to each other directly.

`NodeCluster` starts `python -m node` processes from a cluster file on free loopback
ports, with no Toxiproxy in between and no fault plumbing: what the node's own
integration tests and the node benchmark (bench/node.py) need. It offers start, kill
(any signal), stop, GET /status, POST /op and a bounded wait for a leader. Chaos runs
use `cluster.local.LocalCluster` instead.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from cluster.topology import new_peer_secret
from cluster.base import ClusterError

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeCluster:
    """N `python -m node` processes wired to each other directly; every wait is bounded."""

    def __init__(self, base: Path, n: int = 3, bug: str | None = None,
                 **options: object) -> None:
        self.base = base
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.nodes = {i: {"client": f"127.0.0.1:{free_port()}",
                          "peer": f"127.0.0.1:{free_port()}"} for i in self.ids}
        self.options = {"data_dir": str(base / "data" / "{id}"), "fsync": True,
                        "peer_secret": new_peer_secret(), **options}
        self.config = base / "cluster.yaml"
        self.write_config()
        self.bug = bug
        self.procs: dict[str, subprocess.Popen] = {}

    def write_config(self, **extra: object) -> None:
        """(Re)write the cluster file, e.g. with a `peers` table of proxies."""
        self.options.update(extra)
        self.config.write_text(yaml.safe_dump({"nodes": self.nodes, **self.options}))

    def start(self, *ids: str) -> None:
        for i in ids or self.ids:
            if i in self.procs and self.procs[i].poll() is None:
                continue
            cmd = [sys.executable, "-m", "node", "--config", str(self.config), "--id", i]
            if self.bug:
                cmd += ["--bug", self.bug]
            log = open(self.base / f"{i}.log", "ab")
            self.procs[i] = subprocess.Popen(cmd, cwd=SOURCE_ROOT, stdout=subprocess.DEVNULL,
                                             stderr=log, stdin=subprocess.DEVNULL)
            log.close()

    def kill(self, i: str, sig: int = signal.SIGKILL) -> int:
        p = self.procs[i]
        if p.poll() is None:
            p.send_signal(sig)
        return p.wait(timeout=10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def log(self, i: str) -> str:
        return (self.base / f"{i}.log").read_text(errors="replace")

    def url(self, i: str) -> str:
        return "http://" + self.nodes[i]["client"]

    def status(self, i: str, timeout: float = 1.0) -> dict | None:
        try:
            with urllib.request.urlopen(self.url(i) + "/status", timeout=timeout) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def op(self, i: str, body: dict | bytes, timeout: float = 10.0) -> tuple[int, dict]:
        """POST /op; (HTTP status, JSON reply). Raises OSError if unreachable."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url(i) + "/op", data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def leader(self, among: list[str] | None = None, timeout: float = 20.0) -> str:
        """Wait until a majority of `among` agrees on a leader that says so."""
        among = among or self.ids
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = {i: self.status(i, 0.5) for i in among}
            for i, s in st.items():
                if s and s["role"] == "leader":
                    agree = sum(1 for t in st.values()
                                if t and t["leader"] == i and t["term"] == s["term"])
                    if agree * 2 > len(self.ids):
                        return i
            time.sleep(0.05)
        raise ClusterError(f"no leader among {among} within {timeout}s")

    def wait_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for i in self.ids:
            while self.status(i, 0.5) is None:
                if self.procs[i].poll() is not None:
                    raise ClusterError(f"{i} exited:\n{self.log(i)[-2000:]}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"{i} did not answer /status")
                time.sleep(0.05)

    def submit(self, body: dict, among: list[str], deadline: float) -> dict | None:
        """Send to some node, follow not-leader hints and retry definite failures with
        the same client/seq until ok or `deadline`; the last reply (None: no answer)."""
        target, last = among[0], None
        while time.monotonic() < deadline:
            try:
                _, reply = self.op(target, body, timeout=3.0)
            except OSError:
                reply = None
            last = reply
            if reply is not None and reply["ok"]:
                return reply
            if reply is not None and reply.get("leader") in among:
                target = reply["leader"]
            else:
                target = among[(among.index(target) + 1) % len(among)]
                time.sleep(0.05)
        return last
