"""Campaigns spread over machines and cores: `--shard I/N`, `--parallel K`, and
`raftcheck summary` merging the shards' stores (campaign.campaign_cmd,
campaign.summary_cmd); the CI examples in examples/ci run the right cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import require_toxiproxy

ROOT = Path(__file__).resolve().parent.parent
RAFTCHECK = [sys.executable, "-m", "campaign"]
ALL_BUGS = ROOT / "campaigns" / "all-bugs.yaml"


def raftcheck(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*RAFTCHECK, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "CI": "true"})


def listed(r: subprocess.CompletedProcess) -> dict[int, str]:
    """The cells a --dry-run listed: {cell number: description}."""
    assert r.returncode == 0, r.stderr
    rows = [re.match(r"\s*(\d+)  (.*)", line) for line in r.stdout.splitlines()]
    return {int(m.group(1)): m.group(2) for m in rows if m}


def test_shards_partition_the_cells():
    whole = listed(raftcheck("campaign", str(ALL_BUGS), "--dry-run"))
    assert len(whole) == 15
    parts = [listed(raftcheck("campaign", str(ALL_BUGS), "--dry-run", "--shard", f"{i}/4"))
             for i in range(4)]
    assert sorted(k for p in parts for k in p) == sorted(whole)   # each cell once
    for i, part in enumerate(parts):
        assert all((k - 1) % 4 == i and whole[k] == v for k, v in part.items())


def test_bad_shard_and_parallel_are_one_line_errors():
    for args, needle in ((("--shard", "4/4"), "0 <= I < N"), (("--shard", "x"), "I/N"),
                         (("--parallel", "0"), "--parallel")):
        r = raftcheck("campaign", str(ALL_BUGS), "--dry-run", *args)
        assert r.returncode == 254 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert needle in r.stderr


def _fake_run(store: Path, folder: str, cell: int | None, cells: int, valid,
              seed: int, started: str = "2026-11-30T10:00:00") -> Path:
    d = store / "camp" / folder
    d.mkdir(parents=True)
    test = {"name": "camp", "seed": seed, "started": started,
            "options": {"nodes": 3, "rate": 200, "nemesis": ["partition"], "seed": seed,
                        "bug": None}}
    if cell is not None:
        test["campaign"] = {"name": "camp", "file": "camp.yaml", "cell": cell,
                            "cells": cells}
    (d / "test.json").write_text(json.dumps(test))
    if valid != "crashed":
        (d / "results.json").write_text(json.dumps({"valid": valid}))
    return d


def test_summary_merges_stores_in_cell_order_and_reports_missing_cells(tmp_path):
    a, b = tmp_path / "shard-0", tmp_path / "shard-1"
    _fake_run(a, "t1", 1, 4, True, seed=1)
    _fake_run(a, "t3", 3, 4, False, seed=3)
    _fake_run(b, "t2", 2, 4, True, seed=2)
    (a / "latest").symlink_to("camp/t1")                 # links are not runs
    r = raftcheck("summary", str(b), str(a), "--html", str(tmp_path / "s.html"))
    assert r.returncode == 1, r.stdout + r.stderr       # a failed cell: invalid wins
    rows = [line.split() for line in r.stdout.splitlines() if re.match(r"\s+\d+  ", line)]
    assert [row[1] for row in rows] == ["passed", "passed", "failed"]
    assert [row[row.index("seed") + 1] for row in rows] == ["1", "2", "3"]
    assert "campaign camp: 1 of 4 cells missing: 4" in r.stdout
    page = (tmp_path / "s.html").read_text()
    assert "failed" in page and "shard-0/camp/t3" in page

    _fake_run(b, "t4", 4, 4, True, seed=4)
    _fake_run(b, "t3-again", 3, 4, True, seed=3, started="2026-11-30T11:00:00")
    r = raftcheck("summary", str(a), str(b))
    assert r.returncode == 0, r.stdout                  # every cell, the rerun kept
    assert "cell 3 ran twice" in r.stdout and "missing" not in r.stdout

    c = tmp_path / "shard-2"
    _fake_run(c, "t5", 1, 1, "crashed", seed=9)
    r = raftcheck("summary", str(c))
    assert r.returncode == 255 and "crashed" in r.stdout
    r = raftcheck("summary", str(tmp_path / "nowhere"))
    assert r.returncode == 254 and len(r.stderr.strip().splitlines()) == 1


def test_a_two_shard_campaign_merges_into_the_unsharded_table(tmp_path):
    """The same seeds, run whole and as two shards (one of them two cells at once),
    give the same table once `raftcheck summary` merges the shards."""
    require_toxiproxy()
    camp = tmp_path / "small.yaml"
    camp.write_text("name: small\ntest: {time_limit: 2, nemesis: none, rate: 50, "
                    "crash_fs: 'off'}\nmatrix:\n  seed: [1, 2, 3]\n")

    def table(out: str) -> list[tuple[str, str]]:
        rows = [re.match(r"\s+\d+  (\w+)\s+(.*?)  \S+$", line) for line in out.splitlines()]
        return [(m.group(1), m.group(2).strip()) for m in rows if m]
    whole = raftcheck("campaign", str(camp), "--store", str(tmp_path / "whole"), timeout=300)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    s0 = raftcheck("campaign", str(camp), "--shard", "0/2", "--parallel", "2",
                   "--store", str(tmp_path / "s0"), timeout=300)
    s1 = raftcheck("campaign", str(camp), "--shard", "1/2", "--store", str(tmp_path / "s1"),
                   timeout=300)
    assert s0.returncode == 0 and s1.returncode == 0, s0.stdout + s0.stderr + s1.stderr
    assert len(table(s0.stdout)) == 2 and len(table(s1.stdout)) == 1
    merged = raftcheck("summary", str(tmp_path / "s0"), str(tmp_path / "s1"))
    assert merged.returncode == 0, merged.stdout
    assert table(merged.stdout) == table(whole.stdout) and len(table(whole.stdout)) == 3
    logs = [p for p in (tmp_path / "s0").glob("small/*/campaign.log")
            if p.parent.name != "latest"]
    assert len(logs) == 2 and all("linearizable" in p.read_text() for p in logs)


def _cells_of(command: str) -> set[int]:
    """The cells a CI example's command runs (its raftcheck arguments, dry-run)."""
    args = command.split()
    args = args[args.index("campaign"):]
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--store":
            skip = True
            continue
        keep.append(a.rstrip(";"))
    return set(listed(raftcheck(*keep, "--dry-run")))


def test_the_github_actions_example_runs_every_cell_once():
    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    shards = wf["env"]["SHARDS"]
    job = wf["jobs"]["shard"]
    assert job["strategy"]["matrix"]["shard"] == list(range(shards))
    step = next(s["run"] for s in job["steps"] if "raftcheck campaign" in s.get("run", ""))
    step = step.split("||")[0].replace("$CAMPAIGN", wf["env"]["CAMPAIGN"])
    seen: list[int] = []
    for i in range(shards):
        seen += _cells_of(step.replace("${{ matrix.shard }}", str(i))
                          .replace("$SHARDS", str(shards)))
    assert sorted(seen) == list(range(1, 16))
    summary = wf["jobs"]["summary"]
    assert summary["needs"] == "shard" and summary["if"] == "always()"
    assert any("raftcheck summary stores/*" in s.get("run", "") for s in summary["steps"])


def test_the_kubernetes_indexed_job_runs_every_cell_once():
    job = yaml.safe_load((ROOT / "examples" / "ci" / "k8s-indexed-job.yaml").read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    n = spec["completions"]
    command = spec["template"]["spec"]["containers"][0]["args"][0]
    assert f"--shard ${{JOB_COMPLETION_INDEX}}/{n}" in command
    seen: list[int] = []
    for i in range(n):
        seen += _cells_of(command.replace("${JOB_COMPLETION_INDEX}", str(i)).split(";")[0])
    assert sorted(seen) == list(range(1, 16))
