"""`raftcheck clean`: remove what crashed docker runs left behind.

A docker run (cluster.containers) labels every container, volume and network it
makes with `raftcheck.run=<run id>` and `raftcheck.owner=<host>:<pid>:<start time>`.
A run is *leftover* when its owner process is gone (a SIGKILLed runner, a crashed
machine). By default only leftovers are removed, so that a test running beside is
never touched; `--all` removes every run's objects, `--run ID` one run's, and
`--dry-run` only lists them.

    raftcheck clean [--all | --run ID] [--dry-run]

Exit code 0 when everything chosen was removed, 255 when something could not be.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

from cluster.containers import (LABEL_OWNER, LABEL_RUN, LABEL_RUN_DIR, _not_found,
                                _short, container_labels, container_name, docker_client,
                                labelled_containers, owner_alive)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true",
                       help="remove every raftcheck run's containers, volumes and "
                            "networks, also those of runs still going")
    which.add_argument("--run", metavar="ID",
                       help="remove the objects of this run id (label raftcheck.run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list what would be removed, remove nothing")


def find_runs(client: Any) -> dict[str, dict[str, Any]]:
    """Every labelled run: id -> {"owner", "run_dir", "containers", "volumes",
    "networks"}."""
    runs: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"owner": None, "run_dir": None, "containers": [], "volumes": [],
                 "networks": []})
    flt = {"label": LABEL_RUN}
    for kind, objects in (("containers", labelled_containers(client, LABEL_RUN)),
                          ("volumes", client.volumes.list(filters=flt)),
                          ("networks", client.networks.list(filters=flt))):
        for obj in objects:
            labels = (obj.attrs.get("Labels") if kind != "containers"
                      else container_labels(obj)) or {}
            run = runs[labels.get(LABEL_RUN, "?")]
            run[kind].append(obj)
            run["owner"] = run["owner"] or labels.get(LABEL_OWNER)
            run["run_dir"] = run["run_dir"] or labels.get(LABEL_RUN_DIR)
    return dict(runs)


def remove_run(run: dict[str, Any]) -> list[str]:
    """Remove a run's containers, then volumes, then networks; returns problems."""
    problems = []
    for kind in ("containers", "volumes", "networks"):
        for obj in run[kind]:
            try:
                if kind == "networks":
                    obj.remove()
                else:
                    obj.remove(force=True)
            except Exception as e:
                if not _not_found(e):
                    name = container_name(obj) if kind == "containers" else obj.name
                    problems.append(f"{kind[:-1]} {name}: {_short(e)}")
    return problems


def run(args: argparse.Namespace) -> int:
    client = docker_client()
    try:
        runs = find_runs(client)
        chosen = {}
        for run_id, r in sorted(runs.items()):
            alive = owner_alive(r["owner"])
            if args.run is not None:
                pick = run_id == args.run
            else:
                pick = args.all or alive is False
            state = {True: "running", False: "crashed", None: "owner unknown"}[alive]
            if not pick:
                if args.run is None:
                    print(f"keeping run {run_id} ({state}; --all removes it)",
                          file=sys.stderr)
                continue
            chosen[run_id] = (r, state)
        if args.run is not None and args.run not in chosen:
            print(f"raftcheck clean: no run {args.run!r} found", file=sys.stderr)
        problems = []
        for run_id, (r, state) in chosen.items():
            what = ", ".join(f"{len(r[k])} {k}" for k in ("containers", "volumes",
                                                          "networks") if r[k])
            verb = "would remove" if args.dry_run else "removing"
            print(f"{verb} run {run_id} ({state}; {what}; run dir {r['run_dir']})")
            if not args.dry_run:
                problems += remove_run(r)
        for p in problems:
            print(f"raftcheck clean: could not remove {p}", file=sys.stderr)
        if not chosen:
            print("nothing to clean")
        return 255 if problems else 0
    finally:
        client.close()
