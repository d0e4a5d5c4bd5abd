"""`raftcheck analyze [RUN]`: re-check a stored run and rewrite its results.json.

RUN is a run folder, a test folder (its latest run) or a store folder (its latest
run); the default is store/latest. The history is read back from history.jsonl, checked
again with the options in test.json (--check-time-limit overrides the budget); the
evidence checkers (campaign.evidence: node-health and raft-invariants) run again on the
node logs and WALs the run left (nodes/, data/), with the unexpected exits the run
recorded (a folder with neither nodes/ nor data/ gets the history checked only);
results.json, history.txt and report.html are rewritten. Exit codes as
`raftcheck test`.
"""

from __future__ import annotations

import argparse
import sys

from pathlib import Path

from history.errors import BadInput
from campaign import evidence, store
from campaign.runner import (check_history, exit_code, render, summary_lines,
                             write_history_txt)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", metavar="RUN",
                        help="run folder (default: the latest run in the store)")
    parser.add_argument("--store", default="store", metavar="DIR",
                        help="store folder, for the default RUN (default ./store)")
    parser.add_argument("--check-time-limit", type=float, default=None, metavar="S",
                        help="checker budget in seconds (default: the run's own)")


def run(args: argparse.Namespace) -> int:
    from history.formats import read_history

    run_dir = store.resolve_run(args.run_dir, args.store)
    test_path = run_dir / store.TEST_JSON
    test = store.read_json(test_path) if test_path.exists() else {"options": {}}
    if not isinstance(test.get("options", {}), dict):
        raise BadInput("expected an object", file=str(test_path), field="options")
    test.setdefault("options", {})
    if args.check_time_limit is not None:
        if not args.check_time_limit > 0:
            raise BadInput(f"must be positive, got {args.check_time_limit}",
                                 field="--check-time-limit")
        test["options"]["check_time_limit"] = args.check_time_limit
    old_path = run_dir / store.RESULTS_JSON
    old = store.read_json(old_path) if old_path.exists() else {}
    final_start_ns = (test.get("run") or {}).get("final_start_ns", old.get("final_start_ns"))
    if final_start_ns is not None and not isinstance(final_start_ns, int):
        final_start_ns = None
    ops = read_history(run_dir / store.HISTORY_JSONL, format="jsonl")
    print(f"re-checking {run_dir} ({len(ops)} ops)", file=sys.stderr, flush=True)
    write_history_txt(ops, run_dir / store.HISTORY_TXT)
    results, check_result = check_history(ops, test, final_start_ns)
    if "timing" in old and isinstance(old["timing"], dict):
        results["timing"] = {**old["timing"], **results["timing"]}
    results["final_start_ns"] = final_start_ns
    if old.get("error"):
        results["warnings"].append(f"the run did not finish: {old['error']}")
    old_health = (old.get("checkers") or {}).get("node-health")
    exits = old_health.get("unexpected_exits") if isinstance(old_health, dict) else None
    if evidence.has_evidence(run_dir):
        evidence.add_to_results(results, evidence.check_run(
            run_dir, node_ids(run_dir, test), exits if isinstance(exits, list) else None,
            ops))
    else:
        results["warnings"].append("no node logs or data in the run folder: only the "
                                   "history was checked")
    results["warnings"].extend(render(run_dir, ops, results, test))
    store.write_json(old_path, results)
    for line in summary_lines(results, check_result) + evidence.summary_lines(results):
        print(line)
    print(evidence.verdict_line(results))
    print(run_dir)
    return exit_code(results["valid"])


def node_ids(run_dir: Path, test: dict) -> list[str]:
    """The run's nodes: n1..nN from test.json, and any other node that left a log or
    a data folder."""
    from cluster.topology import node_ids as ids_of
    count = test.get("options", {}).get("nodes")
    found = set(ids_of(count)) if isinstance(count, int) and 0 < count <= 100 else set()
    found |= {p.stem for p in (run_dir / "nodes").glob("*.log")}
    data = run_dir / "data"
    if data.is_dir():
        found |= {p.name for p in data.iterdir() if p.is_dir()}
    return sorted(found, key=lambda n: (len(n), n))
