"""The seeded deterministic simulation (sim/simulation.py): many seeds, 3 and 5 nodes.

Each seed runs real cores over a faulty simulated network with crashes, torn writes
and clients, then checks linearizability and Raft's safety properties. A failing seed
prints the command that reruns it alone. RAFTCHECK_SIM_SEEDS=N runs N seeds per
cluster size instead of the default.
"""

from __future__ import annotations

import os

import pytest

from sim.cli import rerun_command, run_seed
from sim.model import SimParams
from sim.simulation import Simulation

STEPS = 800
SEEDS = int(os.environ.get("RAFTCHECK_SIM_SEEDS", "0"))
SEEDS_3 = range(SEEDS or 18)
SEEDS_5 = range(1000, 1000 + (SEEDS or 10))


def _run(seed, nodes):
    r = run_seed(seed, nodes, STEPS)
    assert not r["violations"], (
        f"seed {seed} ({nodes} nodes) violated: " + "; ".join(r["violations"][:5])
        + f"\n  rerun alone: {rerun_command(seed, nodes, STEPS)}")
    assert r["ops"]["ok"] > 50, f"too few ops succeeded: {r['ops']}; rerun: {rerun_command(seed, nodes, STEPS)}"
    return r


@pytest.mark.parametrize("seed", SEEDS_3)
def test_three_nodes(seed):
    _run(seed, 3)


@pytest.mark.parametrize("seed", SEEDS_5)
def test_five_nodes(seed):
    _run(seed, 5)


def test_same_seed_same_run():
    a = run_seed(7, 3, 300, check_linearizability=False)
    b = run_seed(7, 3, 300, check_linearizability=False)
    for r in (a, b):
        r.pop("elapsed_s")
    assert a == b


def test_faults_actually_happen():
    # a seed whose parameters turn on every fault: the run must exercise them
    p = SimParams(nodes=3, steps=1000, drop=0.05, dup=0.05, delay_max=30,
                  partitions=True, crashes=True, crash_in_write=0.01, nemesis_every=500)
    sim = Simulation(42, p)
    r = sim.run()
    assert not r["violations"], r["violations"][:5]
    s = r["stats"]
    assert s["dropped"] and s["duplicated"] and s["partitions"] and s["crashes"]
    assert s["crash_in_write"] and s["restarts"] and s["elections"] >= 2
    assert r["ops"]["info"] + r["ops"]["fail"] > 0


def test_a_broken_core_is_caught(monkeypatch):
    # Mutation check: a core that grants votes to stale logs (breaking section 5.4.1)
    # must be caught by some invariant on some seed.
    import node.core.raft as raft

    def vote_for_anyone(self, m):
        m.last_log_term = 10 ** 9
        orig(self, m)

    orig = raft.RaftCore._handle_vote_request
    monkeypatch.setattr(raft.RaftCore, "_handle_vote_request", vote_for_anyone)
    p = SimParams(nodes=3, steps=800, drop=0.05, delay_max=10, partitions=True,
                  crashes=True, pauses=False, nemesis_every=500)
    caught = sum(1 for seed in range(8)
                 if Simulation(seed, p, check_linearizability=False).run()["violations"])
    assert caught >= 2


def test_cli_reruns_one_seed_and_says_what_it_checked(tmp_path):
    import json
    import subprocess
    import sys

    hist = tmp_path / "h.jsonl"
    out = subprocess.run([sys.executable, "-m", "sim", "--seed", "3", "--steps", "200",
                          "--history", str(hist)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "leader completeness" in out.stdout and "linearizability" in out.stdout
    assert "python -m sim --seed 3 --nodes 3 --steps 200" in out.stdout
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    assert ops and ops[0]["type"] == "invoke" and [o["index"] for o in ops] == list(range(len(ops)))
    bad = subprocess.run([sys.executable, "-m", "sim", "--seed", "x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 254 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
