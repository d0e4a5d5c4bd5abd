"""The store: one folder per test run, kept for re-checking and for people.

Layout (SPEC section 8): ``store/<test-name>/<YYYYmmddTHHMMSS.fff>/`` holding test.json
(every option, the seed, the git revision, versions), history.jsonl (appended live),
history.txt, results.json, report.html, nodes/<id>.log and toxiproxy.log. The symlinks
``store/latest`` and ``store/<test-name>/latest`` point at the newest run. JSON files
are written atomically (temporary file, fsync, rename), so a crash never leaves half a
results.json.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from history.errors import BadInput

TEST_JSON, HISTORY_JSONL, HISTORY_TXT = "test.json", "history.jsonl", "history.txt"
RESULTS_JSON, REPORT_HTML = "results.json", "report.html"
LATEST = "latest"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """A test name usable as a folder name, or BadInput."""
    if not _NAME.match(name) or name == LATEST:
        raise BadInput(f"bad test name {name!r}: use letters, digits, '.', '_', '-'",
                       field="name")
    return name


def new_run_dir(store: Path | str, name: str, now: _dt.datetime | None = None) -> Path:
    """Create and return store/<name>/<timestamp>/ (a suffix if the stamp is taken)."""
    check_name(name)
    now = now or _dt.datetime.now()
    stamp = now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}"
    parent = Path(store) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create the store folder: {e.strerror}", file=str(parent))
    for n in range(1000):
        run_dir = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        (run_dir / "nodes").mkdir()
        return run_dir
    raise BadInput("too many runs with the same timestamp", file=str(parent))


def _relink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def update_latest(run_dir: Path) -> None:
    """Point store/latest and store/<name>/latest at `run_dir` (relative links)."""
    run_dir = Path(run_dir)
    test_dir = run_dir.parent
    store = test_dir.parent
    _relink(test_dir / LATEST, run_dir.name)
    _relink(store / LATEST, f"{test_dir.name}/{run_dir.name}")


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically: temporary file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path | str) -> dict:
    """Read a JSON object; a missing or malformed file is a BadInput naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput("file not found", file=str(path)) from None
    except OSError as e:
        raise BadInput(f"cannot read: {e.strerror}", file=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"malformed JSON: {e.msg}", file=str(path), line=e.lineno) from None
    if not isinstance(data, dict):
        raise BadInput("expected a JSON object", file=str(path), line=1)
    return data


def resolve_run(arg: str | None, store: Path | str = "store") -> Path:
    """The run folder named by `arg`: a run folder, a test folder (its latest run), or
    a store folder (its latest run); default store/latest."""
    path = Path(arg) if arg else Path(store) / LATEST
    if not path.exists():
        raise BadInput("no such run folder" if arg else
                       "no stored run yet (run `raftcheck test` first)", file=str(path))
    for _ in range(2):
        if (path / HISTORY_JSONL).exists() or (path / TEST_JSON).exists():
            return path.resolve()
        if (path / LATEST).exists():
            path = path / LATEST
    raise BadInput("not a run folder (no history.jsonl or test.json)", file=str(path))


def git_revision() -> dict:
    """The project's git revision and whether the tree had local changes."""
    here = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {"revision": None, "dirty": None}
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if rev.returncode == 0:
            out["revision"] = rev.stdout.strip()
            st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=here, capture_output=True, text=True, timeout=5)
            if st.returncode == 0:
                out["dirty"] = bool(st.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def versions() -> dict:
    """Versions of what a run depends on, for test.json."""
    out: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("raftcheck", "aiohttp", "toxiproxy-python", "docker", "pyyaml"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
