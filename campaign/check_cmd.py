"""`raftcheck check FILE...`: check history files for linearizability.

For each file, prints ``FILE<TAB>true|false|unknown`` and, unless it is valid, the
explanation (with --json: one JSON object per file and line instead). Exit code:
the worst over the files (SPEC section 3): a bad input (254) beats an invalid
history (1), which beats unknown (2), which beats valid (0). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from history.errors import BadInput
from history.formats import FORMATS
from checker.models import MODELS

EXIT = {True: 0, False: 1, "unknown": 2}
_RANK = {0: 0, 2: 1, 1: 2, 254: 3, 255: 4}


def _number(name: str, zero_ok: bool = False):
    """An argparse type: a number above 0 (or 0 and above, with `zero_ok`)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {text!r}")
        if not (v >= 0 if zero_ok else v > 0):
            raise argparse.ArgumentTypeError(
                f"{name} must be {'0 or more' if zero_ok else 'positive'}, not {text!r}")
        return v
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="history files")
    parser.add_argument("--model", default="cas-register", choices=sorted(MODELS),
                        help="the model to check against (default cas-register)")
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="history format (default auto: detected per file)")
    parser.add_argument("--time-limit", type=_number("--time-limit"), default=None,
                        metavar="S", help="seconds per file before the verdict is "
                        "unknown (default: none)")
    parser.add_argument("--memory-limit", type=_number("--memory-limit"), default=1024,
                        metavar="MB", help="memory budget of the search per file "
                        "(default 1024)")
    parser.add_argument("--failure-grace", type=_number("--failure-grace", zero_ok=True),
                        default=None, metavar="S",
                        help="once a key is found not linearizable, how long the other "
                        "keys may still take (default 5; 0 stops at the first failing "
                        "key, as Porcupine does)")
    parser.add_argument("--no-shrink", action="store_true",
                        help="do not shrink invalid histories")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON result per file and line")
    parser.add_argument("--html", metavar="OUT", default=None,
                        help="write a report: a file for one history, a folder for "
                        "several")


def _html_path(out: str, file: str, n_files: int) -> Path:
    if n_files == 1:
        return Path(out)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (Path(file).name + ".html")


def _check_one(args: argparse.Namespace, file: str) -> int:
    from checker import check
    from history.formats import read_history

    ops = read_history(file, args.format)
    progress = (lambda msg: print(f"{file}: {msg}", file=sys.stderr, flush=True))
    result = check(ops, model=args.model, time_limit=args.time_limit,
                   memory_limit_mb=args.memory_limit, shrink=not args.no_shrink,
                   progress=progress, failure_grace_s=args.failure_grace)
    verdict = json.dumps(result.valid).strip('"')
    if args.json:
        print(json.dumps({"file": file, **result.to_dict()}, default=str), flush=True)
    else:
        print(f"{file}\t{verdict}", flush=True)
        if result.valid is not True:
            print(result.explain(), flush=True)
    if args.html:
        out = _html_path(args.html, file, len(args.files))
        from report.page import render_report  # here: it loads matplotlib
        for w in render_report(ops, result, None, out) or []:
            print(f"{file}: report: {w}", file=sys.stderr)
        print(f"{file}: report written to {out}", file=sys.stderr)
    return EXIT[result.valid]


def run(args: argparse.Namespace) -> int:
    worst = 0
    for file in args.files:
        try:
            code = _check_one(args, file)
        except BadInput as e:
            if e.file is None:
                e.file = file
            print(f"raftcheck: error: {e}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"file": file, "valid": None, "error": str(e)}),
                      flush=True)
            else:
                print(f"{file}\terror", flush=True)
            code = 254
        if _RANK[code] > _RANK[worst]:
            worst = code
    return worst
