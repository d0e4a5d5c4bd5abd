"""The report's view of the evidence checkers: node health and Raft's invariants.

results.json carries, beside "linearizable", the checkers campaign.evidence computes
from the node logs and WALs ("node-health", "raft-invariants"; docs/spec.md section 8).
This module draws them for a person: a badge per checker for the page's header, and a
section with each checker's verdict, what it compared, its violations one per line and,
for each violation that names a node's log line, the log lines around it (the line
itself marked), and for logs that diverge, the entries of both nodes side by side
with the differing index marked. Everything comes from results.json: the report reads
no other file, and every value is escaped.
"""

from __future__ import annotations

import html
import json
from typing import Any

EVIDENCE_CHECKERS = ("node-health", "raft-invariants")
MAX_LINES = 200      # violation lines listed per checker
MAX_DETAILS = 20     # violations drawn with their excerpts and entries
LABELS = {True: ("VALID", "valid"), False: ("INVALID", "invalid")}


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _label(valid: Any) -> tuple[str, str]:
    return LABELS[valid] if valid is True or valid is False else ("UNKNOWN", "unknown")


def badges(results: dict) -> str:
    """One coloured badge per checker, for the header: the verdict of each at a glance."""
    out = []
    for name, res in (results.get("checkers") or {}).items():
        if not isinstance(res, dict) or name == "vacuity" and res.get("valid") is True:
            continue
        label, cls = _label(res.get("valid"))
        href = "#evidence" if name in EVIDENCE_CHECKERS else "#failures" if (
            name == "linearizable") else "#summary"
        out.append(f'<a class="badge {cls}" href="{href}" data-checker="{_e(name)}">'
                   f"{_e(name)}: {label}</a>")
    return f'<p class="checkers" id="checkers">{"".join(out)}</p>' if out else ""


def section(results: dict) -> str:
    """The "evidence" section's body."""
    checkers = results.get("checkers") or {}
    present = [n for n in EVIDENCE_CHECKERS if isinstance(checkers.get(n), dict)]
    if not present:
        return ('<p id="no-evidence">This run has no evidence checkers (an older run: '
                '<code>raftcheck analyze RUN</code> adds them).</p>')
    return "".join(_checker(name, checkers[name]) for name in present)


def _checker(name: str, res: dict) -> str:
    label, cls = _label(res.get("valid"))
    parts = [f'<div class="checker" id="ev-{_e(name)}"><h3>{_e(name)}: '
             f'<span class="vtag {cls}">{label}</span></h3>']
    why = res.get("unknown_reason") or res.get("error")
    if why and res.get("valid") is not True:
        parts.append(f'<p class="note">{_e(why)}</p>')
    if name == "raft-invariants" and isinstance(res.get("invariants"), dict):
        parts.append(_invariants_table(res))
    elif isinstance(res.get("checked"), dict):
        parts.append('<p class="checked">Checked: ' + ", ".join(
            f"{_e(k.replace('_', ' '))} {_e('not recorded' if v is None else v)}"
            for k, v in res["checked"].items()) + "</p>")
    lines = [v for v in res.get("violations") or [] if isinstance(v, str)]
    if lines:
        more = (f"<li>... {len(lines) - MAX_LINES} more in results.json</li>"
                if len(lines) > MAX_LINES else "")
        items = "".join(f"<li>{_e(v)}</li>" for v in lines[:MAX_LINES])
        parts.append(f'<ol class="violations">{items}{more}</ol>')
    details = [d for d in res.get("details") or [] if isinstance(d, dict)]
    for n, d in enumerate(details[:MAX_DETAILS], 1):
        parts.append(_detail(name, n, d))
    if len(details) > MAX_DETAILS:
        parts.append(f"<p>{len(details) - MAX_DETAILS} more violations are in results.json.</p>")
    parts.append("</div>")
    return "".join(parts)


def _invariants_table(res: dict) -> str:
    checked = res.get("checked") if isinstance(res.get("checked"), dict) else {}
    rows = []
    for inv, r in res["invariants"].items():
        if not isinstance(r, dict):
            continue
        label, cls = _label(r.get("valid"))
        counts = checked.get(inv) if isinstance(checked.get(inv), dict) else {}
        what = ", ".join(f"{_e(k.replace('_', ' '))} {_e(v)}" for k, v in counts.items())
        note = r.get("unknown_reason") if r.get("valid") not in (True, False) else None
        rows.append(f'<tr data-invariant="{_e(inv)}"><td><code>{_e(inv)}</code></td>'
                    f"<td>{_e(r.get('property', ''))}</td>"
                    f'<td class="vtag {cls}">{label}</td><td>{what}'
                    + (f'<br><span class="why">{_e(note)}</span>' if note else "")
                    + f"</td><td>{_e(r.get('violations', 0))}</td></tr>")
    return ('<table class="grid invariants"><tr><th>invariant</th><th>property</th>'
            '<th>verdict</th><th>checked</th><th>violations</th></tr>'
            + "".join(rows) + "</table>")


def _detail(name: str, n: int, d: dict) -> str:
    ident = f"ev-{name}-{n}"
    parts = [f'<div class="ev-detail" id="{_e(ident)}">'
             f'<p class="ev-text">{_e(d.get("text", ""))}</p>']
    entries = d.get("entries")
    if isinstance(entries, list) and entries:
        parts.append(_entries(entries, d.get("nodes") or [], d.get("index")))
    for ex in (d.get("excerpts") or [])[:6]:
        if isinstance(ex, dict):
            parts.append(_excerpt(ex))
    parts.append("</div>")
    return "".join(parts)


def _entries(rows: list, nodes: list, index: Any) -> str:
    """The two nodes' log entries side by side; the index where they differ marked."""
    nodes = [n for n in nodes if isinstance(n, str)]
    head = "".join(f"<th>{_e(n)}</th>" for n in nodes)
    body = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        mark = ' class="diverge"' if row.get("index") == index else ""
        cells = []
        for n in nodes:
            e = row.get(n)
            cells.append("<td>" + ("(no entry)" if not isinstance(e, dict) else
                                   f"term {_e(e.get('term'))}: <code>"
                                   f"{_e(_json(e.get('command')))}</code>") + "</td>")
        body.append(f"<tr{mark}><th>{_e(row.get('index'))}</th>{''.join(cells)}</tr>")
    return ('<table class="grid entries"><tr><th>index</th>' + head + "</tr>"
            + "".join(body) + "</table>")


def _excerpt(ex: dict) -> str:
    first = ex.get("first_line") if isinstance(ex.get("first_line"), int) else 1
    lines = [str(x) for x in ex.get("lines") or []]
    mark = ex.get("mark")
    out = []
    for i, text in enumerate(lines, first):
        cls = ' class="mark"' if i == mark else ""
        out.append(f'<span{cls}><span class="ln">{i}</span>{_e(text)}</span>')
    last = first + len(lines) - 1
    return (f'<p class="ex-head">{_e(ex.get("source") or ex.get("node") or "log")}, '
            f"lines {first}-{last}:</p>"
            f'<pre class="logx">{chr(10).join(out)}</pre>')


def _json(v: Any) -> str:
    try:
        text = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 200 else text[:197] + "..."


CSS = """
.checkers{display:flex;gap:.4em;flex-wrap:wrap;margin:.6em 0 .2em}
.badge{font-size:12px;font-weight:600;padding:.2em .6em;border-radius:3px;color:#fff;text-decoration:none}
.badge.valid{background:#2f8f46}.badge.invalid{background:#b00020}.badge.unknown{background:#7a7a7a}
.vtag.valid{color:#2f8f46;font-weight:700}.vtag.invalid{color:#b00020;font-weight:700}
.vtag.unknown{color:#7a7a7a;font-weight:700}
.invariants td,.invariants th{text-align:left;vertical-align:top}.entries th{text-align:left}.invariants .why{color:#666;font-size:12px}
.violations li{font-family:monospace;font-size:12px;margin:.15em 0}
.ev-detail{border-left:3px solid #b00020;padding:.1em .8em;margin:.8em 0}
.ev-text{font-family:monospace;font-size:12px;font-weight:600}
.entries td{text-align:left;font-size:12px}.entries tr.diverge{background:#fde2e4}
.ex-head{margin:.4em 0 0;font-size:12px;color:#555}
pre.logx{background:#f6f6f6;padding:.4em;overflow-x:auto;font-size:11.5px;margin:.2em 0}
pre.logx .ln{display:inline-block;min-width:3.5em;color:#999;user-select:none}
pre.logx .mark{background:#fde2e4;display:inline-block;min-width:100%}
"""
