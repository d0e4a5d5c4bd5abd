"""Report: one self-contained HTML page that tells the story of a run.

`render_report(ops, results, test, out_path)` writes report.html: the verdict and its
explanation, a badge per checker, the options and seed (test.json; None offline), stats,
availability during faults, the evidence checkers (node health and Raft's invariants,
with the node log lines and log entries each violation names: report.evidence_view),
for every failure the Porcupine-like failing window and the shrunk
counterexample (report.failure_view), the interactive timeline (report.timeline) and the
latency and rate plots (report.plots). CSS, script and images are inline: the page
needs no network and opens from a CI artifact.

A report never changes a verdict and never raises for a drawing problem: a section that
cannot be drawn is replaced by a note, and the problem is returned as a warning (the
runner puts warnings in results.json). The page is bounded in size: see
report.timeline (MAX_DRAWN) and report.failure_view (TAIL).
"""

from __future__ import annotations

import html
import logging
import os
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from report import evidence_view, failure_view, plots, timeline
from history.intervals import Intervals, _short, availability, pair

log = logging.getLogger(__name__)

MAX_FAILURES = 10
MAX_FAULT_ROWS = 200
VERDICTS = {True: ("VALID", "valid"), False: ("INVALID", "invalid"),
            "unknown": ("UNKNOWN", "unknown")}


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def normalize_results(results: Any) -> dict:
    """results.json (`{"valid", "checkers", "stats"}`), a bare checker result, or a
    CheckResult, as results.json's shape."""
    if results is None:
        return {"valid": "unknown", "checkers": {}, "stats": {}}
    if not isinstance(results, dict) and callable(getattr(results, "to_dict", None)):
        results = results.to_dict()
    if not isinstance(results, dict):
        return {"valid": "unknown", "checkers": {}, "stats": {}}
    if "checkers" in results:
        return results
    return {"valid": results.get("valid", "unknown"), "checkers": {"linearizable": results},
            "stats": results.get("stats", {})}


def render_report(ops: list, results: Any, test: dict | None, out_path: str | Path) -> list[str]:
    """Write the report to `out_path`; return warnings (never raises for drawing)."""
    warnings: list[str] = []
    try:
        page = build_page(list(ops), normalize_results(results), test, warnings)
    except Exception as e:  # a bug here must not lose a verdict: write a minimal page
        log.exception("report failed")
        warnings.append(f"report: could not draw the report ({type(e).__name__}: {e})")
        try:
            res = normalize_results(results)
        except Exception:
            res = {}
        page = _page("raftcheck report", _verdict_block(res.get("valid", "unknown"))
                     + f"<p>The report could not be drawn: {_e(e)}</p>")
    try:
        _write_atomic(Path(out_path), page)
    except OSError as e:
        warnings.append(f"report: cannot write {out_path}: {e.strerror or e}")
    return warnings


def _write_atomic(path: Path, text: str) -> None:
    """Write, fsync, rename: a crash never leaves half a page (mode 0666 & ~umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _section(warnings: list[str], name: str, fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as e:
        log.warning("report: %s: %s", name, e, exc_info=True)
        warnings.append(f"report: could not draw the {name} ({type(e).__name__}: {e})")
        return f'<p class="warn">The {_e(name)} could not be drawn: {_e(type(e).__name__)}: {_e(e)}</p>'


def build_page(ops: list, results: dict, test: dict | None, warnings: list[str]) -> str:
    started = time.monotonic()
    iv = pair(ops)
    warnings.extend(f"report: {w}" for w in iv.warnings[:20])
    if len(iv.warnings) > 20:
        warnings.append(f"report: {len(iv.warnings) - 20} more history events not drawn")
    by_index = iv.by_index()
    lin = (results.get("checkers") or {}).get("linearizable")
    failures = [("linearizable", f) for f in ((lin.get("failures") or [])
                                              if isinstance(lin, dict) else [])
                if isinstance(f, dict)]
    marks = _marks(failures[:1], by_index)
    name = (test or {}).get("name") or "offline check"
    body = [f'<header><h1>raftcheck: {_e(name)}</h1>',
            _verdict_block(results.get("valid", "unknown")),
            _section(warnings, "checker badges", lambda: evidence_view.badges(results)),
            "</header>",
            '<nav><a href="#summary">verdict</a> <a href="#failures">failures</a> '
            '<a href="#timeline">timeline</a> <a href="#plots">plots</a> '
            '<a href="#evidence">evidence</a> <a href="#stats">stats</a> '
            '<a href="#run-options">options</a></nav>']
    # What a person looks at first: the verdict, what failed, the drawings; then the
    # figures as small tables; the options folded at the end.
    body.append(_section(warnings, "summary", lambda: _summary(results, test)))
    body.append('<section id="failures"><h2>Failures</h2>')
    body.append(_section(warnings, "failures", lambda: _failures(failures, iv, by_index)))
    body.append("</section>")
    body.append('<section id="timeline"><h2>Timeline</h2>')
    body.append(_section(warnings, "timeline", lambda: _timeline(iv, marks)))
    body.append("</section>")
    body.append('<section id="plots"><h2>Plots</h2>')
    body.append(_section(warnings, "plots", lambda: _plots(iv)))
    body.append("</section>")
    body.append('<section id="evidence"><h2>Node health and Raft invariants</h2>')
    body.append(_section(warnings, "evidence", lambda: evidence_view.section(results)))
    body.append("</section>")
    body.append(_section(warnings, "stats", lambda: _stats(results, iv)))
    body.append(_section(warnings, "options", lambda: _options(test)))
    earlier = [w for w in results.get("warnings") or [] if isinstance(w, str)]
    if warnings or earlier:  # the run's own warnings (results.json) and the report's
        body.append('<section id="warnings"><h2>Warnings</h2><ul>'
                    + "".join(f"<li>{_e(w)}</li>" for w in (earlier + warnings)[:200])
                    + "</ul></section>")
    body.append(f'<footer>raftcheck report, drawn in {time.monotonic() - started:.2f} s. '
                'Files of this run: <a href="history.txt">history.txt</a> '
                '<a href="history.jsonl">history.jsonl</a> <a href="results.json">results.json</a> '
                '<a href="test.json">test.json</a> <a href="nodes/">node logs</a></footer>')
    return _page(f"raftcheck: {name}", "".join(body))


def _verdict_block(valid: Any) -> str:
    label, cls = VERDICTS.get(valid if valid in (True, False) else "unknown", ("UNKNOWN", "unknown"))
    return f'<p class="verdict {cls}" id="verdict">{label}</p>'


def _marks(failures: list[tuple[str, dict]], by_index: dict) -> dict:
    if not failures:
        return {}
    f = failures[0][1]
    idx = (f.get("op") or {}).get("index")
    fiv = by_index.get(idx) if isinstance(idx, int) else None
    if fiv is None:
        return {}
    conc = [by_index[i] for i in f.get("concurrent") or [] if isinstance(i, int) and i in by_index]
    tail = [by_index[p.get("index")] for p in (f.get("prefix") or [])[-failure_view.TAIL:]
            if isinstance(p, dict) and p.get("index") in by_index]
    t0, t1 = failure_view.failure_window(tail + [fiv]) or (fiv.start, fiv.start + 1)
    return {"failing": [fiv.index], "concurrent": sorted({o.index for o in conc}),
            "window": [round(t0 / 1e6, 3), round(t1 / 1e6, 3)]}


def _flatten(d: dict, prefix: str = "", depth: int = 2) -> dict:
    """Nested dicts as dotted keys (`options.nodes`), `depth` levels deep."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v and depth > 0:
            out.update(_flatten(v, name + ".", depth - 1))
        elif isinstance(v, list) and all(isinstance(x, str) for x in v) and k == "command":
            out[name] = " ".join(v)
        else:
            out[name] = v
    return out


def _kv_table(d: dict, limit: int = 120, table_id: str = "") -> str:
    d = _flatten(d)
    rows = []
    for k, v in list(d.items())[:limit]:
        shown = v if isinstance(v, str) else _short(v, 300)  # JSON spelling: null, true
        rows.append(f"<tr><th>{_e(k)}</th><td>{_e(shown)}</td></tr>")
    more = f"<tr><td colspan=2>({len(d) - limit} more)</td></tr>" if len(d) > limit else ""
    ident = f' id="{table_id}"' if table_id else ""
    return f'<table class="kv"{ident}>{"".join(rows)}{more}</table>'


def _summary(results: dict, test: dict | None) -> str:
    """The verdict of every checker in a line, and the seed."""
    out = ['<section id="summary"><h2>Verdict</h2>']
    for name, res in (results.get("checkers") or {}).items():
        if not isinstance(res, dict):
            continue
        label = VERDICTS.get(res.get("valid") if res.get("valid") in (True, False) else "unknown")[0]
        text = f"{name}: {label}"
        if res.get("valid") is False and name == "linearizable":
            text += f", {len(res.get('failures') or [])} key(s) not linearizable"
        elif res.get("valid") is False and isinstance(res.get("violations"), list):
            text += f", {len(res['violations'])} violation(s)"
        why = res.get("unknown_reason") or res.get("reason") or res.get("error")
        if res.get("valid") is not True and why:
            text += f" ({why})"
        elif res.get("note"):
            text += f" ({res['note']})"
        if res.get("op_count") is not None:
            text += f"; {res['op_count']:,} history events"
        out.append(f"<p class=\"explain\">{_e(text)}</p>")
    if test:
        opts = test.get("options") if isinstance(test.get("options"), dict) else {}
        seed = test.get("seed", opts.get("seed"))
        out.append(f'<p>Seed: <code id="seed">{_e(seed)}</code></p>')
    else:
        out.append("<p>Offline check: no test.json.</p>")
    out.append("</section>")
    return "".join(out)


def _small_table(table_id: str, head: list[str], rows: list[list[Any]]) -> str:
    """A table of a few rows: a header row, then cells (numbers with separators)."""
    def cell(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return _e(_short(v, 40))
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return _e(v)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<table class="grid" id="{table_id}"><tr>'
            + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{body}</table>")


def _outcomes(d: Any) -> list[Any]:
    d = d if isinstance(d, dict) else {}
    return [d.get("ok", 0), d.get("fail", 0), d.get("info", 0)]


def _stats(results: dict, iv: Intervals) -> str:
    """The run's figures as a few small tables: by operation, by phase, errors,
    faults, latency and availability; the fault windows folded."""
    stats = results.get("stats") if isinstance(results.get("stats"), dict) else {}
    out = ['<section id="stats"><h2>Statistics</h2><div class="cols">']
    counts = Counter((o.f, o.outcome) for o in iv.ops)
    fs = sorted({f for f, _ in counts})
    out.append("<div><h3>By operation</h3>" + _small_table(
        "by-operation", ["f", "ok", "fail", "info"],
        [[f] + [counts[(f, k)] for k in ("ok", "fail", "info")] for f in fs]) + "</div>")
    phases = stats.get("by_phase") if isinstance(stats.get("by_phase"), dict) else {}
    if phases:
        out.append("<div><h3>By phase</h3>" + _small_table(
            "by-phase", ["phase", "ok", "fail", "info"],
            [[p] + _outcomes(v) for p, v in phases.items()]) + "</div>")
    errors = stats.get("errors") if isinstance(stats.get("errors"), dict) else {}
    if errors:
        out.append("<div><h3>Errors</h3>" + _small_table(
            "errors", ["error", "count"], sorted(([k, v] for k, v in errors.items()),
                                                 key=lambda r: -r[1] if isinstance(r[1], int) else 0))
            + "</div>")
    faults = stats.get("faults") if isinstance(stats.get("faults"), dict) else {}
    kinds = faults.get("kinds") if isinstance(faults.get("kinds"), dict) else {}
    if kinds:
        out.append("<div><h3>Faults</h3>" + _small_table(
            "faults", ["fault", "count", "active s", "ops ok", "availability"],
            [[k, v.get("count"), v.get("active_s"), _outcomes(v.get("ops"))[0],
              f"{100 * v['availability']:.1f}%" if isinstance(v.get("availability"), (int, float))
              else "-"] for k, v in sorted(kinds.items()) if isinstance(v, dict)]) + "</div>")
    lat = sorted(o.latency_ns for o in iv.ops if o.latency_ns is not None and o.outcome == "ok")

    def pct(q: float) -> str:
        return f"{lat[min(int(q * len(lat)), len(lat) - 1)] / 1e6:.2f} ms" if lat else "-"
    av = availability(iv)

    def share(d: dict) -> str:
        return "-" if d["ratio"] is None else f"{100 * d['ratio']:.1f}% ({d['ok']:,} of {d['total']:,})"
    out.append("<div><h3>Latency (ok ops)</h3>" + _small_table(
        "latency", ["p50", "p95", "p99", "max"],
        [[pct(0.5), pct(0.95), pct(0.99), f"{(lat[-1] / 1e6 if lat else 0):.2f} ms"]])
        + f"<p>{len(iv.ops):,} client ops over {iv.end_time / 1e9:.2f} s.</p></div>")
    out.append('<div><h3>Availability</h3><table class="kv" id="availability">'
               f"<tr><th>ok, invoked during faults</th><td>{share(av['during_faults'])}</td></tr>"
               f"<tr><th>ok, invoked outside faults</th><td>{share(av['outside_faults'])}</td></tr>"
               "</table></div>")
    out.append("</div>")
    if iv.faults:
        rows = "".join(f"<tr><td>{_e(w.kind)}</td><td>{w.start / 1e9:.3f}</td>"
                       f"<td>{w.end / 1e9:.3f}{'' if w.closed else ' (never healed)'}</td>"
                       f"<td>{_e(w.detail)}</td></tr>" for w in iv.faults[:MAX_FAULT_ROWS])
        more = (f"<p>{len(iv.faults) - MAX_FAULT_ROWS} more fault windows not listed.</p>"
                if len(iv.faults) > MAX_FAULT_ROWS else "")
        out.append(f"<details><summary>{len(iv.faults)} fault windows</summary>"
                   '<table class="grid"><tr><th>fault</th><th>from (s)</th><th>to (s)</th>'
                   f"<th>applied</th></tr>{rows}</table>{more}</details>")
    else:
        out.append("<p>No faults were injected.</p>")
    if stats:
        out.append("<details><summary>Every figure (results.json stats)</summary>"
                   + _kv_table(stats, table_id="stats-all") + "</details>")
    out.append("</section>")
    return "".join(out)


def _options(test: dict | None) -> str:
    """The run's options and test.json, folded."""
    if not test:
        return ""
    opts = test.get("options") if isinstance(test.get("options"), dict) else {}
    rest = {k: v for k, v in test.items() if k != "options"}
    out = ['<section id="run-options"><h2>Options</h2>']
    if opts:
        out.append("<details><summary>Options</summary>"
                   + _kv_table(opts, table_id="options") + "</details>")
    out.append("<details><summary>Run (test.json)</summary>"
               + _kv_table(rest, table_id="run") + "</details>")
    out.append("</section>")
    return "".join(out)


def _failures(failures: list[tuple[str, dict]], iv: Intervals, by_index: dict) -> str:
    if not failures:
        return '<p id="no-failures">No failures: every key is linearizable (or was not decided).</p>'
    parts = []
    for n, (name, f) in enumerate(failures[:MAX_FAILURES], 1):
        parts.append(failure_view.render_failure(f, iv, by_index, n))
    if len(failures) > MAX_FAILURES:
        rest = ", ".join(_short(f.get("key"), 30) for _, f in failures[MAX_FAILURES:MAX_FAILURES + 50])
        parts.append(f"<p>{len(failures) - MAX_FAILURES} more keys failed: {_e(rest)}; see results.json.</p>")
    return "".join(parts)


def _timeline(iv: Intervals, marks: dict) -> str:
    center = None
    if marks.get("window"):
        center = int(marks["window"][0] * 1e6)
    keep = list(marks.get("failing", [])) + list(marks.get("concurrent", []))
    drawn, note = timeline.select(iv, center, keep)
    data = timeline.payload(iv, drawn, marks)
    legend = ('<p class="legend"><span class="sw ok"></span>ok <span class="sw fail"></span>fail '
              '<span class="sw info"></span>info (faded: never completed) '
              '<span class="sw partition"></span>partition <span class="sw kill"></span>kill '
              '<span class="sw pause"></span>pause <span class="sw latency"></span>latency; '
              'red outline: the op that cannot be linearized, dashed: ops concurrent with it.</p>')
    return ((f'<p class="note">{_e(note)}</p>' if note else "") + legend + timeline.HTML
            + f'<script type="application/json" id="tl-data">{timeline.script_json(data)}</script>'
            + f"<script>{timeline.JS}</script>")


def _plots(iv: Intervals) -> str:
    if not iv.ops:
        return "<p>No client ops to plot.</p>"
    return (f'<img class="plot" id="plot-latency" alt="latency of every op over time" '
            f'src="{plots.data_uri(plots.latency_png(iv))}">'
            f'<img class="plot" id="plot-rate" alt="ops per second by f and outcome" '
            f'src="{plots.data_uri(plots.rate_png(iv))}">')


CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;
 padding:0 1em 3em;color:#222}
h1{font-size:1.5em;margin:.6em 0 .2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.4em}
header{display:flex;align-items:center;gap:1em;flex-wrap:wrap}
nav a{margin-right:1em}
.verdict{display:inline-block;font-weight:700;padding:.2em .8em;border-radius:4px;color:#fff;margin:.6em 0 .2em}
.verdict.valid{background:#2f8f46}.verdict.invalid{background:#b00020}.verdict.unknown{background:#7a7a7a}
table{border-collapse:collapse;font-size:13px}
.kv th{text-align:left;padding:.1em .8em .1em 0;vertical-align:top;font-weight:600}
.kv td{font-family:monospace;word-break:break-all}
.grid td,.grid th{border:1px solid #ddd;padding:.15em .5em;text-align:right}
.cols{display:flex;gap:2em;flex-wrap:wrap}
.plot{max-width:100%;display:block;margin:.5em 0}
.note,.warn{background:#eef3fb;border-left:4px solid #7b9acc;padding:.3em .6em}
.warn{background:#fff6e0;border-color:#edae49}
.legend .sw{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin-left:.6em}
.sw.ok{background:#2f8f46}.sw.fail{background:#d1495b}.sw.info{background:#edae49}
.sw.partition{background:#7b9acc}.sw.kill{background:#e07a5f}.sw.pause{background:#f2cc8f}.sw.latency{background:#b8a1d9}
pre.history{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}
footer{margin-top:2em;color:#666;font-size:12px}
"""


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{CSS}{failure_view.CSS}{timeline.CSS}"
            f"{evidence_view.CSS}</style></head>"
            f"<body>{body}</body></html>")
