"""campaign.evidence: the post-run checkers on a run folder's real files (hand-written
WAL bytes in the node's record format, node logs in the node's line format), their
verdicts, their one-line violations and the excerpts the report shows; and
`raftcheck analyze` re-running them on a stored run."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path


from campaign.evidence import (add_to_results, check_run, leave_out_missing_invariants,
                               summary_lines, verdict_line)
from campaign.node_logs import parse_node_log

ROOT = Path(__file__).resolve().parent.parent
IDS = ["n1", "n2", "n3"]
W5 = {"op": "write", "key": 1, "value": 5, "client": "c1", "seq": 1}
W6 = {"op": "write", "key": 1, "value": 6, "client": "c2", "seq": 1}
LOG = [(1, None), (1, W5), (2, None)]


# -- writing evidence as the node does ------------------------------------------

def record(obj: dict) -> bytes:
    """One WAL record: length, CRC32, JSON payload (node/shell/storage.py)."""
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def wal(term: int, vote: str | None, commit: int | None, entries: list) -> bytes:
    hs = {"k": "hs", "term": term, "vote": vote}
    if commit is not None:
        hs["commit"] = commit  # the contract's hard-state record (item 2)
    return (record(hs) + b"".join(record({"k": "e", "i": i, "t": t, "c": c})
                                  for i, (t, c) in enumerate(entries, 1)))


def line(t: int, level: str, node: str, logger: str, msg: str) -> str:
    return f"2026-01-01T00:00:{t:02d}.{t:03d} {level} {node} {logger}: {msg}"


def event(t: int, node: str, **fields) -> str:
    return line(t, "INFO", node, "raftcheck.node.events",
                "raft-event " + json.dumps(fields, separators=(",", ":")))


def clean_log(node: str, leader_term: int | None = None, vote_for: str = "n1",
              trace: bool = True) -> list[str]:
    traced = {"trace": 2} if trace else {}
    out = [line(1, "INFO", node, "raftcheck.node.server",
                f"recovered term 0, vote None, 0 log entries from data/{node}; bugs: none"),
           event(1, node, event="start", term=0, vote=None, commit=0, last_index=0, bugs=[],
                 **traced),
           line(2, "INFO", node, "raftcheck.node.server", "serving clients on 127.0.0.1:1"),
           event(3, node, event="persisted", term=1, vote=vote_for)]
    if node != vote_for:
        out.append(event(3, node, event="vote", term=1, candidate=vote_for))
    out.append(event(4, node, event="persisted", term=2, vote="n1"))
    if node == "n1":
        out += [event(4, node, event="leader", term=1), event(5, node, event="leader", term=2)]
    elif node != vote_for:
        out.append(event(4, node, event="vote", term=2, candidate="n1"))
    out += [line(6, "WARNING", node, "raftcheck.node.transport",
                 "queue to n3 full; 1 messages dropped so far"),
            line(9, "INFO", node, "raftcheck.node.server", "stopping on signal")]
    return out


def make_run(tmp_path: Path, logs: dict[str, list[str]] | None = None,
             wals: dict[str, bytes] | None = None) -> Path:
    run = tmp_path / "run"
    for nid in IDS:
        text = (logs or {}).get(nid, clean_log(nid))
        if text is not None:
            (run / "nodes").mkdir(parents=True, exist_ok=True)
            (run / "nodes" / f"{nid}.log").write_text("\n".join(text) + "\n")
        data = (wals or {}).get(nid, wal(2, "n1", 3, LOG))
        if data is not None:
            (run / "data" / nid).mkdir(parents=True, exist_ok=True)
            (run / "data" / nid / "raft.wal").write_bytes(data)
    return run


# -- a clean run ----------------------------------------------------------------

def test_a_clean_run_is_valid_on_both_checkers(tmp_path):
    out = check_run(make_run(tmp_path), IDS, [])
    assert set(out) == {"node-health", "raft-invariants"}
    h, r = out["node-health"], out["raft-invariants"]
    assert h["valid"] is True and h["violations"] == []
    assert h["checked"]["logs"] == 3 and h["checked"]["unexpected_exits"] == 0
    assert r["valid"] is True, r["violations"]
    assert all(v["valid"] is True for v in r["invariants"].values())
    assert r["checked"]["election-safety"]["leader_events"] == 2
    assert r["checked"]["state-machine-safety"]["committed_entries_compared"] == 9
    assert r["nodes"]["n2"] == {"events": 5, "term": 2, "vote": "n1", "commit": 3,
                                "log_length": 3}
    json.dumps(out)


# -- raft-invariants from real files --------------------------------------------

def test_wals_that_disagree_at_a_committed_index(tmp_path):
    run = make_run(tmp_path, wals={"n3": wal(2, "n1", 2, [(1, None), (1, W6)])})
    r = check_run(run, IDS, [])["raft-invariants"]
    assert r["valid"] is False
    assert r["invariants"]["state-machine-safety"]["valid"] is False
    assert r["violations"][-1] == (
        'State Machine Safety (Figure 3): n2 (commit 3) and n3 (commit 2) differ at '
        'committed index 2: n2 has term 1 {"client":"c1","key":1,"op":"write","seq":1,'
        '"value":5}, n3 has term 1 {"client":"c2","key":1,"op":"write","seq":1,"value":6}')
    d = [d for d in r["details"] if d["invariant"] == "log-matching"][0]
    assert d["entries"][1] == {"index": 2, "n1": {"term": 1, "command": W5},
                               "n3": {"term": 1, "command": W6}}


def test_two_leaders_in_a_term_come_with_the_log_lines_around_them(tmp_path):
    logs = {nid: clean_log(nid) for nid in IDS}
    logs["n2"].insert(6, event(5, "n2", event="leader", term=2))
    r = check_run(make_run(tmp_path, logs=logs), IDS, [])["raft-invariants"]
    assert r["violations"] == [
        "Election Safety (Figure 3): term 2 has 2 leaders: n1 (n1.log line 7, "
        "00:00:05.005), n2 (n2.log line 7, 00:00:05.005)"]
    ex = r["details"][0]["excerpts"]
    assert [(e["node"], e["mark"], e["first_line"]) for e in ex] == [("n1", 7, 3),
                                                                   ("n2", 7, 3)]
    assert '"event":"leader","term":2' in ex[1]["lines"][7 - 3]


def test_a_lost_term_across_a_restart(tmp_path):
    logs = {nid: clean_log(nid) for nid in IDS}
    logs["n3"].append(event(10, "n3", event="start", term=1, vote="n1", commit=0,
                            last_index=3, bugs=["vote-not-durable"]))
    r = check_run(make_run(tmp_path, logs=logs), IDS, [])["raft-invariants"]
    assert r["invariants"]["terms-never-decrease"]["valid"] is False
    assert ("currentTerm never decreases (Figure 2): n3 restarted (n3.log line 10, "
            "00:00:10.010) with term 1, below term 2 it had voted in (n3.log line 7, "
            "00:00:04.004)") in r["violations"]


def test_an_older_node_leaves_the_invariants_unknown_not_false(tmp_path):
    logs = {nid: [line(1, "INFO", nid, "raftcheck.node.server", "recovered term 0")]
            for nid in IDS}
    old_wal = record({"k": "hs", "term": 2, "vote": "n1"}) + b"".join(
        record({"k": "e", "i": i, "t": t, "c": c}) for i, (t, c) in enumerate(LOG, 1))
    out = check_run(make_run(tmp_path, logs=logs, wals={n: old_wal for n in IDS}), IDS, [])
    r = out["raft-invariants"]
    assert r["valid"] == "unknown" and r["violations"] == []
    assert r["invariants"]["log-matching"]["valid"] is True   # the WALs are there
    assert r["invariants"]["election-safety"]["unknown_reason"] == (
        "n1, n2, n3: no event lines in nodes/<id>.log (an older node?)")
    assert out["node-health"]["valid"] is True


def test_missing_files_are_unknown(tmp_path):
    run = make_run(tmp_path, logs={"n3": None}, wals={"n3": None})
    out = check_run(run, IDS, [])
    assert out["node-health"]["valid"] == "unknown"
    assert out["node-health"]["unknown_reason"] == "n3: no log nodes/n3.log"
    assert out["raft-invariants"]["valid"] == "unknown"
    assert "n3: no data/<id>/raft.wal (log-matching, state-machine-safety)" in \
        out["raft-invariants"]["unknown_reason"]


def test_a_foreign_node_with_event_lines_only_keeps_the_invariants_they_cover(tmp_path):
    # a node of the user's own (gonode): event lines without trace, no raft.wal
    checks = check_run(make_run(tmp_path, logs={n: clean_log(n, trace=False) for n in IDS},
                                wals={n: None for n in IDS}), IDS, [])
    results: dict = {}
    leave_out_missing_invariants(checks, results)
    r = checks["raft-invariants"]
    assert r["valid"] is True and r["not_checked"] == [
        "commit-quorum", "committed-on-a-majority", "current-term-leader",
        "election-restriction", "log-durable", "log-matching", "read-index",
        "read-quorum", "state-machine-safety"]
    assert set(r["invariants"]) == {"election-safety", "one-vote-per-term",
                                    "terms-never-decrease", "commit-rule"}
    assert ("commit-quorum, committed-on-a-majority, current-term-leader, "
            "election-restriction, log-durable, log-matching, read-index, read-quorum, "
            "state-machine-safety not checked"
            ) in results["warnings"][0]
    add_to_results(results, checks)
    assert verdict_line(results).endswith("the Raft invariants their evidence covers "
                                          "(election-safety, one-vote-per-term, "
                                          "terms-never-decrease, commit-rule).")
    # two leaders in one term are still caught from its event lines
    logs = {n: clean_log(n, trace=False) for n in IDS}
    logs["n2"].append(event(8, "n2", event="leader", term=2))
    checks = check_run(make_run(tmp_path / "two", logs=logs, wals={n: None for n in IDS}),
                       IDS, [])
    leave_out_missing_invariants(checks, {})
    assert checks["raft-invariants"]["valid"] is False
    # no evidence at all: the checker is left out, with a warning
    logs = {n: [line(1, "INFO", n, "gonode", "serving clients")] for n in IDS}
    checks = check_run(make_run(tmp_path / "none", logs=logs, wals={n: None for n in IDS}),
                       IDS, [])
    results = {}
    leave_out_missing_invariants(checks, results)
    assert "raft-invariants" not in checks
    assert results["warnings"][0].startswith("raft-invariants not checked")


# -- node-health ----------------------------------------------------------------

FATAL = [
    line(7, "ERROR", "n2", "raftcheck.node.server", "fatal error in the Raft loop; stopping"),
    "Traceback (most recent call last):",
    '  File "/src/node/shell/server.py", line 254, in _pump',
    "    await self._handle_ready(self.core.ready())",
    "RuntimeError: [n2] refusing to truncate committed entry 5 (commit 7)",
    event(7, "n2", event="fatal",
          error="RuntimeError: [n2] refusing to truncate committed entry 5 (commit 7)"),
    line(8, "ERROR", "n2", "raftcheck.node.server", "stopped after a fatal error: "
         "RuntimeError: [n2] refusing to truncate committed entry 5 (commit 7)"),
]


def test_a_fatal_stop_is_one_violation_with_its_traceback(tmp_path):
    logs = {nid: clean_log(nid) for nid in IDS}
    logs["n2"][7:7] = FATAL
    exits = [{"node": "n2", "code": 255, "detail": "stopped after a fatal error: "
              "RuntimeError: [n2] refusing to truncate committed entry 5 (commit 7)"}]
    h = check_run(make_run(tmp_path, logs=logs), IDS, exits)["node-health"]
    assert h["valid"] is False
    assert h["violations"] == [
        "n2 stopped on a fatal error (n2.log line 13, 00:00:07.007): RuntimeError: [n2] "
        "refusing to truncate committed entry 5 (commit 7); the process exited with code "
        "255"]
    assert h["checked"]["crash_signs_folded"] == 2
    assert h["checked"]["fatal_events"] == 1 and h["checked"]["error_records"] == 2
    fatal = h["details"][0]
    assert fatal["excerpts"][0]["mark"] == 13
    assert any("refusing to truncate" in x for x in fatal["excerpts"][0]["lines"])
    assert h["unexpected_exits"] == exits


def test_error_records_and_stray_tracebacks_are_crash_signs():
    text = "\n".join([
        line(1, "INFO", "n1", "raftcheck.node.server", "recovered term 0"),
        line(2, "ERROR", "n1", "raftcheck.node.server", "error handling a request"),
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in f',
        "KeyError: 'value'",
        line(3, "INFO", "n1", "raftcheck.node.server", "stopping on signal"),
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3.11/asyncio/runners.py", line 1, in run',
        "ValueError: bad",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "y.py", line 2, in g',
        "OSError: [Errno 5] Input/output error"])
    nl = parse_node_log(text, "n1", "n1.log")
    assert [i.text for i in nl.incidents] == [
        "n1 logged ERROR (n1.log line 2, 00:00:02.002): error handling a request: "
        "KeyError: 'value'",
        "n1 printed a traceback (n1.log line 7): OSError: [Errno 5] Input/output error"]


def test_warnings_and_shutdown_lines_are_not_crash_signs():
    nl = parse_node_log("\n".join(clean_log("n1")), "n1", "n1.log")
    assert nl.incidents == [] and len(nl.events) == 5


def test_a_wal_corrupted_in_the_middle_is_a_health_violation(tmp_path):
    good = wal(2, "n1", 3, LOG)
    bad = good[:20] + bytes([good[20] ^ 0xFF]) + good[21:]  # inside the first record
    out = check_run(make_run(tmp_path, wals={"n1": bad}), IDS, [])
    h = out["node-health"]
    assert h["valid"] is False
    assert h["violations"][0].startswith(
        "n1's raft.wal cannot be recovered (the node would refuse to start): "
        "data/n1/raft.wal: record 1 at offset 0: CRC mismatch")
    assert out["raft-invariants"]["invariants"]["log-matching"]["valid"] == "unknown"


def test_a_torn_tail_is_what_a_crash_leaves_and_is_fine(tmp_path):
    torn = wal(2, "n1", 3, LOG) + record({"k": "e", "i": 4, "t": 2, "c": W6})[:-3]
    out = check_run(make_run(tmp_path, wals={"n1": torn}), IDS, [])
    assert out["node-health"]["valid"] is True
    assert out["raft-invariants"]["valid"] is True


def test_unrecorded_exits_leave_health_to_the_logs(tmp_path):
    h = check_run(make_run(tmp_path), IDS, None)["node-health"]
    assert h["valid"] is True and h["checked"]["unexpected_exits"] is None
    assert h["note"].startswith("the cluster's unexpected exits were not recorded")
    logs = {nid: clean_log(nid) for nid in IDS}
    logs["n2"][7:7] = FATAL
    h = check_run(make_run(tmp_path / "2", logs=logs), IDS, None)["node-health"]
    assert h["valid"] is False and len(h["violations"]) == 1


def test_garbage_files_never_raise(tmp_path):
    run = make_run(tmp_path)
    (run / "nodes" / "n1.log").write_bytes(os.urandom(5000) + b"raft-event {bad json\n")
    (run / "data" / "n2" / "raft.wal").write_bytes(os.urandom(3000))
    out = check_run(run, IDS, [])
    assert out["raft-invariants"]["valid"] in (False, "unknown")
    json.dumps(out)


# -- results, terminal lines ----------------------------------------------------

def test_the_run_verdict_is_the_worst_of_all_checkers(tmp_path):
    logs = {nid: clean_log(nid) for nid in IDS}
    logs["n2"].insert(6, event(5, "n2", event="leader", term=2))
    results = {"valid": True, "checkers": {"linearizable": {"valid": True},
                                           "vacuity": {"valid": True, "reason": None}}}
    add_to_results(results, check_run(make_run(tmp_path, logs=logs), IDS, []))
    assert results["valid"] is False
    text = "\n".join(summary_lines(results))
    assert "node-health: true (3 nodes: 0 unexpected exits, 0 fatal events" in text
    assert ("raft-invariants: false (election-safety FAILED, one-vote-per-term, "
            "terms-never-decrease, commit-rule, log-matching, state-machine-safety, "
            "committed-on-a-majority, log-durable, election-restriction, "
            "current-term-leader, read-index, commit-quorum, read-quorum)") in text
    assert "  Election Safety (Figure 3): term 2 has 2 leaders" in text
    assert verdict_line(results) == ("INVALID: a Raft invariant was violated (see above "
                                     "and results.json).")


# -- raftcheck analyze ----------------------------------------------------------

def stored_run(tmp_path: Path, logs=None, wals=None, exits=()) -> Path:
    from checker.generate import generate, write_jsonl
    run = make_run(tmp_path, logs, wals)
    write_jsonl(generate(3, ops=60, keys=2), run / "history.jsonl")
    (run / "test.json").write_text(json.dumps({"name": "register", "seed": 3,
                                               "options": {"nodes": 3}}))
    (run / "results.json").write_text(json.dumps({"valid": True, "checkers": {
        "node-health": {"valid": True, "unexpected_exits": list(exits)}}}))
    return run


def analyze(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaign", "analyze", str(run)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_analyze_re_runs_the_evidence_checkers(tmp_path):
    run = stored_run(tmp_path, wals={"n3": wal(2, "n1", 2, [(1, None), (1, W6)])},
                     exits=[{"node": "n3", "code": -9, "detail": "killed"}])
    p = analyze(run)
    assert p.returncode == 1, p.stderr
    assert "linearizable: true" in p.stdout
    assert "raft-invariants: false" in p.stdout
    assert "  State Machine Safety (Figure 3): n1 (commit 3) and n3 (commit 2)" in p.stdout
    assert "  n3 exited with code -9 without being killed or stopped: killed" in p.stdout
    assert p.stdout.splitlines()[-2].startswith(
        "INVALID: a node crashed or failed; a Raft invariant was violated")
    res = json.loads((run / "results.json").read_text())
    assert res["valid"] is False
    assert res["checkers"]["linearizable"]["valid"] is True
    assert res["checkers"]["raft-invariants"]["valid"] is False
    assert res["checkers"]["node-health"]["unexpected_exits"][0]["code"] == -9
    page = (run / "report.html").read_text()
    assert 'id="evidence"' in page and "State Machine Safety (Figure 3)" in page


def test_analyze_of_a_clean_run_is_valid(tmp_path):
    p = analyze(stored_run(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "node-health: true" in p.stdout and "raft-invariants: true" in p.stdout
    assert ("Everything looks good: the history is linearizable and the nodes kept "
            "Raft's invariants.") in p.stdout


# -- a real cluster -------------------------------------------------------------

def _need_cluster() -> None:
    from cluster.local import find_toxiproxy
    from history.errors import BadInput
    from tests.support import require
    try:
        find_toxiproxy()
    except BadInput as e:
        require(False, str(e))


def _eventually(fn, what: str, wait_s: float = 20.0):
    import time
    deadline = time.monotonic() + wait_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {wait_s} s: {what}")
        time.sleep(0.05)


def _writes(cluster, first: int, count: int) -> None:
    """`count` acknowledged writes (asking each node in turn until one commits it)."""
    import requests
    session = requests.Session()
    urls = [cluster.client_url(n) for n in cluster.node_ids]

    def write(value: int) -> bool:
        for url in urls:
            try:
                body = session.post(url + "/op", json={"op": "write", "key": value % 3,
                                                       "value": value}, timeout=3).json()
            except (requests.RequestException, ValueError):
                continue
            if body.get("ok"):
                return True
        return False
    for v in range(first, first + count):
        _eventually(lambda: write(v), f"write {v} acknowledged")


def test_a_real_cluster_keeps_every_invariant_and_a_broken_copy_does_not(tmp_path):
    """A real 3-node run (kills and restarts, on faultfs when this machine has it, so
    crashes lose unsynced writes): every invariant checked and valid, node health
    valid. Then a node killed behind the cluster's back is a health violation, and a
    copy of the run whose WAL is changed at a committed index fails the invariants."""
    import shutil
    import signal

    from cluster.base import find_leader, make_cluster
    from cluster.faultfs import available
    from node.core.messages import LogEntry
    from node.core.state import HardState
    from node.shell.storage import decode_wal, encode_batch
    _need_cluster()
    run = tmp_path / "run"
    cluster = make_cluster("local", 3, run, crash_fs=available() is None)
    try:
        cluster.start()
        _writes(cluster, 0, 20)
        leader = _eventually(lambda: find_leader(cluster), "a leader")
        cluster.kill(leader)
        _writes(cluster, 20, 20)
        cluster.restart(leader)
        _writes(cluster, 40, 10)
        exits_before = cluster.unexpected_exits()
        follower = next(n for n in cluster.node_ids
                        if n != _eventually(lambda: find_leader(cluster), "a leader"))
        os.kill(cluster.pids()[follower], signal.SIGKILL)  # behind the cluster's back
        exits = _eventually(cluster.unexpected_exits, "the exit noticed")
    finally:
        cluster.collect_logs(run)
        cluster.teardown()
    ids = list(cluster.node_ids)
    assert exits_before == []
    good = check_run(run, ids, exits_before)
    assert good["node-health"]["valid"] is True, good["node-health"]["violations"]
    r = good["raft-invariants"]
    assert r["valid"] is True, r["violations"]
    assert {k: v["valid"] for k, v in r["invariants"].items()} == {
        k: True for k in ("election-safety", "one-vote-per-term", "terms-never-decrease",
                          "commit-rule", "log-matching", "state-machine-safety",
                          "committed-on-a-majority", "log-durable",
                          "election-restriction", "current-term-leader", "read-index",
                              "commit-quorum", "read-quorum")}
    ch = r["checked"]
    assert ch["election-safety"]["leader_events"] >= 2           # before and after the kill
    assert ch["commit-rule"]["commit_events"] >= 1               # each leader told its first
    assert ch["terms-never-decrease"]["restarts"] >= 1
    assert ch["one-vote-per-term"]["vote_records"] >= 2
    # the 50 acknowledged writes are on a majority: one pair at least shares them all
    assert ch["log-matching"]["entries_compared"] >= 50
    assert ch["state-machine-safety"]["committed_entries_compared"] >= 40

    killed = check_run(run, ids, exits)["node-health"]
    assert killed["valid"] is False
    assert [v.split(":")[0] for v in killed["violations"]] == [
        f"{follower} exited with code -9 without being killed or stopped"]

    broken = tmp_path / "broken"
    shutil.copytree(run / "nodes", broken / "nodes")
    shutil.copytree(run / "data", broken / "data", ignore=shutil.ignore_patterns("*.tmp"))
    victim = ids[-1]
    path = broken / "data" / victim / "raft.wal"
    w = decode_wal(path.read_bytes())
    commits = [n["commit"] for n in r["nodes"].values()]
    index = min(commits) // 2
    assert index >= 1
    entries = list(w.entries)
    entries[index - 1] = LogEntry(entries[index - 1].term, {"op": "write", "key": 0,
                                                            "value": "forged"})
    hs = w.hard_state
    path.write_bytes(encode_batch(HardState(hs.term, hs.voted_for, hs.commit), None,
                                  list(enumerate(entries, 1))))
    bad = check_run(broken, ids, exits_before)["raft-invariants"]
    assert bad["valid"] is False
    assert bad["invariants"]["state-machine-safety"]["valid"] is False
    assert bad["invariants"]["log-matching"]["valid"] is False
    assert any(f"differ at committed index {index}: " in v and "forged" in v
               for v in bad["violations"])
