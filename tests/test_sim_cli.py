"""`raftcheck sim` and `python -m sim` (sim/cli.py), as a user runs them.

Many seeds in parallel processes, a JSON summary, bad usage as one line with exit
254, and the failure path end to end: a planted bug is caught, its history
explained, its fault schedule shrunk, and the printed rerun command replays it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def test_many_seeds_in_parallel_json():
    out = _run([sys.executable, "-m", "campaign", "sim", "--seeds", "4", "--first-seed", "20",
                "--jobs", "2", "--steps", "300", "--json"])
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["seeds_run"] == 4 and result["failing"] == [] and result["jobs"] == 2
    assert sum(result["mixes"].values()) == 4 and result["seeds_per_s"] > 0


def test_one_seed_in_full_with_its_history(tmp_path):
    hist = tmp_path / "h.jsonl"
    out = _run([sys.executable, "-m", "sim", "--seed", "3", "--steps", "200",
                "--history", str(hist)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "leader completeness" in out.stdout and "linearizability: True" in out.stdout
    assert "rerun: python -m sim --seed 3 --nodes 3 --steps 200" in out.stdout
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    assert ops and ops[0]["type"] == "invoke"
    assert [o["index"] for o in ops] == list(range(len(ops)))


@pytest.mark.parametrize("args, says", [
    (["--bug", "nope"], "--bug: unknown bug 'nope'"),
    (["--faults", "1:crash:n1:5"], "--faults: needs --seed"),
    (["--seeds", "0"], "--seeds: must be >= 1"),
    (["--nodes", "4"], "invalid choice"),
    (["--seed", "1", "--faults", "1:crash:n9:5"], "target 'n9'"),
    (["--seed", "x"], "invalid int value"),
])
def test_bad_usage_is_one_line_and_254(args, says):
    for cmd in ([sys.executable, "-m", "campaign", "sim"], [sys.executable, "-m", "sim"]):
        out = _run(cmd + args, timeout=60)
        assert out.returncode == 254, out.stdout + out.stderr
        assert "Traceback" not in out.stderr and says in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_planted_bug_is_found_explained_shrunk_and_replayed(tmp_path):
    """longer-log-wins-vote (section 5.4.1 by length only) is found, the failing
    seed's history explained and its schedule shrunk; the printed command replays
    the shrunk schedule and fails again."""
    store = tmp_path / "store"
    out = _run([sys.executable, "-m", "campaign", "sim", "--bug", "longer-log-wins-vote",
                "--seeds", "20", "--jobs", "2", "--steps", "600", "--out", str(store),
                "--shrink-time", "90"])
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout
    assert "FAILED" in text and "shrunk its fault schedule" in text
    assert "the checker says:" in text and "leader-completeness" in text
    rerun = next(line for line in text.splitlines() if line.startswith("rerun: "))
    args = shlex.split(rerun[len("rerun: "):])
    assert args[:2] == ["raftcheck", "sim"] and "--faults" in args
    assert args[args.index("--bug") + 1] == "longer-log-wins-vote"
    seed = int(args[args.index("--seed") + 1])
    assert (store / f"seed-{seed}" / "history.jsonl").is_file()
    saved = json.loads((store / f"seed-{seed}" / "faults.json").read_text())
    shrunk = len(saved["faults"])
    assert 0 < shrunk < 10 and f"to {shrunk} in" in text
    # The printed command replays the shrunk schedule: the seed fails again.
    again = _run([sys.executable, "-m", "campaign"] + args[1:]
                 + ["--no-shrink", "--json", "--out", str(store)])
    assert again.returncode == 1, again.stdout + again.stderr
    replay = json.loads(again.stdout)
    assert "leader-completeness" in {v["kind"] for v in replay["summary"]["violations"]}
    assert replay["summary"]["effective_faults"] == shrunk
