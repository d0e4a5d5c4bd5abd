"""Benchmark: our linearizability checker against Porcupine, in one run.

1. Porcupine's etcd corpus (102 Jepsen histories): check time per history and in
   total, ours (Python API, after parsing) and Porcupine's (the Go oracle in corpus
   mode, Porcupine's own parser and etcd model, timed around CheckEvents only).
2. Porcupine's kv c50-ok / c50-bad histories: ours with the kv model, Porcupine with
   its kv model.
3. Crash-heavy histories (30% info ops): Porcupine's "return at infinity" search
   grows exponentially with crashed ops; ours treats them as optional (Knossos).
4. Scaling: a generated linearizable history (checker.generate.generate_large:
   100,000 ops over 10 keys, 20 processes, 5% info ops), checked in a fresh child
   process: check time and peak memory (getrusage max RSS, the checker's worker
   processes included); Porcupine's time on the same file for comparison.
5. `--whole-process` (only this): what a user waits for, start-up and reading
   included: `raftcheck check` with default flags on every file of a corpus in one
   process, against the Porcupine oracle's one process on the same corpus
   (`porcupine_oracle -etcd|-kv DIR`: Go start-up, Porcupine's parser and model,
   CheckEvents), alternating, each --repeat times: wall and CPU seconds (the
   process and its children), least and median.
6. `--scale` (only this): issue 12's two 1,000,000-op shapes (10 keys, 5% info ops,
   unique values; 20 processes over all keys, or 4 processes per key), each read
   and checked in a fresh child process as `raftcheck check` does: read time, check
   time, peak RSS of the checking process and of its largest worker, and what the
   preparation pruned (`--no-prune` turns it off; `--scale-root DIR` times another
   checkout of raftcheck, e.g. the code before it).

Times are the least of --repeat runs (Porcupine's corpus is run before and after
ours, and the least time per history counts). Verdicts are printed next to Porcupine's
expectations; a difference is flagged, never hidden. No timing is asserted.

    python bench/checker.py [--repeat 3] [--large-ops 100000] [--no-large] [--json OUT]
    python bench/checker.py --scale [--scale-ops 1000000] [--no-prune] [--scale-root DIR]
    python bench/checker.py --whole-process [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from checker import porcupine_oracle  # noqa: E402
from history.formats import read_history  # noqa: E402


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def expectations(corpus: Path) -> dict[str, bool]:
    """Porcupine's expected verdicts, by file name, from its porcupine_test.go."""
    import re
    src = (corpus / "porcupine_test.go").read_text()
    out = {f"etcd_{int(n):03d}.log": v == "true" for n, v in re.findall(
        r"checkJepsen\(t, (\d+), (true|false)\)", src)}
    out.update({f"{n}.txt": v == "true" for n, v in re.findall(
        r"checkKv\(t, \"([\w-]+)\", (true|false), true\)", src)})
    return out


def time_ours(ops, model: str, repeat: int, shrink: bool, time_limit: float,
              grace: float | None = None) -> tuple[object, float]:
    """(verdict, least ms). grace 0: stop at the first failing key, as Porcupine does;
    None: the default, every key decided (within the grace after a failure)."""
    from checker import check
    best, valid = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        valid = check(ops, model=model, time_limit=time_limit, shrink=shrink,
                      failure_grace_s=grace).valid
        best = min(best, time.perf_counter() - t0)
        if best > 5:
            break  # a history that takes seconds is timed once
    return valid, best * 1000


def fmt_v(v: object) -> str:
    return {True: "true", False: "false"}.get(v, str(v))  # type: ignore[arg-type]


def corpus_run(kind: str, files: list[Path], model: str, expected: dict[str, bool],
               repeat: int, time_limit: float) -> dict:
    directory = files[0].parent
    porc = {Path(v.name).name: v for v in porcupine_oracle.check_corpus(kind, directory, repeat)}
    rows = []
    for i, p in enumerate(files, 1):
        ops = read_history(p, format="porcupine" if kind == "etcd" else "auto")
        progress(f"[{kind} {i}/{len(files)}] {p.name} ({len(ops)} ops)")
        # the question Porcupine answers (linearizable or not: stop at the first
        # failing key), then what `raftcheck check` does by default (every failing
        # key, each shrunk)
        ours_v, ours_ms = time_ours(ops, model, repeat, False, time_limit, grace=0)
        _, shrink_ms = time_ours(ops, model, 1, True, time_limit) if ours_v is False \
            else (ours_v, ours_ms)
        pv = porc[p.name]
        rows.append({"file": p.name, "ops": len(ops), "expected": expected.get(p.name),
                     "ours": ours_v, "porcupine": pv.valid, "ours_ms": ours_ms,
                     "ours_with_shrink_ms": shrink_ms, "porcupine_ms": pv.ms})
    # Porcupine again, after ours: the least time per history counts for both runs,
    # so that a burst of load on a shared machine does not favour either side
    by_file = {r["file"]: r for r in rows}
    for v in porcupine_oracle.check_corpus(kind, directory, repeat):
        row = by_file.get(Path(v.name).name)
        if row is not None:
            row["porcupine_ms"] = min(row["porcupine_ms"], v.ms)
    return {"rows": rows,
            "ours_ms": sum(r["ours_ms"] for r in rows),
            "ours_with_shrink_ms": sum(r["ours_with_shrink_ms"] for r in rows),
            "porcupine_ms": sum(r["porcupine_ms"] for r in rows),
            "equal": sum(r["ours"] is r["expected"] for r in rows),
            "count": len(rows)}


def print_corpus(title: str, res: dict) -> None:
    print(f"\n## {title}\n")
    print(f"{'file':<14}{'events':>7}  {'expect':<7}{'ours':<8}{'porc':<7}"
          f"{'ours ms':>10}{'full ms':>10}{'porc ms':>10}{'ratio':>8}")
    for r in res["rows"]:
        flag = "" if r["ours"] is r["expected"] and r["porcupine"] is r["expected"] else "  <-- DIFFERS"
        ratio = r["ours_ms"] / r["porcupine_ms"] if r["porcupine_ms"] > 0 else float("nan")
        print(f"{r['file']:<14}{r['ops']:>7}  {fmt_v(r['expected']):<7}{fmt_v(r['ours']):<8}"
              f"{fmt_v(r['porcupine']):<7}{r['ours_ms']:>10.2f}{r['ours_with_shrink_ms']:>10.2f}"
              f"{r['porcupine_ms']:>10.2f}{ratio:>8.2f}{flag}")
    ratio = res["ours_ms"] / res["porcupine_ms"] if res["porcupine_ms"] else float("nan")
    print("\n(ours: stop at the first failing key, as Porcupine; full: every failing key, "
          "shrunk, as `raftcheck check` by default)")
    print(f"\ntotal: ours {res['ours_ms']:.1f} ms (full: {res['ours_with_shrink_ms']:.1f} ms), "
          f"Porcupine {res['porcupine_ms']:.1f} ms, ratio ours/Porcupine {ratio:.2f}; "
          f"verdicts equal to Porcupine's: {res['equal']}/{res['count']}")


_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])


def hwm_mb():
    # VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the high-water mark of the parent
    # this process was forked from, so a big bench process would show up here.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


import inspect, os, threading


def tree_memory():
    # (PSS, RSS) of this process and its children, in bytes: PSS counts a page that
    # n processes share 1/n (forked workers share most of the parent's pages)
    pids = ["self"]
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids += f.read().split()
        except OSError:
            pass
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Pss:", "Rss:")):
                        kb = int(line.split()[1]) * 1024
                        if line.startswith("Pss:"):
                            pss += kb
                        else:
                            rss += kb
        except (OSError, ValueError):
            pass
    return pss, rss


peak = [0, 0]


def sample():
    while True:
        pss, rss = tree_memory()
        peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
        time.sleep(0.25)


threading.Thread(target=sample, daemon=True).start()
from history.formats import read_history
from checker import check
def cpu_s():
    # CPU seconds of this process and of its finished children (the pool's workers)
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


c0 = cpu_s()
t0 = time.perf_counter()
ops = read_history(sys.argv[2], format="jsonl")
parse_s = time.perf_counter() - t0
c1 = cpu_s()
base = hwm_mb()
kw = {}
if len(sys.argv) > 4 and "prune" in inspect.signature(check).parameters:
    kw["prune"] = sys.argv[4] == "1"   # an older checkout has no such switch
t0 = time.perf_counter()
res = check(ops, model="cas-register", time_limit=float(sys.argv[3]), **kw)
check_s = time.perf_counter() - t0
c2 = cpu_s()
print(json.dumps({"valid": res.valid, "parse_s": parse_s, "check_s": check_s,
                  "parse_cpu_s": c1 - c0, "check_cpu_s": c2 - c1,
                  "rss_after_parse_mb": base,
                  "peak_rss_mb": hwm_mb(),
                  "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "stats": res.stats,
                  "peak_pss_tree_mb": peak[0] / 2 ** 20, "peak_rss_tree_mb": peak[1] / 2 ** 20,
                  "unknown_reason": getattr(res, "to_dict", lambda: {})().get("unknown_reason")}))
"""


def large_run(ops_count: int, seed: int, time_limit: float) -> dict:
    from checker.generate import generate_large, write_jsonl
    progress(f"[large] generating {ops_count} ops (seed {seed})")
    ops = generate_large(seed, ops=ops_count)
    with tempfile.TemporaryDirectory(prefix="raftcheck-bench-") as tmp:
        path = Path(tmp) / "large.jsonl"
        write_jsonl(ops, path)
        progress(f"[large] {len(ops)} history lines, {path.stat().st_size / 1e6:.1f} MB; checking (ours)")
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), str(path), str(time_limit)],
                              capture_output=True, text=True, timeout=time_limit + 600)
        if proc.returncode != 0:
            raise RuntimeError(f"scaling child failed: {proc.stderr.strip()[-2000:]}")
        ours = json.loads(proc.stdout.strip().splitlines()[-1])
        progress("[large] checking (Porcupine)")
        porc = porcupine_oracle.check_files([path], timeout_s=time_limit)[0]
    return {"ops": ops_count, "lines": len(ops), "seed": seed, "ours": ours,
            "porcupine": {"valid": porc.valid, "ms": porc.ms}}


def print_large(res: dict) -> None:
    o, p = res["ours"], res["porcupine"]
    print(f"\n## Scaling: generated history, {res['ops']} ops ({res['lines']} lines), "
          f"10 keys, 20 processes, 5% info (seed {res['seed']})\n")
    print(f"ours:      {fmt_v(o['valid'])}, check {o['check_s']:.2f} s (parse {o['parse_s']:.2f} s), "
          f"peak RSS {o['peak_rss_mb']:.0f} MB (after parse {o['rss_after_parse_mb']:.0f} MB; "
          f"worker processes {o['peak_rss_children_mb']:.0f} MB)"
          + (f"; unknown: {o['unknown_reason']}" if o.get("unknown_reason") else ""))
    print(f"Porcupine: {fmt_v(p['valid'])}, check {p['ms'] / 1000:.2f} s")
    if p["ms"] > 0:
        print(f"ratio ours/Porcupine: {o['check_s'] * 1000 / p['ms']:.2f}")


def scale_run(shape: str, ops_count: int, seed: int, time_limit: float, root: Path,
              prune: bool) -> dict:
    """One of issue 12's 1,000,000-op shapes, read and checked in a fresh child."""
    from checker.generate import LARGE, LARGE_PER_KEY, generate, write_jsonl
    cfg = {"20-processes": LARGE, "4-per-key": LARGE_PER_KEY}[shape]
    progress(f"[scale {shape}] generating {ops_count:,} ops (seed {seed})")
    ops = generate(seed, cfg, ops=ops_count)
    with tempfile.TemporaryDirectory(prefix="raftcheck-bench-") as tmp:
        path = Path(tmp) / f"{shape}.jsonl"
        write_jsonl(ops, path)
        del ops
        progress(f"[scale {shape}] {path.stat().st_size / 1e6:.0f} MB; reading and "
                 f"checking with {root}{'' if prune else ' (no pruning)'}")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(path),
                               str(time_limit), "1" if prune else "0"],
                              capture_output=True, text=True, timeout=time_limit + 600)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"scale child failed: {proc.stderr.strip()[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update({"shape": shape, "ops": ops_count, "seed": seed, "root": str(root),
                "prune": prune, "wall_s": wall})
    return res


def print_scale(res: dict) -> None:
    st = res.get("stats", {})
    print(f"\n## Scale: {res['ops']:,} ops, 10 keys, {res['shape']}, 5% info, unique "
          f"values (seed {res['seed']}){'' if res['prune'] else ', no pruning'}\n")
    print(f"verdict {fmt_v(res['valid'])}; read {res['parse_s']:.1f} s + check "
          f"{res['check_s']:.1f} s = {res['parse_s'] + res['check_s']:.1f} s "
          f"(child process {res['wall_s']:.1f} s)")
    if "parse_cpu_s" in res:
        print(f"CPU time (load-independent; the check's workers run 2 at a time): read "
              f"{res['parse_cpu_s']:.1f} s + check {res['check_cpu_s']:.1f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    print(f"peak memory: checking process {res['peak_rss_mb']:,.0f} MB RSS (after "
          f"reading {res['rss_after_parse_mb']:,.0f} MB); with its workers "
          f"{res.get('peak_pss_tree_mb', 0):,.0f} MB PSS (pages shared by n processes "
          f"counted 1/n), {res.get('peak_rss_tree_mb', 0):,.0f} MB summed RSS (shared "
          f"pages counted in each)")
    print(f"pruned {st.get('pruned', 0):,} info ops; {st.get('interchangeable', 0):,} "
          f"interchangeable kept; {st.get('dropped', 0):,} info reads dropped; "
          f"{st.get('explored', 0):,} configurations explored"
          + (f"; unknown: {res['unknown_reason']}" if res.get("unknown_reason") else ""))


def crash_heavy_run(count: int, porcupine_timeout_s: float) -> dict:
    """Histories with many crashed (info) ops: where "return at infinity" hurts."""
    import random
    from checker import check
    from checker.generate import GenConfig, generate, mutate
    histories = []
    for seed in range(count):
        rng = random.Random(seed)
        ops = generate(seed, GenConfig(ops=rng.randint(40, 60), processes=rng.randint(4, 8),
                                       keys=1, values=3, info_rate=0.3, fail_rate=0.05))
        if seed % 2:
            ops, _ = mutate(ops, rng)
        histories.append(ops)
    progress(f"[crash-heavy] {count} histories, Porcupine (timeout {porcupine_timeout_s} s each)")
    porc = porcupine_oracle.check_histories(histories, timeout_s=porcupine_timeout_s)
    progress("[crash-heavy] ours")
    ours = []
    for ops in histories:
        t0 = time.perf_counter()
        v = check(ops, model="cas-register", time_limit=porcupine_timeout_s, shrink=False).valid
        ours.append((v, (time.perf_counter() - t0) * 1000))
    both = [(o[0], p.valid) for o, p in zip(ours, porc)
            if o[0] != "unknown" and p.valid != "unknown"]
    return {"count": count, "timeout_s": porcupine_timeout_s,
            "ours_ms": sum(ms for _, ms in ours), "porcupine_ms": sum(p.ms for p in porc),
            "ours_unknown": sum(v == "unknown" for v, _ in ours),
            "porcupine_unknown": sum(p.valid == "unknown" for p in porc),
            "decided_by_both": len(both), "equal": sum(a is b for a, b in both)}


def timed_process(cmd: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s of the process and its children, exit code) of one command."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def whole_process_run(kind: str, directory: Path, model: str, repeat: int) -> dict:
    """Ours and Porcupine's whole process on every file of a corpus, alternating."""
    import statistics
    pattern = "etcd_*.log" if kind == "etcd" else "*.txt"
    files = sorted(str(p) for p in directory.glob(pattern))
    fmt = ["--format", "porcupine"] if kind == "etcd" else []
    ours_cmd = [sys.executable, "-m", "campaign", "check", "--model", model, *fmt, *files]
    porc_cmd = [str(porcupine_oracle.build()), f"-{kind}", str(directory)]
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "porcupine": []}
    codes = {}
    for i in range(repeat):
        progress(f"[whole process, {kind}] round {i + 1}/{repeat}")
        for name, cmd in (("ours", ours_cmd), ("porcupine", porc_cmd)) if i % 2 == 0 \
                else (("porcupine", porc_cmd), ("ours", ours_cmd)):
            wall, cpu, code = timed_process(cmd)
            runs[name].append((wall, cpu))
            codes[name] = code
    out: dict = {"kind": kind, "files": len(files), "repeat": repeat, "exit": codes}
    for name, rs in runs.items():
        walls, cpus = [w for w, _ in rs], [c for _, c in rs]
        out[name] = {"wall_min": min(walls), "wall_median": statistics.median(walls),
                     "cpu_min": min(cpus), "cpu_median": statistics.median(cpus)}
    return out


def print_whole_process(res: dict) -> None:
    o, p = res["ours"], res["porcupine"]
    print(f"\n## Whole process, {res['kind']} corpus ({res['files']} files in one process), "
          f"{res['repeat']} alternating runs each (exit codes: {res['exit']})\n")
    print(f"{'':<12}{'wall min':>10}{'wall median':>13}{'CPU min':>10}{'CPU median':>12}")
    for name, r in (("ours", o), ("Porcupine", p)):
        print(f"{name:<12}{r['wall_min']:>10.3f}{r['wall_median']:>13.3f}"
              f"{r['cpu_min']:>10.3f}{r['cpu_median']:>12.3f}")
    print(f"{'ratio':<12}{o['wall_min'] / p['wall_min']:>10.2f}"
          f"{o['wall_median'] / p['wall_median']:>13.2f}"
          f"{o['cpu_min'] / p['cpu_min']:>10.2f}{o['cpu_median'] / p['cpu_median']:>12.2f}")


def print_crash_heavy(res: dict) -> None:
    print(f"\n## Crash-heavy histories: {res['count']} generated, 40-60 ops, one key, "
          f"4-8 processes, 30% info (half mutated); budget {res['timeout_s']} s each\n")
    print(f"ours:      total {res['ours_ms']:.0f} ms, unknown {res['ours_unknown']}")
    print(f"Porcupine: total {res['porcupine_ms']:.0f} ms, unknown {res['porcupine_unknown']}")
    print(f"verdicts equal where both decided: {res['equal']}/{res['decided_by_both']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per history; the least time counts")
    ap.add_argument("--large-ops", type=int, default=100_000)
    ap.add_argument("--large-seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=60.0,
                    help="our checker's time budget per corpus history (s); over it: unknown")
    ap.add_argument("--large-time-limit", type=float, default=300.0)
    ap.add_argument("--no-large", action="store_true", help="skip the scaling run")
    ap.add_argument("--crash-heavy", type=int, default=60, metavar="N",
                    help="how many crash-heavy histories to time (30%% info ops)")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    ap.add_argument("--scale", action="store_true",
                    help="only issue 12's two 1,000,000-op shapes (time and peak memory)")
    ap.add_argument("--scale-ops", type=int, default=1_000_000)
    ap.add_argument("--scale-shape", choices=("20-processes", "4-per-key"), action="append",
                    help="only this shape (repeatable; default both)")
    ap.add_argument("--scale-root", type=Path, default=ROOT,
                    help="the raftcheck checkout whose checker is timed (default this one)")
    ap.add_argument("--no-prune", action="store_true", help="--scale without the pruning")
    ap.add_argument("--whole-process", action="store_true",
                    help="only the whole-process comparison on the etcd and kv corpora")
    args = ap.parse_args(argv)
    if args.whole_process:
        corpus = porcupine_oracle.porcupine_dir()
        print(f"# raftcheck check vs Porcupine, whole process, "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"python {platform.python_version()}, {platform.machine()}, "
              f"{os.cpu_count()} cpus; Porcupine {porcupine_oracle.PORCUPINE_VERSION}")
        runs = [whole_process_run("etcd", corpus / "test_data" / "jepsen", "cas-register",
                                  args.repeat),
                whole_process_run("kv", corpus / "test_data" / "kv", "kv", args.repeat)]
        for r in runs:
            print_whole_process(r)
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1))
        return 0
    if args.scale:
        print(f"# raftcheck checker scale, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"python {platform.python_version()}, {platform.machine()}, "
              f"{os.cpu_count()} cpus")
        runs = [scale_run(shape, args.scale_ops, args.large_seed, args.large_time_limit,
                          args.scale_root.resolve(), not args.no_prune)
                for shape in args.scale_shape or ("20-processes", "4-per-key")]
        for r in runs:
            print_scale(r)
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1, default=str))
        return 0

    corpus = porcupine_oracle.porcupine_dir()
    expected = expectations(corpus)
    etcd_files = sorted(p for p in (corpus / "test_data" / "jepsen").glob("etcd_*.log")
                        if p.name in expected)
    kv_files = [corpus / "test_data" / "kv" / n for n in ("c50-ok.txt", "c50-bad.txt")]
    print(f"# raftcheck checker benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus; "
          f"Porcupine {porcupine_oracle.PORCUPINE_VERSION}; least of {args.repeat} runs")
    figures: dict = {"date": datetime.now(timezone.utc).isoformat(), "repeat": args.repeat}

    figures["etcd"] = corpus_run("etcd", etcd_files, "cas-register", expected, args.repeat,
                                 args.time_limit)
    print_corpus("Porcupine etcd corpus (102 histories), model cas-register", figures["etcd"])
    kv = corpus_run("kv", kv_files, "kv", expected, args.repeat,
                                 args.time_limit)
    figures["kv"] = kv
    print_corpus("Porcupine kv c50-ok / c50-bad, model kv", kv)
    figures["crash_heavy"] = crash_heavy_run(args.crash_heavy, 1.0)
    print_crash_heavy(figures["crash_heavy"])
    if not args.no_large:
        figures["large"] = large_run(args.large_ops, args.large_seed, args.large_time_limit)
        print_large(figures["large"])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
