"""The Porcupine oracle: a second opinion on linearizability from work no one here wrote.

The oracle is the small Go program in this folder (main.go, history.go, model.go,
corpus.go), built against github.com/anishathalye/porcupine v1.3.0. It reads our
history.jsonl files (SPEC section 2) and prints one verdict line per history,
``NAME<TAB>true|false|unknown<TAB>MS``; with ``-etcd DIR`` / ``-kv DIR`` it checks
Porcupine's own test_data with Porcupine's own models, so that a benchmark can time
Porcupine on its corpus.

This module builds the program once per source version into a cache folder
(``~/.cache/raftcheck/porcupine_oracle-<hash>/``, or ``$RAFTCHECK_CACHE``), finds
Porcupine's module (and its test_data) with ``go mod download -json``, and runs the
oracle. Semantics the oracle gives our histories: ok ops; a cas that failed with
``precondition-failed`` is an observation (the register did not hold ``from``);
info ops and unfinished invokes return at infinity with an output any state accepts
(Porcupine's own etcd treatment); every other fail is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from history.ops import Op

SOURCE_DIR = Path(__file__).resolve().parent
PORCUPINE = "github.com/anishathalye/porcupine"
PORCUPINE_VERSION = "v1.3.0"
_SOURCES = ("go.mod", "go.sum", "main.go", "history.go", "model.go", "corpus.go")


class OracleUnavailable(RuntimeError):
    """Go is missing, or the oracle could not be built or run."""


@dataclass
class OracleVerdict:
    """One verdict line of the oracle."""

    name: str
    valid: bool | str  # True, False or "unknown"
    ms: float


def go_available() -> bool:
    return shutil.which("go") is not None


def cache_dir() -> Path:
    base = os.environ.get("RAFTCHECK_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "raftcheck"


def source_hash() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def _run_go(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=SOURCE_DIR, env=_go_env(), capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise OracleUnavailable(f"'{' '.join(cmd)}' took over {timeout_s:.0f} s") from None


def build(timeout_s: float = 300.0) -> Path:
    """The oracle binary, built once per source version (cached by source hash)."""
    if not go_available():
        raise OracleUnavailable("'go' not found on PATH (needed to build the Porcupine oracle)")
    target_dir = cache_dir() / f"porcupine_oracle-{source_hash()}"
    binary = target_dir / "porcupine_oracle"
    if binary.exists():
        return binary
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", dir=target_dir)
    os.close(fd)
    try:
        proc = _run_go(["go", "build", "-o", tmp, "."], timeout_s)
        if proc.returncode != 0:
            raise OracleUnavailable(f"go build of {SOURCE_DIR} failed: {proc.stderr.strip()}")
        os.replace(tmp, binary)  # atomic: a concurrent build loses nothing
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def porcupine_dir(timeout_s: float = 300.0) -> Path:
    """Porcupine's module folder (holds test_data/ and porcupine_test.go), downloaded by go."""
    if not go_available():
        raise OracleUnavailable("'go' not found on PATH (needed to fetch Porcupine's corpus)")
    proc = _run_go(["go", "mod", "download", "-json", f"{PORCUPINE}@{PORCUPINE_VERSION}"],
                   timeout_s)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Dir" not in info:
        raise OracleUnavailable(f"go mod download {PORCUPINE}@{PORCUPINE_VERSION} failed: "
                                f"{info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def _parse(stdout: str) -> list[OracleVerdict]:
    out = []
    for line in stdout.splitlines():
        name, verdict, ms = line.rsplit("\t", 2)
        valid: bool | str = {"true": True, "false": False}.get(verdict, "unknown")
        out.append(OracleVerdict(name=name, valid=valid, ms=float(ms)))
    return out


def run(args: Sequence[str], stdin: str | None = None, timeout_s: float = 600.0) -> list[OracleVerdict]:
    """Run the oracle with raw arguments; raises OracleUnavailable on bad input or a crash."""
    try:
        proc = subprocess.run([str(build()), *args], input=stdin, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise OracleUnavailable(f"porcupine_oracle took over {timeout_s:.0f} s") from None
    if proc.returncode not in (0, 1, 2):
        raise OracleUnavailable(f"porcupine_oracle exited {proc.returncode}: {proc.stderr.strip()}")
    return _parse(proc.stdout)


def check_files(paths: Iterable[Path | str], model: str = "cas-register",
                timeout_s: float | None = None, repeat: int = 1) -> list[OracleVerdict]:
    """Porcupine's verdict on each history.jsonl file."""
    args = ["-model", model, "-repeat", str(repeat)]
    if timeout_s:
        args += ["-timeout", f"{timeout_s}s"]
    return run(args + [str(p) for p in paths])


def check_histories(histories: Sequence[Sequence[Op]], model: str = "cas-register",
                    timeout_s: float | None = None) -> list[OracleVerdict]:
    """Porcupine's verdicts on many in-memory histories, in one oracle process."""
    chunks = ["\n".join(op.to_json() for op in ops) for ops in histories]
    if any(not c for c in chunks):
        raise ValueError("an empty history cannot be sent in batch mode")
    args = ["-batch", "-model", model]
    if timeout_s:
        args += ["-timeout", f"{timeout_s}s"]
    verdicts = run(args + ["-"], stdin="\n\n".join(chunks) + "\n")
    if len(verdicts) != len(histories):
        raise OracleUnavailable(f"oracle returned {len(verdicts)} verdicts for {len(histories)} histories")
    return verdicts


def check_corpus(kind: str, directory: Path | str, repeat: int = 1) -> list[OracleVerdict]:
    """Porcupine on its own test_data ("etcd": test_data/jepsen, "kv": test_data/kv)."""
    if kind not in ("etcd", "kv"):
        raise ValueError(f"unknown corpus kind {kind!r}")
    return run([f"-{kind}", str(directory), "-repeat", str(repeat)])
