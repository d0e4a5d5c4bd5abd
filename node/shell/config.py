"""Node configuration: the YAML cluster file plus command-line flags.

A *cluster file* names every node's client (HTTP) and peer (TCP) address, and
optionally, per node, the address it dials to reach each other node (so that
peer traffic can go through Toxiproxy proxies, SPEC section 6). A *node config*
is the cluster file seen from one node id, with the flags applied: everything
`node.shell.server.NodeServer` needs to run.

Format (docs/internals.md)::

    nodes:
      n1: {client: "127.0.0.1:8001", peer: "127.0.0.1:9001"}
      n2: {client: "127.0.0.1:8002", peer: "127.0.0.1:9002"}
    peers:                       # optional; default: the peer address of `nodes`
      n1: {n2: "127.0.0.1:20001"}
    data_dir: "/path/data/{id}"  # optional; {id} is replaced
    fsync: true
    heartbeat_ms: 50
    election_timeout_ms: [300, 600]
    tick_ms: 10                  # optional extras: tick_ms, request_timeout_ms,
    request_timeout_ms: 2000     # max_frame_bytes
    max_frame_bytes: 67108864
    peer_secret_file: "secret.hex"  # the cluster's peer secret (or peer_secret: HEX);
                                    # a relative path is relative to this file
    client_idle_timeout_ms: 10000   # optional: a client connection quiet this long
    max_client_connections: 1024    # is closed; connections served at once
    snapshot_entries: 10000         # optional: snapshot the state machine and compact
                                    # the WAL every N applied entries (0: never)

Peers authenticate every frame with the cluster's *peer secret* (node.shell.transport):
at least 16 bytes, written as hex, the same for every node. A cluster file without one
is refused unless it says `insecure_peers: true`, and then the node warns at start.

Every error is a `node.errors.BadConfig` naming the file, the line (when the
YAML parser knows it) and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from node.errors import BadConfig

Address = tuple[str, int]

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KNOWN_KEYS = {"nodes", "peers", "data_dir", "fsync", "heartbeat_ms", "election_timeout_ms",
               "tick_ms", "request_timeout_ms", "max_frame_bytes", "peer_secret",
               "peer_secret_file", "insecure_peers", "client_idle_timeout_ms",
               "max_client_connections", "snapshot_entries"}
MIN_SECRET_BYTES = 16

DEFAULT_TICK_MS = 10
DEFAULT_HEARTBEAT_MS = 50
DEFAULT_ELECTION_MS = (300, 600)
DEFAULT_REQUEST_TIMEOUT_MS = 2000
DEFAULT_SNAPSHOT_ENTRIES = 10_000    # section 7: snapshot every N applied entries
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
DEFAULT_CLIENT_IDLE_MS = 10_000      # a client connection quiet this long is closed
DEFAULT_MAX_CLIENTS = 1024           # client connections open at once


@dataclass
class ClusterConfig:
    """The whole cluster file, validated."""

    path: str
    nodes: dict[str, tuple[Address, Address]]           # id -> (client, peer)
    peers: dict[str, dict[str, Address]] = field(default_factory=dict)
    data_dir: str | None = None
    fsync: bool = True
    tick_ms: int = DEFAULT_TICK_MS
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    election_timeout_ms: tuple[int, int] = DEFAULT_ELECTION_MS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    max_frame_bytes: int = DEFAULT_MAX_FRAME
    peer_secret: bytes | None = None
    insecure_peers: bool = False
    client_idle_timeout_ms: int = DEFAULT_CLIENT_IDLE_MS
    max_client_connections: int = DEFAULT_MAX_CLIENTS
    snapshot_entries: int = DEFAULT_SNAPSHOT_ENTRIES


@dataclass
class NodeConfig:
    """One node's view of the cluster, flags applied."""

    node_id: str
    client_addr: Address            # where clients reach this node
    peer_addr: Address              # where peers reach this node
    listen_host: str | None         # bind address for both listeners (None: own hosts)
    peer_addrs: dict[str, Address]  # peer id -> address this node dials
    data_dir: str
    fsync: bool = True
    tick_ms: int = DEFAULT_TICK_MS
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    election_timeout_ms: tuple[int, int] = DEFAULT_ELECTION_MS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    max_frame_bytes: int = DEFAULT_MAX_FRAME
    bug: str | None = None
    peer_secret: bytes | None = None  # None only with insecure_peers
    client_idle_timeout_ms: int = DEFAULT_CLIENT_IDLE_MS
    max_client_connections: int = DEFAULT_MAX_CLIENTS
    snapshot_entries: int = DEFAULT_SNAPSHOT_ENTRIES

    @property
    def peer_ids(self) -> list[str]:
        return sorted(self.peer_addrs)

    def client_bind(self) -> Address:
        return (self.listen_host or self.client_addr[0], self.client_addr[1])

    def peer_bind(self) -> Address:
        return (self.listen_host or self.peer_addr[0], self.peer_addr[1])


class _Where:
    """Finds the line of a field in the composed YAML tree (for error messages)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, *path: str) -> int | None:
        node, best = self.root, None
        for part in path:
            if not isinstance(node, yaml.MappingNode):
                break
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    best, node = k.start_mark.line + 1, v
                    break
            else:
                break
        if node is not None and node is not self.root and len(path) > 0:
            return node.start_mark.line + 1 if best is None else best
        return best


def parse_address(value: Any, path: str, name: str, line: int | None) -> Address:
    """'host:port' -> (host, port); BadConfig otherwise."""
    if not isinstance(value, str) or ":" not in value:
        raise BadConfig(f"expected \"host:port\", got {value!r}", path, line, name)
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise BadConfig(f"expected \"host:port\" with a port 0-65535, got {value!r}",
                       path, line, name)
    return host, int(port_s)


def load_cluster(path: str) -> ClusterConfig:
    """Read and validate a cluster file; BadConfig naming file, line and field."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise BadConfig(f"cannot read the cluster file: {e.strerror or e}", path) from None
    except UnicodeDecodeError as e:
        raise BadConfig(f"not UTF-8 text: {e.reason}", path) from None
    try:
        data = yaml.safe_load(text)
        where = _Where(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadConfig(f"YAML syntax error: {problem}", path, line, None) from None
    if not isinstance(data, dict):
        raise BadConfig("expected a mapping with a 'nodes' field", path, 1, None)
    for key in data:
        if key not in _KNOWN_KEYS:
            raise BadConfig(f"unknown field (known: {', '.join(sorted(_KNOWN_KEYS))})",
                           path, where.line(str(key)), str(key))

    nodes_raw = data.get("nodes")
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        raise BadConfig("expected a non-empty mapping of node id -> {client, peer}",
                       path, where.line("nodes"), "nodes")
    nodes: dict[str, tuple[Address, Address]] = {}
    for nid, spec in nodes_raw.items():
        name = f"nodes.{nid}"
        line = where.line("nodes", str(nid))
        if not isinstance(nid, str) or not _ID_RE.match(nid):
            raise BadConfig("a node id is 1-64 letters, digits, '_', '-' or '.'",
                           path, line, name)
        if not isinstance(spec, dict) or set(spec) != {"client", "peer"}:
            raise BadConfig("expected {client: \"host:port\", peer: \"host:port\"}",
                           path, line, name)
        client = parse_address(spec["client"], path, f"{name}.client",
                               where.line("nodes", nid, "client"))
        peer = parse_address(spec["peer"], path, f"{name}.peer",
                             where.line("nodes", nid, "peer"))
        nodes[nid] = (client, peer)

    peers: dict[str, dict[str, Address]] = {}
    peers_raw = data.get("peers") or {}
    if not isinstance(peers_raw, dict):
        raise BadConfig("expected a mapping of node id -> {peer id: \"host:port\"}",
                       path, where.line("peers"), "peers")
    for src, table in peers_raw.items():
        if src not in nodes:
            raise BadConfig("not a node named in 'nodes'", path,
                           where.line("peers", str(src)), f"peers.{src}")
        if not isinstance(table, dict):
            raise BadConfig("expected a mapping of peer id -> \"host:port\"", path,
                           where.line("peers", src), f"peers.{src}")
        peers[src] = {}
        for dst, addr in table.items():
            name = f"peers.{src}.{dst}"
            line = where.line("peers", src, str(dst))
            if dst not in nodes or dst == src:
                raise BadConfig("not another node named in 'nodes'", path, line, name)
            peers[src][dst] = parse_address(addr, path, name, line)

    cfg = ClusterConfig(path=path, nodes=nodes, peers=peers)
    data_dir = data.get("data_dir")
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
        raise BadConfig("expected a path", path, where.line("data_dir"), "data_dir")
    cfg.data_dir = data_dir
    fsync = data.get("fsync", True)
    if not isinstance(fsync, bool):
        raise BadConfig(f"expected true or false, got {fsync!r}", path,
                       where.line("fsync"), "fsync")
    cfg.fsync = fsync
    for key, lo, hi in (("tick_ms", 1, 10_000), ("heartbeat_ms", 1, 60_000),
                        ("request_timeout_ms", 1, 600_000),
                        ("max_frame_bytes", 1024, 1 << 30),
                        ("client_idle_timeout_ms", 100, 3_600_000),
                        ("max_client_connections", 1, 1 << 20),
                        ("snapshot_entries", 0, 1 << 40)):
        if key in data:
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise BadConfig(f"expected an integer in [{lo}, {hi}], got {value!r}",
                               path, where.line(key), key)
            setattr(cfg, key, value)
    if "election_timeout_ms" in data:
        et = data["election_timeout_ms"]
        ok = (isinstance(et, list) and len(et) == 2
              and all(isinstance(x, int) and not isinstance(x, bool) for x in et)
              and 0 < et[0] <= et[1])
        if not ok:
            raise BadConfig(f"expected [min, max] integers with 0 < min <= max, got {et!r}",
                           path, where.line("election_timeout_ms"), "election_timeout_ms")
        cfg.election_timeout_ms = (et[0], et[1])
    _peer_secret(cfg, data, where)
    if cfg.heartbeat_ms >= cfg.election_timeout_ms[0]:
        raise BadConfig("heartbeat_ms must be below the minimum election timeout",
                       path, where.line("heartbeat_ms"), "heartbeat_ms")
    if cfg.tick_ms > cfg.heartbeat_ms:
        raise BadConfig("tick_ms must not exceed heartbeat_ms", path,
                       where.line("tick_ms"), "tick_ms")
    return cfg


def parse_secret(text: Any) -> bytes:
    """A peer secret written as hex; ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError("expected a hex string")
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError("expected a hex string") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"expected at least {MIN_SECRET_BYTES} bytes "
                         f"({2 * MIN_SECRET_BYTES} hex digits), got {len(secret)}")
    return secret


def _peer_secret(cfg: ClusterConfig, data: dict, where: "_Where") -> None:
    """peer_secret / peer_secret_file / insecure_peers, into `cfg`."""
    path = cfg.path
    insecure = data.get("insecure_peers", False)
    if not isinstance(insecure, bool):
        raise BadConfig(f"expected true or false, got {insecure!r}", path,
                        where.line("insecure_peers"), "insecure_peers")
    cfg.insecure_peers = insecure
    if "peer_secret" in data and "peer_secret_file" in data:
        raise BadConfig("give peer_secret or peer_secret_file, not both", path,
                        where.line("peer_secret_file"), "peer_secret_file")
    if "peer_secret" in data:
        try:
            cfg.peer_secret = parse_secret(data["peer_secret"])
        except ValueError as e:
            raise BadConfig(str(e), path, where.line("peer_secret"), "peer_secret") from None
    elif "peer_secret_file" in data:
        name = data["peer_secret_file"]
        line = where.line("peer_secret_file")
        if not isinstance(name, str) or not name:
            raise BadConfig("expected a path", path, line, "peer_secret_file")
        full = name if os.path.isabs(name) else os.path.join(
            os.path.dirname(os.path.abspath(path)), name)
        try:
            with open(full, encoding="ascii") as f:
                cfg.peer_secret = parse_secret(f.read())
        except OSError as e:
            raise BadConfig(f"cannot read {full}: {e.strerror or e}", path, line,
                            "peer_secret_file") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise BadConfig(f"{full}: {e}", path, line, "peer_secret_file") from None


def node_config(cluster: ClusterConfig, node_id: str, data_dir: str | None = None,
                listen_host: str | None = None, bug: str | None = None) -> NodeConfig:
    """One node's config from the cluster file and the flags (which win)."""
    if node_id not in cluster.nodes:
        raise BadConfig(f"node {node_id!r} is not in the cluster file (nodes: "
                       f"{', '.join(sorted(cluster.nodes))})", cluster.path, None, "--id")
    if cluster.peer_secret is None and not cluster.insecure_peers:
        raise BadConfig("no peer secret: give peer_secret_file (or peer_secret: HEX) so "
                        "that peers authenticate each other, or insecure_peers: true",
                        cluster.path, None, "peer_secret")
    client, peer = cluster.nodes[node_id]
    peer_addrs = {j: cluster.peers.get(node_id, {}).get(j, addrs[1])
                  for j, addrs in cluster.nodes.items() if j != node_id}
    if data_dir is None:
        if cluster.data_dir is None:
            raise BadConfig("no data directory: give --data-dir or 'data_dir' in the "
                           "cluster file", cluster.path, None, "data_dir")
        data_dir = cluster.data_dir.replace("{id}", node_id)
        if not os.path.isabs(data_dir):
            data_dir = os.path.join(os.path.dirname(os.path.abspath(cluster.path)), data_dir)
    else:
        data_dir = data_dir.replace("{id}", node_id)
    return NodeConfig(
        node_id=node_id, client_addr=client, peer_addr=peer,
        listen_host=listen_host or None, peer_addrs=peer_addrs, data_dir=data_dir,
        fsync=cluster.fsync, tick_ms=cluster.tick_ms, heartbeat_ms=cluster.heartbeat_ms,
        election_timeout_ms=cluster.election_timeout_ms,
        request_timeout_ms=cluster.request_timeout_ms,
        max_frame_bytes=cluster.max_frame_bytes, bug=bug, peer_secret=cluster.peer_secret,
        client_idle_timeout_ms=cluster.client_idle_timeout_ms,
        max_client_connections=cluster.max_client_connections,
        snapshot_entries=cluster.snapshot_entries)
