"""Benchmark: size and time of report.html for 1,000 / 10,000 / 100,000-op runs.

Synthetic histories (report/sample.py: 5 clients on 8 keys, a partition every
second, one stale read so the page carries a failure view) are checked with the real
checker (`--no-checker`: a built failure, for speed), then `render_report` writes the
page. Prints, per size: render time, page size, the part that is plots, how many ops
the timeline draws, and the ratios to the targets (10,000 ops: < 5 MB, < 5 s). The matplotlib import is timed
separately: a run pays it once.

    python bench/report.py [--sizes 1000,10000,100000] [--no-checker]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report.page import render_report  # noqa: E402
from report.sample import results_for, synthetic_history  # noqa: E402

TARGET_MB, TARGET_S = 5.0, 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--no-checker", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.figure  # noqa: F401
    print(f"matplotlib import: {time.perf_counter() - t:.2f} s "
          "(paid once per process; not in the rows below)")
    print(f"{'ops':>8} {'check s':>8} {'render s':>9} {'size MB':>8} {'plots MB':>9} "
          f"{'drawn':>7} {'s/target':>9} {'MB/target':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            ops = synthetic_history(n, seed=11, stale_read=True)
            t0 = time.perf_counter()
            results = results_for(ops, use_checker=not args.no_checker)
            t1 = time.perf_counter()
            out = Path(tmp) / f"report-{n}.html"
            warnings = render_report(ops, results, {"name": "bench", "seed": 11}, out)
            t2 = time.perf_counter()
            page = out.read_text(encoding="utf-8")
            size = os.path.getsize(out) / 1e6
            plots = sum(len(m) for m in re.findall(r'data:image/png;base64,[^"]*', page)) / 1e6
            m = re.search(r'id="tl-data">(.*?)</script>', page)
            drawn = len(json.loads(m.group(1))["ops"]) if m else 0
            print(f"{len(ops):>8,} {t1 - t0:>8.2f} {t2 - t1:>9.2f} {size:>8.2f} {plots:>9.2f} "
                  f"{drawn:>7,} {(t2 - t1) / TARGET_S:>9.2f} {size / TARGET_MB:>10.2f}"
                  + (f"  warnings: {warnings}" if warnings else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
