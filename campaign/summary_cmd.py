"""`raftcheck summary STORE...`: one campaign's table from the stores of its shards.

A campaign run as N shards (`raftcheck campaign FILE --shard I/N` on N machines, CI
jobs or Kubernetes pods) leaves N stores. Each run folder's test.json names its
campaign and cell (campaign.campaign_cmd), so the stores, downloaded side by side,
merge back into the table the unsharded campaign prints: the runs in cell order,
their verdicts and folders, the counts, and the worst exit code. A cell no store has
is listed as missing and makes the exit code at least unknown (2): a shard that never
ran must not pass. Runs that belong to no campaign are listed after, by folder.
`--html FILE` also writes one page with the table and a link to every run's report.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from history.errors import BadInput
from campaign import store
from campaign.runner import (EXIT_INTERNAL, EXIT_UNKNOWN, RunOutcome, exit_code,
                             worst_exit)
from campaign.campaign_cmd import LABELS, describe_options, print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="+", metavar="STORE",
                        help="store folders (or run folders) to merge")
    parser.add_argument("--html", metavar="FILE", default=None,
                        help="also write the table as one HTML page with links to the "
                             "runs' reports")


@dataclass
class StoredRun:
    """One run folder as the summary sees it."""

    folder: Path
    label: str
    exit_code: int
    campaign: str | None
    cell: int | None
    cells: int | None
    started: str


def find_runs(paths: list[Path]) -> list[Path]:
    """Every run folder (one holding test.json) under `paths`, once each; the
    `latest` links are skipped."""
    seen: dict[str, Path] = {}
    for root in paths:
        if not root.exists():
            raise BadInput("no such folder", file=str(root))
        if (root / store.TEST_JSON).is_file():
            seen.setdefault(os.path.realpath(root), root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != store.LATEST]
            if store.TEST_JSON in filenames:
                seen.setdefault(os.path.realpath(dirpath), Path(dirpath))
                dirnames[:] = []
    return list(seen.values())


def read_run(folder: Path) -> StoredRun:
    """What the summary needs of one run folder; a run without results crashed."""
    try:
        test = json.loads((folder / store.TEST_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"unreadable: {e}", file=str(folder / store.TEST_JSON)) from None
    try:
        results = json.loads((folder / store.RESULTS_JSON).read_text(encoding="utf-8"))
        code = exit_code(results.get("valid"))
    except (OSError, ValueError):
        code = EXIT_INTERNAL
    camp = test.get("campaign") or {}
    return StoredRun(folder, describe_options(test.get("options") or {}), code,
                     camp.get("name"), camp.get("cell"), camp.get("cells"),
                     str(test.get("started", "")))


def merge(runs: list[StoredRun]) -> tuple[list[StoredRun], list[str]]:
    """Runs in table order (campaign, cell; then the rest by folder), one per cell
    (the latest when a cell ran twice), and notes: reruns and missing cells."""
    notes: list[str] = []
    by_cell: dict[tuple[str, int], StoredRun] = {}
    others: list[StoredRun] = []
    sizes: dict[str, int] = {}
    for r in runs:
        if r.campaign is None or r.cell is None:
            others.append(r)
            continue
        sizes[r.campaign] = max(sizes.get(r.campaign, 0), r.cells or 0)
        key = (r.campaign, r.cell)
        old = by_cell.get(key)
        if old is not None:
            keep, drop = (r, old) if r.started >= old.started else (old, r)
            notes.append(f"campaign {r.campaign} cell {r.cell} ran twice: {keep.folder} "
                         f"kept, {drop.folder} left out")
            by_cell[key] = keep
        else:
            by_cell[key] = r
    for name, size in sorted(sizes.items()):
        missing = [c for c in range(1, size + 1) if (name, c) not in by_cell]
        if missing:
            notes.append(f"campaign {name}: {len(missing)} of {size} cells missing: "
                         + ", ".join(map(str, missing)))
    ordered = [by_cell[k] for k in sorted(by_cell)]
    return ordered + sorted(others, key=lambda r: str(r.folder)), notes


def write_html(path: Path, rows: list[StoredRun], notes: list[str], code: int) -> None:
    """One page: the verdict, the notes, and the table with links to the reports."""
    def link(r: StoredRun) -> str:
        report = r.folder / "report.html"
        target = report if report.exists() else r.folder
        rel = os.path.relpath(target, path.parent)
        return f'<a href="{html.escape(rel)}">{html.escape(str(r.folder))}</a>'
    colors = {"passed": "#1a7f37", "failed": "#cf222e", "unknown": "#9a6700",
              "crashed": "#8250df"}
    body = [f"<h1>raftcheck summary: {html.escape(LABELS.get(code, 'crashed'))} "
            f"(exit {code})</h1>"]
    body += [f"<p>{html.escape(n)}</p>" for n in notes]
    body.append("<table><tr><th>#</th><th>campaign</th><th>cell</th><th>verdict</th>"
                "<th>run</th><th>folder</th></tr>")
    for i, r in enumerate(rows, 1):
        verdict = LABELS.get(r.exit_code, "crashed")
        body.append(
            f"<tr><td>{i}</td><td>{html.escape(r.campaign or '-')}</td>"
            f"<td>{r.cell or '-'}</td><td style=\"color:{colors[verdict]}\">{verdict}</td>"
            f"<td>{html.escape(r.label)}</td><td>{link(r)}</td></tr>")
    body.append("</table>")
    page = ("<!doctype html><meta charset=\"utf-8\"><title>raftcheck summary</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            "</style>" + "\n".join(body))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)


def run(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    folders = find_runs([Path(p) for p in args.stores])
    if not folders:
        raise BadInput("no run folders (none holds test.json)", file=args.stores[0])
    rows, notes = merge([read_run(f) for f in folders])
    print_summary([(r.label, RunOutcome(r.folder, None, r.exit_code, {})) for r in rows],
                  out)
    for note in notes:
        print(note, file=out)
    code = worst_exit([r.exit_code for r in rows]
                      + ([EXIT_UNKNOWN] if any("missing" in n for n in notes) else []))
    if args.html:
        write_html(Path(args.html), rows, notes, code)
        print(f"summary page: {args.html}", file=out)
    return code
