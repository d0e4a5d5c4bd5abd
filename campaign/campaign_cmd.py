"""`raftcheck campaign FILE.yaml`: a matrix of test runs, one summary.

A *campaign* is the product of option axes (nemeses x seeds x rates x node counts, or
any other run option), each combination one `raftcheck test` run in its own store
folder. The file:

    name: nightly                 # test name of every run (default: the file's stem)
    test:                         # options shared by every run (`raftcheck test` flags,
      time_limit: 30              #   with _ or -)
      concurrency: 2n
      nemesis_interval: 5
    matrix:                       # one list per axis; runs = the product
      nemesis: [partition, kill, "partition,kill,pause"]
      seed: [1, 2, 3]
      rate: [30]
      nodes: [3, 5]

Flags given on the command line override the file (a flag fixes its axis to one value).
Every combination is validated before the first run; a bad file is one line naming the
file, the line and the field (exit 254). The summary lists passed / failed / unknown /
crashed runs with their folders; the exit code is the worst over the runs.

A campaign spreads over machines and cores without a scheduler of its own:
`--shard I/N` runs the cells whose index (0-based, in the order `--dry-run` lists them)
is I modulo N, so N CI jobs (a matrix, a Kubernetes Indexed Job's completion index)
share a campaign; `--parallel K` runs K cells at once on one machine, each in its own
process with its own cluster and ports. Every run's test.json names its campaign and
cell, so `raftcheck summary STORE...` merges the shards' stores into the one table the
unsharded campaign prints.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import yaml

from history.errors import BadInput
from campaign.runner import (EXIT_INTERNAL, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID,
                             RunOutcome, TestOptions, run_test, worst_exit)
from campaign.test_cmd import _FIELDS, add_option_flags, build_options, given_flags

TOP_KEYS = ("name", "test", "matrix")
LABELS = {EXIT_VALID: "passed", EXIT_INVALID: "failed", EXIT_UNKNOWN: "unknown",
           EXIT_INTERNAL: "crashed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.yaml", help="the campaign file")
    add_option_flags(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs without running them")
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="run only cells I, I+N, I+2N, ... (0 <= I < N): one of N "
                             "machines sharing the campaign")
    parser.add_argument("--parallel", metavar="K", type=int, default=1,
                        help="run K cells at once on this machine (default 1)")


def _marks(node: yaml.Node, path: tuple, out: dict[tuple, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = str(k.value).replace("-", "_")
            out[path + (key,)] = k.start_mark.line + 1
            _marks(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _marks(item, path + (i,), out)


def load_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """The parsed file and the line of every key and list item (for error messages)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read: {e}", file=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"malformed YAML: {problem}", file=str(path),
                       line=mark.line + 1 if mark else None, field="yaml") from None
    marks: dict[tuple, int] = {}
    if node is not None:
        _marks(node, (), marks)
    return data, marks


def _normalize(d: dict) -> dict:
    return {str(k).replace("-", "_"): v for k, v in d.items()}


def plan(path: Path, overrides: dict[str, Any]) -> tuple[str, list[TestOptions]]:
    """The campaign's runs, every one validated; BadInput names file, line, field."""
    data, marks = load_yaml(path)
    fname = str(path)
    if not isinstance(data, dict):
        raise BadInput("expected a mapping with test: and matrix:", file=fname, line=1)
    data = _normalize(data)
    for key in data:
        if key not in TOP_KEYS:
            raise BadInput(f"unknown key (expected {', '.join(TOP_KEYS)})", file=fname,
                           line=marks.get((key,)), field=key)
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise BadInput("expected a string", file=fname, line=marks.get(("name",)),
                       field="name")
    base = data.get("test") or {}
    matrix = data.get("matrix") or {}
    for section, value in (("test", base), ("matrix", matrix)):
        if not isinstance(value, dict):
            raise BadInput("expected a mapping", file=fname, line=marks.get((section,)),
                           field=section)
    base, matrix = _normalize(base), _normalize(matrix)
    for section, value in (("test", base), ("matrix", matrix)):
        for key in value:
            if key not in _FIELDS or key in ("name", "store") and section == "matrix":
                raise BadInput("unknown option", file=fname, line=marks.get((section, key)),
                               field=f"{section}.{key}")
    axes: dict[str, list] = {}
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise BadInput("expected a non-empty list", file=fname,
                           line=marks.get(("matrix", key)), field=f"matrix.{key}")
        if key not in overrides:
            axes[key] = values
    fixed = {k: v for k, v in base.items() if k not in axes}
    fixed.update(overrides)
    fixed.setdefault("name", name)
    runs: list[TestOptions] = []
    keys = list(axes)
    for combo in itertools.product(*(list(enumerate(axes[k])) for k in keys)):
        values = dict(fixed)
        values.update({k: v for k, (_, v) in zip(keys, combo)})
        try:
            runs.append(build_options(values))
        except BadInput as e:
            field = (e.field or "").lstrip("-").replace("-", "_")
            if field in keys:
                i = combo[keys.index(field)][0]
                line, where = marks.get(("matrix", field, i)), f"matrix.{field}[{i}]"
            elif field in base and field not in overrides:
                line, where = marks.get(("test", field)), f"test.{field}"
            elif field in overrides:
                raise BadInput(e.message, field=f"--{field.replace('_', '-')}") from None
            else:
                line, where = None, field or None
            raise BadInput(e.message, file=fname, line=line, field=where) from None
    return name, runs


def describe_options(o: dict) -> str:
    """A run in one line, from its options (TestOptions as a dict, as in test.json)."""
    rate = o.get("rate")
    text = (f"nodes {o.get('nodes')} rate {rate:g} " if isinstance(rate, (int, float))
            else f"nodes {o.get('nodes')} rate {rate} ")
    text += f"nemesis {','.join(o.get('nemesis') or []) or 'none'} seed {o.get('seed')}"
    return text + (f" bug {','.join(o['bug'])}" if o.get("bug") else "")


def _describe(o: TestOptions) -> str:
    return describe_options(asdict(o))


def print_summary(rows: list[tuple[str, RunOutcome]], out: TextIO) -> None:
    """The table of runs (verdict, what, folder) and the counts by verdict."""
    counts = {label: 0 for label in LABELS.values()}
    width = max([len(label) for label, _ in rows] + [3])
    print("", file=out)
    print(f"{'#':>3}  {'verdict':<8} {'run':<{width}}  folder", file=out)
    for i, (label, outcome) in enumerate(rows, 1):
        verdict = LABELS.get(outcome.exit_code, "crashed")
        counts[verdict] += 1
        print(f"{i:>3}  {verdict:<8} {label:<{width}}  {outcome.run_dir}", file=out)
    print(", ".join(f"{n} {label}" for label, n in counts.items()), file=out)
    out.flush()


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`I/N` with 0 <= I < N, or None; BadInput naming --shard."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BadInput(f"expected I/N (e.g. 0/4), got {text!r}", field="--shard") from None
    if n < 1 or not 0 <= i < n:
        raise BadInput(f"expected 0 <= I < N, got {text!r}", field="--shard")
    return i, n


def select_cells(runs: list[TestOptions], shard: tuple[int, int] | None
                 ) -> list[tuple[int, TestOptions]]:
    """(0-based cell index, options) of the cells this shard runs."""
    cells = list(enumerate(runs))
    if shard is None:
        return cells
    i, n = shard
    return [(k, o) for k, o in cells if k % n == i]


def _run_cell(options: TestOptions, campaign: dict, log_path: str) -> RunOutcome:
    """One cell in a worker process (--parallel): its output goes to `log_path`."""
    with open(log_path, "w", encoding="utf-8") as f:
        return run_test(options, out=f, err=f, campaign=campaign)


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    name, runs = plan(path, given_flags(args))
    if not runs:
        raise BadInput("the matrix has no runs", file=str(path), field="matrix")
    shard = parse_shard(args.shard)
    if args.parallel < 1:
        raise BadInput(f"expected a positive integer, got {args.parallel}",
                       field="--parallel")
    if args.parallel > 1 and any(o.base_port is not None for o in runs):
        raise BadInput("fixed ports (base_port) cannot run in parallel", field="--parallel")
    cells = select_cells(runs, shard)
    where = f" (shard {shard[0]}/{shard[1]}: {len(cells)} of them)" if shard else ""
    print(f"campaign {name}: {len(runs)} run{'' if len(runs) == 1 else 's'}{where}",
          file=sys.stderr, flush=True)
    if args.dry_run:
        for k, o in cells:
            print(f"{k + 1:>3}  {_describe(o)}")
        return EXIT_VALID

    def info(k: int) -> dict:
        return {"name": name, "file": str(path), "cell": k + 1, "cells": len(runs),
                **({"shard": f"{shard[0]}/{shard[1]}"} if shard else {})}
    rows: list[tuple[str, RunOutcome]] = []
    try:
        if args.parallel > 1:
            rows = _run_parallel(cells, len(runs), info, args.parallel)
        else:
            for k, options in cells:
                print(f"== run {k + 1}/{len(runs)}: {_describe(options)}", flush=True)
                rows.append((_describe(options), run_test(options, campaign=info(k))))
    except (KeyboardInterrupt, BadInput):
        # Interrupted, or a run could not start (no toxiproxy, a busy port): the runs
        # already done still get their summary before the error line.
        if rows:
            print_summary(rows, sys.stdout)
        raise
    print_summary(rows, sys.stdout)
    return worst_exit([o.exit_code for _, o in rows])


def _run_parallel(cells: list[tuple[int, TestOptions]], total: int, info: Any,
                  parallel: int) -> list[tuple[str, RunOutcome]]:
    """Run the cells K at a time in worker processes; rows in cell order. Each run's
    own output is in its folder's campaign.log; a line per run as it ends."""
    import concurrent.futures as cf
    import multiprocessing
    import tempfile

    logs = Path(tempfile.mkdtemp(prefix="raftcheck-campaign-"))
    done: dict[int, RunOutcome] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=parallel, mp_context=ctx) as pool:
        futures = {pool.submit(_run_cell, o, info(k), str(logs / f"cell-{k + 1}.log")): (k, o)
                   for k, o in cells}
        try:
            for fut in cf.as_completed(futures):
                k, o = futures[fut]
                try:
                    outcome = fut.result()
                except BadInput:
                    raise
                except Exception as e:  # a worker that died: a crashed run
                    outcome = RunOutcome(Path(logs / f"cell-{k + 1}.log"), "unknown",
                                         EXIT_INTERNAL, {}, error=f"{type(e).__name__}: {e}")
                log = logs / f"cell-{k + 1}.log"
                if outcome.run_dir.is_dir() and log.exists():
                    log.replace(outcome.run_dir / "campaign.log")
                done[k] = outcome
                print(f"== run {k + 1}/{total} ended ({LABELS.get(outcome.exit_code, 'crashed')}"
                      f"): {_describe(o)}  {outcome.run_dir}", flush=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [(_describe(o), done[k]) for k, o in cells if k in done]
