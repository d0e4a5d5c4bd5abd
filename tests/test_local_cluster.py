"""LocalCluster with real Raft nodes and a real toxiproxy server.

Leader change under a partition, kill / restart / pause / resume, teardown that leaves
no process and no bound port, no orphans when the runner is SIGKILLed or SIGTERMed,
and one clear BadInput for a busy port or a missing toxiproxy binary.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from cluster.base import Cluster, ClusterError, fetch_status, find_leader, make_cluster
from cluster.local import LocalCluster, find_toxiproxy, port_is_free
from history.errors import BadInput
from nemesis import partition
from tests.support import require

WAIT_S = 20  # upper bound of every "eventually" below


def _need_toxiproxy() -> None:
    try:
        find_toxiproxy()
    except BadInput as e:
        require(False, str(e))


def _eventually(fn, what: str, wait_s: float = WAIT_S):
    deadline = time.monotonic() + wait_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {wait_s} s: {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _need_toxiproxy()
    c = LocalCluster(3, tmp_path_factory.mktemp("local") / "run",
                     node_options={"heartbeat_ms": 30, "election_timeout_ms": [200, 400]})
    try:
        c.start()
        yield c
    finally:
        c.teardown()


def _write(c: LocalCluster, key: str, value: int) -> None:
    def attempt():
        leader = find_leader(c)
        if not leader:
            return False
        try:
            r = requests.post(c.client_url(leader) + "/op",
                              json={"op": "write", "key": key, "value": value}, timeout=2)
            return r.json().get("ok") is True
        except (requests.RequestException, ValueError):
            return False
    _eventually(attempt, f"write {key}={value}")


def test_layout(cluster):
    assert isinstance(cluster, Cluster)
    run = cluster.run_dir
    assert (run / "cluster.yaml").is_file() and (run / "toxiproxy.log").is_file()
    assert all((run / "nodes" / f"{n}.log").is_file() for n in cluster.node_ids)
    assert all((run / "data" / n).is_dir() for n in cluster.node_ids)
    assert sorted(cluster.toxiproxy.proxies_raw()) == sorted(
        f"{a}-to-{b}" for a in cluster.node_ids for b in cluster.node_ids if a != b)
    for n in cluster.node_ids:
        assert fetch_status(cluster.client_url(n))["id"] == n


def test_partition_isolating_the_leader_elects_another(cluster):
    old = _eventually(lambda: find_leader(cluster), "a leader")
    grudge = partition.grudge_for("one", cluster.node_ids, random.Random(1), old, True)
    assert grudge[old] == sorted(set(cluster.node_ids) - {old})
    partition.apply_grudge(cluster.toxiproxy, grudge)
    others = [n for n in cluster.node_ids if n != old]
    try:
        new = _eventually(lambda: find_leader(cluster, node_ids=others),
                          "a new leader in the majority")
        assert new != old
    finally:
        cluster.toxiproxy.heal()
    _write(cluster, "after-heal", 1)  # the healed cluster serves writes again


def test_kill_restart_pause_resume(cluster):
    _write(cluster, "k", 7)
    victim = cluster.node_ids[0]
    url = cluster.client_url(victim)
    length = _eventually(lambda: (fetch_status(url) or {}).get("log_length"),
                         "a log entry on the victim")
    pid = cluster.pids()[victim]

    cluster.kill(victim)
    assert not _alive(pid) and victim not in cluster.pids()
    assert fetch_status(url, 0.5) is None
    cluster.kill(victim)  # a no-op
    cluster.restart(victim)
    assert cluster.pids()[victim] != pid
    assert fetch_status(url)["log_length"] >= length  # its data survived

    pid = cluster.pids()[victim]
    cluster.pause(victim)
    assert _state(pid) in ("T", "t")
    assert fetch_status(url, 0.5) is None
    cluster.resume(victim)
    assert _state(pid) not in ("T", "t")
    assert _eventually(lambda: fetch_status(url), "the resumed node answers")["id"] == victim


def test_restart_on_a_busy_port_fails_clearly_then_works(cluster):
    victim = cluster.node_ids[1]
    port = int(cluster.addresses[victim]["client"].rsplit(":", 1)[1])
    cluster.kill(victim)
    cluster.restart_attempts = 2
    with socket.socket() as s:  # someone takes the killed node's port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(ClusterError, match="port stays busy"):
            cluster.restart(victim)
    cluster.restart(victim)
    assert fetch_status(cluster.client_url(victim))["id"] == victim


def test_node_ports_avoid_the_ephemeral_range(cluster):
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [int(a.rsplit(":", 1)[1]) for addrs in cluster.addresses.values()
             for a in addrs.values()]
    assert len(set(ports)) == 6 and all(p < low for p in ports)


def test_teardown_leaves_no_process_and_no_port(tmp_path):
    _need_toxiproxy()
    c = LocalCluster(3, tmp_path / "run")
    c.start()
    c.pause("n2")  # a stopped process must go too
    pids, ports = c.pids(), c.ports()
    assert len(pids) == 4 and len(ports) == 3 * 2 + 6
    logs = c.collect_logs(tmp_path / "copy")
    assert len(logs) == 4 and all(p.is_file() for p in logs)
    c.teardown()
    c.teardown()  # idempotent
    assert not [p for p in pids.values() if _alive(p)]
    assert [p for p in ports if not port_is_free(p)] == []


RUNNER = textwrap.dedent('''
    import json, sys, threading, time
    from cluster.local import LocalCluster
    c = LocalCluster(3, sys.argv[1], crash_fs=sys.argv[2] == "crash_fs")
    c.start()
    # a node restarted from a thread that then ends (as the nemesis thread does)
    # must still die with the runner, not with that thread
    t = threading.Thread(target=lambda: (c.kill("n1"), c.restart("n1")))
    t.start()
    t.join()
    c.pause("n3")
    print(json.dumps({"pids": c.pids(), "ports": c.ports()}), flush=True)
    time.sleep(120)
''')


@pytest.mark.parametrize("sig,fs", [(signal.SIGKILL, ""), (signal.SIGTERM, ""),
                                    (signal.SIGKILL, "crash_fs")],
                         ids=["SIGKILL", "SIGTERM", "SIGKILL-crash_fs"])
def test_killed_runner_leaves_no_orphans(tmp_path, sig, fs):
    _need_toxiproxy()
    if fs:
        from cluster.faultfs import available
        require(available() is None, f"faultfs unavailable: {available()}")
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "run"), fs],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        line = runner.stdout.readline()
        assert line, "the runner did not start its cluster"
        started = json.loads(line)
        pids = list(started["pids"].values())
        assert len(pids) == 4 and all(_alive(p) for p in pids)
        time.sleep(0.2)  # the restarted n1 outlives the thread that restarted it
        assert _alive(started["pids"]["n1"])
        runner.send_signal(sig)
        runner.wait(timeout=WAIT_S)
        _eventually(lambda: not [p for p in pids if _alive(p)], "every child gone")
        _eventually(lambda: all(port_is_free(p) for p in started["ports"]),
                    "every port free")
        if fs:  # each faultfs unmounts itself once its runner is gone
            from cluster.faultfs import is_mounted
            _eventually(lambda: not any(is_mounted(tmp_path / "run" / "mnt" / n)
                                        for n in ("n1", "n2", "n3")), "every mount gone")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    if sig == signal.SIGTERM:  # a clean teardown: the nodes were told to stop
        assert runner.returncode == 128 + signal.SIGTERM


def test_make_cluster(tmp_path):
    c = make_cluster("local", 5, tmp_path, bug="local-reads", base_port=40000)
    assert isinstance(c, LocalCluster) and c.node_ids == ["n1", "n2", "n3", "n4", "n5"]
    assert c.bug == "local-reads" and c.base_port == 40000
    with pytest.raises(BadInput, match="unknown backend 'vm'"):
        make_cluster("vm", 3, tmp_path)
    with pytest.raises(BadInput, match="positive integer"):
        make_cluster("local", 0, tmp_path)


def test_busy_port_is_bad_input(tmp_path):
    _need_toxiproxy()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        c = LocalCluster(3, tmp_path / "run", base_port=busy)
        with pytest.raises(BadInput, match=f"port {busy} \\(n1's client port\\) is busy"):
            c.start()
    assert c.pids() == {}


def test_missing_toxiproxy_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAFTCHECK_TOXIPROXY", raising=False)
    with pytest.raises(BadInput, match="go install github.com/Shopify/toxiproxy"):
        find_toxiproxy()
    monkeypatch.setenv("RAFTCHECK_TOXIPROXY", str(tmp_path / "nope"))
    with pytest.raises(BadInput, match="RAFTCHECK_TOXIPROXY"):
        LocalCluster(3, tmp_path / "run").start()
    assert os.path.isdir(tmp_path)  # nothing else to clean: nothing started


# --- exits nobody asked for ------------------------------------------------------

def test_unexpected_exits_are_reported_and_nemesis_kills_are_not(tmp_path):
    _need_toxiproxy()
    c = LocalCluster(3, tmp_path / "run")
    try:
        c.start()
        assert c.crash_fs is False and c.unexpected_exits() == []
        assert c.kill("n1") is None                 # a nemesis kill: expected
        c.restart("n1")
        victim = c.pids()["n2"]
        os.kill(victim, signal.SIGKILL)             # behind the cluster's back
        _eventually(lambda: c.unexpected_exits(), "the exit noticed")
        assert c.unexpected_exits() == [
            {"node": "n2", "code": -signal.SIGKILL, "detail": c.unexpected_exits()[0]["detail"]}]
        c.restart("n2")                             # noted once, not again
        c.kill("n3")
        assert [e["node"] for e in c.unexpected_exits()] == ["n2"]
        # one found dead at restart, and one that dies by itself with a message
        os.kill(c.pids()["n1"], signal.SIGKILL)
        c.restart("n3")
        c.restart("n1")
        assert [e["node"] for e in c.unexpected_exits()] == ["n2", "n1"]
    finally:
        c.teardown()
    assert [e["node"] for e in c.unexpected_exits()] == ["n2", "n1"]  # teardown adds none


# --- crash_fs: data directories on faultfs ------------------------------------------

def test_crash_fs_kill_loses_unsynced_writes(tmp_path):
    _need_toxiproxy()
    from cluster.faultfs import available, is_mounted
    why = available()
    require(why is None, f"faultfs unavailable: {why}")
    # fsync off: every WAL write stays unsynced, so a kill must lose some
    c = make_cluster("local", 3, tmp_path / "run", crash_fs=True,
                     node_options={"fsync": False, "heartbeat_ms": 30,
                                   "election_timeout_ms": [200, 400]})
    run = c.run_dir
    try:
        c.start()
        assert c.crash_fs and all(is_mounted(run / "mnt" / n) for n in c.node_ids)
        assert f"data_dir: {run}/mnt/" in (run / "cluster.yaml").read_text()
        for i in range(5):
            _write(c, "k", i)
        leader = find_leader(c)
        lost = c.kill(leader)
        assert isinstance(lost, int) and lost > 0
        assert c.kill(leader) == 0                  # a no-op loses nothing
        assert c.faultfs(leader).stats()["crashes"] == 1
        c.restart(leader)                           # on the same, crashed mount
        assert fetch_status(c.client_url(leader))["id"] == leader
        _write(c, "k", 99)                          # and the cluster serves
        survivors = [n for n in c.node_ids if n != leader]
        assert c.unexpected_exits() == []
    finally:
        c.teardown()
    assert not (run / "mnt").exists()              # unmounted, mount points removed
    for n in c.node_ids:
        assert (run / "data" / n / "raft.wal").is_file()
    assert (run / "faultfs" / f"{survivors[0]}.log").read_text().count("crash:") == 1


def test_crash_fs_a_dead_faultfs_is_a_cluster_error(tmp_path):
    _need_toxiproxy()
    from cluster.faultfs import available
    why = available()
    require(why is None, f"faultfs unavailable: {why}")
    c = LocalCluster(3, tmp_path / "run", crash_fs=True)
    try:
        c.start()
        c.faultfs("n3").popen.kill()
        with pytest.raises(ClusterError, match="faultfs for n3"):
            c.kill("n3")
        with pytest.raises(ClusterError, match="cannot restart n3: faultfs for n3 exited"):
            c.restart("n3")
        assert any(e["node"] == "n3" and "faultfs for n3 exited" in e["detail"]
                   for e in c.unexpected_exits())
    finally:
        c.teardown()
    assert not (tmp_path / "run" / "mnt").exists()
