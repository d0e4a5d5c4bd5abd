"""The Toxiproxy adapter against a real toxiproxy server and real TCP echo servers."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from cluster.local import find_toxiproxy, free_port
from history.errors import BadInput
from cluster.toxiproxy import Toxiproxy, ToxiproxyError
from tests.support import require


def _binary() -> str:
    try:
        return find_toxiproxy()
    except BadInput as e:
        require(False, str(e))
        raise


@pytest.fixture
def server():
    """A real toxiproxy server on a free port; yields (adapter, Popen)."""
    binary = _binary()
    port = free_port()
    proc = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tp = Toxiproxy("127.0.0.1", port, timeout_s=2.0)
    try:
        tp.wait_ready(10)
        yield tp, proc
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(10)
        tp.close()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


@pytest.fixture
def echo():
    """Two real TCP echo servers standing in for nodes n1 and n2's peer ports."""
    servers = []
    for _ in range(2):
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield {f"n{i + 1}": f"127.0.0.1:{s.server_address[1]}" for i, s in enumerate(servers)}
    for s in servers:
        s.shutdown()
        s.server_close()


def _proxies(tp: Toxiproxy, echo: dict[str, str]) -> dict[str, str]:
    created = tp.create_proxies([
        {"name": "n1-to-n2", "upstream": echo["n2"], "listen": "127.0.0.1:0"},
        {"name": "n2-to-n1", "upstream": echo["n1"], "listen": "127.0.0.1:0"},
    ])
    return {name: p.listen for name, p in created.items()}


def _connect(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    return s


def _echoes(s: socket.socket, data: bytes, wait_s: float = 5) -> bool:
    """True if `data` comes back within wait_s; False on silence."""
    s.settimeout(wait_s)
    s.sendall(data)
    got = b""
    try:
        while len(got) < len(data):
            chunk = s.recv(4096)
            if not chunk:
                return False
            got += chunk
    except socket.timeout:
        return False
    return got == data


def test_proxies_created_and_forward(server, echo):
    tp, _ = server
    listen = _proxies(tp, echo)
    raw = tp.proxies_raw()
    assert set(raw) == {"n1-to-n2", "n2-to-n1"}
    assert raw["n1-to-n2"]["upstream"] == echo["n2"]
    ports = {a.rsplit(":", 1)[1] for a in listen.values()}
    assert len(ports) == 2 and "0" not in ports  # real ports, picked by the server
    with _connect(listen["n1-to-n2"]) as s:
        assert _echoes(s, b"hello")


def test_cut_blocks_bytes_one_way_and_heal_restores(server, echo):
    tp, _ = server
    listen = _proxies(tp, echo)
    tp.cut("n1", "n2")
    tp.cut("n1", "n2")  # idempotent
    toxics = tp.proxies_raw()["n1-to-n2"]["toxics"]
    assert [(t["name"], t["type"], t["stream"], t["attributes"]["timeout"])
            for t in toxics] == [("cut", "timeout", "upstream", 0)]
    assert tp.proxies_raw()["n2-to-n1"]["toxics"] == []
    with _connect(listen["n1-to-n2"]) as cut, _connect(listen["n2-to-n1"]) as ok:
        assert not _echoes(cut, b"lost", wait_s=0.5)  # a black hole, not a reset
        assert _echoes(ok, b"other way")
    tp.add_latency("n2", "n1", 20, 5)
    tp.heal()
    raw = tp.proxies_raw()
    assert all(p["toxics"] == [] and p["enabled"] for p in raw.values())
    with _connect(listen["n1-to-n2"]) as s:
        assert _echoes(s, b"back")


def test_failed_calls_raise(server, echo):
    tp, proc = server
    _proxies(tp, echo)
    with pytest.raises(ToxiproxyError, match="404"):
        tp.cut("n1", "n9")  # no such proxy
    with pytest.raises(ToxiproxyError, match="409"):
        tp.create_proxy("n1-to-n2", echo["n2"])
    busy = tp.proxies_raw()["n1-to-n2"]["listen"]
    with pytest.raises(ToxiproxyError, match="500"):  # the library hides this one
        tp.create_proxy("n1-to-n3", echo["n2"], listen=busy)
    with pytest.raises(ToxiproxyError, match="400"):
        tp.add_toxic("n1-to-n2", "bad", "no-such-toxic", {})
    os.killpg(proc.pid, signal.SIGSTOP)  # a hung server: the timeout must fire
    try:
        short = Toxiproxy(tp.host, tp.port, timeout_s=0.5, connect_timeout_s=0.5)
        with pytest.raises(ToxiproxyError, match="Timeout"):
            short.heal()
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    closed = Toxiproxy("127.0.0.1", free_port(), timeout_s=1)
    with pytest.raises(ToxiproxyError, match="ConnectionError"):
        closed.version()


def test_heal_detects_a_missing_proxy(server, echo):
    tp, _ = server
    _proxies(tp, echo)
    requests.delete(f"{tp.url}/proxies/n2-to-n1", timeout=5).raise_for_status()
    with pytest.raises(ToxiproxyError, match="n2-to-n1: missing"):
        tp.heal()


class _LyingReset(BaseHTTPRequestHandler):
    """Forwards every call to the real server, but answers POST /reset with 204
    without forwarding it: a reset lost on the way, that looks successful."""

    upstream = ""

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path == "/reset":
            self.send_response(204)
            self.end_headers()
            return
        r = requests.request(self.command, self.upstream + self.path, data=body or None,
                             timeout=5)
        self.send_response(r.status_code)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_heal_that_leaves_a_toxic_raises(server, echo):
    tp, _ = server
    handler = type("H", (_LyingReset,), {"upstream": tp.url})
    front = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        lying = Toxiproxy("127.0.0.1", front.server_address[1], timeout_s=5)
        _proxies(lying, echo)
        lying.cut("n1", "n2")
        with pytest.raises(ToxiproxyError, match=r"n1-to-n2: toxics left \['cut'\]"):
            lying.heal()
        tp.heal()  # the real server heals fine
        assert all(not p["toxics"] for p in tp.proxies_raw().values())
    finally:
        front.shutdown()
        front.server_close()
