"""`raftcheck check FILE...`: check history files for linearizability.

For each file, prints ``FILE<TAB>true|false|unknown`` and, unless it is valid, the
explanation; a valid history with no completed op gets a "nothing observed" note
(with --json: one JSON object per file and line instead). Flags and the --html
target are checked before any file is; every bad input is one line on stderr. Exit
code: the worst over the files (SPEC section 3): a bad input (254) beats an invalid
history (1), which beats unknown (2), which beats valid (0). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from history.errors import BadInput
from history.formats import FORMATS
from checker.models import MODELS

EXIT = {True: 0, False: 1, "unknown": 2}
_RANK = {0: 0, 2: 1, 1: 2, 254: 3, 255: 4}


MAX_MEMORY_MB = 1e9      # a bound that still converts to bytes as an integer


def _number(name: str, zero_ok: bool = False, maximum: float | None = None,
            hint: str = ""):
    """An argparse type: a finite number above 0 (or 0 and above, with `zero_ok`),
    at most `maximum`. inf and nan are refused (`hint` says what to do instead)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {text!r}")
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(
                f"{name} must be a finite number, not {text!r}{hint}")
        if not (v >= 0 if zero_ok else v > 0):
            raise argparse.ArgumentTypeError(
                f"{name} must be {'0 or more' if zero_ok else 'positive'}, not {text!r}")
        if maximum is not None and v > maximum:
            raise argparse.ArgumentTypeError(
                f"{name} must be at most {maximum:,.0f}, not {text!r}")
        return v
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="history files")
    parser.add_argument("--model", default="cas-register", choices=sorted(MODELS),
                        help="the model to check against (default cas-register)")
    parser.add_argument("--initial", default=None, metavar="JSON",
                        help="the model's initial state, as JSON: a value for register "
                        "and cas-register (default null), a string for kv (default \"\"),"
                        " an object {key: value} for multi-register (default {}), "
                        "\"free\" or \"locked\" for mutex (default \"free\")")
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="history format (default auto: detected per file)")
    parser.add_argument("--time-limit", type=_number("--time-limit",
                        hint=" (leave it out for no limit)"), default=None,
                        metavar="S", help="seconds per file before the verdict is "
                        "unknown (default: none)")
    parser.add_argument("--memory-limit", type=_number("--memory-limit",
                                                       maximum=MAX_MEMORY_MB), default=1024,
                        metavar="MB", help="memory budget of the search per file "
                        "(default 1024)")
    parser.add_argument("--failure-grace", type=_number("--failure-grace", zero_ok=True),
                        default=None, metavar="S",
                        help="once a key is found not linearizable, how long the other "
                        "keys may still take (default 5; 0 stops at the first failing "
                        "key, as Porcupine does)")
    parser.add_argument("--no-shrink", action="store_true",
                        help="do not shrink invalid histories")
    parser.add_argument("--no-prune", action="store_true",
                        help="check without the exact pruning of unobserved info "
                        "writes (the same verdict, slower; to compare)")
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


def check_html_target(out: str, n_files: int) -> None:
    """Before any check: --html must name a file we can write (one history) or a
    folder we can make or write into (several); else `BadInput` for --html."""
    path = Path(out)
    if n_files == 1 and path.is_dir():
        raise BadInput(f"{out} is a folder; with one history, --html names the "
                       "report file (for example report.html)", field="--html")
    if n_files > 1 and path.exists() and not path.is_dir():
        raise BadInput(f"{out} is not a folder; with several histories, --html names "
                       "a folder for one report per history", field="--html")
    if path.exists() and not os.access(path, os.W_OK):
        raise BadInput(f"cannot write {out} (permission denied)", field="--html")
    parent = path.absolute().parent if n_files == 1 or not path.exists() else path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"cannot write {out}: {parent} is not a folder", field="--html")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"cannot write {out}: {parent} is not writable", field="--html")


def parse_initial(text: str) -> object:
    """--initial: strict JSON data (no NaN, no deep nesting), or `BadInput`."""
    from history.validation import value_problem

    def refuse(name: str) -> None:
        raise BadInput(f"{name} is refused: JSON has no NaN or Infinity",
                       field="--initial")
    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as e:
        raise BadInput(f"not valid JSON ({e})", field="--initial") from None
    why = value_problem(value, "--initial")
    if why:
        raise BadInput(why, field="--initial")
    return value


def _check_one(args: argparse.Namespace, file: str) -> int:
    from checker import check
    from history.formats import read_history

    live = sys.stderr.isatty()

    def progress(msg: str) -> None:
        # one line rewritten in place on a terminal; plain lines otherwise
        if live:
            sys.stderr.write(f"\r\x1b[2K{file}: {msg}")
            sys.stderr.flush()
        else:
            print(f"{file}: {msg}", file=sys.stderr, flush=True)

    ops = read_history(file, args.format, progress=progress)
    result = check(ops, model=args.model_obj, time_limit=args.time_limit,
                   memory_limit_mb=args.memory_limit, shrink=not args.no_shrink,
                   progress=progress, failure_grace_s=args.failure_grace,
                   prune=not args.no_prune)
    if live:
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
    verdict = json.dumps(result.valid).strip('"')
    if args.json:
        print(json.dumps({"file": file, **result.to_dict()}, default=str), flush=True)
    else:
        print(f"{file}\t{verdict}", flush=True)
        if result.valid is not True:
            print(result.explain(), flush=True)
        elif result.note:
            print(f"  note: {result.note}", flush=True)
    if args.html:
        try:
            out = _html_path(args.html, file, len(args.files))
        except OSError as e:
            return _html_failed(file, f"cannot make the folder {args.html}: "
                                      f"{e.strerror or e}")
        from report.page import render_report  # here: it loads matplotlib
        warnings = render_report(ops, result, None, out) or []
        failed = [w for w in warnings if w.startswith("report: cannot write")]
        if failed:
            return _html_failed(file, failed[0][len("report: "):])
        for w in warnings:
            print(f"{file}: report: {w}", file=sys.stderr)
        print(f"{file}: report written to {out}", file=sys.stderr)
    return EXIT[result.valid]


def _html_failed(file: str, why: str) -> int:
    """The verdict stands (it is printed); the report could not be written: 254."""
    print(f"raftcheck: error: {BadInput(why, file=file, field='--html')}",
          file=sys.stderr, flush=True)
    return 254


def _check_file(args: argparse.Namespace, file: str) -> int:
    """`_check_one`, a bad input reported as one line (exit code 254)."""
    try:
        return _check_one(args, file)
    except BadInput as e:
        if e.file is None:
            e.file = file
        print(f"raftcheck: error: {e}", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps({"file": file, "valid": None, "error": str(e)}), flush=True)
        else:
            print(f"{file}\terror", flush=True)
        return 254


def run(args: argparse.Namespace) -> int:
    from checker.models import get_model
    initial = None if args.initial is None else parse_initial(args.initial)
    args.model_obj = get_model(args.model, initial)
    if args.html:
        check_html_target(args.html, len(args.files))
    files = list(args.files)
    at = split_point(files)
    child = None if at is None else fork_share(args, files[at:])
    if child is None:
        at = len(files)
    codes = [_check_file(args, f) for f in files[:at]]
    if child is not None:
        codes += replay_share(args, child, files[at:])
    worst = 0
    for code in codes:
        if _RANK[code] > _RANK[worst]:
            worst = code
    return worst


# -- two cores ---------------------------------------------------------------------
# Many small files (a corpus) are checked by two processes: this one takes the first
# files, a forked child the rest, whose output is printed after this one's, so the
# output is the same as one process's, file by file in order (--memory-limit is per
# file, in either process). A file large enough to be checked by worker processes of
# its own (checker.partition) or a single core keep one process.

SPLIT_MIN_BYTES = 64 * 1024        # below: forking costs more than it saves
SPLIT_MAX_FILE_BYTES = 1 << 20     # above: the checker's own workers use the cores


def split_point(files: list[str]) -> int | None:
    """Where the child's share (a suffix of `files`) starts: the split that leaves the
    two shares' sizes closest; None for one process."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    if len(files) < 2 or not hasattr(os, "fork") or cores < 2:
        return None
    try:
        sizes = [os.path.getsize(f) for f in files]
    except OSError:
        return None   # the file's own check says what is wrong with it
    total = sum(sizes)
    if total < SPLIT_MIN_BYTES or max(sizes) > SPLIT_MAX_FILE_BYTES:
        return None
    best, prefix = None, 0
    for i in range(1, len(files)):
        prefix += sizes[i - 1]
        cost = max(prefix, total - prefix)
        if best is None or cost < best[0]:
            best = (cost, i)
    return best[1] if best else None


def fork_share(args: argparse.Namespace, share: list[str]) -> tuple[int, int] | None:
    """Fork a child that checks `share`, its stdout and stderr kept per file, and
    writes [[code, stdout, stderr], ...] as JSON to a pipe; (pid, read end), or None
    if it could not be forked."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        r, w = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid:
        os.close(w)
        return pid, r
    try:   # the child: never returns
        os.close(r)
        out = []
        for f in share:
            o, e = io.StringIO(), io.StringIO()
            with redirect_stdout(o), redirect_stderr(e):
                code = _check_file(args, f)
            out.append([code, o.getvalue(), e.getvalue()])
        with os.fdopen(w, "w") as pipe:
            json.dump(out, pipe)
    finally:
        os._exit(0)


def replay_share(args: argparse.Namespace, child: tuple[int, int],
                 share: list[str]) -> list[int]:
    """The child's exit codes, its output printed as if this process had checked
    `share` (progress lines only where stderr is not a terminal: they were news only
    while the check ran). A child that left no results: `share` is checked here."""
    pid, r = child
    with os.fdopen(r) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    try:
        results = json.loads(text)
        assert len(results) == len(share)
    except (ValueError, AssertionError):
        return [_check_file(args, f) for f in share]
    live = sys.stderr.isatty()
    codes = []
    for code, out, err in results:
        if live:   # progress lines say "FILE: ..." and end with a newline each
            err = "".join(ln for ln in err.splitlines(keepends=True)
                          if ln.startswith("raftcheck: ") or ": report" in ln)
        sys.stdout.write(out)
        sys.stdout.flush()
        sys.stderr.write(err)
        sys.stderr.flush()
        codes.append(code)
    return codes
