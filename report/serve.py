"""`raftcheck serve`: browse the store in a web browser.

The index is a table of runs (SPEC section 8: store/<test-name>/<timestamp>/), newest
first: name, time, verdict (coloured), the checkers that failed (linearizable,
node-health, raft-invariants), op count and links to the report, the history,
results.json, the logs and a zip of the folder. Files are served from under /runs/.

It serves only files inside the store: a request path is refused (403) when it is
absolute, has a `..` or hidden component (after percent-decoding), or resolves
(symlinks followed) outside the store; symlinks inside it (`latest`) are fine. Files
are opened with O_NOFOLLOW on their resolved path and must be regular files.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import html
import io
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from history.errors import BadInput

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_RUNS = 2000
RUN_FILES = ("history.jsonl", "test.json", "results.json")
TEXT_TYPES = {".txt", ".log", ".jsonl", ".json", ".edn", ".yaml", ".yml"}
STORE_KEY = web.AppKey("store", Path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="store", metavar="DIR",
                        help="the store folder to browse (default: ./store)")
    parser.add_argument("--port", type=int, default=8080,
                        help="TCP port (default 8080; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")


def run(args: argparse.Namespace) -> int:
    store = Path(args.store)
    if not store.is_dir():
        raise BadInput("no such store folder", file=str(store), field="--store")
    if not 0 <= args.port <= 65535:
        raise BadInput(f"port {args.port} is out of range 0..65535", field="--port")
    return asyncio.run(_serve(store.resolve(), args.host, args.port))


async def _serve(store: Path, host: str, port: int) -> int:
    runner = web.AppRunner(make_app(store), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            raise BadInput(f"cannot listen on {host}:{port}: {e.strerror or e}",
                           field="--port") from None
        for h, p in runner.addresses[:1]:
            print(f"raftcheck serve: http://{h}:{p}/ (store {store}); Ctrl-C stops",
                  file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        return 0
    finally:
        await runner.cleanup()


def make_app(store: Path) -> web.Application:
    app = web.Application()
    app[STORE_KEY] = Path(os.path.realpath(store))
    app.router.add_get("/", index)
    app.router.add_get("/runs/{tail:.*}", serve_path)
    app.router.add_get("/zip/{tail:.*}", serve_zip)
    app.router.add_get("/favicon.ico", lambda _: web.Response(status=204))
    app.middlewares.append(_headers)
    return app


@web.middleware
async def _headers(request: web.Request, handler):
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


# -- paths --------------------------------------------------------------------

def inside(store: Path, rel: str) -> Path:
    """The real path of `rel` under `store`, or HTTPForbidden."""
    if "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise web.HTTPForbidden(text="refused: not a path inside the store\n")
    parts = [p for p in rel.split("/") if p]
    if any(p == ".." or p.startswith(".") for p in parts):
        raise web.HTTPForbidden(text="refused: '..' and hidden names are not served\n")
    real = os.path.realpath(os.path.join(store, *parts))
    if real != str(store) and not real.startswith(str(store) + os.sep):
        raise web.HTTPForbidden(text="refused: outside the store\n")
    return Path(real)


# -- runs ---------------------------------------------------------------------

def find_runs(store: Path) -> list[dict]:
    """Every run folder store/<test>/<stamp>/, newest first (latest links skipped)."""
    runs = []
    for test_dir in _dirs(store):
        for run_dir in _dirs(test_dir):
            if not any((run_dir / f).is_file() for f in RUN_FILES):
                continue
            runs.append(_describe(store, test_dir.name, run_dir))
    runs.sort(key=lambda r: (r["sort"], r["name"]), reverse=True)
    return runs


def _dirs(parent: Path) -> list[Path]:
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    return [Path(e.path) for e in entries
            if not e.name.startswith(".") and e.name != "latest"
            and e.is_dir(follow_symlinks=False)]


def _describe(store: Path, name: str, run_dir: Path) -> dict:
    verdict, ops, failed = "?", None, []
    try:
        res = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        verdict = {True: "valid", False: "invalid"}.get(res.get("valid"), "unknown")
        ops = (res.get("stats") or {}).get("ops")
        failed = [str(name) for name, c in (res.get("checkers") or {}).items()
                  if isinstance(c, dict) and c.get("valid") is False]
    except (OSError, ValueError, AttributeError):
        verdict = "no results"
    try:
        when = _dt.datetime.strptime(run_dir.name[:19], "%Y%m%dT%H%M%S.%f")
        shown = when.strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        when = _dt.datetime.fromtimestamp(run_dir.stat().st_mtime)
        shown = when.strftime("%Y-%m-%d %H:%M:%S")
    rel = f"{name}/{run_dir.name}"
    return {"name": name, "stamp": run_dir.name, "time": shown, "sort": when.isoformat(),
            "verdict": verdict, "ops": ops if isinstance(ops, int) else None, "rel": rel,
            "failed": failed,
            "files": {f: (run_dir / f).is_file() for f in
                      ("report.html", "history.txt", "history.jsonl", "results.json")},
            "logs": (run_dir / "nodes").is_dir()}


async def index(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    runs = await asyncio.to_thread(find_runs, store)
    rows = []
    for r in runs[:MAX_RUNS]:
        base = "/runs/" + quote(r["rel"]) + "/"

        def link(fname: str, label: str) -> str:
            return (f'<a href="{base}{fname}">{label}</a>' if r["files"].get(fname)
                    else f'<span class="na">{label}</span>')
        rows.append(
            f'<tr class="run"><td>{html.escape(r["name"])}</td><td>{html.escape(r["time"])}</td>'
            f'<td class="v {html.escape(r["verdict"].replace(" ", "-"))}">{html.escape(r["verdict"])}</td>'
            f'<td class="failed">{html.escape(", ".join(r["failed"]))}</td>'
            f'<td>{"" if r["ops"] is None else format(r["ops"], ",")}</td>'
            f'<td>{link("report.html", "report")} {link("history.txt", "history")} '
            f'{link("history.jsonl", "jsonl")} {link("results.json", "results")} '
            f'<a href="{base}">files</a> '
            + (f'<a href="{base}nodes/">logs</a> ' if r["logs"] else "")
            + f'<a href="/zip/{quote(r["rel"])}">zip</a></td></tr>')
    more = (f"<p>{len(runs) - MAX_RUNS} older runs not listed.</p>" if len(runs) > MAX_RUNS else "")
    body = (f"<h1>raftcheck store</h1><p><code>{html.escape(str(store))}</code>: "
            f"{len(runs)} runs.</p>"
            '<table><tr><th>test</th><th>time</th><th>verdict</th><th>failed checkers</th><th>ops</th><th>files</th></tr>'
            + "".join(rows) + "</table>" + more)
    return web.Response(text=_page("raftcheck store", body), content_type="text/html")


async def serve_path(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    rel = request.match_info["tail"]
    real = inside(store, rel)
    if real.is_dir():
        if rel and not rel.endswith("/"):
            raise web.HTTPFound("/runs/" + quote(rel) + "/")
        return _listing(store, real, rel)
    return await _send_file(request, real)


def _listing(store: Path, folder: Path, rel: str) -> web.Response:
    items = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        raise web.HTTPNotFound() from None
    for e in entries:
        if e.name.startswith("."):
            continue
        real = os.path.realpath(e.path)
        if not real.startswith(str(store) + os.sep):
            continue  # a symlink out of the store is not shown (nor served)
        try:
            is_dir = os.path.isdir(real)
            size = "" if is_dir else f"{os.path.getsize(real):,} bytes"
        except OSError:
            continue  # a dangling symlink
        name = e.name + ("/" if is_dir else "")
        items.append(f'<li><a href="{quote(name)}">{html.escape(name)}</a> {size}</li>')
    body = (f'<p><a href="/">all runs</a></p><h1>{html.escape(rel or "/")}</h1>'
            f"<ul>{''.join(items)}</ul>")
    return web.Response(text=_page(rel, body), content_type="text/html")


async def _send_file(request: web.Request, real: Path) -> web.StreamResponse:
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise web.HTTPNotFound(text="no such file\n") from None
    except OSError:
        raise web.HTTPForbidden(text="refused\n") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise web.HTTPForbidden(text="refused: not a regular file\n")
        suffix = real.suffix.lower()
        ctype = ("text/html; charset=utf-8" if suffix == ".html" else
                 "text/plain; charset=utf-8" if suffix in TEXT_TYPES else
                 "application/octet-stream")
        resp = web.StreamResponse(headers={"Content-Type": ctype,
                                           "Content-Length": str(st.st_size)})
        return await _stream(request, resp, f)


async def _stream(request: web.Request, resp: web.StreamResponse,
                  f: io.BufferedIOBase) -> web.StreamResponse:
    await resp.prepare(request)
    while chunk := await asyncio.to_thread(f.read, CHUNK):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def serve_zip(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    rel = request.match_info["tail"].rstrip("/")
    real = inside(store, rel)
    parts = real.relative_to(store).parts
    if len(parts) != 2 or not real.is_dir():
        raise web.HTTPNotFound(text="not a run folder\n")
    spool = await asyncio.to_thread(_zip, store, real, f"{parts[0]}-{parts[1]}")
    with spool:
        size = spool.seek(0, os.SEEK_END)
        spool.seek(0)
        resp = web.StreamResponse(headers={
            "Content-Type": "application/zip", "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{parts[0]}-{parts[1]}.zip"'})
        return await _stream(request, resp, spool)


def _zip(store: Path, run_dir: Path, top: str):
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(run_dir):
            dirs[:] = [d for d in dirs if not d.startswith(".")
                       and not os.path.islink(os.path.join(root, d))]
            for name in sorted(files):
                path = os.path.join(root, name)
                real = os.path.realpath(path)
                if name.startswith(".") or not real.startswith(str(store) + os.sep) \
                        or not os.path.isfile(real):
                    continue
                z.write(real, f"{top}/{os.path.relpath(path, run_dir)}")
    return spool


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>"
            "body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}"
            "td a{margin-right:.5em}.na{color:#aaa;margin-right:.5em}"
            ".v{font-weight:700;color:#fff}.v.valid{background:#2f8f46}.v.invalid{background:#b00020}"
            ".v.unknown{background:#7a7a7a}.v.no-results,.v.\\?{background:#bbb}"
            f"</style></head><body>{body}</body></html>")
