"""`raftcheck serve`: a real server process on a free port, browsed over real HTTP.

It lists the runs of a store, serves their reports, histories, logs and zips, and
refuses every path outside the store: `..` (plain and percent-encoded), encoded
slashes, absolute paths, NUL bytes, and symlinks that lead out of it."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from campaign import store as store_mod
from report.page import render_report
from report.sample import results_for, synthetic_history

SECRET = "top-secret-marker-7f3a"
RUNS = (("reg-ok", False, "20261126T030000.000"), ("reg-bad", True, "20261126T031500.123"),
        ("reg-raft", False, "20261126T031000.000"))


def _make_store(root: Path) -> Path:
    store = root / "store"
    for name, stale, stamp in RUNS:
        run = store / name / stamp
        (run / "nodes").mkdir(parents=True)
        ops = synthetic_history(300, seed=3, stale_read=stale)
        results = results_for(ops)
        if name == "reg-raft":  # linearizable, but a Raft invariant failed
            results["checkers"]["raft-invariants"] = {
                "valid": False, "violations": ["Election Safety (Figure 3): term 2 has 2 "
                                               "leaders: n1, n2"], "checked": {}}
            results["valid"] = False
        with open(run / "history.jsonl", "w", encoding="utf-8") as f:
            f.writelines(op.to_json() + "\n" for op in ops)
        (run / "history.txt").write_text("0 0 invoke write 0 1\n", encoding="utf-8")
        (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
        (run / "test.json").write_text(json.dumps({"name": name, "seed": 3}), encoding="utf-8")
        (run / "nodes" / "n1.log").write_text("n1 became leader\n", encoding="utf-8")
        render_report(ops, results, {"name": name, "seed": 3}, run / "report.html")
        store_mod.update_latest(run)
    # a crashed run: no results.json
    crashed = store / "reg-crash" / "20261126T032000.000"
    crashed.mkdir(parents=True)
    (crashed / "history.jsonl").write_text("", encoding="utf-8")
    # things outside the store, and symlinks to them from inside
    (root / "secret.txt").write_text(SECRET, encoding="utf-8")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text(SECRET, encoding="utf-8")
    os.symlink(root / "secret.txt", store / "reg-ok" / RUNS[0][2] / "evil.txt")
    os.symlink(root / "outside", store / "evil-dir")
    os.symlink("../../../../secret.txt", store / "reg-bad" / RUNS[1][2] / "nodes" / "rel.log")
    os.symlink("gone.log", store / "reg-bad" / RUNS[1][2] / "nodes" / "dangling.log")
    return store


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    store = _make_store(root)
    proc = subprocess.Popen([sys.executable, "-m", "campaign", "serve", "--store", str(store),
                             "--port", "0"], stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        port = _read_port(proc)
        yield {"port": port, "store": store, "root": root}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            rc = None
        proc.stderr.close()
    assert rc == 0  # SIGTERM is a clean stop


def _read_port(proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            seen += line
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if m:
                return int(m.group(1))
        if proc.poll() is not None:
            break
    raise AssertionError(f"serve did not start: {seen!r}")


def get(port: int, path: str) -> tuple[int, dict, bytes]:
    """A raw GET: the path is sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("Accept-Encoding", "gzip, br")  # no .gz side files are served
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_index_lists_runs_with_coloured_verdicts_and_links(server):
    status, headers, body = get(server["port"], "/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    rows = re.findall(r'<tr class="run">(.*?)</tr>', page)
    assert len(rows) == 4
    assert [re.search(r"<td>([^<]*)</td>", r).group(1) for r in rows] == \
        ["reg-crash", "reg-bad", "reg-raft", "reg-ok"]  # newest first
    failed = [re.search(r'<td class="failed">([^<]*)</td>', r).group(1) for r in rows]
    assert failed == ["", "linearizable", "raft-invariants", ""]
    assert 'class="v invalid">invalid<' in page and 'class="v valid">valid<' in page
    assert 'class="v no-results">no results<' in page
    assert "evil-dir" not in page and "latest" not in page
    for name, _, stamp in RUNS:
        for f in ("report.html", "history.txt", "results.json", "nodes/"):
            assert f'href="/runs/{name}/{stamp}/{f}"' in page
        assert f'href="/zip/{name}/{stamp}"' in page


def test_serves_report_history_logs_and_zip(server):
    port = server["port"]
    name, _, stamp = RUNS[1]
    status, headers, body = get(port, f"/runs/{name}/{stamp}/report.html")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'id="verdict">INVALID<' in body
    status, headers, body = get(port, f"/runs/{name}/{stamp}/history.txt")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert body == b"0 0 invoke write 0 1\n"
    status, _, body = get(port, f"/runs/{name}/{stamp}/nodes/")
    assert status == 200 and b"n1.log" in body and b"rel.log" not in body
    assert get(port, f"/runs/{name}/{stamp}/nodes/dangling.log")[0] == 404
    assert get(port, f"/runs/{name}/{stamp}/nodes/n1.log")[2] == b"n1 became leader\n"
    # the latest symlinks stay inside the store, so they are served
    status, _, body = get(port, "/runs/latest/results.json")
    assert status == 200 and json.loads(body)["valid"] is False
    status, headers, body = get(port, f"/zip/{name}/{stamp}")
    assert status == 200 and headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert f"{name}-{stamp}/history.jsonl" in names
    assert f"{name}-{stamp}/nodes/n1.log" in names
    assert not any("rel.log" in n for n in names)
    assert get(port, f"/runs/{name}/{stamp}/missing.txt")[0] == 404


@pytest.mark.parametrize("path", [
    "/runs/reg-ok/20261126T030000.000/evil.txt",          # symlink to a file outside
    "/runs/evil-dir/secret.txt",                           # symlink to a folder outside
    "/runs/reg-bad/20261126T031500.123/nodes/rel.log",     # relative symlink out
    "/runs/../secret.txt",
    "/runs/reg-ok/../../secret.txt",
    "/runs/%2e%2e/secret.txt",
    "/runs/%2E%2E%2Fsecret.txt",
    "/runs/reg-ok%2F..%2F..%2Fsecret.txt",
    "/runs/..%5csecret.txt",
    "/runs//etc/passwd",
    "/runs/%2Fetc%2Fpasswd",
    "/runs/reg-ok/%00/x",
    "/zip/..",
    "/zip/%2e%2e/outside",
    "/zip/evil-dir",
    "/../secret.txt",
])
def test_refuses_paths_outside_the_store(server, path):
    status, _, body = get(server["port"], path)
    assert status in (400, 403, 404), (path, status)
    assert SECRET.encode() not in body and b"root:" not in body


def test_bad_store_is_one_line_and_exit_254(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "campaign", "serve", "--store",
                           str(tmp_path / "nope"), "--port", "0"],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 254
    assert proc.stderr.strip().count("\n") == 0 and "--store" in proc.stderr
