"""The cluster's topology: node ids, the Toxiproxy proxies between them, the cluster file.

Every backend builds the same wiring (docs/spec.md section 6): nodes n1..nN, one proxy
per ordered pair `ni-to-nj` (N(N-1) in all) through which node i dials node j, and the
YAML cluster file that tells each node where its peers are (docs/internals.md,
"Cluster file").
"""

from __future__ import annotations

import secrets

from pathlib import Path
from typing import Any

import yaml

from cluster.toxiproxy import proxy_name
from history.errors import BadInput

# Node settings written to the cluster file unless node_options overrides them.
DEFAULT_NODE_OPTIONS: dict[str, Any] = {
    "fsync": True,
    "heartbeat_ms": 50,
    "election_timeout_ms": [300, 600],
}



def node_ids(node_count: int) -> list[str]:
    """The node ids of a cluster: n1..nN."""
    return [f"n{i}" for i in range(1, node_count + 1)]


def proxy_pairs(ids: list[str]) -> list[tuple[str, str]]:
    """Every ordered pair (src, dst), src != dst: one proxy each, N(N-1) in all."""
    return [(a, b) for a in ids for b in ids if a != b]


def proxy_specs(ids: list[str], peer_addr: dict[str, str],
                listen_host: str = "127.0.0.1", listen_port: int = 0) -> list[dict]:
    """Toxiproxy proxy descriptions (for `Toxiproxy.create_proxies`).

    Proxy `ni-to-nj` forwards to `peer_addr[nj]` (node j's peer port, as the
    toxiproxy server reaches it) and listens on listen_host:listen_port (port 0: the
    server picks a free one; a docker backend passes fixed container ports instead).
    """
    return [{"name": proxy_name(a, b), "upstream": peer_addr[b],
             "listen": f"{listen_host}:{listen_port}"} for a, b in proxy_pairs(ids)]


def peers_from_proxies(ids: list[str], listen: dict[str, str],
                       host: str | None = None) -> dict[str, dict[str, str]]:
    """The `peers` table of the cluster file: node i dials `ni-to-nj` to reach j.

    `listen` maps proxy name -> its listen address ("host:port"); `host`, when given,
    replaces the host part (e.g. the toxiproxy container's name on a docker network).
    """
    peers: dict[str, dict[str, str]] = {}
    for a, b in proxy_pairs(ids):
        addr = listen[proxy_name(a, b)]
        if host is not None:
            addr = f"{host}:{addr.rsplit(':', 1)[1]}"
        peers.setdefault(a, {})[b] = addr
    return peers


def cluster_config(nodes: dict[str, dict[str, str]], peers: dict[str, dict[str, str]],
                   data_dir: str | None = None,
                   node_options: dict | None = None) -> dict:
    """The cluster file's content (docs/internals.md, "Cluster file").

    `nodes`: id -> {"client": "host:port", "peer": "host:port"}. Every cluster
    gets its own peer secret unless `node_options` names one or says insecure_peers.
    """
    config: dict[str, Any] = {"nodes": {i: dict(a) for i, a in nodes.items()},
                              "peers": {i: dict(p) for i, p in peers.items()}}
    if data_dir is not None:
        config["data_dir"] = data_dir
    options = dict(DEFAULT_NODE_OPTIONS)
    options.update(node_options or {})
    for key in ("nodes", "peers", "data_dir"):
        if key in options:
            raise BadInput(f"node option {key!r} is set by the cluster, not by the user",
                           field=key)
    config.update(options)
    if not config.get("insecure_peers") and "peer_secret" not in config \
            and "peer_secret_file" not in config:
        config["peer_secret"] = new_peer_secret()
    return config


def new_peer_secret() -> str:
    """A fresh peer secret for one cluster (docs/spec.md section 5), as hex."""
    return secrets.token_hex(32)


def write_cluster_file(path: Path | str, config: dict) -> Path:
    """Write the cluster YAML file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    tmp.replace(path)
    return path
