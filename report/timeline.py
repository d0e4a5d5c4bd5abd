"""Timeline: one lane per process, each op a bar from invoke to completion (Jepsen's
timeline.html, interactive).

The page draws it on a canvas with a small inline script: bars coloured by outcome
(ok / fail / info; an op that never completed runs to the end, faded), fault windows
shaded across every lane and drawn as bars in the nemesis lane, the failing op outlined
in red and the ops concurrent with it dashed. Ctrl+wheel or the buttons zoom, dragging
pans, hovering shows an op's details, and an overview strip above shows the whole run.

The page stays bounded: at most `max_ops` bars are drawn. A larger history is drawn
around its failure (or from its start when it is valid), every op the checker named is
kept, and the overview strip and the plots summarise the rest.
"""

from __future__ import annotations

import bisect
import json
from typing import Any, Iterable

from history.intervals import Interval, Intervals, _short

MAX_DRAWN = 20_000
OVERVIEW_BUCKETS = 400
_OUTCOME = {"ok": 0, "fail": 1, "info": 2}


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _lane_order(p: Any) -> tuple:
    return (0, p, "") if isinstance(p, int) else (1, 0, str(p))


def select(iv: Intervals, center_ns: int | None, keep: Iterable[int],
           max_ops: int = MAX_DRAWN) -> tuple[list[Interval], str | None]:
    """The ops to draw: all of them, or `max_ops` around `center_ns` plus `keep`."""
    ops = iv.ops
    if len(ops) <= max_ops:
        return ops, None
    starts = [o.start for o in ops]
    mid = bisect.bisect_left(starts, center_ns or 0)
    lo = max(0, min(mid - max_ops // 2, len(ops) - max_ops))
    chosen = ops[lo: lo + max_ops]
    keep_set = set(keep)
    inside = {o.index for o in chosen}
    extra = [o for o in ops if (o.index in keep_set or o.completion_index in keep_set)
             and o.index not in inside]
    drawn = sorted(chosen + extra, key=lambda o: (o.start, o.index))
    note = (f"{len(ops):,} ops: the timeline draws the {len(chosen):,} invoked between "
            f"{chosen[0].start / 1e9:.3f} s and {chosen[-1].start / 1e9:.3f} s"
            f"{' and ' + str(len(extra)) + ' more the checker names' if extra else ''}; "
            f"the overview strip and the plots show the whole run.")
    return drawn, note


def payload(iv: Intervals, drawn: list[Interval], marks: dict[str, list[int]]) -> dict:
    """The JSON the timeline script reads."""
    lanes_set = {o.process for o in drawn}
    lanes = ["nemesis"] + [str(p) for p in sorted(lanes_set, key=_lane_order)]
    lane_of = {p: i + 1 for i, p in enumerate(sorted(lanes_set, key=_lane_order))}
    fs: list[str] = []
    f_of: dict[str, int] = {}
    keys: list[str] = []
    key_of: dict[str, int] = {}
    rows = []
    for o in drawn:
        if o.f not in f_of:
            f_of[o.f] = len(fs)
            fs.append(o.f)
        k = -1
        if o.has_key:
            ks = _short(o.key, 40)
            if ks not in key_of:
                key_of[ks] = len(keys)
                keys.append(ks)
            k = key_of[ks]
        detail = o.describe()
        if o.outcome != "ok" or o.f != "read":
            detail += f" -> {o.outcome}"
        if o.error:
            detail += f" ({str(o.error)[:60]})"
        if o.node:
            detail += f" @ {str(o.node)[:30]}"
        rows.append([lane_of[o.process], _ms(o.start), None if o.end is None else _ms(o.end),
                     _OUTCOME.get(o.outcome, 2), f_of[o.f], k, o.index, detail])
    faults = [[w.kind, _ms(w.start), _ms(w.end), w.detail] for w in iv.faults]
    nem = [[_ms(int(e.get("time", 0))), str(e.get("f")), _short(e.get("value"), 80)]
           for e in iv.nemesis_events[:2000]]
    return {"t_end": _ms(max(iv.end_time, 1)), "lanes": lanes, "fs": fs, "keys": keys,
            "ops": rows, "faults": faults, "nemesis": nem, "marks": marks,
            "overview": overview(iv, drawn)}


def overview(iv: Intervals, drawn: list[Interval], buckets: int = OVERVIEW_BUCKETS) -> dict:
    """Ops invoked per time bucket by outcome, over the whole run."""
    end = max(iv.end_time, 1)
    counts = [[0] * buckets for _ in range(3)]
    for o in iv.ops:
        counts[_OUTCOME.get(o.outcome, 2)][min(int(o.start * buckets / end), buckets - 1)] += 1
    span = [_ms(drawn[0].start), _ms(max((o.end or iv.end_time) for o in drawn))] \
        if drawn else [0, _ms(end)]
    return {"buckets": buckets, "ok": counts[0], "fail": counts[1], "info": counts[2],
            "drawn": span}


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element (no `</script>`, no `<!--`)."""
    s = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


HTML = """
<div class="tl-bar">
  <button type="button" id="tl-in">zoom in</button>
  <button type="button" id="tl-out">zoom out</button>
  <button type="button" id="tl-reset">whole run</button>
  <button type="button" id="tl-fail" hidden>failing op</button>
  <label>key <select id="tl-key"><option value="-1">all</option></select></label>
  <span class="tl-help">ctrl+wheel or buttons: zoom &middot; drag: pan &middot; hover: details</span>
</div>
<canvas id="tl-overview" height="36"></canvas>
<div id="tl-scroll"><canvas id="tl-canvas"></canvas></div>
<div id="tl-tip" role="tooltip" hidden></div>
"""

CSS = """
.tl-bar{display:flex;gap:.5em;align-items:center;margin:.3em 0;flex-wrap:wrap}
.tl-help{color:#666;font-size:85%}
#tl-overview{width:100%;display:block;border:1px solid #ccc;cursor:pointer}
#tl-scroll{max-height:560px;overflow-y:auto;border:1px solid #ccc;border-top:0}
#tl-canvas{width:100%;display:block;cursor:grab}
#tl-tip{position:fixed;z-index:10;background:#222;color:#fff;padding:.35em .6em;
 border-radius:4px;font:12px/1.4 monospace;pointer-events:none;max-width:36em;white-space:pre-wrap}
"""

# The drawing script. It reads the JSON in #tl-data and exposes window.raftcheckTimeline
# (locate(index) gives an op's bar position, used by the browser tests).
JS = r"""
(function(){
"use strict";
var D = JSON.parse(document.getElementById("tl-data").textContent);
var C = ["#2f8f46", "#d1495b", "#edae49"], OUT = ["ok", "fail", "info"];
var FC = {partition:"#7b9acc", latency:"#b8a1d9", kill:"#e07a5f", pause:"#f2cc8f"};
var cv = document.getElementById("tl-canvas"), ov = document.getElementById("tl-overview");
var tip = document.getElementById("tl-tip"), keySel = document.getElementById("tl-key");
var LEFT = 64, TOP = 22, nl = D.lanes.length;
var LH = Math.max(3, Math.min(16, Math.floor(30000 / Math.max(nl, 1))));
var marks = D.marks || {}, failing = {}, conc = {}, keyFilter = -1;
(marks.failing || []).forEach(function(i){ failing[i] = 1; });
(marks.concurrent || []).forEach(function(i){ conc[i] = 1; });
var byLane = [];
for (var l = 0; l < nl; l++) byLane.push([]);
D.ops.forEach(function(o){ byLane[o[0]].push(o); });
byLane.forEach(function(a){ a.sort(function(x, y){ return x[1] - y[1]; }); });
D.keys.forEach(function(k, i){
  var opt = document.createElement("option"); opt.value = i; opt.textContent = k; keySel.appendChild(opt);
});
var full = [D.overview.drawn[0], Math.max(D.overview.drawn[1], D.overview.drawn[0] + 0.001)];
var view = full.slice();
function W(){ return Math.max(cv.clientWidth, 200); }
function xOf(t){ return LEFT + (t - view[0]) / (view[1] - view[0]) * (W() - LEFT - 8); }
function tOf(x){ return view[0] + (x - LEFT) / (W() - LEFT - 8) * (view[1] - view[0]); }
function size(c, h){
  var r = window.devicePixelRatio || 1, w = W();
  c.width = Math.round(w * r); c.height = Math.round(h * r); c.style.height = h + "px";
  var g = c.getContext("2d"); g.setTransform(r, 0, 0, r, 0, 0); return g;
}
function ticks(g, h){
  var span = view[1] - view[0], step = Math.pow(10, Math.floor(Math.log10(span / 6)));
  if (span / step > 12) step *= 5; else if (span / step > 6) step *= 2;
  g.fillStyle = "#444"; g.font = "11px sans-serif"; g.strokeStyle = "#eee";
  for (var t = Math.ceil(view[0] / step) * step, k = 0; t <= view[1] && k < 100; t += step, k++) {
    var x = xOf(t); g.beginPath(); g.moveTo(x, TOP - 4); g.lineTo(x, h); g.stroke();
    g.fillText(t >= 1000 ? (t / 1000).toFixed(step >= 1000 ? 0 : 3) + " s" : t.toFixed(step >= 1 ? 0 : 2) + " ms", x + 2, 12);
  }
}
function draw(){
  var h = TOP + nl * LH + 4, g = size(cv, h), w = W();
  g.clearRect(0, 0, w, h); ticks(g, h);
  D.faults.forEach(function(f){
    var a = Math.max(xOf(f[1]), LEFT), b = Math.min(xOf(f[2]), w);
    if (b < LEFT || a > w) return;
    g.fillStyle = FC[f[0]] || "#999"; g.globalAlpha = 0.15; g.fillRect(a, TOP, b - a, h - TOP);
    g.globalAlpha = 0.8; g.fillRect(a, TOP + 1, Math.max(b - a, 1), LH - 2); g.globalAlpha = 1;
  });
  g.fillStyle = "#222";
  D.nemesis.forEach(function(n){  // every nemesis event: a tick in the nemesis lane
    var x = xOf(n[0]); if (x >= LEFT && x <= w) g.fillRect(x - 0.5, TOP, 1, LH);
  });
  g.font = Math.min(11, LH) + "px sans-serif";
  for (var l = 0; l < nl; l++) {
    var y = TOP + l * LH;
    if (LH >= 8) { g.fillStyle = "#333"; g.fillText(D.lanes[l], 4, y + LH - 3); }
    var lane = byLane[l];
    for (var i = 0; i < lane.length; i++) {
      var o = lane[i], end = o[2] === null ? D.t_end : o[2];
      if (end < view[0] || o[1] > view[1]) continue;
      if (keyFilter >= 0 && o[5] !== keyFilter) continue;
      var a = Math.max(xOf(o[1]), LEFT), b = Math.min(xOf(end), w), bw = Math.max(b - a, 1.5);
      g.fillStyle = C[o[3]]; g.globalAlpha = o[2] === null ? 0.4 : 0.9;
      g.fillRect(a, y + 1, bw, LH - 2); g.globalAlpha = 1;
      if (failing[o[6]]) { g.strokeStyle = "#b00020"; g.lineWidth = 2; g.setLineDash([]); g.strokeRect(a - 1, y, bw + 2, LH); }
      else if (conc[o[6]]) { g.strokeStyle = "#222"; g.lineWidth = 1; g.setLineDash([3, 2]); g.strokeRect(a, y + 0.5, bw, LH - 1); g.setLineDash([]); }
    }
  }
  drawOverview();
}
function drawOverview(){
  var O = D.overview, h = 36, g = size(ov, h), w = W(), n = O.buckets, max = 1;
  for (var i = 0; i < n; i++) max = Math.max(max, O.ok[i] + O.fail[i] + O.info[i]);
  var bw = (w - LEFT - 8) / n;
  g.fillStyle = "#333"; g.font = "10px sans-serif"; g.fillText("whole run", 4, 22);
  for (i = 0; i < n; i++) {
    var y = h, parts = [O.ok[i], O.fail[i], O.info[i]];
    for (var k = 0; k < 3; k++) {
      var bh = parts[k] / max * (h - 4); g.fillStyle = C[k]; g.fillRect(LEFT + i * bw, y - bh, Math.max(bw - 0.2, 0.5), bh); y -= bh;
    }
  }
  var sx = function(t){ return LEFT + t / D.t_end * (w - LEFT - 8); };
  g.strokeStyle = "#000"; g.lineWidth = 1.5; g.strokeRect(sx(view[0]), 1, Math.max(sx(view[1]) - sx(view[0]), 2), h - 2);
}
function zoom(factor, at){
  var c = at === undefined ? (view[0] + view[1]) / 2 : at, span = (view[1] - view[0]) * factor;
  span = Math.max(span, 0.001);
  view = [c - (c - view[0]) * factor, c - (c - view[0]) * factor + span]; draw();
}
function hit(ev){
  var r = cv.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
  var l = Math.floor((y - TOP) / LH);
  if (l < 0 || l >= nl || x < LEFT) return null;
  var t = tOf(x), slop = 3 * (view[1] - view[0]) / (W() - LEFT);
  if (l === 0) {
    for (var j = 0; j < D.nemesis.length; j++) { var n = D.nemesis[j]; if (Math.abs(t - n[0]) <= slop) return "nemesis " + n[1] + " at " + (n[0] / 1000).toFixed(3) + " s\n" + n[2]; }
    for (var i = 0; i < D.faults.length; i++) { var f = D.faults[i]; if (t >= f[1] - slop && t <= f[2] + slop) return "fault: " + f[0] + "\n" + (f[1] / 1000).toFixed(3) + " s .. " + (f[2] / 1000).toFixed(3) + " s\n" + f[3]; }
    return null;
  }
  var lane = byLane[l];
  for (i = lane.length - 1; i >= 0; i--) {
    var o = lane[i], end = o[2] === null ? D.t_end : o[2];
    if (keyFilter >= 0 && o[5] !== keyFilter) continue;
    if (t >= o[1] - slop && t <= end + slop) {
      var lat = o[2] === null ? "never completed" : (o[2] - o[1]).toFixed(3) + " ms";
      return "op " + o[6] + "  process " + D.lanes[l] + "  " + OUT[o[3]] + (failing[o[6]] ? "  (CANNOT BE LINEARIZED)" : conc[o[6]] ? "  (concurrent with the failing op)" : "") +
        "\n" + o[7] + "\ninvoked " + (o[1] / 1000).toFixed(6) + " s, latency " + lat;
    }
  }
  return null;
}
var drag = null;
cv.addEventListener("mousedown", function(ev){ drag = {x: ev.clientX, v: view.slice()}; cv.style.cursor = "grabbing"; });
window.addEventListener("mouseup", function(){ drag = null; cv.style.cursor = "grab"; });
cv.addEventListener("mousemove", function(ev){
  if (drag) {
    var dt = (ev.clientX - drag.x) / (W() - LEFT - 8) * (drag.v[1] - drag.v[0]);
    view = [drag.v[0] - dt, drag.v[1] - dt]; draw(); return;
  }
  var text = hit(ev);
  if (!text) { tip.hidden = true; return; }
  tip.textContent = text; tip.hidden = false;
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 320) + "px"; tip.style.top = (ev.clientY + 14) + "px";
});
cv.addEventListener("mouseleave", function(){ tip.hidden = true; });
cv.addEventListener("wheel", function(ev){
  if (!ev.ctrlKey && !ev.altKey) return;
  ev.preventDefault(); var r = cv.getBoundingClientRect();
  zoom(ev.deltaY > 0 ? 1.25 : 0.8, tOf(ev.clientX - r.left));
}, {passive: false});
cv.addEventListener("dblclick", function(){ view = full.slice(); draw(); });
ov.addEventListener("click", function(ev){
  var r = ov.getBoundingClientRect(), t = (ev.clientX - r.left - LEFT) / (W() - LEFT - 8) * D.t_end, span = view[1] - view[0];
  view = [t - span / 2, t + span / 2]; draw();
});
document.getElementById("tl-in").onclick = function(){ zoom(0.5); };
document.getElementById("tl-out").onclick = function(){ zoom(2); };
document.getElementById("tl-reset").onclick = function(){ view = full.slice(); draw(); };
keySel.onchange = function(){ keyFilter = parseInt(keySel.value, 10); draw(); };
var fb = document.getElementById("tl-fail"), fw = marks.window;
if (fw) { fb.hidden = false; fb.onclick = function(){ focusFailure(); }; }
function focusFailure(){
  var pad = Math.max((fw[1] - fw[0]) * 0.15, 1);
  view = [fw[0] - pad, fw[1] + pad]; draw();
  var l = laneOf((marks.failing || [])[0]);
  if (l !== null) document.getElementById("tl-scroll").scrollTop = Math.max(0, TOP + l * LH - 100);
}
function laneOf(index){
  for (var l = 0; l < nl; l++) for (var i = 0; i < byLane[l].length; i++) if (byLane[l][i][6] === index) return l;
  return null;
}
window.addEventListener("resize", draw);
window.raftcheckTimeline = {
  lanes: nl, drawn: D.ops.length,
  locate: function(index){
    var l = laneOf(index); if (l === null) return null;
    var o = byLane[l].filter(function(x){ return x[6] === index; })[0], end = o[2] === null ? D.t_end : o[2];
    var a = Math.max(xOf(o[1]), LEFT), b = Math.min(xOf(end), W());
    return {x: (a + b) / 2, y: TOP + l * LH + LH / 2};
  },
  focusFailure: focusFailure,
  view: function(){ return view.slice(); }
};
if (fw) focusFailure(); else draw();
})();
"""
