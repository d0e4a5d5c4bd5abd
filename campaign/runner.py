"""A test run: one cluster, one workload, one nemesis, one verdict, one store folder.

The run's life: create the store folder and test.json; start the cluster; drive it with
the register workload while the nemesis thread injects faults; heal every fault and
read every key (the final phase); tear the cluster down (always, in a `finally`, also
on Ctrl-C); then check the history, compute the stats, apply the vacuity rule, write
results.json and report.html, and print the verdict with the folder. A report that
cannot be drawn is a warning in results.json, never a change of verdict.

Size: over 600 lines, because `TestOptions` (every run option and its validation) and
`run_test` (one run's life, whose steps share its state and its error handling) are
one concept: what a run is.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import checker
from history.errors import BadInput
from history.formats import write_txt
from history.ops import FAIL, INFO, OK, Op
from history.writer import HistoryWriter
from campaign import evidence
from cluster.local import node_command_argv
from campaign import stats as stats_mod
from campaign import store
from nemesis import partition, process, schedule
from node import bugs as node_bugs
from workloads.register import RegisterWorkload, WorkloadOptions

log = logging.getLogger("raftcheck.runner")

FAULTS = schedule.FAULTS
DEFAULT_NEMESIS = FAULTS         # every fault kind
BUGS = tuple(sorted(node_bugs.BUGS))
BACKENDS = ("local", "docker")
CRASH_FS = ("auto", "on", "off")
SUMMARY_LINES = 40             # lines of the checker's explanation printed after a run
CHECK_MEMORY_LIMIT_MB = 1024   # the search's memory budget, as `raftcheck check`'s default
TARGETS = process.TARGETS
SHAPES = partition.SHAPES
ATTEMPT_SLACK_S = 0.5          # a client waits the nodes' commit wait plus this per attempt

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 254, 255
# How bad an exit code is, for "the worst over several runs": a violation found is the
# headline, then a crashed run, then an inconclusive one.
_SEVERITY = {EXIT_VALID: 0, EXIT_UNKNOWN: 1, EXIT_INTERNAL: 2, EXIT_INVALID: 3,
             EXIT_BAD_INPUT: 4}


def worst_exit(codes: list[int]) -> int:
    """The worst of several exit codes (invalid > crashed > unknown > valid)."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 2), default=EXIT_VALID)


def exit_code(valid: Any) -> int:
    return EXIT_VALID if valid is True else EXIT_INVALID if valid is False else EXIT_UNKNOWN


@dataclass
class TestOptions:
    """Every option of one run (written to test.json; enough to rerun it).

    The defaults are chosen to find bugs (docs/usage.md, "Why these defaults"): 200
    ops/s offered by 4 clients per node on fast-rotating keys, retried with the same
    client/seq; every fault kind, overlapping, a fault started or stopped about every
    half second, following the leader; nodes that answer a slow op after 0.5 s, and
    clients that wait for that answer (1 s per attempt) and try again, so that a
    client stuck on a paused or deposed leader asks it again soon.
    """

    name: str = "register"
    nodes: int = 3
    time_limit: float = 30.0
    rate: float = 200.0
    concurrency: str = "4n"
    readers: str = "1n"
    nemesis: list[str] = field(default_factory=lambda: list(DEFAULT_NEMESIS))
    nemesis_interval: float = schedule.DEFAULT_INTERVAL_S
    nemesis_targets: list[str] | None = None
    partition_shapes: list[str] | None = None
    leader_bias: float = schedule.DEFAULT_LEADER_BIAS
    seed: int = 0
    backend: str = "local"
    bug: list[str] | None = None
    crash_fs: str = "auto"
    store: str = "store"
    ops_per_key: int = 50
    check_time_limit: float = 20.0
    op_timeout: float = 5.0
    commit_wait: float = 0.5
    retry: bool = True
    final_timeout: float = 10.0
    min_ok: int = stats_mod.DEFAULT_MIN_OK
    node_options: dict | None = None
    base_port: int | None = None   # local backend: fixed ports instead of free ones
    node_command: str | None = None  # local backend: run this instead of our node
    node_image: str | None = None    # docker backend: run this image instead of ours

    def workers(self) -> int:
        """The number of client processes: N, or N per node for "Nn"."""
        return parse_concurrency(self.concurrency, self.nodes)

    def read_only_workers(self) -> int:
        """The number of read-only client processes: N, or N per node for "Nn"."""
        return parse_concurrency(self.readers, self.nodes, "readers", minimum=0)

    def attempt_timeout(self) -> float:
        """How long a client waits for one node's answer: the nodes' commit wait plus
        a margin, so that a node's own answer to a slow op reaches the client."""
        return min(self.op_timeout, self.commit_wait + ATTEMPT_SLACK_S)

    def cluster_node_options(self) -> dict:
        """node_options for the cluster file, with the commit wait as the nodes'
        request_timeout_ms."""
        out = dict(self.node_options or {})
        out["request_timeout_ms"] = int(round(self.commit_wait * 1000))
        return out

    def warnings(self) -> list[str]:
        """Valid but unwise settings, said in the run's output and results.json."""
        out = []
        if self.op_timeout <= self.commit_wait:
            out.append(f"op_timeout ({self.op_timeout:g} s) is not longer than "
                       f"commit_wait ({self.commit_wait:g} s): clients give up before a "
                       "node answers a slow op")
        return out

    def validate(self) -> "TestOptions":
        """Raise BadInput (naming the field) for any value that cannot run."""
        store.check_name(self.name)
        _positive_int(self.nodes, "nodes", maximum=15)
        for f in ("time_limit", "rate", "nemesis_interval", "check_time_limit",
                  "op_timeout", "commit_wait", "final_timeout"):
            _positive_number(getattr(self, f), f)
        _positive_int(self.ops_per_key, "ops_per_key")
        if not isinstance(self.min_ok, int) or self.min_ok < 0:
            raise BadInput(f"must be a non-negative integer, got {self.min_ok!r}",
                           field="min_ok")
        self.workers()
        self.read_only_workers()
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise BadInput(f"must be an integer, got {self.seed!r}", field="seed")
        if not isinstance(self.retry, bool):
            raise BadInput(f"must be true or false, got {self.retry!r}", field="retry")
        if isinstance(self.leader_bias, bool) or not isinstance(self.leader_bias, (int, float)) \
                or not 0 <= self.leader_bias <= 1:
            raise BadInput(f"must be a number from 0 to 1, got {self.leader_bias!r}",
                           field="leader_bias")
        _choices(self.nemesis, FAULTS, "nemesis", "fault", extra=", or none")
        if self.nemesis_targets is not None:
            _choices(self.nemesis_targets, TARGETS, "nemesis_targets", "target")
        if self.partition_shapes is not None:
            _choices(self.partition_shapes, SHAPES, "partition_shapes", "partition shape")
        if self.backend not in BACKENDS:
            raise BadInput(f"unknown backend {self.backend!r} (choose from "
                           f"{', '.join(BACKENDS)})", field="backend")
        if isinstance(self.bug, str):
            self.bug = [b.strip() for b in self.bug.split(",") if b.strip()]
        if self.bug is not None:
            if not isinstance(self.bug, list):
                raise BadInput(f"expected a list of bug names, got {self.bug!r}",
                               field="bug")
            _choices(self.bug, BUGS, "bug", "bug")
            self.bug = list(dict.fromkeys(self.bug)) or None
        if self.crash_fs is True or self.crash_fs is False:
            self.crash_fs = "on" if self.crash_fs else "off"
        if self.crash_fs not in CRASH_FS:
            raise BadInput(f"expected one of {', '.join(CRASH_FS)}, got {self.crash_fs!r}",
                           field="crash_fs")
        if self.base_port is not None:
            _positive_int(self.base_port, "base_port", maximum=65535)
        if self.node_command is not None:
            node_command_argv(self.node_command)
            if self.backend != "local":
                raise BadInput("a node command runs on the local backend; with docker, "
                               "give node_image", field="node_command")
        if self.node_image is not None:
            if not isinstance(self.node_image, str) or not self.node_image.strip():
                raise BadInput("expected an image name", field="node_image")
            if self.backend != "docker":
                raise BadInput("a node image runs on the docker backend; locally, give "
                               "node_command", field="node_image")
        if self.node_options is not None:
            if not isinstance(self.node_options, dict):
                raise BadInput("must be a mapping", field="node_options")
            if "request_timeout_ms" in self.node_options:
                raise BadInput("set the nodes' commit wait with commit_wait (seconds), "
                               "not request_timeout_ms", field="node_options")
        return self


def _choices(values: Any, allowed: tuple[str, ...], field_name: str, what: str,
             extra: str = "") -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise BadInput(f"unknown {what} {bad[0]!r} (choose from {', '.join(allowed)}"
                       f"{extra})", field=field_name)


def _positive_int(v: Any, name: str, maximum: int | None = None) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise BadInput(f"must be a positive integer, got {v!r}", field=name)
    if maximum is not None and v > maximum:
        raise BadInput(f"must be at most {maximum}, got {v}", field=name)


def _positive_number(v: Any, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise BadInput(f"must be a positive number, got {v!r}", field=name)


def parse_concurrency(spec: Any, nodes: int, field: str = "concurrency",
                      minimum: int = 1) -> int:
    """ "6" -> 6 workers; "2n" -> 2 per node."""
    text = str(spec).strip()
    m = re.fullmatch(r"([0-9]+)(n?)", text)
    if not m or int(m.group(1)) < minimum:
        raise BadInput(f"expected N or Nn (N per node), got {spec!r}", field=field)
    n = int(m.group(1)) * (nodes if m.group(2) else 1)
    if n > 1000:
        raise BadInput(f"at most 1000 client processes, got {n}", field=field)
    return n


@dataclass
class RunOutcome:
    """What one run produced."""

    run_dir: Path
    valid: Any
    exit_code: int
    results: dict
    error: str | None = None


# -- progress -----------------------------------------------------------------

class Progress:
    """The progress line on stderr: live on a terminal, plain periodic lines otherwise."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.live = stream.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")
        self.interval = 0.5 if self.live else 5.0
        self.phase = "setup"
        self.source: Callable[[], dict] = lambda: {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._last = (self._t0, 0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def _line(self) -> str:
        s = self.source()
        now = time.monotonic()
        done = s.get("ok", 0) + s.get("fail", 0) + s.get("info", 0)
        t_last, n_last = self._last
        rate = (done - n_last) / (now - t_last) if now > t_last else 0.0
        self._last = (now, done)
        fault = s.get("fault") or "none"
        return (f"[{self.label}] {now - self._t0:6.1f}s {self.phase:<8} {rate:6.1f} ops/s  "
                f"ok {s.get('ok', 0)}  fail {s.get('fail', 0)}  info {s.get('info', 0)}  "
                f"fault: {fault}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.emit()

    def emit(self) -> None:
        line = self._line()
        if self.live:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, message: str) -> None:
        """A one-off message (clears the live line first)."""
        if self.live:
            self.stream.write("\r\x1b[2K")
        self.stream.write(f"[{self.label}] {message}\n")
        self.stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.live:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


# -- check and results --------------------------------------------------------

def write_history_txt(ops: list[Op], path: Path) -> None:
    write_txt(ops, path)


def check_history(ops: list[Op], test: dict, final_start_ns: int | None = None,
                  progress: Progress | None = None) -> tuple[dict, Any]:
    """Check `ops` and compute the stats: (results dict, CheckResult or None)."""
    opts = test.get("options", {})
    t0 = time.monotonic()
    check_result = checker.check(ops, model="cas-register",
                                 time_limit=opts.get("check_time_limit"),
                                 memory_limit_mb=CHECK_MEMORY_LIMIT_MB)
    linearizable = check_result.to_dict()
    check_s = time.monotonic() - t0
    st = stats_mod.compute(ops, final_start_ns)
    faults_requested = bool(opts.get("nemesis"))
    reason = stats_mod.vacuity(st, faults_requested, opts.get(
        "min_ok", stats_mod.DEFAULT_MIN_OK), check_result.nothing_observed)
    checkers = {"linearizable": linearizable,
                "vacuity": {"valid": "unknown" if reason else True, "reason": reason}}
    valid = stats_mod.worst(c.get("valid") for c in checkers.values())
    results = {"valid": valid, "checkers": checkers, "stats": st,
               "timing": {"check_s": round(check_s, 3)}, "warnings": []}
    return results, check_result


def render(run_dir: Path, ops: list[Op], results: dict, test: dict | None) -> list[str]:
    """report.html via report.page; problems become warnings."""
    from report.page import render_report  # here: it loads matplotlib
    try:
        return list(render_report(ops, results, test, run_dir / store.REPORT_HTML) or [])
    except Exception as e:  # a drawing problem never changes a verdict
        log.debug("report failed", exc_info=True)
        return [f"report.html not written: {type(e).__name__}: {e}"]


def summary_lines(results: dict, check_result: Any = None) -> list[str]:
    """The verdict for a person, Jepsen-style: counts, faults, anomalies."""
    st = results.get("stats", {})
    bt = st.get("by_type", {})
    lines = [f"ops: {st.get('ops', 0)} (ok {bt.get('ok', 0)}, fail {bt.get('fail', 0)}, "
             f"info {bt.get('info', 0)})"]
    faults = st.get("faults", {})
    if faults:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(faults.get("by_kind", {}).items()))
        avail = st.get("availability_during_faults")
        lines.append(f"faults: {faults.get('count', 0)}" + (f" ({kinds})" if kinds else "")
                     + (f"; availability during faults {avail:.1%}"
                        if avail is not None else ""))
    lin = results.get("checkers", {}).get("linearizable", {})
    lines.append(f"linearizable: {json.dumps(lin.get('valid'))}"
                 + (f" ({len(lin.get('keys', {}))} keys)" if lin.get("keys") else ""))
    if lin.get("unknown_reason") or lin.get("error"):
        lines.append(f"  {lin.get('unknown_reason') or lin.get('error')}")
    if lin.get("valid") is False:
        text = None
        if check_result is not None:
            try:
                text = check_result.explain()
            except Exception:
                text = None
        if not text:
            text = "\n".join(f"key {f.get('key')}: line {f.get('line')}: {f.get('reason')}"
                             for f in lin.get("failures", []))
        shown = text.splitlines()
        lines.extend("  " + x for x in shown[:SUMMARY_LINES])
        if len(shown) > SUMMARY_LINES:
            lines.append(f"  ... {len(shown) - SUMMARY_LINES} more lines: every failure is "
                         f"in results.json and report.html")
    vac = results.get("checkers", {}).get("vacuity", {})
    if vac.get("reason"):
        lines.append(f"vacuous: {vac['reason']}")
    for w in results.get("warnings", []):
        lines.append(f"warning: {w}")
    return lines


# -- one run ------------------------------------------------------------------

def _test_json(options: TestOptions, campaign: dict | None = None) -> dict:
    extra = {"campaign": campaign} if campaign else {}
    return {"name": options.name, "seed": options.seed, "options": asdict(options), **extra,
            "workers": options.workers(), "readers": options.read_only_workers(),
            "workload": "register",
            "model": "cas-register", "command": sys.argv,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "git": store.git_revision(), "versions": store.versions()}


def run_test(options: TestOptions, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr, campaign: dict | None = None) -> RunOutcome:
    """Run one test end to end; see the module docstring. Ctrl-C propagates (after
    tear-down, with the history kept). `campaign` (the campaign's name and file, the
    run's cell and the number of cells) goes into test.json for `raftcheck summary`."""
    from cluster.base import make_cluster

    options.validate()
    crash_fs, why_not = resolve_crash_fs(options)  # before the folder: may be BadInput
    t_start = time.monotonic()
    run_dir = store.new_run_dir(options.store, options.name)
    test = _test_json(options, campaign)
    store.write_json(run_dir / store.TEST_JSON, test)
    progress = Progress(err, f"{options.name} seed {options.seed}")
    history = HistoryWriter(run_dir / store.HISTORY_JSONL)
    timing: dict[str, float] = {}
    final_start_ns: int | None = None
    nemesis = None
    workload: RegisterWorkload | None = None
    stop = threading.Event()
    nemesis_thread: threading.Thread | None = None
    crashed: BaseException | None = None
    nemesis_errors: list[BaseException] = []
    backend_options: dict[str, Any] = ({} if options.base_port is None
                                       else {"base_port": options.base_port})
    if options.node_command is not None:
        backend_options["node_command"] = node_command_argv(options.node_command)
    if options.node_image is not None:
        backend_options["node_image"] = options.node_image
    cluster = None
    exits: list[dict] | None = None
    warnings = options.warnings()
    if why_not:
        warnings.append(why_not)
    test["run"] = {"crash_fs": crash_fs}
    store.write_json(run_dir / store.TEST_JSON, test)

    def source() -> dict:
        c = workload.counts if workload else {}
        return {"ok": c.get(OK, 0), "fail": c.get(FAIL, 0), "info": c.get(INFO, 0),
                "fault": getattr(nemesis, "active", None)}

    progress.source = source
    progress.start()
    try:
        try:
            cluster = make_cluster(options.backend, options.nodes, run_dir,
                                   bug=",".join(options.bug or []) or None,
                                   node_options=options.cluster_node_options(),
                                   crash_fs=crash_fs, **backend_options)
            cluster.start()
            timing["setup_s"] = time.monotonic() - t_start
            store.update_latest(run_dir)
            progress.say(f"cluster of {options.nodes} up in {timing['setup_s']:.1f}s; "
                         f"run folder {run_dir}")
            for w in warnings:
                progress.say(f"warning: {w}")
            urls = {n: cluster.client_url(n) for n in cluster.node_ids}
            workload = RegisterWorkload(
                history, urls, WorkloadOptions(
                    rate=options.rate, concurrency=options.workers(),
                    readers=options.read_only_workers(),
                    time_limit=options.time_limit, ops_per_key=options.ops_per_key,
                    op_timeout=options.op_timeout,
                    attempt_timeout=options.attempt_timeout(), retry=options.retry,
                    final_timeout=options.final_timeout),
                seed=options.seed, client_prefix=f"{run_dir.name}-")
            asyncio.run(workload.wait_for_leader(10.0))  # bounded: a leader, or go on
            timing["setup_s"] = time.monotonic() - t_start
            if options.nemesis:
                nemesis = schedule.Nemesis(
                    cluster, list(options.nemesis), options.nemesis_interval,
                    options.seed, history, targets=options.nemesis_targets,
                    shapes=options.partition_shapes, leader_bias=options.leader_bias)
                nemesis_thread = threading.Thread(target=_guard, args=(nemesis.run, stop,
                                                  nemesis_errors), name="nemesis",
                                                  daemon=True)
            progress.phase = "load"
            t_load = time.monotonic()
            if nemesis_thread is not None:
                nemesis_thread.start()
            asyncio.run(workload.run())
            timing["load_s"] = time.monotonic() - t_load
            progress.phase = "final"
            t_final = time.monotonic()
            stop.set()
            if nemesis_thread is not None:
                nemesis_thread.join(timeout=schedule.JOIN_S + 30)
                if nemesis_errors:
                    raise nemesis_errors[0]
                nemesis.heal_all()
                warnings.extend(nemesis.abandoned)
            final_start_ns = history.now()
            asyncio.run(workload.final_reads())
            timing["final_s"] = time.monotonic() - t_final
        finally:
            stop.set()
            progress.phase = "teardown"
            t_down = time.monotonic()
            if nemesis_thread is not None and nemesis_thread.is_alive():
                nemesis_thread.join(timeout=10)
            if cluster is not None:
                try:
                    cluster.collect_logs(run_dir)
                except Exception as e:  # logs are evidence, not a verdict
                    log.warning("collecting logs failed: %s", e)
                cluster.teardown()
                exits = _unexpected_exits(cluster)
            history.close()
            timing["teardown_s"] = time.monotonic() - t_down
    except (KeyboardInterrupt, SystemExit):
        progress.stop()
        progress.say(f"interrupted: cluster torn down, history kept in {run_dir}")
        _write_partial(run_dir, history.ops, "interrupted (Ctrl-C)", timing)
        raise
    except BadInput:
        progress.stop()
        if not history.ops:  # nothing ran (no toxiproxy, a busy port): leave no folder
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            _write_partial(run_dir, history.ops, "bad input", timing)
        raise
    except Exception as e:
        crashed = e
        log.debug("run crashed", exc_info=True)
    progress.phase = "check"
    ops = history.ops
    write_history_txt(ops, run_dir / store.HISTORY_TXT)
    if crashed is not None:
        progress.stop()
        store.update_latest(run_dir)
        msg = f"{type(crashed).__name__}: {crashed}"
        results = _write_partial(run_dir, ops, f"run crashed: {msg}", timing)
        print(f"CRASHED: {msg}\n{run_dir}", file=out)
        return RunOutcome(run_dir, "unknown", EXIT_INTERNAL, results, error=msg)
    try:
        results, check_result = check_history(ops, test, final_start_ns)
    except Exception as e:  # the checker crashed: keep everything, say so
        log.debug("check crashed", exc_info=True)
        progress.stop()
        msg = f"{type(e).__name__}: {e}"
        results = _write_partial(run_dir, ops, f"check crashed: {msg}", timing)
        print(f"CRASHED: {msg}\n{run_dir}", file=out)
        return RunOutcome(run_dir, "unknown", EXIT_INTERNAL, results, error=msg)
    t_evidence = time.monotonic()
    checks = evidence.check_run(run_dir, cluster.node_ids, exits, ops)
    if options.node_command is not None or options.node_image is not None:
        evidence.leave_out_missing_invariants(checks, results)
    evidence.add_to_results(results, checks)
    timing["evidence_s"] = time.monotonic() - t_evidence
    progress.stop()
    timing.update(results["timing"])
    results["final_start_ns"] = final_start_ns
    t_report = time.monotonic()
    results["timing"] = {k: round(v, 3) for k, v in timing.items()}
    results["warnings"].extend(warnings)
    results["warnings"].extend(render(run_dir, ops, results, test))
    timing["report_s"] = time.monotonic() - t_report
    timing["total_s"] = time.monotonic() - t_start
    results["timing"] = {k: round(v, 3) for k, v in timing.items()}
    store.write_json(run_dir / store.RESULTS_JSON, results)
    test["run"] = {"final_start_ns": final_start_ns, "timing": results["timing"],
                   "crash_fs": crash_fs}
    store.write_json(run_dir / store.TEST_JSON, test)
    print(f"{options.name}: {options.nodes} nodes, seed {options.seed}, nemesis "
          f"{','.join(options.nemesis) or 'none'}"
          + (f", bug {','.join(options.bug)}" if options.bug else ""), file=out)
    for line in summary_lines(results, check_result) + evidence.summary_lines(results):
        print(line, file=out)
    print(evidence.verdict_line(results), file=out)
    print(f"{run_dir}", file=out)
    out.flush()
    return RunOutcome(run_dir, results["valid"], exit_code(results["valid"]), results)


def resolve_crash_fs(options: TestOptions) -> tuple[bool, str | None]:
    """Whether kills lose unsynced writes in this run, and why not when `auto` had
    to say no (a warning). `on` without a usable crash file system is a BadInput."""
    if options.crash_fs == "off":
        return False, None
    from cluster import faultfs
    why = faultfs.available()
    if why is None:
        return True, None
    if options.crash_fs == "on":
        raise BadInput(f"crash_fs is on, but {why}", field="crash_fs")
    return False, f"crash_fs off: {why}; killed nodes keep their unsynced writes"


def _unexpected_exits(cluster: Any) -> list[dict] | None:
    """The node processes that ended on their own (None: the backend cannot tell)."""
    try:
        return list(cluster.unexpected_exits())
    except Exception as e:  # evidence, not a verdict: node-health falls back to the logs
        log.warning("reading the unexpected exits failed: %s", e)
        return None


def _guard(fn: Callable, stop: threading.Event, errors: list[BaseException]) -> None:
    """Run the nemesis; keep its exception for the main thread (a failed fault or
    heal makes the run crash: the history after it would mean nothing)."""
    try:
        fn(stop)
    except BaseException as e:  # noqa: BLE001 - handed to the main thread
        log.error("nemesis failed: %s", e)
        errors.append(e)


def _write_partial(run_dir: Path, ops: list[Op], why: str, timing: dict) -> dict:
    """results.json for a run that did not finish: never a verdict of valid."""
    try:
        write_history_txt(ops, run_dir / store.HISTORY_TXT)
    except OSError:
        pass
    try:
        st: dict = stats_mod.compute(ops)
    except Exception as e:  # never lose the partial results over a statistic
        st = {"error": f"{type(e).__name__}: {e}"}
    results = {"valid": "unknown", "checkers": {}, "stats": st,
               "error": why, "timing": {k: round(v, 3) for k, v in timing.items()},
               "warnings": [f"{why}: run `raftcheck analyze {run_dir}` to check what "
                            "was recorded"]}
    store.write_json(run_dir / store.RESULTS_JSON, results)
    return results
