"""Snapshots in the deterministic simulation (sim/, paper section 7): runs that
snapshot every few entries, crash between a snapshot and the WAL's compaction, and
bring back followers that need a snapshot, stay valid; planted bugs are still
caught. RAFTCHECK_SIM_SEEDS=N runs N seeds instead of the default."""

from __future__ import annotations

import os

from node.shell.storage import decode_wal
from sim.params import SimParams
from sim.runner import run_seed
from sim.schedule import Fault
from sim.simulation import Simulation

SEEDS = range(1, 1 + (int(os.environ.get("RAFTCHECK_SIM_SEEDS", "0")) or 8))


def test_runs_that_snapshot_often_stay_valid():
    totals = {"snapshots": 0, "snapshots_installed": 0, "snapshot_crashes": 0}
    for seed in SEEDS:
        r = run_seed(seed, 3, steps=800, snapshot_entries=8)
        assert not r["violations"], (
            f"seed {seed}: {r['violations'][:3]}; rerun: raftcheck sim --seed {seed} "
            f"--steps 800 --snapshot-entries 8")
        assert r["ops"]["ok"] > 30
        for k in totals:
            totals[k] += r["stats"][k]
    # the runs did what they are here for
    assert totals["snapshots"] > 50 and totals["snapshots_installed"] > 5, totals
    assert totals["snapshot_crashes"] >= 1, totals


def test_a_follower_cut_off_past_the_compaction_point_is_brought_back_by_a_snapshot():
    p = SimParams(nodes=3, steps=600, partitions=False, crashes=False, pauses=False,
                  torn_writes=0.0, drop=0.0, dup=0.0, snapshot_entries=10,
                  snapshot_chunk_chars=64)
    faults = [Fault(500, "isolate", "n3", 2500)]
    sim = Simulation(4, p, faults=faults)
    r = sim.run()
    assert not r["violations"], r["violations"][:3]
    n3 = sim.nodes["n3"]
    assert r["stats"]["snapshots_installed"] >= 1
    assert n3.core.snapshot_index > 0 and n3.sm.values == sim.nodes["n1"].sm.values
    assert n3.disk.snapshot is not None and n3.disk.base == n3.disk.snapshot.index
    # its durable log is bounded by the snapshot threshold, not by the run
    assert len(n3.disk.log) < 2 * 10 + p.max_batch_entries


def test_a_crash_between_the_snapshot_and_the_compaction_loads_and_stays_valid():
    p = SimParams(nodes=3, steps=800, snapshot_entries=8, snapshot_crash=0.5)
    sim = Simulation(6, p)
    r = sim.run()
    assert not r["violations"], r["violations"][:3]
    assert r["stats"]["snapshot_crashes"] >= 3 and r["stats"]["restarts"] >= 3


def test_planted_bugs_are_still_caught_with_snapshots():
    for bug in ("truncate-on-any-append", "match-from-leader-log", "append-not-durable",
                "local-reads", "no-dedup"):
        assert any(run_seed(seed, 3, bugs={bug}, steps=800, snapshot_entries=8)["violations"]
                   for seed in range(1, 7)), f"{bug} never caught with snapshots"


def test_the_durable_state_kept_beside_a_compacted_wal_is_what_recovery_reads():
    """SimDisk's decoded state (the log after its snapshot) is exactly what the node's
    own decoder makes of the compacted WAL's bytes."""
    p = SimParams(nodes=3, steps=800, crashes=True, torn_writes=3.0, nemesis_every=300,
                  snapshot_entries=8, snapshot_crash=0.2)
    sim = Simulation(3, p, check_linearizability=False)
    r = sim.run()
    assert not r["violations"], r["violations"][:3]
    assert r["stats"]["snapshots"] > 10 and r["stats"]["torn_writes"] > 0
    for node in sim.nodes.values():
        wal = decode_wal(bytes(node.disk.durable))
        assert (wal.hard_state, wal.entries) == (node.disk.hard_state, node.disk.log)
        assert wal.base == node.disk.base and node.disk.snapshot is not None
        assert wal.base <= node.disk.snapshot.index
