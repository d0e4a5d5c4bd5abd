"""End to end: `raftcheck test` with real nodes and a real toxiproxy server.

A short 3-node run with partition and kill faults is valid on the correct node (exit
0) and leaves a complete store folder; each planted bug is found (exit 1) by a short
run at a fixed seed. The settings that make the bugs show reliably: partitions that
isolate one node (often the leader), a fault every ~2 s, and a short client timeout
(0.5 s) so that clients stuck on a deposed leader give up quickly and reach the new
one while the old one still answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require

SHORT = ["--nodes", "3", "--rate", "60", "--nemesis-interval", "2", "--op-timeout", "0.5"]


def toxiproxy_available() -> bool:
    from history.errors import BadInput
    from cluster.local import find_toxiproxy
    try:
        find_toxiproxy()
        return True
    except BadInput:
        return False


def raftcheck_test(store: Path, *args: str) -> subprocess.CompletedProcess:
    require(toxiproxy_available(), "no toxiproxy server binary (go install "
                                   "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0)")
    env = {**os.environ, "CI": "true"}
    return subprocess.run([sys.executable, "-m", "campaign", "test", "--store", str(store),
                           *SHORT, *args], capture_output=True, text=True, timeout=150,
                          env=env)


def test_correct_node_is_valid_and_the_store_is_complete(tmp_path):
    store = tmp_path / "store"
    r = raftcheck_test(store, "--time-limit", "12", "--nemesis", "partition,kill",
                       "--seed", "1", "--name", "e2e")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = (store / "latest").resolve()
    assert run_dir == (store / "e2e" / "latest").resolve()
    assert str(run_dir) in r.stdout
    for name in ("test.json", "history.jsonl", "history.txt", "results.json",
                 "report.html", "toxiproxy.log", "nodes/n1.log", "nodes/n2.log",
                 "nodes/n3.log"):
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    test = json.loads((run_dir / "test.json").read_text())
    assert test["seed"] == 1 and test["options"]["nemesis"] == ["partition", "kill"]
    assert test["workers"] == 6 and "revision" in test["git"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    assert results["checkers"]["linearizable"]["valid"] is True
    st = results["stats"]
    assert st["faults"]["count"] >= 2
    assert st["by_phase"]["during-faults"]["ok"] > 0
    assert st["by_phase"]["final"]["ok"] > 0
    assert 0 < st["availability_during_faults"] <= 1
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    assert len(lines) == len((run_dir / "history.txt").read_text().splitlines())
    kinds = {json.loads(x)["f"] for x in lines if '"nemesis"' in x}
    assert "start-partition" in kinds or "kill" in kinds
    # progress went to stderr as plain lines (CI=true), the verdict to stdout
    assert "ops/s" in r.stderr and "\r" not in r.stderr
    # re-checking the stored run gives the same verdict
    a = subprocess.run([sys.executable, "-m", "campaign", "analyze", str(run_dir)],
                       capture_output=True, text=True, timeout=60)
    assert a.returncode == 0, a.stdout + a.stderr
    assert json.loads((run_dir / "results.json").read_text())["valid"] is True


@pytest.mark.parametrize("bug, seed", [("local-reads", 1), ("ack-before-commit", 1)])
def test_planted_bug_is_found(tmp_path, bug, seed):
    store = tmp_path / "store"
    r = raftcheck_test(store, "--time-limit", "15", "--nemesis", "partition",
                       "--partition-shapes", "one", "--bug", bug, "--seed", str(seed))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "INVALID" in r.stdout
    results = json.loads((store / "latest" / "results.json").read_text())
    assert results["valid"] is False
    failures = results["checkers"]["linearizable"]["failures"]
    assert failures and failures[0]["reason"]
