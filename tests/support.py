"""Helpers for tests that need real parts (Toxiproxy, Docker, Go, Chromium).

On a user's machine a missing part skips the test with a clear reason; in CI
(RAFTCHECK_REQUIRE_ALL=1) a missing part fails it instead.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_all() -> bool:
    return os.environ.get("RAFTCHECK_REQUIRE_ALL") == "1"


def require(available: bool, reason: str) -> None:
    """Skip (or, under RAFTCHECK_REQUIRE_ALL=1, fail) unless `available`."""
    if available:
        return
    if require_all():
        pytest.fail(f"RAFTCHECK_REQUIRE_ALL=1 but {reason}")
    pytest.skip(reason)


def require_binary(name: str, hint: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"'{name}' not found on PATH ({hint})")
    return path  # type: ignore[return-value]


def toxiproxy_available() -> bool:
    """Whether the toxiproxy server binary is installed (cluster.local finds it)."""
    from cluster.local import find_toxiproxy
    from history.errors import BadInput
    try:
        find_toxiproxy()
        return True
    except BadInput:
        return False


def require_toxiproxy() -> None:
    require(toxiproxy_available(), "no toxiproxy server binary (scripts/setup.sh installs "
                                   "it: go install github.com/Shopify/toxiproxy/v2/cmd/"
                                   "server@v2.12.0)")
