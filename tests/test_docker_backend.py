"""The docker backend end to end: real containers on a real Docker engine.

Needs a Docker engine (scripts/docker-engine.sh) and the images (docker/base-image.sh,
docker/build-images.sh); without them the tests skip (and fail in CI, where
RAFTCHECK_REQUIRE_ALL=1). Every run here is short and removes what it made.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.support import require

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"

pytestmark = pytest.mark.docker


def _docker_problem() -> str | None:
    """Why the docker tests cannot run here, or None."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:
        return f"no Docker engine answers ({type(e).__name__}); run scripts/docker-engine.sh"
    try:
        from cluster.containers import NODE_IMAGE, TOXIPROXY_IMAGE
        for image in (os.environ.get("RAFTCHECK_NODE_IMAGE", NODE_IMAGE),
                      os.environ.get("RAFTCHECK_TOXIPROXY_IMAGE", TOXIPROXY_IMAGE)):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                return f"image {image} missing; run docker/build-images.sh"
    finally:
        client.close()
    return None


@pytest.fixture(scope="module")
def engine():
    problem = _docker_problem()
    require(problem is None, problem or "")
    import docker
    client = docker.from_env(timeout=30)
    yield client
    client.close()


def objects_of(client, pred) -> list[str]:
    """Names of the labelled containers, volumes and networks whose labels match."""
    flt = {"label": "raftcheck.run"}
    # sparse: no inspect per container, so one removed meanwhile cannot raise NotFound
    out = [f"container {(c.attrs.get('Names') or [c.id])[0].lstrip('/')}"
           for c in client.containers.list(all=True, filters=flt, sparse=True)
           if pred(c.attrs.get("Labels") or {})]
    out += [f"volume {v.name}" for v in client.volumes.list(filters=flt)
            if pred(v.attrs.get("Labels") or {})]
    out += [f"network {n.name}" for n in client.networks.list(filters=flt)
            if pred(n.attrs.get("Labels") or {})]
    return out


def owned_by(pid: int):
    prefix = f"{socket.gethostname()}:{pid}:"
    return lambda labels: labels.get("raftcheck.owner", "").startswith(prefix)


def raftcheck(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "campaign", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def latest_run(store: Path) -> Path:
    return (store / "register" / "latest").resolve()


# --- the backend, driven directly ------------------------------------------------

def test_cluster_faults_and_teardown(engine, tmp_path):
    from cluster.base import find_leader
    from cluster.containers import DockerCluster

    cluster = DockerCluster(3, tmp_path)
    http = requests.Session()
    http.trust_env = False

    def op(nid, body):
        try:
            return http.post(cluster.client_url(nid) + "/op", json=body, timeout=3).json()
        except requests.RequestException as e:
            return {"ok": False, "exception": type(e).__name__}

    def write_somewhere(value, among):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            leader = find_leader(cluster, node_ids=among)
            if leader and op(leader, {"op": "write", "key": "k", "value": value})["ok"]:
                return leader
            time.sleep(0.2)
        raise AssertionError(f"no write of {value} succeeded on {among}")

    try:
        cluster.start()
        run_id = cluster.run_id
        assert len(objects_of(engine, lambda l: l.get("raftcheck.run") == run_id)) == 3 + 1 + 3 + 1
        assert len(cluster.toxiproxy.proxies()) == 6
        config = yaml.safe_load((tmp_path / "cluster.yaml").read_text())
        assert config["peers"]["n1"]["n2"].startswith(f"raftcheck-{run_id}-toxiproxy:")

        leader = write_somewhere(1, cluster.node_ids)
        # kill keeps the data: the killed leader's volume still holds value 1
        cluster.kill(leader)
        assert engine.containers.get(f"raftcheck-{run_id}-{leader}").status == "exited"
        others = [n for n in cluster.node_ids if n != leader]
        write_somewhere(2, others)
        cluster.restart(leader)
        status = http.get(cluster.client_url(leader) + "/status", timeout=3).json()
        assert status["id"] == leader and status["log_length"] >= 1

        # isolate one node through Toxiproxy: the other two keep a quorum
        lonely = others[0]
        for n in cluster.node_ids:
            if n != lonely:
                cluster.toxiproxy.cut(lonely, n)
                cluster.toxiproxy.cut(n, lonely)
        majority = [n for n in cluster.node_ids if n != lonely]
        write_somewhere(3, majority)
        cluster.toxiproxy.heal()

        # pause freezes the node: its client API does not answer until resumed
        cluster.pause(lonely)
        assert engine.containers.get(f"raftcheck-{run_id}-{lonely}").status == "paused"
        assert op(lonely, {"op": "read", "key": "k"}).get("exception") == "ReadTimeout"
        cluster.resume(lonely)
        assert "exception" not in op(lonely, {"op": "read", "key": "k"})
    finally:
        cluster.teardown()
        cluster.teardown()  # idempotent
    assert objects_of(engine, lambda l: l.get("raftcheck.run") == run_id) == []
    logs = {p.name for p in (tmp_path / "nodes").iterdir()}
    assert logs == {"n1.log", "n2.log", "n3.log"}
    assert leader in (tmp_path / "nodes" / f"{leader}.log").read_text()
    assert (tmp_path / "toxiproxy.log").stat().st_size > 0


def test_crash_fs_and_unexpected_exits_in_containers(engine, tmp_path):
    """Node data on faultfs mounts made on the host and bind-mounted into the
    containers: a kill loses what the node did not fsync, the container restarts on
    the same mount; a container killed behind the cluster's back is reported, a
    nemesis kill is not; teardown leaves raft.wal in run_dir/data/<id>."""
    from cluster.base import find_leader
    from cluster.containers import DockerCluster
    from cluster.faultfs import available, is_mounted

    why = available()
    require(why is None, f"faultfs unavailable: {why}")
    # fsync off: every WAL write stays unsynced, so a kill must lose some
    cluster = DockerCluster(3, tmp_path, crash_fs=True, node_options={"fsync": False})
    http = requests.Session()
    http.trust_env = False

    def write_somewhere(value, among):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            leader = find_leader(cluster, node_ids=among)
            try:
                if leader and http.post(cluster.client_url(leader) + "/op", timeout=3,
                                        json={"op": "write", "key": "k",
                                              "value": value}).json()["ok"]:
                    return leader
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no write of {value} succeeded on {among}")

    try:
        cluster.start()
        run_id = cluster.run_id
        assert all(is_mounted(tmp_path / "mnt" / n) for n in cluster.node_ids)
        # no volumes: the mounts are the data (3 containers + toxiproxy + network)
        assert len(objects_of(engine, lambda l: l.get("raftcheck.run") == run_id)) == 5
        leader = write_somewhere(1, cluster.node_ids)
        for v in range(2, 6):
            write_somewhere(v, cluster.node_ids)
        leader = find_leader(cluster) or leader
        lost = cluster.kill(leader)
        assert isinstance(lost, int) and lost > 0
        others = [n for n in cluster.node_ids if n != leader]
        write_somewhere(6, others)
        cluster.restart(leader)                      # on the same, crashed mount
        status = http.get(cluster.client_url(leader) + "/status", timeout=3).json()
        assert status["id"] == leader
        assert cluster.unexpected_exits() == []

        victim = others[0]
        engine.containers.get(f"raftcheck-{run_id}-{victim}").kill()  # behind its back
        deadline = time.monotonic() + 20
        while not cluster.unexpected_exits() and time.monotonic() < deadline:
            time.sleep(0.2)
        exits = cluster.unexpected_exits()
        assert [(e["node"], e["code"]) for e in exits] == [(victim, 137)], exits
        cluster.restart(victim)
        assert len(cluster.unexpected_exits()) == 1
    finally:
        cluster.teardown()
    assert objects_of(engine, lambda l: l.get("raftcheck.run") == run_id) == []
    assert not (tmp_path / "mnt").exists()
    for n in cluster.node_ids:
        wal = tmp_path / "data" / n / "raft.wal"
        assert wal.is_file() and wal.stat().st_uid == 10001  # created by the node's user
    assert len(cluster.unexpected_exits()) == 1


@pytest.mark.parametrize("extra,env,message", [
    ([], {"RAFTCHECK_NODE_IMAGE": "raftcheck/no-such-image:none"},
     "docker image raftcheck/no-such-image:none not found; build them with"),
    (["--base-port", "41000"], {}, "--base-port: fixed ports are for the local backend"),
], ids=["missing-image", "base-port"])
def test_bad_docker_usage_is_one_line(engine, tmp_path, extra, env, message):
    r = subprocess.run([sys.executable, "-m", "campaign", "test", "--backend", "docker",
                        "--time-limit", "1", "--store", str(tmp_path / "store"), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, **env))
    assert r.returncode == 254, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


# --- the runner with --backend docker --------------------------------------------

def test_short_docker_run_is_valid(engine, tmp_path):
    store = tmp_path / "store"
    # several faults, so that some op succeeds under one of them (else: vacuous, exit 2)
    r = raftcheck("test", "--backend", "docker", "--nodes", "3", "--time-limit", "10",
                  "--nemesis", "partition,kill", "--nemesis-interval", "2",
                  "--seed", "11", "--store", str(store))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    run = latest_run(store)
    assert json.loads((run / "results.json").read_text())["valid"] is True
    assert json.loads((run / "test.json").read_text())["options"]["backend"] == "docker"
    for nid in ("n1", "n2", "n3"):
        assert nid in (run / "nodes" / f"{nid}.log").read_text()
    assert objects_of(engine, lambda l: l.get("raftcheck.run_dir") == str(run)) == []


GONODE_IMAGE = os.environ.get("RAFTCHECK_GONODE_IMAGE", "raftcheck/gonode:latest")


def test_a_node_image_of_another_implementation_runs_under_faults(engine, tmp_path):
    """--node-image with gonode (etcd's Raft library, docs/node-contract.md section 5),
    an image built by docker/build-images.sh: the contract's container convention is
    all it needs, and its event lines still feed the invariants they cover."""
    import docker
    try:
        engine.images.get(GONODE_IMAGE)
    except docker.errors.ImageNotFound:
        require(False, f"image {GONODE_IMAGE} missing; run docker/build-images.sh "
                       "(it needs Go)")
    store = tmp_path / "store"
    r = raftcheck("test", "--backend", "docker", "--node-image", GONODE_IMAGE,
                  "--nodes", "3", "--time-limit", "10", "--nemesis", "partition,kill,pause",
                  "--nemesis-interval", "2", "--seed", "3", "--store", str(store))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    run = latest_run(store)
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True
    assert json.loads((run / "test.json").read_text())["options"]["node_image"] == GONODE_IMAGE
    assert results["checkers"]["linearizable"]["valid"] is True
    inv = results["checkers"]["raft-invariants"]
    assert inv["not_checked"] == ["committed-on-a-majority", "exactly-once", "log-matching",
                                  "state-machine-safety"]
    assert inv["checked"]["election-safety"]["leader_events"] >= 1
    assert inv["checked"]["commit-rule"]["commit_events"] >= 1
    assert inv["checked"]["current-term-leader"]["leaders_followed"] >= 1
    logs = "".join((run / "nodes" / f"{nid}.log").read_text() for nid in ("n1", "n2", "n3"))
    assert "gonode: serving clients on 0.0.0.0:8000" in logs, logs[-2000:]
    assert objects_of(engine, lambda l: l.get("raftcheck.run_dir") == str(run)) == []


def test_planted_bug_is_found(engine, tmp_path):
    store = tmp_path / "store"
    # ack-before-commit loses acknowledged writes when a partitioned or killed leader
    # is overwritten: found in every 12 s run tried (local-reads needs longer runs)
    r = raftcheck("test", "--backend", "docker", "--nodes", "3", "--time-limit", "12",
                  "--bug", "ack-before-commit", "--nemesis", "partition,kill",
                  "--nemesis-interval", "2", "--seed", "7", "--store", str(store))
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]
    results = json.loads((latest_run(store) / "results.json").read_text())
    assert results["valid"] is False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_removes_the_run(engine, tmp_path, sig):
    store = tmp_path / "store"
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as err:
        # --crash-fs off: node data in volumes (3 of the 8 objects counted below)
        p = subprocess.Popen([sys.executable, "-m", "campaign", "test", "--backend",
                              "docker", "--nodes", "3", "--time-limit", "60",
                              "--crash-fs", "off", "--store", str(store)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        mine = owned_by(p.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            if len([o for o in objects_of(engine, mine) if o.startswith("container")]) == 4:
                if "load" in log_path.read_text():
                    break
            time.sleep(0.5)
        assert p.poll() is None, log_path.read_text()[-2000:]
        assert len(objects_of(engine, mine)) == 4 + 3 + 1
        p.send_signal(sig)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert objects_of(engine, mine) == [], log_path.read_text()[-2000:]
    run = latest_run(store)
    assert (run / "history.jsonl").stat().st_size > 0  # the history is kept
    assert (run / "nodes" / "n1.log").exists()


CRASHER = """
import os, signal, sys
from cluster.containers import DockerCluster
c = DockerCluster(3, sys.argv[1])
c.start()
print(c.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_clean_removes_a_crashed_run(engine, tmp_path):
    r = subprocess.run([sys.executable, "-c", CRASHER, str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    run_id = r.stdout.strip()
    of_run = lambda l: l.get("raftcheck.run") == run_id  # noqa: E731
    assert len(objects_of(engine, of_run)) == 8  # a SIGKILLed runner leaves it all

    dry = raftcheck("clean", "--dry-run", timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove run {run_id} (crashed;" in dry.stdout
    assert len(objects_of(engine, of_run)) == 8

    done = raftcheck("clean", timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"removing run {run_id} (crashed;" in done.stdout
    assert objects_of(engine, of_run) == []
    assert "nothing to clean" in raftcheck("clean", "--run", run_id, timeout=60).stdout


# --- the compose file (static: a user's `docker compose up` topology) -------------

def test_compose_topology_follows_spec():
    compose = yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())
    cluster = yaml.safe_load((DOCKER_DIR / "compose-cluster.yaml").read_text())
    proxies = {p["name"]: p for p in json.loads((DOCKER_DIR / "toxiproxy.json").read_text())}
    ids = [f"n{i}" for i in range(1, 6)]
    assert set(compose["services"]) == set(ids) | {"toxiproxy", "peer-secret"}
    secret_path = cluster["peer_secret_file"]
    assert secret_path.startswith("/run/raftcheck/")
    assert len(proxies) == 20
    for i in ids:
        svc = compose["services"][i]
        assert svc["command"][svc["command"].index("--id") + 1] == i
        assert "peer-secret:/run/raftcheck:ro" in svc["volumes"]
        assert svc["depends_on"]["peer-secret"]["condition"] == \
            "service_completed_successfully"
        assert cluster["nodes"][i]["peer"] == f"{i}:9000"
        for j in ids:
            if i == j:
                continue
            proxy = proxies[f"{i}-to-{j}"]
            assert proxy["upstream"] == cluster["nodes"][j]["peer"]
            port = proxy["listen"].rsplit(":", 1)[1]
            assert cluster["peers"][i][j] == f"toxiproxy:{port}"
    toxi = compose["services"]["toxiproxy"]
    assert toxi["command"][:2] == ["-config", "/etc/raftcheck/toxiproxy.json"]


PROBE = """
import json, sys, time, urllib.request
def get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())
def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3) as r:
        return json.loads(r.read())
ids = sys.argv[1:]
out = {"proxies": sorted(get("http://toxiproxy:8474/proxies"))}
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        st = {i: get(f"http://{i}:8000/status") for i in ids}
        leaders = [i for i, s in st.items() if s["role"] == "leader"]
        if leaders and post(f"http://{leaders[0]}:8000/op",
                            {"op": "write", "key": "x", "value": 42})["ok"]:
            out["leader"] = leaders[0]
            out["read"] = post(f"http://{leaders[0]}:8000/op", {"op": "read", "key": "x"})
            break
    except OSError:
        pass
    time.sleep(0.3)
print(json.dumps(out))
"""


def test_compose_files_bring_up_a_cluster(engine):
    """docker/compose.yaml's services, run as compose would (no compose plugin here):
    same images, commands, config files and names; no host ports published."""
    from cluster.containers import LABEL_OWNER, LABEL_RUN, _tar_file, owner_label

    compose = yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text())
    run_id = "compose-" + os.urandom(3).hex()
    labels = {LABEL_RUN: run_id, LABEL_OWNER: owner_label()}
    net = engine.networks.create(f"raftcheck-{run_id}", driver="bridge", labels=labels)
    secret = engine.volumes.create(f"raftcheck-{run_id}-peer-secret", labels=labels)
    containers = {}
    try:
        # the one-shot service that makes the cluster's peer secret runs first, to
        # completion (depends_on: service_completed_successfully)
        svc = compose["services"]["peer-secret"]
        c = engine.containers.create(
            svc["image"], entrypoint=svc["entrypoint"], name=f"raftcheck-{run_id}-secret",
            user=svc.get("user"),
            labels=labels, network_mode="none",
            volumes={secret.name: {"bind": "/secret", "mode": "rw"}})
        containers["peer-secret"] = c
        c.start()
        assert c.wait(timeout=60)["StatusCode"] == 0, c.logs().decode()[-2000:]
        for name, svc in compose["services"].items():
            if name == "peer-secret":
                continue
            named = {secret.name: {"bind": m.split(":")[1], "mode": "ro"}
                     for m in svc["volumes"] if m.split(":")[0] == "peer-secret"}
            c = engine.containers.create(
                svc["image"], command=svc["command"], name=f"raftcheck-{run_id}-{name}",
                labels=labels, network=net.name, hostname=svc["hostname"], volumes=named,
                networking_config={net.name: engine.api.create_endpoint_config(
                    aliases=[name])})
            containers[name] = c
            for mount in svc["volumes"]:
                src, dst = mount.split(":")[:2]
                if src.startswith("./"):  # a bind-mounted file: copy it in
                    c.put_archive("/", _tar_file(dst.lstrip("/"),
                                                 (DOCKER_DIR / src).read_text()))
            c.start()
        ids = [n for n in compose["services"] if n not in ("toxiproxy", "peer-secret")]
        probe = containers["n1"].exec_run(["python3", "-c", PROBE, *ids])
        assert probe.exit_code == 0, probe.output.decode()[-2000:]
        out = json.loads(probe.output.decode().strip().splitlines()[-1])
        assert len(out["proxies"]) == 20
        assert out.get("read") == {"ok": True, "value": 42}, out
    finally:
        for c in containers.values():
            c.remove(force=True, v=True)
        net.remove()
        secret.remove(force=True)
    assert objects_of(engine, lambda l: l.get(LABEL_RUN) == run_id) == []
