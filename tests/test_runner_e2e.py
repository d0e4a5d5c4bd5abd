"""End to end: `raftcheck test` with real nodes and a real toxiproxy server, at its
defaults (every fault kind, leader-following targets, retry mode, a few hundred ops/s,
the crash file system when this machine has it).

A short run is valid on the correct node (exit 0) and leaves a complete store folder
whose history and stats show the new faults; planted bugs that the defaults find in
well under a minute are found (exit 1) by a short run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from history.faults import fault_windows
from history.formats import read_history
from tests.support import require, toxiproxy_available

SHORT: list[str] = []   # the defaults


def raftcheck_test(store: Path, *args: str) -> subprocess.CompletedProcess:
    require(toxiproxy_available(), "no toxiproxy server binary (go install "
                                   "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0)")
    env = {**os.environ, "CI": "true"}
    return subprocess.run([sys.executable, "-m", "campaign", "test", "--store", str(store),
                           *SHORT, *args], capture_output=True, text=True, timeout=150,
                          env=env)


def test_correct_node_is_valid_and_the_store_is_complete(tmp_path):
    store = tmp_path / "store"
    r = raftcheck_test(store, "--time-limit", "12", "--seed", "1", "--name", "e2e")
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
    opts = test["options"]
    assert test["seed"] == 1 and test["workers"] == 12
    assert set(opts["nemesis"]) == {"partition", "kill", "pause", "restart", "latency"}
    assert opts["retry"] is True and opts["crash_fs"] == "auto" and "revision" in test["git"]
    assert isinstance(test["run"]["crash_fs"], bool)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    assert results["checkers"]["linearizable"]["valid"] is True
    if not test["run"]["crash_fs"]:
        assert any("crash_fs off" in w for w in results["warnings"])
    st = results["stats"]
    faults = st["faults"]
    assert faults["count"] >= 4 and len(faults["by_kind"]) >= 2
    assert set(faults["kinds"]) == set(faults["by_kind"])
    assert sum(faults["by_target"].values()) == faults["count"]
    assert isinstance(faults["lost_bytes"], int)
    assert st["by_phase"]["during-faults"]["ok"] > 0
    assert st["by_phase"]["final"]["ok"] > 0
    assert 0 < st["availability_during_faults"] <= 1
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    assert len(lines) == len((run_dir / "history.txt").read_text().splitlines())
    nemesis = [json.loads(x) for x in lines if '"nemesis"' in x]
    starts = [o for o in nemesis if o["f"] in ("start-partition", "start-latency", "kill",
                                               "pause", "kill-cluster")]
    assert starts and all(o.get("target") for o in starts)
    # the run ended healed: every fault window closed, no step failed at the end
    windows = fault_windows(read_history(run_dir / "history.jsonl"))
    assert len(windows) == faults["count"] and all(w.closed for w in windows)
    # progress went to stderr as plain lines (CI=true), the verdict to stdout
    assert "ops/s" in r.stderr and "\r" not in r.stderr and "fault: " in r.stderr
    # re-checking the stored run gives the same verdict
    a = subprocess.run([sys.executable, "-m", "campaign", "analyze", str(run_dir)],
                       capture_output=True, text=True, timeout=60)
    assert a.returncode == 0, a.stdout + a.stderr
    assert json.loads((run_dir / "results.json").read_text())["valid"] is True


@pytest.mark.parametrize("bug, seed", [("ack-before-commit", 1), ("local-reads", 1)])
def test_planted_bug_is_found_at_the_defaults(tmp_path, bug, seed):
    store = tmp_path / "store"
    r = raftcheck_test(store, "--time-limit", "20", "--bug", bug, "--seed", str(seed))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "INVALID" in r.stdout
    results = json.loads((store / "latest" / "results.json").read_text())
    assert results["valid"] is False
    failures = results["checkers"]["linearizable"]["failures"]
    assert failures and failures[0]["reason"]


def test_a_node_command_template_runs_the_nodes(tmp_path):
    """docs/node-contract.md: a node started through --node-command placeholders (here
    raftcheck's own node, as a user's would be) runs under the faults and is checked."""
    store = tmp_path / "store"
    cmd = (f"{sys.executable} -m node --config {{config}} --id {{id}} "
           f"--data-dir {{data_dir}}")
    r = raftcheck_test(store, "--time-limit", "8", "--seed", "3", "--name", "own",
                       "--nemesis", "partition,kill", "--node-command", cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = (store / "latest").resolve()
    test = json.loads((run_dir / "test.json").read_text())
    assert test["options"]["node_command"] == cmd
    for nid in ("n1", "n2", "n3"):
        log = (run_dir / "nodes" / f"{nid}.log").read_text()
        # its --data-dir, filled in (mnt/ when the crash file system is on)
        assert any(f"from {run_dir / sub / nid}" in log for sub in ("data", "mnt")), log[:500]
