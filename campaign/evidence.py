"""What a run checks besides linearizability: the nodes' health and Raft's invariants.

A history can be linearizable while the cluster under it is broken: a node that
stopped on its own safety check, two leaders in one term, logs that disagree at a
committed index. After each run (and on `raftcheck analyze`), `check_run` reads the
evidence the nodes left in the run folder and returns two checkers for results.json
(docs/spec.md section 8), each `{"valid", "violations", "checked", ...}`:

- `node-health`: every node process that ended without the nemesis killing it or
  teardown stopping it (the cluster's `unexpected_exits()`), every "fatal" event, and
  every ERROR record or stray traceback in run_dir/nodes/<id>.log (campaign.node_logs),
  plus a WAL that can no longer be recovered;
- `raft-invariants`: checker.invariants on each node's durable state
  (run_dir/data/<id>/raft.wal, decoded by node.shell.storage.decode_wal) and its event
  lines.

Violations that name a log line get an excerpt of the log around it ("excerpts"), so
the report can show what the node was doing; divergent logs come with their entries
side by side (checker.invariants). Missing evidence makes a check "unknown", never a
failure. A run's verdict is the worst of all its checkers (`add_to_results`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from checker.invariants import DurableState, NodeEvidence, check_invariants
from campaign.node_logs import NodeLog, excerpt, read_node_log
from campaign.stats import worst

log = logging.getLogger("raftcheck.evidence")

CHECKERS = ("node-health", "raft-invariants")
MAX_EXCERPTS = 4          # log excerpts per violation
MAX_HEALTH_DETAILS = 50
SUMMARY_VIOLATIONS = 20   # violation lines printed per checker


def has_evidence(run_dir: Path | str) -> bool:
    """Whether the folder holds anything of the nodes (nodes/ or data/): a folder
    with only a history (an imported one) has nothing for these checkers."""
    return any((Path(run_dir) / sub).is_dir() and any((Path(run_dir) / sub).iterdir())
               for sub in ("nodes", "data"))


def check_run(run_dir: Path | str, node_ids: list[str],
              unexpected_exits: list[dict] | None, ops: list | None = None
              ) -> dict[str, dict]:
    """Both checkers on the evidence in `run_dir`. `unexpected_exits` is the cluster's
    list (None: not recorded, e.g. an older stored run); `ops`, the run's history,
    adds the `exactly-once` invariant. Never raises: a checker that fails is
    "unknown" with its error."""
    run_dir = Path(run_dir)
    logs: dict[str, NodeLog | None] = {}
    nodes: list[NodeEvidence] = []
    wal_problems: dict[str, str] = {}
    for nid in node_ids:
        ev = NodeEvidence(nid)
        logs[nid] = None
        try:
            logs[nid] = _read_log(run_dir, nid, ev)
            _read_wal(run_dir, nid, ev, wal_problems)
        except Exception as e:  # unreadable evidence is missing evidence, not a crash
            log.warning("reading the evidence of %s failed", nid, exc_info=True)
            for kind in ("events", "durable"):
                ev.missing.setdefault(kind, f"cannot read: {type(e).__name__}: {e}")
        nodes.append(ev)
    out: dict[str, dict] = {}
    for name, fn in (("node-health", lambda: node_health(node_ids, logs, unexpected_exits,
                                                         wal_problems)),
                     ("raft-invariants", lambda: check_invariants(nodes, ops))):
        try:
            out[name] = fn()
        except Exception as e:  # evidence never loses a run: say what went wrong
            log.warning("checker %s failed", name, exc_info=True)
            out[name] = {"valid": "unknown", "violations": [], "checked": {},
                         "error": f"{type(e).__name__}: {e}",
                         "unknown_reason": f"the checker failed: {type(e).__name__}: {e}"}
    _attach_excerpts(out.get("raft-invariants", {}).get("details") or [], logs)
    return out


def _read_log(run_dir: Path, nid: str, ev: NodeEvidence) -> NodeLog | None:
    path = run_dir / "nodes" / f"{nid}.log"
    try:
        nl = read_node_log(path, nid)
    except FileNotFoundError:
        ev.missing["events"] = f"no log nodes/{nid}.log"
        return None
    except OSError as e:
        ev.missing["events"] = f"cannot read nodes/{nid}.log: {e.strerror or e}"
        return None
    if nl.events:
        ev.events = nl.events
    else:
        ev.missing["events"] = f"no event lines in nodes/{nid}.log (an older node?)"
    return nl


def _read_wal(run_dir: Path, nid: str, ev: NodeEvidence, problems: dict[str, str]) -> None:
    from node.shell.storage import WAL_NAME, StorageCorrupted, decode_wal
    path = run_dir / "data" / nid / WAL_NAME
    rel = f"data/{nid}/{WAL_NAME}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        ev.missing["durable"] = f"no {rel}"
        return
    except OSError as e:
        ev.missing["durable"] = f"cannot read {rel}: {e.strerror or e}"
        return
    try:
        wal = decode_wal(data, rel)
    except StorageCorrupted as e:
        ev.missing["durable"] = f"{rel} cannot be recovered"
        problems[nid] = str(e)
        return
    hs = wal.hard_state
    commit = getattr(hs, "commit", None)  # None: a node before the durable commit
    # A compacted WAL (section 7) starts after its snapshot: the checks compare
    # what follows it. A snapshot newer than the WAL (a crash between the two) does
    # not change what the WAL held.
    base = getattr(wal, "base", 0)
    ev.durable = DurableState(hs.term, hs.voted_for, commit,
                              [(e.term, e.command) for e in wal.entries], base=base,
                              machine=_snapshot_machine(path.parent, base) if base else None)


def _snapshot_machine(data_dir: Path, base: int) -> Any:
    """The state machine in the node's snapshot, if it is the one at `base` (the
    exactly-once replay starts from it); None otherwise."""
    from node.shell.storage import SNAP_NAME, StorageCorrupted, decode_snapshot
    try:
        snap = decode_snapshot((data_dir / SNAP_NAME).read_bytes())
        machine = json.loads(snap.data)
    except (OSError, StorageCorrupted, ValueError):
        return None
    return machine if snap.index == base else None


# -- node-health ----------------------------------------------------------------

def node_health(node_ids: list[str], logs: dict[str, NodeLog | None],
                unexpected_exits: list[dict] | None,
                wal_problems: dict[str, str] | None = None) -> dict:
    """The node-health checker (see the module docstring)."""
    violations: list[str] = []
    details: list[dict] = []
    # An exit whose last log line names a crash sign of the same node is that crash:
    # one line, the sign's, with the exit code.
    codes: dict[tuple[str, int], Any] = {}
    for ex in unexpected_exits or []:
        nid = str(ex.get("node", "?"))
        detail = str(ex.get("detail") or "").strip()
        nl = logs.get(nid)
        sign = next((inc for inc in (nl.incidents if nl else [])
                     if (nid, inc.line) not in codes and inc.key and inc.key in detail), None)
        if sign is not None:
            codes[(nid, sign.line)] = ex.get("code")
            continue
        text = (f"{nid} exited with code {ex.get('code')} without being killed or stopped"
                + (f": {detail}" if detail else ""))
        violations.append(text)
        ex_refs = [excerpt(nl, len(nl.lines), before=8, after=0)] if nl and nl.lines else []
        details.append({"kind": "exit", "nodes": [nid], "text": text, "excerpts": ex_refs})
    for nid in node_ids:
        nl = logs.get(nid)
        for inc in (nl.incidents if nl else []):
            text = inc.text
            if (nid, inc.line) in codes:
                text += f"; the process exited with code {codes[(nid, inc.line)]}"
            violations.append(text)
            details.append({"kind": inc.kind, "nodes": [nid], "text": text,
                            "refs": [{"node": nid, "line": inc.line, "time": inc.time,
                                      "source": nl.source}],
                            "excerpts": [excerpt(nl, inc.line, before=6)]})
    for nid, why in sorted((wal_problems or {}).items()):
        text = f"{nid}'s raft.wal cannot be recovered (the node would refuse to start): {why}"
        violations.append(text)
        details.append({"kind": "wal", "nodes": [nid], "text": text})
    present = [nl for nl in logs.values() if nl is not None]
    checked = {"nodes": len(node_ids), "logs": len(present),
               "log_lines": sum(len(nl.lines) for nl in present),
               "error_records": sum(1 for nl in present for r in nl.records
                                    if r.level in ("ERROR", "CRITICAL")),
               "fatal_events": sum(1 for nl in present for e in nl.events
                                   if e.kind == "fatal"),
               "unexpected_exits": None if unexpected_exits is None else len(unexpected_exits),
               "crash_signs_folded": sum(nl.folded for nl in present)}
    missing = [f"{nid}: no log nodes/{nid}.log" for nid in node_ids if logs.get(nid) is None]
    out: dict[str, Any] = {
        "valid": False if violations else "unknown" if missing else True,
        "violations": violations, "checked": checked,
        "unexpected_exits": None if unexpected_exits is None else list(unexpected_exits),
        "details": details[:MAX_HEALTH_DETAILS]}
    if missing and not violations:
        out["unknown_reason"] = "; ".join(missing)
    if unexpected_exits is None:  # a Python node's crash leaves its traceback in the log
        out["note"] = ("the cluster's unexpected exits were not recorded (a run stored "
                       "before they were): only the node logs were read")
    return out


def _attach_excerpts(details: list[dict], logs: dict[str, NodeLog | None]) -> None:
    for d in details:
        parts = []
        for ref in (d.get("refs") or [])[:MAX_EXCERPTS]:
            nl = logs.get(ref.get("node"))
            if nl is not None and isinstance(ref.get("line"), int):
                parts.append(excerpt(nl, ref["line"]))
        if parts:
            d["excerpts"] = parts


# -- results.json and the terminal ----------------------------------------------

def leave_out_missing_invariants(checks: dict[str, dict], results: dict) -> None:
    """For a node of the user's own (docs/node-contract.md), which need not write
    raftcheck's event lines or WAL: the invariants it left no evidence for are left
    out of the verdict, with a warning, instead of making the run unknown. Those its
    evidence covers (say election safety and one vote per term, from event lines
    alone) still count; with none covered, raft-invariants is left out entirely."""
    inv = checks.get("raft-invariants") or {}
    if inv.get("valid") != "unknown":
        return
    per = inv.get("invariants") or {}
    known = {n: r for n, r in per.items() if r.get("valid") in (True, False)}
    if not known:
        checks.pop("raft-invariants", None)
        results.setdefault("warnings", []).append(
            "raft-invariants not checked: the node wrote no evidence raftcheck can read "
            f"({inv.get('unknown_reason') or 'no event lines or WAL'})")
        return
    left_out = sorted(n for n in per if n not in known)
    inv["invariants"] = known
    inv["not_checked"] = left_out
    inv["valid"] = False if any(r["valid"] is False for r in known.values()) else True
    results.setdefault("warnings", []).append(
        f"raft-invariants: {', '.join(left_out)} not checked: the node wrote no evidence "
        f"for them ({inv.pop('unknown_reason', None) or 'no WAL raftcheck can read'})")


def add_to_results(results: dict, checks: dict[str, dict]) -> dict:
    """Put the checkers beside "linearizable" and "vacuity"; the run's verdict becomes
    the worst of all (SPEC section 3)."""
    checkers = results.setdefault("checkers", {})
    checkers.update(checks)
    results["valid"] = worst(c.get("valid") for c in checkers.values()
                             if isinstance(c, dict))
    return results


def summary_lines(results: dict) -> list[str]:
    """The evidence checkers for a person, after the linearizability summary."""
    lines = []
    checkers = results.get("checkers") or {}
    for name in CHECKERS:
        c = checkers.get(name)
        if not isinstance(c, dict):
            continue
        valid = c.get("valid")
        shown = "true" if valid is True else "false" if valid is False else '"unknown"'
        lines.append(f"{name}: {shown} ({_checked_line(name, c)})")
        if valid is not True and valid is not False and c.get("unknown_reason"):
            lines.append(f"  {c['unknown_reason']}")
        if c.get("note"):
            lines.append(f"  note: {c['note']}")
        vs = c.get("violations") or []
        lines.extend(f"  {v}" for v in vs[:SUMMARY_VIOLATIONS])
        if len(vs) > SUMMARY_VIOLATIONS:
            lines.append(f"  ... {len(vs) - SUMMARY_VIOLATIONS} more: see results.json "
                         "and report.html")
    return lines


def _checked_line(name: str, c: dict) -> str:
    ch = c.get("checked") or {}
    if name == "node-health":
        exits = ch.get("unexpected_exits")
        shown = "unexpected exits not recorded" if exits is None else f"{exits} unexpected exits"
        return (f"{ch.get('nodes', 0)} nodes: {shown}, "
                f"{ch.get('fatal_events', 0)} fatal events, {ch.get('error_records', 0)} "
                f"errors in {ch.get('log_lines', 0):,} log lines")
    inv = c.get("invariants") or {}
    parts = []
    for key, r in inv.items():
        v = r.get("valid")
        parts.append(key + ("" if v is True else " FAILED" if v is False else " unknown"))
    return ", ".join(parts) or (c.get("error") or "not run")


def verdict_line(results: dict) -> str:
    """The last line of a run: which checkers decided the verdict."""
    checkers = results.get("checkers") or {}
    valid = results.get("valid")
    if valid is True:
        skipped = (checkers.get("raft-invariants") or {}).get("not_checked")
        if "raft-invariants" in checkers and skipped:
            tail = (" and the nodes kept the Raft invariants their evidence covers ("
                    + ", ".join(checkers["raft-invariants"].get("invariants") or {}) + ").")
        elif "raft-invariants" in checkers:
            tail = " and the nodes kept Raft's invariants."
        elif "node-health" in checkers:
            tail = " and the nodes stayed healthy (Raft's invariants not checked)."
        else:
            tail = "."
        return "Everything looks good: the history is linearizable" + tail
    bad = [n for n, c in checkers.items() if isinstance(c, dict) and c.get("valid") is False]
    if valid is False:
        what = {"linearizable": "the history is not linearizable",
                "node-health": "a node crashed or failed", "raft-invariants":
                "a Raft invariant was violated"}
        return ("INVALID: " + "; ".join(what.get(n, f"{n} failed") for n in bad)
                + " (see above and results.json).")
    return "UNKNOWN: the run proves nothing either way (see above)."
