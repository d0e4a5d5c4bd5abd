"""Finding the Go programs a cluster runs (the Toxiproxy server, faultfs).

Each is looked for in the same order: an environment variable naming the binary, a
name on PATH, then the Go bin folders (`$GOBIN`, `$(go env GOPATH)/bin`, `~/go/bin`),
where `go install` and scripts/setup.sh put them. Not found: `BadInput` in one line
that says where it looked and how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from history.errors import BadInput


def go_bin_dirs() -> list[str]:
    """The folders `go install` writes to, most specific first."""
    dirs = []
    if os.environ.get("GOBIN"):
        dirs.append(os.environ["GOBIN"])
    gopath = os.environ.get("GOPATH")
    if not gopath and shutil.which("go"):
        try:
            gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True,
                                    text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            gopath = None
    for base in filter(None, [gopath, os.path.expanduser("~/go")]):
        dirs.append(os.path.join(base.split(os.pathsep)[0], "bin"))
    return dirs


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_executable(env_var: str, on_path: str, in_go_bin: str, what: str, hint: str,
                    field: str) -> str:
    """The binary: $env_var, else `on_path` on PATH, else `in_go_bin` in a Go bin
    folder. `what` names it in errors, `hint` says how to install it, `field` is the
    BadInput field when it is missing."""
    env = os.environ.get(env_var)
    if env:
        if _executable(env):
            return env
        raise BadInput(f"{env} is not an executable {what}; install one with {hint}",
                       field=env_var)
    found = shutil.which(on_path)
    if found:
        return found
    for gobin in go_bin_dirs():
        candidate = os.path.join(gobin, in_go_bin)
        if _executable(candidate):
            return candidate
    raise BadInput(f"{what} not found (tried ${env_var}, {on_path} on PATH, "
                   f"the Go bin folder's {in_go_bin}); install it with {hint}",
                   field=field)
