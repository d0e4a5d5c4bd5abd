"""`raftcheck analyze [RUN]`: re-check a stored run and rewrite its results.json.

RUN is a run folder, a test folder (its latest run) or a store folder (its latest
run); the default is store/latest. The history is read back from history.jsonl, checked
again with the options in test.json (--check-time-limit overrides the budget), and
results.json, history.txt and report.html are rewritten. Exit codes as `raftcheck test`.
"""

from __future__ import annotations

import argparse
import sys

from history.errors import BadInput
from campaign import store
from campaign.runner import (check_history, exit_code, render, summary_lines,
                             verdict_line, write_history_txt)


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
    results["warnings"].extend(render(run_dir, ops, results, test))
    store.write_json(old_path, results)
    for line in summary_lines(results, check_result):
        print(line)
    print(verdict_line(results["valid"]))
    print(run_dir)
    return exit_code(results["valid"])
