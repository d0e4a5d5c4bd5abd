"""gonode, the node contract's second implementation (docs/node-contract.md section 5):
a register server on etcd's Raft library (go.etcd.io/raft/v3), built by
scripts/setup.sh as `raftcheck-gonode`. A bad cluster file is one line on stderr and
exit 254; short runs at raftcheck's defaults (every fault kind, the crash file system
when this machine has it) are valid, and its event lines let raftcheck check election
safety, one vote per term and terms that never decrease.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require, require_binary, toxiproxy_available

COMMAND = "raftcheck-gonode --config {config} --id {id} --data-dir {data_dir}"


def gonode() -> str:
    require(shutil.which("go") is not None, "Go is not installed (scripts/setup.sh builds "
                                            "raftcheck-gonode with it)")
    return require_binary("raftcheck-gonode", "scripts/setup.sh builds it from gonode/")


@pytest.mark.parametrize("text, says", [
    ('nodes: {n1: {client: "nowhere", peer: "127.0.0.1:1"}}\n', "client"),
    ('nodes: {n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}}\n', "data_dir"),
    ('nodes: {n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}}\ndata_dir: /tmp/x\n'
     'election_timeout_ms: [600, 300]\n', "election_timeout_ms"),
    ('nodes: [\n', "cluster.yaml"),
    ('nodes: {n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}}\ndata_dir: /tmp/x\n',
     "no peer secret"),
    ('nodes: {n1: {client: "127.0.0.1:1", peer: "127.0.0.1:2"}}\ndata_dir: /tmp/x\n'
     'peer_secret: "00"\n', "at least 16 bytes"),
])
def test_a_bad_cluster_file_is_one_line_and_exit_254(tmp_path, text, says):
    exe = gonode()
    config = tmp_path / "cluster.yaml"
    config.write_text(text)
    r = subprocess.run([exe, "--config", str(config), "--id", "n1"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 254, r.stderr
    assert len(r.stderr.splitlines()) == 1 and says in r.stderr, r.stderr
    r = subprocess.run([exe, "--config", str(config)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 254 and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gonode_is_valid_under_every_fault(tmp_path, seed):
    gonode()
    require(toxiproxy_available(), "no toxiproxy server binary (go install "
                                   "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0)")
    store = tmp_path / "store"
    env = {**os.environ, "CI": "true"}
    r = subprocess.run([sys.executable, "-m", "campaign", "test", "--node-command", COMMAND,
                        "--time-limit", "15", "--seed", str(seed), "--store", str(store),
                        "--name", "gonode"],
                       capture_output=True, text=True, timeout=150, env=env,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    assert results["checkers"]["linearizable"]["valid"] is True
    assert results["checkers"]["node-health"]["valid"] is True
    # its event lines are evidence for the invariants they cover; those that need
    # raftcheck's WAL are left out of the verdict, and the run says so
    inv = results["checkers"]["raft-invariants"]
    assert inv["valid"] is True and inv["not_checked"] == ["committed-on-a-majority",
                                                           "exactly-once",
                                                           "log-matching",
                                                           "state-machine-safety"]
    assert set(inv["invariants"]) == {"election-safety", "one-vote-per-term",
                                      "terms-never-decrease", "commit-rule",
                                      "log-durable", "election-restriction",
                                      "current-term-leader", "read-index", "commit-quorum",
                                      "read-quorum"}
    ch = inv["checked"]
    assert ch["election-safety"]["leader_events"] >= 1, ch
    assert ch["commit-rule"]["commit_events"] >= 1, ch
    # its trace lines (etcd raft's decisions, with their inputs) keep the rules
    assert ch["election-restriction"]["votes_compared"] >= 1, ch
    assert ch["current-term-leader"]["leaders_followed"] >= 1, ch
    assert ch["read-index"]["first_reads_of_a_term"] >= 1, ch
    assert ch["commit-quorum"]["commits_checked"] >= 1, ch
    assert ch["read-quorum"]["read_batches_checked"] >= 1, ch
    assert any("committed-on-a-majority, exactly-once, log-matching, state-machine-safety "
               "not checked" in w
               for w in results["warnings"])
    st = results["stats"]
    assert st["faults"]["count"] >= 3 and st["by_phase"]["final"]["ok"] > 0
    assert st["by_phase"]["during-faults"]["ok"] > 0
    for nid in ("n1", "n2", "n3"):
        log = (run_dir / "nodes" / f"{nid}.log").read_text()
        assert f"INFO {nid} gonode: serving clients" in log   # the Go node ran, not ours
        assert f" ERROR {nid} " not in log and "CRITICAL" not in log
