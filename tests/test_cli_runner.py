"""`raftcheck test`, `campaign` and `analyze` on bad input, and analyze on stored runs.

Every bad input is one clear line on stderr and exit code 254 (SPEC section 3). These
runs never start a cluster, so they are fast.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from history.errors import BadInput
from history.writer import HistoryWriter
from campaign import store

RAFTCHECK = [sys.executable, "-m", "campaign"]


def raftcheck(*args: str, env: dict | None = None, cwd: Path | None = None):
    return subprocess.run([*RAFTCHECK, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_line_error(r, *words: str) -> str:
    assert r.returncode == 254, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--nodes", "x"], ["--nodes"]),
    (["--nodes", "0"], ["--nodes", "positive"]),
    (["--concurrency", "3x"], ["--concurrency", "3x"]),
    (["--nemesis", "partition,flood"], ["--nemesis", "flood"]),
    (["--rate", "-5"], ["--rate"]),
    (["--bug", "no-such-bug"], ["--bug"]),
    (["--bug", "local-reads,nope"], ["--bug", "nope"]),
    (["--commit-wait", "0"], ["--commit-wait"]),
    (["--leader-bias", "1.5"], ["--leader-bias"]),
    (["--nemesis-targets", "leader,boss"], ["--nemesis-targets", "boss"]),
    (["--crash-fs", "maybe"], ["--crash-fs"]),
    (["--backend", "cloud"], ["--backend"]),
    (["--name", "../escape"], ["--name"]),
    (["--test-count", "0"], ["--test-count"]),
    (["--frobnicate"], ["--frobnicate"]),
])
def test_bad_flags_are_one_line(tmp_path, args, words):
    r = raftcheck("test", "--store", str(tmp_path / "store"), *args)
    one_line_error(r, *words)
    assert not list((tmp_path / "store").rglob("history.jsonl"))


def test_defaults_are_consistent():
    """The defaults find bugs only if the pieces fit: a node answers a slow op after
    its commit wait, the client waits longer than that for one attempt and has time
    for more than one attempt; every fault kind is on; a run's work after the load is
    bounded well inside 30 s."""
    from campaign.runner import FAULTS, TestOptions
    from workloads.register import WorkloadOptions
    o = TestOptions().validate()
    assert not o.warnings()
    assert o.retry is True and o.crash_fs == "auto" and o.bug is None
    assert set(o.nemesis) == set(FAULTS)
    assert o.cluster_node_options()["request_timeout_ms"] == round(o.commit_wait * 1000)
    assert o.commit_wait < o.attempt_timeout() <= o.op_timeout / 2
    assert o.rate >= 100 and o.workers() >= 2 * o.nodes
    assert o.final_timeout + o.check_time_limit <= 30
    w = WorkloadOptions()
    for name in ("rate", "time_limit", "ops_per_key", "op_timeout", "retry",
                 "final_timeout"):
        assert getattr(w, name) == getattr(o, name), name
    assert w.attempt_timeout == o.attempt_timeout()
    assert TestOptions(op_timeout=0.5).validate().warnings()  # shorter than commit_wait


def test_bug_lists_and_crash_fs_values():
    from campaign.runner import BUGS, TestOptions
    from campaign.test_cmd import build_options
    assert build_options({"bug": ",".join(BUGS), "seed": 1}).bug == list(BUGS)
    assert build_options({"bug": list(BUGS)[:1], "seed": 1}).bug == list(BUGS)[:1]
    assert build_options({"bug": "none", "seed": 1}).bug is None
    assert TestOptions(crash_fs=True).validate().crash_fs == "on"
    with pytest.raises(BadInput) as e:
        TestOptions(node_options={"request_timeout_ms": 5}).validate()
    assert e.value.field == "node_options"


def test_crash_fs_on_without_faultfs_is_one_line(tmp_path):
    r = raftcheck("test", "--time-limit", "1", "--crash-fs", "on", "--store",
                  str(tmp_path / "store"), env={"RAFTCHECK_FAULTFS": "/nonexistent"})
    one_line_error(r, "crash", "/nonexistent")
    assert not list((tmp_path / "store").rglob("history.jsonl"))


def test_missing_toxiproxy_binary(tmp_path):
    r = raftcheck("test", "--time-limit", "1", "--store", str(tmp_path / "store"),
                  env={"RAFTCHECK_TOXIPROXY": "/nonexistent"})
    line = one_line_error(r, "/nonexistent", "go install")
    assert "toxiproxy" in line
    assert not list((tmp_path / "store").rglob("history.jsonl"))
    assert not (tmp_path / "store" / "latest").exists()


def test_busy_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = raftcheck("test", "--time-limit", "1", "--store", str(tmp_path / "store"),
                      "--base-port", str(port))
    one_line_error(r, str(port), "busy")


def write_yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "camp.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, words", [
    ("test:\n  time_limit: 5\nmatrix:\n  seed: [1, 2\n", ["camp.yaml:", "yaml"]),
    ("test:\n  time_limit: 5\n  bogus: 3\n", ["camp.yaml:3:", "test.bogus"]),
    ("matrix:\n  nemesis:\n    - partition\n    - flood\n",
     ["camp.yaml:4:", "matrix.nemesis[1]", "flood"]),
    ("test:\n  rate: fast\n", ["camp.yaml:2:", "test.rate"]),
    ("matrix:\n  seed: 3\n", ["camp.yaml:2:", "matrix.seed", "list"]),
    ("tests:\n  rate: 3\n", ["camp.yaml:1:", "tests"]),
    ("- 1\n- 2\n", ["camp.yaml:1:"]),
])
def test_campaign_yaml_errors(tmp_path, text, words):
    r = raftcheck("campaign", str(write_yaml(tmp_path, text)), "--store",
                  str(tmp_path / "store"))
    one_line_error(r, *words)


def test_campaign_missing_file_and_bad_override(tmp_path):
    one_line_error(raftcheck("campaign", str(tmp_path / "nope.yaml")), "nope.yaml",
                   "not found")
    p = write_yaml(tmp_path, "matrix:\n  seed: [1, 2]\n")
    one_line_error(raftcheck("campaign", str(p), "--concurrency", "zz"), "--concurrency")


def test_campaign_dry_run_expands_matrix_with_overrides(tmp_path):
    p = write_yaml(tmp_path, "name: nightly\ntest:\n  time-limit: 5\n  rate: 10\n"
                             "matrix:\n  nemesis: [partition, 'kill,pause']\n"
                             "  seed: [1, 2, 3]\n  nodes: [3, 5]\n")
    r = raftcheck("campaign", str(p), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 12
    r = raftcheck("campaign", str(p), "--dry-run", "--nodes", "3", "--rate", "7")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 6 and all("nodes 3 rate 7 " in x for x in lines)


def make_run(store_dir: Path, ops: list[tuple], nemesis: list[str] | None = None) -> Path:
    """A stored run written the way the runner writes one (real files)."""
    run_dir = store.new_run_dir(store_dir, "stored")
    store.update_latest(run_dir)
    store.write_json(run_dir / "test.json", {
        "name": "stored", "seed": 1,
        "options": {"nemesis": nemesis or [], "min_ok": 1, "check_time_limit": 10}})
    with HistoryWriter(run_dir / "history.jsonl") as h:
        for type_, process, f, value, key in ops:
            h.append(type_, process, f, value=value, key=key)
    return run_dir


GOOD = [("invoke", 0, "write", 1, 1), ("ok", 0, "write", 1, 1),
        ("invoke", 1, "read", None, 1), ("ok", 1, "read", 1, 1),
        ("invoke", 0, "cas", [1, 2], 1), ("ok", 0, "cas", [1, 2], 1),
        ("invoke", 1, "read", None, 1), ("ok", 1, "read", 2, 1)]
STALE = GOOD[:6] + [("invoke", 1, "read", None, 1), ("ok", 1, "read", 1, 1)]


def test_analyze_stored_runs(tmp_path):
    good = make_run(tmp_path / "store", GOOD)
    r = raftcheck("analyze", str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads((good / "results.json").read_text())
    assert results["valid"] is True
    assert results["checkers"]["linearizable"]["valid"] is True
    assert results["stats"]["by_f"]["read"]["ok"] == 2
    assert (good / "history.txt").read_text().count("\n") == len(GOOD)

    stale = make_run(tmp_path / "store", STALE)
    # default: store/latest, which is now the stale run
    r = raftcheck("analyze", "--store", str(tmp_path / "store"))
    assert r.returncode == 1, r.stdout + r.stderr
    results = json.loads((stale / "results.json").read_text())
    assert results["valid"] is False
    assert results["checkers"]["linearizable"]["failures"]
    # faults asked for but none recorded: a valid history is vacuous -> unknown
    vac = make_run(tmp_path / "store", GOOD, nemesis=["partition"])
    r = raftcheck("analyze", str(vac))
    assert r.returncode == 2, r.stdout + r.stderr
    assert json.loads((vac / "results.json").read_text())["valid"] == "unknown"


@pytest.mark.parametrize("min_ok", [0, 1])
def test_analyze_keeps_the_vacuity_rule_for_a_run_that_observed_nothing(tmp_path, min_ok):
    """`raftcheck check` calls a history with no completed op linearizable (as Knossos
    and Porcupine do); a stored test run of one stays unknown (exit 2), even with
    min_ok 0, through its "vacuity" checker."""
    run_dir = make_run(tmp_path / "store", [("invoke", 0, "write", 1, 1),
                                            ("info", 0, "write", 1, 1)])
    test = json.loads((run_dir / "test.json").read_text())
    test["options"]["min_ok"] = min_ok
    store.write_json(run_dir / "test.json", test)
    r = raftcheck("analyze", str(run_dir))
    assert r.returncode == 2, r.stdout + r.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] == "unknown"
    assert results["checkers"]["vacuity"]["valid"] == "unknown"
    assert results["checkers"]["vacuity"]["reason"]
    lin = results["checkers"]["linearizable"]
    assert lin["valid"] is True and lin["note"].startswith("nothing observed")
    assert "vacuous: " in r.stdout


def test_analyze_bad_input(tmp_path):
    run_dir = make_run(tmp_path / "store", GOOD)
    with open(run_dir / "history.jsonl", "a") as f:
        f.write('{"index": 8, "time": 5, "type": "okay", "process": 1, "f": "read"}\n')
    one_line_error(raftcheck("analyze", str(run_dir)), "history.jsonl:9")
    one_line_error(raftcheck("analyze", str(tmp_path / "none")), "no such run")
    one_line_error(raftcheck("analyze", "--store", str(tmp_path / "empty")), "no stored run")


def test_node_command_and_image_are_checked_before_any_run(tmp_path):
    for args, words in (
            (("--node-command", "my-node {confg}"), ("--node-command", "unknown placeholder")),
            (("--node-command", "  "), ("--node-command", "expected a command line")),
            (("--node-command", "x {id}", "--backend", "docker"), ("node_image",)),
            (("--node-image", "img", "--backend", "local"), ("node_command",))):
        one_line_error(raftcheck("test", "--store", str(tmp_path / "s"), *args), *words)
    assert not (tmp_path / "s").exists()
