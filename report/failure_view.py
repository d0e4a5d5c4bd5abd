"""Linearization view: why a key is not linearizable, drawn like Porcupine's visualizer.

For one failure of the checker (docs/internals.md, "Checker": `prefix`, `op`,
`concurrent`, `state`, `reason`, `shrunk`) the view shows the *failing window*: the
ops of the key around the op that cannot be placed, one lane per process, each op a
bar from invoke to completion. The longest linearizable prefix the checker found is
drawn as numbered linearization points (the order, joined by a line) with the model
state after each; the op that cannot be placed is red, with the checker's reason; the
ops concurrent with it are outlined. The shrunk counterexample is drawn the same way.

Everything is a static SVG (hover titles, no script), so it shows even where scripts
do not run. The window is bounded: the last `TAIL` prefix ops and `MAX_CONCURRENT`
concurrent ops; the tables say how many more there were.
"""

from __future__ import annotations

import html
from typing import Any

from history.intervals import Interval, Intervals, _short, pair

TAIL = 16
MAX_CONCURRENT = 40
COLORS = {"ok": "#2f8f46", "fail": "#d1495b", "info": "#edae49"}
LANE_H, LEFT, WIDTH = 34, 96, 1100


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _open(o: Interval) -> bool:
    """An info op may take effect at any time after its invoke (SPEC section 2)."""
    return o.end is None or o.outcome == "info"


def _points(order: list[Interval], w0: int, w1: int) -> list[int]:
    """Linearization points for ops in linearization `order`: increasing, each inside its
    op, and as near its op's middle (clipped to the window w0..w1) as the order allows."""
    n = len(order)
    big = max(w1, max((o.end or o.start for o in order), default=w1)) + n + 1
    latest = [0] * n
    nxt = big
    for i in range(n - 1, -1, -1):
        end = big if _open(order[i]) else order[i].end
        latest[i] = min(end, nxt - 1)
        nxt = latest[i]
    out: list[int] = []
    prev = None
    for i, o in enumerate(order):
        lo = o.start if prev is None else max(prev + 1, o.start)
        a = max(o.start, w0)
        b = min(w1 if _open(o) else o.end, w1)
        target = (a + b) // 2 if b >= a else a
        p = min(max(target, lo), latest[i]) if lo <= latest[i] else lo
        out.append(p)
        prev = p
    return out


def failure_window(ops: list[Interval]) -> tuple[int, int] | None:
    """The time span to draw around a failure: the completed ops among `ops` (the
    failing op and the prefix tail); ops that never completed or started long before
    are clipped to it."""
    done = [o for o in ops if not _open(o)] or ops
    if not done:
        return None
    t0 = min(o.start for o in done)
    t1 = max((o.end if o.end is not None else o.start) for o in done)
    return t0, max(t1, t0 + 1)


def _compact(o: Interval) -> str:
    """A label for a narrow bar: r→3, w3, c[1,2]."""
    if o.f == "read":
        return "r→" + _short(o.value, 8) if o.outcome == "ok" else "r"
    return o.f[:1] + _short(o.invoke_value, 8)


def lanes_svg(ops: list[Interval], points: dict[int, tuple[int, int, Any]] | None = None,
              failing: int | None = None, concurrent: set[int] | None = None,
              title: str = "", t_range: tuple[int, int] | None = None) -> str:
    """An SVG of `ops` in process lanes; `points` maps an op index to (order, t, state)."""
    if not ops:
        return "<p><em>No ops to draw.</em></p>"
    points = points or {}
    concurrent = concurrent or set()
    procs = sorted({o.process for o in ops}, key=lambda p: (isinstance(p, str), str(p).zfill(12)))
    lane = {p: i for i, p in enumerate(procs)}
    if t_range is None:
        t0 = min(o.start for o in ops)
        t_known = max([o.end for o in ops if o.end is not None] + [o.start for o in ops])
    else:
        t0, t_known = t_range
    span = max(t_known - t0, 1)
    t0 -= span // 40
    t1 = t_known + span // 8       # room for ops that never completed
    t1 = max(t1, t0 + 1)           # all ops at one instant: still a non-empty span
    plot_w = WIDTH - LEFT - 20
    h = 28 + len(procs) * LANE_H + 30

    def x(t: int) -> float:
        return LEFT + (t - t0) / (t1 - t0) * plot_w

    parts = [f'<svg class="linview" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {h}" '
             f'width="{WIDTH}" height="{h}" role="img" aria-label="{_e(title)}">']
    parts.append(f'<text x="4" y="14" class="lv-axis">{_e(title)}</text>')
    parts.append(f'<text x="{LEFT}" y="{h - 8}" class="lv-axis">{t0 / 1e9:.6f} s</text>'
                 f'<text x="{LEFT + plot_w}" y="{h - 8}" text-anchor="end" class="lv-axis">'
                 f'{t1 / 1e9:.6f} s</text>')
    for p, i in lane.items():
        y = 28 + i * LANE_H
        parts.append(f'<text x="4" y="{y + 20}" class="lv-lane">process {_e(p)}</text>'
                     f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y + LANE_H - 2}" '
                     f'y2="{y + LANE_H - 2}" stroke="#eee"/>')
    for o in ops:
        y = 28 + lane[o.process] * LANE_H
        # ops longer than the window (concurrent, never completed) are clipped to it
        a, b = x(max(o.start, t0)), x(min(t1 if o.end is None else o.end, t1))
        w = max(b - a, 3)
        cls = "lv-fail-op" if o.index == failing else ("lv-conc" if o.index in concurrent else "")
        fill = "#b00020" if o.index == failing else COLORS.get(o.outcome, "#888")
        tip = (f"op {o.index} (line {o.index + 1}), process {o.process}: {o.describe()} -> "
               f"{o.outcome}" + (f" ({o.error})" if o.error else "")
               + ("" if o.end is None else f", {(o.end - o.start) / 1e6:.3f} ms")
               + (" - never completed" if o.end is None else ""))
        if o.index in points:
            n, _, st = points[o.index]
            tip += f"; linearized #{n}, state after: {_short(st)}"
        opacity = "0.3" if o.end is None else "0.55"
        label = ("✗ " if o.index == failing else "") + o.describe(with_key=False) + (
            f" -> {o.outcome}" if o.index == failing and o.outcome != "ok" else "")
        if len(label) * 6.7 > max(w, x(t1) - a if o.index == failing else 0):
            label = _compact(o) if w >= 26 else ""
        parts.append(f'<g class="lv-op {cls}" data-index="{o.index}"><title>{_e(tip)}</title>'
                     f'<rect x="{a:.1f}" y="{y + 4}" width="{w:.1f}" height="{LANE_H - 12}" '
                     f'rx="3" fill="{fill}" fill-opacity="{opacity}"'
                     + (' stroke="#222" stroke-dasharray="4 2"' if cls == "lv-conc" else "")
                     + (' stroke="#600" stroke-width="2"' if cls == "lv-fail-op" else "")
                     + f'/><text x="{a + 3:.1f}" y="{y + 18}" class="lv-label">'
                     f'{_e(label)}</text></g>')
    for o in ops:
        if o.index in points and o.end is not None and points[o.index][1] > o.end:
            y = 28 + lane[o.process] * LANE_H + LANE_H // 2
            parts.append(f'<line x1="{max(x(o.end), LEFT):.1f}" x2="{x(points[o.index][1]):.1f}" y1="{y}" '
                         f'y2="{y}" stroke="#edae49" stroke-dasharray="2 3"/>')
    ordered = sorted(points.items(), key=lambda kv: kv[1][0])
    if ordered:
        coords = []
        for idx, (n, t, st) in ordered:
            o = next((q for q in ops if q.index == idx), None)
            if o is None:
                continue
            coords.append((x(t), 28 + lane[o.process] * LANE_H + LANE_H - 8, n, st))
        parts.append('<polyline fill="none" stroke="#1d3557" stroke-width="1" '
                     'stroke-dasharray="3 2" points="'
                     + " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _, _ in coords) + '"/>')
        for i, (cx, cy, n, st) in enumerate(coords):
            # the state is written only where the next point in the lane leaves room
            room = min([nx - cx for nx, ny, _, _ in coords[i + 1:] if ny == cy and nx > cx]
                       + [WIDTH - cx])
            text = f"#{n} → {_short(st, 16)}"
            if len(text) * 6 + 8 > room:
                text = f"#{n}" if len(f"#{n}") * 6 + 8 <= room else ""
            parts.append(f'<g class="lv-point"><title>linearization point #{n}; state after: '
                         f'{_e(_short(st))}</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" '
                         f'fill="#1d3557"/><text x="{cx + 5:.1f}" y="{cy + 2:.1f}" '
                         f'class="lv-state">{_e(text)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def render_failure(failure: dict, iv: Intervals, by_index: dict[int, Interval],
                   number: int = 1) -> str:
    """HTML for one checker failure: window SVG, reason, prefix table, shrunk history."""
    op = failure.get("op") or {}
    fidx = op.get("index")
    fiv = by_index.get(fidx) if isinstance(fidx, int) else None
    key = failure.get("key")
    prefix = [p for p in failure.get("prefix") or [] if isinstance(p, dict)]
    tail = prefix[-TAIL:]
    tail_ivs = [(by_index.get(p.get("index")), p.get("state")) for p in tail]
    order = [t for t in tail_ivs if t[0] is not None]
    conc_idx = [i for i in failure.get("concurrent") or [] if isinstance(i, int)]
    conc_ivs = [by_index[i] for i in conc_idx[:MAX_CONCURRENT] if i in by_index]
    window: dict[int, Interval] = {}
    for o in [o for o, _ in order] + conc_ivs + ([fiv] if fiv else []):
        window[o.index] = o
    w0, w1 = failure_window([o for o, _ in order] + ([fiv] if fiv else [])) or (0, 1)
    pts = _points([o for o, _ in order], w0, w1)
    t_range = (min([w0] + pts), max([w1] + pts))
    first_n = len(prefix) - len(tail) + 1
    points = {o.index: (first_n + i, pts[i], st) for i, (o, st) in enumerate(order)}
    before = prefix[-TAIL - 1].get("state") if len(prefix) > TAIL else None
    what = _short(op)
    if fiv is not None:
        what = fiv.describe() + ("" if fiv.outcome == "ok" and fiv.f == "read" else
                                 f" -> {fiv.outcome}") + (f" ({fiv.error})" if fiv.error else "")
    fail_text = (f"op {fidx} (history.txt line {failure.get('line', '?')}), process "
                 f"{op.get('process')}: {what}")
    out = [f'<section class="failure" id="failure-{number}">',
           f'<h3>Failure {number}: key {_e(_short(key))}</h3>',
           f'<p class="failing-op" id="{"failing-op" if number == 1 else f"failing-op-{number}"}">'
           f'<strong>Cannot be linearized:</strong> {_e(fail_text)}</p>',
           f'<p class="reason"><strong>Why:</strong> {_e(failure.get("reason", "(no reason given)"))}</p>',
           f'<p>Longest linearizable prefix: {len(prefix)} ops; the model state after it: '
           f'<code>{_e(_short(failure.get("state"), 200))}</code>. '
           + (f'Showing its last {len(tail)} ops (state before them: '
              f'<code>{_e(_short(before))}</code>), ' if len(prefix) > TAIL else "Showing all of it, ")
           + f'{len(conc_ivs)} of the {len(conc_idx)} concurrent ops, and the failing op in red. '
           'Numbered points: the linearization order, with the state after each op.</p>',
           '<div class="svgbox">',
           lanes_svg(list(window.values()), points, fiv.index if fiv else None,
                     {o.index for o in conc_ivs},
                     title=f"failing window, key {_short(key)}", t_range=t_range),
           "</div>"]
    rows = "".join(f"<tr><td>{n}</td><td>{o.index}</td><td>{_e(o.process)}</td>"
                   f"<td>{_e(o.describe())}</td><td>{_e(o.outcome)}</td>"
                   f"<td><code>{_e(_short(st))}</code></td></tr>"
                   for (n, _, st), o in ((points[o.index], o) for o, _ in order))
    out.append('<details><summary>Linearization order (prefix tail)</summary>'
               '<table class="grid"><tr><th>#</th><th>op</th><th>process</th><th>operation</th>'
               f'<th>outcome</th><th>state after</th></tr>{rows}'
               f'<tr class="bad"><td>✗</td><td>{_e(fidx)}</td><td>{_e(op.get("process"))}</td>'
               f'<td colspan="3">{_e(failure.get("reason", ""))}</td></tr></table></details>')
    out.append(_shrunk(failure.get("shrunk"), fidx))
    out.append("</section>")
    return "".join(out)


def _shrunk(shrunk: Any, fidx: Any) -> str:
    if not isinstance(shrunk, list) or not shrunk:
        return "<p><em>No shrunk counterexample.</em></p>"
    ops = [o for o in shrunk if isinstance(o, dict)]
    iv = pair(ops)
    lines = "\n".join(
        f"{o.get('index', '?')} {o.get('process')} {o.get('type')} {o.get('f')} "
        f"{_short(o.get('key')) if 'key' in o else ''} {_short(o.get('value'))}"
        f"{' ' + str(o.get('error')) if o.get('error') else ''}" for o in ops)
    failing = next((o.index for o in iv.ops if o.index == fidx or o.completion_index == fidx), None)
    return ('<div class="shrunk"><h4>Shrunk counterexample</h4>'
            f'<p>{len(ops)} events that are still not linearizable on their own:</p>'
            f'<div class="svgbox">{lanes_svg(iv.ops, failing=failing, title="shrunk counterexample")}</div>'
            f'<pre class="history">{_e(lines)}</pre></div>')


CSS = """
.svgbox{overflow-x:auto;border:1px solid #ddd;background:#fff;margin:.4em 0}
.linview .lv-label{font:11px monospace;fill:#111;pointer-events:none}
.linview .lv-lane,.linview .lv-axis{font:11px sans-serif;fill:#333}
.linview .lv-state{font:10px monospace;fill:#1d3557}
.failing-op{background:#fde8ea;border-left:4px solid #b00020;padding:.4em .6em}
.reason{background:#fff6e0;border-left:4px solid #edae49;padding:.4em .6em}
tr.bad td{background:#fde8ea}
"""
