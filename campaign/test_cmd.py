"""`raftcheck test`: run chaos tests against a fresh cluster and check them.

    raftcheck test --nodes 5 --time-limit 60 --rate 300 --concurrency 4n \\
        --nemesis partition,kill,pause --nemesis-interval 2 --seed 42 --test-count 3

Each run gets its own store folder (SPEC section 8). With --test-count N the runs use
seeds seed, seed+1, ...; the exit code is the worst over the runs (SPEC section 3:
0 valid, 1 invalid, 2 unknown; a crashed run counts as 255, below an invalid one).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import fields, replace
from typing import Any

from history.errors import BadInput
from campaign.runner import (BACKENDS, BUGS, CRASH_FS, FAULTS, TARGETS, TestOptions,
                             run_test, worst_exit)

# flag dest -> TestOptions field (same name), in the order of --help
OPTION_FLAGS: list[tuple[str, dict]] = [
    ("--nodes", dict(type=int, metavar="N", help="number of nodes (default 3)")),
    ("--time-limit", dict(type=float, metavar="S", help="seconds of load (default 30)")),
    ("--rate", dict(type=float, metavar="R", help="ops/s over all clients (default 200)")),
    ("--concurrency", dict(metavar="N|Nn", help="client processes: N, or N per node "
                                                "as Nn (default 4n)")),
    ("--readers", dict(metavar="N|Nn", help="more client processes that only read, each "
                                            "at one node: N, or N per node as Nn "
                                            "(default 1n; 0 for none)")),
    ("--nemesis", dict(metavar="F,F", help=f"faults, comma-separated, from {','.join(FAULTS)};"
                                           " or none (default: all of them)")),
    ("--nemesis-interval", dict(type=float, metavar="S",
                                help="scale of every quiet and fault period, in seconds "
                                     "(default 2)")),
    ("--nemesis-targets", dict(metavar="T,T", help="which nodes kill and pause hit: "
                                                   f"{', '.join(TARGETS)} (default: all "
                                                   "but all; partitions use "
                                                   "--partition-shapes)")),
    ("--partition-shapes", dict(metavar="S,S", help="partition shapes: one, majority, "
                                "majorities-ring, bridge, one-way (default: all)")),
    ("--leader-bias", dict(type=float, metavar="P", help="chance that a partition cuts "
                                                         "off the leader (default 0.75)")),
    ("--seed", dict(type=int, help="seed of the workload and the nemesis (default random)")),
    ("--backend", dict(choices=BACKENDS, help="where nodes run (default local)")),
    ("--bug", dict(metavar="NAME,NAME", help="plant known Raft bugs in every node: "
                                             f"{', '.join(BUGS)}")),
    ("--crash-fs", dict(choices=CRASH_FS, help="kills lose unsynced writes: auto (when "
                                               "the crash file system works), on, off "
                                               "(default auto)")),
    ("--store", dict(metavar="DIR", help="store folder (default ./store)")),
    ("--name", dict(help="test name, the store sub-folder (default register)")),
    ("--ops-per-key", dict(type=int, metavar="N", help="ops on a key before the "
                                                       "workload moves on (default 50)")),
    ("--check-time-limit", dict(type=float, metavar="S",
                                help="checker budget in seconds (default 20)")),
    ("--base-port", dict(type=int, metavar="P", help="local backend: fixed ports from P "
                                                     "on (default: free ports)")),
    ("--node-command", dict(metavar="CMD", help="local backend: run this node instead of "
                                                "raftcheck's (docs/node-contract.md); "
                                                "{config} {id} {data_dir} {bug} are filled "
                                                "in")),
    ("--node-image", dict(metavar="IMAGE", help="docker backend: run this node image "
                                                "instead of raftcheck/node")),
    ("--op-timeout", dict(type=float, metavar="S", help="deadline of one client op, every "
                                                        "retry included (default 5)")),
    ("--commit-wait", dict(type=float, metavar="S",
                           help="how long a node waits for an op to commit before it "
                                "answers timeout (default 0.5)")),
    ("--retry", dict(action=argparse.BooleanOptionalAction,
                     help="retry an indefinite op with the same client id and seq "
                          "until a definite answer or its deadline (default on)")),
    ("--final-timeout", dict(type=float, metavar="S",
                             help="budget of the final reads (default 10)")),
]

_FIELDS = {f.name for f in fields(TestOptions)}


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """The run options as flags, every default None (= not given)."""
    for flag, kw in OPTION_FLAGS:
        parser.add_argument(flag, default=None, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option_flags(parser)
    parser.add_argument("--test-count", type=int, default=1, metavar="N",
                        help="run N tests with seeds seed, seed+1, ... (default 1)")


def split_list(value: Any, field: str) -> list[str]:
    """ "partition,kill" or ["partition", "kill"] -> a list; "none" -> []."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [x.strip() for x in value.split(",")]
    elif isinstance(value, list):
        items = [str(x).strip() for x in value]
    else:
        raise BadInput(f"expected a comma-separated list, got {value!r}", field=field)
    items = [x for x in items if x]
    return [] if items == ["none"] else items


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The option flags the user gave, as TestOptions fields."""
    out: dict[str, Any] = {}
    for flag, _ in OPTION_FLAGS:
        dest = flag[2:].replace("-", "_")
        value = getattr(args, dest, None)
        if value is not None:
            out[dest] = value
    return out


def build_options(values: dict[str, Any]) -> TestOptions:
    """TestOptions from a dict of fields (flags or YAML); BadInput names a bad field."""
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise BadInput(f"unknown option {unknown[0]!r}", field=unknown[0])
    values = dict(values)
    if "nemesis" in values:
        values["nemesis"] = split_list(values["nemesis"], "nemesis")
    for name in ("nemesis_targets", "partition_shapes", "bug"):
        if values.get(name) is not None:
            values[name] = split_list(values[name], name) or None
    for name in ("concurrency", "readers"):
        if name in values:
            values[name] = str(values[name])
    if values.get("seed") is None:
        values["seed"] = secrets.randbelow(2**31)
    return TestOptions(**values).validate()


def run(args: argparse.Namespace) -> int:
    if args.test_count < 1:
        raise BadInput(f"must be a positive integer, got {args.test_count}",
                       field="--test-count")
    try:
        options = build_options(given_flags(args))
    except BadInput as e:
        if e.field in _FIELDS and e.file is None:
            e.field = "--" + e.field.replace("_", "-")
        raise
    rows = []
    for i in range(args.test_count):
        opts = replace(options, seed=options.seed + i)
        if args.test_count > 1:
            print(f"== test {i + 1}/{args.test_count} (seed {opts.seed})", flush=True)
        rows.append((f"seed {opts.seed}", run_test(opts)))
    if args.test_count > 1:
        from campaign.campaign_cmd import print_summary
        print_summary(rows, sys.stdout)
    return worst_exit([o.exit_code for _, o in rows])
