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
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from history.errors import BadInput
from campaign.runner import (EXIT_INTERNAL, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID,
                             RunOutcome, TestOptions, run_test, worst_exit)
from campaign.test_cmd import _FIELDS, add_option_flags, build_options, given_flags

TOP_KEYS = ("name", "test", "matrix")
_LABELS = {EXIT_VALID: "passed", EXIT_INVALID: "failed", EXIT_UNKNOWN: "unknown",
           EXIT_INTERNAL: "crashed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.yaml", help="the campaign file")
    add_option_flags(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs without running them")


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


def _describe(o: TestOptions) -> str:
    text = (f"nodes {o.nodes} rate {o.rate:g} nemesis {','.join(o.nemesis) or 'none'} "
            f"seed {o.seed}")
    return text + (f" bug {','.join(o.bug)}" if o.bug else "")


def print_summary(rows: list[tuple[str, RunOutcome]], out: TextIO) -> None:
    """The table of runs (verdict, what, folder) and the counts by verdict."""
    counts = {label: 0 for label in _LABELS.values()}
    width = max([len(label) for label, _ in rows] + [3])
    print("", file=out)
    print(f"{'#':>3}  {'verdict':<8} {'run':<{width}}  folder", file=out)
    for i, (label, outcome) in enumerate(rows, 1):
        verdict = _LABELS.get(outcome.exit_code, "crashed")
        counts[verdict] += 1
        print(f"{i:>3}  {verdict:<8} {label:<{width}}  {outcome.run_dir}", file=out)
    print(", ".join(f"{n} {label}" for label, n in counts.items()), file=out)
    out.flush()


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    name, runs = plan(path, given_flags(args))
    if not runs:
        raise BadInput("the matrix has no runs", file=str(path), field="matrix")
    print(f"campaign {name}: {len(runs)} run{'' if len(runs) == 1 else 's'}",
          file=sys.stderr, flush=True)
    if args.dry_run:
        for i, o in enumerate(runs, 1):
            print(f"{i:>3}  {_describe(o)}")
        return EXIT_VALID
    rows: list[tuple[str, RunOutcome]] = []
    try:
        for i, options in enumerate(runs, 1):
            print(f"== run {i}/{len(runs)}: {_describe(options)}", flush=True)
            rows.append((_describe(options), run_test(options)))
    except (KeyboardInterrupt, BadInput):
        # Interrupted, or a run could not start (no toxiproxy, a busy port): the runs
        # already done still get their summary before the error line.
        if rows:
            print_summary(rows, sys.stdout)
        raise
    print_summary(rows, sys.stdout)
    return worst_exit([o.exit_code for _, o in rows])
