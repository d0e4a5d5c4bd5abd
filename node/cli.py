"""`raftcheck node` (also `python -m node`): run one Raft register node.

    raftcheck node --config cluster.yaml --id n1 [--data-dir DIR] [--listen-host HOST]
                   [--bug NAME[,NAME...]] [--log-level LEVEL]

The node serves the client API (SPEC section 4) and the peer protocol (section 5)
until SIGTERM or SIGINT, then exits cleanly (code 0). Logs go to stderr, one line
each, with the node id.
"""

from __future__ import annotations

import argparse
import logging
import sys

from node.errors import BadConfig
from node.bugs import BUGS, ordered, parse_bugs
from node.shell.config import load_cluster, node_config

LEVELS = ("debug", "info", "warning", "error")
EXIT_BAD_CONFIG = 254


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line and exit code 254, as for every raftcheck command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_CONFIG, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m node ...`: the same as `raftcheck node ...`."""
    parser = _Parser(prog="raftcheck node", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the YAML cluster file (docs/internals.md)")
    parser.add_argument("--id", required=True, dest="node_id", metavar="ID",
                        help="this node's id, a key of 'nodes' in the cluster file")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the write-ahead log lives ({id} is replaced); "
                             "default: 'data_dir' from the cluster file")
    parser.add_argument("--listen-host", metavar="HOST",
                        help="bind address for the client and peer ports "
                             "(default: the host of the node's own addresses)")
    parser.add_argument("--bug", metavar="NAME[,NAME...]", default=None,
                        help="plant known bugs (docs/usage.md, node/bugs.py): " + "; ".join(
                            f"{b.name}: {b.summary}" for b in BUGS.values()))
    parser.add_argument("--log-level", default="info", type=str.lower, metavar="LEVEL",
                        help=f"one of {', '.join(LEVELS)} (default: info)")
    parser.add_argument("--repair-wal", action="store_true",
                        help="do not start: cut the write-ahead log at its first damaged "
                             "record (saying what is dropped), then exit")


class _NodeIdFilter(logging.Filter):
    """Gives every log record a node_id (the process's node, unless set by an adapter)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node_id"):
            record.node_id = self.node_id
        return True


def setup_logging(node_id: str, level: str) -> None:
    """stderr, one line per record, each with the node id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_NodeIdFilter(node_id))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(levelname)s %(node_id)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    """Run the node; a `BadConfig` is one line on stderr and exit code 254."""
    try:
        return _run(args)
    except BadConfig as e:
        print(f"raftcheck node: error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG


def _run(args: argparse.Namespace) -> int:
    if args.log_level not in LEVELS:
        raise BadConfig(f"expected one of {', '.join(LEVELS)}, got {args.log_level!r}",
                       field="--log-level")
    bugs = parse_bugs(args.bug)
    cluster = load_cluster(args.config)
    cfg = node_config(cluster, args.node_id, data_dir=args.data_dir,
                      listen_host=args.listen_host, bug=",".join(ordered(bugs)) or None)
    if args.repair_wal:
        return repair_wal(cfg.node_id, cfg.data_dir)
    setup_logging(cfg.node_id, args.log_level)
    from node.shell.server import run_node  # the server pulls in aiohttp: import it late
    return run_node(cfg, bugs)


def repair_wal(node_id: str, data_dir: str) -> int:
    """`--repair-wal`: the WAL cut at its first damaged record (node.shell.storage),
    what was dropped printed first. Exit 0 (also when nothing needed cutting)."""
    from node.shell.storage import DataDirLocked, Storage, StorageCorrupted
    setup_logging(node_id, "warning")  # the storage says what it cuts, before cutting
    storage = Storage(data_dir, node_id=node_id)
    try:
        hard_state, entries = storage.load(repair=True)
    except (DataDirLocked, StorageCorrupted) as e:
        raise BadConfig(str(e), field="data_dir") from None
    except OSError as e:
        raise BadConfig(f"cannot open the data directory: {e}", field="data_dir") from None
    finally:
        storage.close()
    if storage.last_repair:
        print(f"{node_id}: cut at {storage.last_repair}")
    else:
        print(f"{node_id}: {storage.path}: no damage; nothing cut")
    snap = storage.snapshot
    after = f" after the snapshot at {snap.index}" if snap is not None else ""
    print(f"{node_id}: the log now holds {len(entries)} entries{after}, term "
          f"{hard_state.term}, commit {hard_state.commit}")
    return 0

