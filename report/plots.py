"""Plots: latency and throughput of a run, with the fault windows shaded (Jepsen's perf).

- *latency*: one point per completed client op, at its invoke time, its latency on a
  log scale; the colour is the outcome (ok / fail / info), the marker is the f.
- *rate*: completed ops per second over time, one line per (f, outcome).

Both use matplotlib's Agg backend (no display) and come out as PNG bytes, whose size
does not grow with the history (a vector image of 100,000 points would). Every fault
window (history.intervals.FaultWindow) is shaded with its kind's colour.
"""

from __future__ import annotations

import base64
import io

from history.intervals import Intervals

OUTCOME_COLORS = {"ok": "#2f8f46", "fail": "#d1495b", "info": "#edae49"}
FAULT_COLORS = {"partition": "#7b9acc", "latency": "#b8a1d9", "kill": "#e07a5f",
                "pause": "#f2cc8f"}
F_MARKERS = {"read": "o", "write": "^", "cas": "s"}
NS_PER_S = 1e9


def _figure(width: float = 10.0, height: float = 3.4):
    import matplotlib
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _shade(ax, iv: Intervals) -> None:
    seen: set[str] = set()
    for w in iv.faults:
        ax.axvspan(w.start / NS_PER_S, w.end / NS_PER_S, alpha=0.18, lw=0,
                   color=FAULT_COLORS.get(w.kind, "#999999"),
                   label=None if w.kind in seen else w.kind)
        seen.add(w.kind)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def latency_png(iv: Intervals) -> bytes:
    """Latency (ms, log scale) of every completed op against its invoke time (s)."""
    fig, ax = _figure()
    _shade(ax, iv)
    groups: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for op in iv.ops:
        if op.end is None:
            continue
        xs, ys = groups.setdefault((op.f, op.outcome), ([], []))
        xs.append(op.start / NS_PER_S)
        ys.append(max(op.end - op.start, 1000) / 1e6)
    for (f, outcome), (xs, ys) in sorted(groups.items()):
        # plot() with markers only: Agg's fast marker path (scatter is slow at 100k points)
        ax.plot(xs, ys, ls="none", marker=F_MARKERS.get(f, "."), ms=2.5, mew=0,
                color=OUTCOME_COLORS.get(outcome, "#555555"), alpha=0.7,
                label=f"{f} {outcome}")
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency of every op")
    if groups or iv.faults:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, markerscale=2)
    _limits(ax, iv)
    return _png(fig)


def rate_png(iv: Intervals, buckets: int = 120) -> bytes:
    """Completed ops per second in time buckets, one line per (f, outcome)."""
    fig, ax = _figure()
    _shade(ax, iv)
    end = max(iv.end_time, 1)
    width = end / buckets
    series: dict[tuple[str, str], list[int]] = {}
    for op in iv.ops:
        if op.end is None:
            continue
        b = min(int(op.end / width), buckets - 1)
        series.setdefault((op.f, op.outcome), [0] * buckets)[b] += 1
    xs = [(i + 0.5) * width / NS_PER_S for i in range(buckets)]
    per_s = NS_PER_S / width
    for (f, outcome), counts in sorted(series.items()):
        ax.plot(xs, [c * per_s for c in counts], lw=1.2,
                ls={"read": "-", "write": "--", "cas": ":"}.get(f, "-."),
                color=OUTCOME_COLORS.get(outcome, "#555555"), label=f"{f} {outcome}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ops / s")
    ax.set_title("Throughput by f and outcome")
    if series or iv.faults:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _limits(ax, iv)
    return _png(fig)


def _limits(ax, iv: Intervals) -> None:
    if iv.end_time > 0:
        ax.set_xlim(0, iv.end_time / NS_PER_S)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
