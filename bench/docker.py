"""Benchmark of the docker backend: image build times and run overhead vs local.

    python bench/docker.py [--cold] [--repeat N] [--run-seconds S]

Figures printed (no assertions; timings depend on the machine):
  - image builds: warm (everything up to date: the label check only), after a code
    change (the dependency layers cached), and, with
    --cold, cold (the base image debootstrapped anew, the node and toxiproxy images
    built with --no-cache), under separate ":bench" tags that are removed afterwards;
  - cluster life cycle, docker vs local: start (until every node answers /status),
    kill + restart of one node, pause + resume, teardown; median of --repeat runs;
  - a whole `raftcheck test` of --run-seconds seconds of load with each backend
    (partition and kill): wall time and its overhead over the load time.
Needs a Docker engine, the images and the toxiproxy server (see docs/docker.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and this file would
# shadow the `docker` SDK: drop the folder, put the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cluster.base import make_cluster  # noqa: E402


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def sh(script: str, env: dict | None = None) -> float:
    """Run a repo script; return its wall time (raises if it fails)."""
    t0 = time.monotonic()
    subprocess.run(["bash", script], cwd=ROOT, check=True, env=dict(os.environ, **(env or {})),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def bench_builds(cold: bool) -> None:
    print("image builds")
    changed = sh("docker/build-images.sh")  # brings them up to date (layer cache)
    print(f"  warm (up to date): base {sh('docker/base-image.sh'):.2f} s, "
          f"node + toxiproxy {sh('docker/build-images.sh'):.2f} s")
    print(f"  node + toxiproxy right before (rebuilt if a source changed since the last "
          f"build; layer cache): {changed:.1f} s")
    if not cold:
        print("  cold: skipped (pass --cold; takes about two minutes)")
        return
    tags = {"RAFTCHECK_BASE_IMAGE": "raftcheck/base:bench",
            "RAFTCHECK_NODE_IMAGE": "raftcheck/node:bench",
            "RAFTCHECK_TOXIPROXY_IMAGE": "raftcheck/toxiproxy:bench"}
    try:
        base = sh("docker/base-image.sh", {"RAFTCHECK_BASE_IMAGE": tags["RAFTCHECK_BASE_IMAGE"]})
        images = sh("docker/build-images.sh", dict(tags, BASE_IMAGE=tags["RAFTCHECK_BASE_IMAGE"],
                                                  FORCE="1", NO_CACHE="1"))
        print(f"  cold: base (debootstrap + import) {base:.1f} s, node + toxiproxy "
              f"(--no-cache) {images:.1f} s, total {base + images:.1f} s")
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *tags.values()], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench_lifecycle(repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for backend in ("local", "docker"):
        samples: dict[str, list[float]] = {"start": [], "kill+restart": [],
                                           "pause+resume": [], "teardown": []}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as d:
                c = make_cluster(backend, 3, d)
                try:
                    samples["start"].append(timed(c.start))
                    samples["kill+restart"].append(
                        timed(lambda: (c.kill("n2"), c.restart("n2"))))
                    samples["pause+resume"].append(
                        timed(lambda: (c.pause("n3"), c.resume("n3"))))
                finally:
                    samples["teardown"].append(timed(c.teardown))
        out[backend] = {k: statistics.median(v) for k, v in samples.items()}
    print(f"cluster life cycle, 3 nodes, median of {repeat}")
    print(f"  {'step':<14}{'local s':>9}{'docker s':>10}{'ratio':>8}")
    for step in out["local"]:
        lo, do = out["local"][step], out["docker"][step]
        print(f"  {step:<14}{lo:>9.2f}{do:>10.2f}{do / lo if lo else float('nan'):>8.1f}")
    return out


def bench_runs(seconds: int) -> None:
    print(f"whole runs: raftcheck test --nodes 3 --time-limit {seconds} "
          f"--nemesis partition,kill --nemesis-interval 4 --seed 1")
    for backend in ("local", "docker"):
        with tempfile.TemporaryDirectory(prefix=f"bench-run-{backend}-") as d:
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "campaign", "test", "--backend",
                                backend, "--nodes", "3", "--time-limit", str(seconds),
                                "--nemesis", "partition,kill", "--nemesis-interval", "4",
                                "--seed", "1",
                                "--store", d], cwd=ROOT, capture_output=True, text=True)
            wall = time.monotonic() - t0
            ops = next((ln for ln in r.stdout.splitlines() if ln.startswith("ops:")), "?")
            print(f"  {backend:<7} exit {r.returncode}  wall {wall:5.1f} s  overhead "
                  f"{wall - seconds:5.1f} s  ({ops})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cold", action="store_true", help="also time cold image builds")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--run-seconds", type=int, default=20)
    args = p.parse_args()
    bench_builds(args.cold)
    bench_lifecycle(args.repeat)
    bench_runs(args.run_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
