"""A Toxiproxy adapter: the network faults of a test, and the proof they are gone.

Toxiproxy (Shopify) is a TCP proxy with an HTTP API; a *toxic* is a fault attached
to one direction (stream) of one proxy. The cluster puts one proxy on every ordered
pair of nodes (SPEC section 6: `ni-to-nj` forwards node i's messages to node j), so a
toxic on the upstream stream of `ni-to-nj` hurts exactly the link i -> j.

This module is a thin adapter over `toxiproxy-python` (the design card's client). It
reuses that library's data types (`toxiproxy.Proxy`, `toxiproxy.toxic.Toxic`) and its
answer classification (`toxiproxy.api.validate_response`), but sends the requests
itself, because the library:
  - keeps the server address in class attributes of `APIConsumer` (global state: two
    clusters in one process would talk to the same server),
  - sets no HTTP timeout (a stopped server would hang the test forever),
  - lets every 5xx answer through as a success (`create` on a busy port then fails
    later with a KeyError; a `reset` that failed looks like one that worked).
Here every call has a timeout, and every failed call (connection error, timeout, any
non-2xx answer, an answer that is not the expected JSON) raises `ToxiproxyError`.
`heal()` is verified with GET /proxies: a heal that leaves a toxic or a disabled proxy
raises, because a silent failed heal would poison every result after it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import requests
from toxiproxy import Proxy
from toxiproxy.api import validate_response
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.toxic import Toxic

log = logging.getLogger("raftcheck.toxiproxy")

CUT = "cut"          # the toxic name of a cut link (SPEC section 6)
LATENCY = "latency"  # the toxic name of a slow link
UPSTREAM = "upstream"


class ToxiproxyError(Exception):
    """A Toxiproxy call failed, or the server is not in the state we asked for."""


def proxy_name(src: str, dst: str) -> str:
    """The proxy that carries node `src`'s messages to node `dst` (SPEC section 6)."""
    return f"{src}-to-{dst}"


class Toxiproxy:
    """One Toxiproxy server, reached at http://host:port, with HTTP timeouts.

    Thread-safe: calls are serialized on one `requests.Session`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8474,
                 timeout_s: float = 5.0, connect_timeout_s: float = 2.0) -> None:
        self.host = host
        self.port = int(port)
        self.url = f"http://{host}:{self.port}"
        self.timeout = (connect_timeout_s, timeout_s)
        self._session = requests.Session()
        self._session.trust_env = False  # never send loopback calls to an HTTP proxy
        self._lock = threading.Lock()
        self.created: set[str] = set()  # proxies this adapter made: heal checks them

    def __repr__(self) -> str:
        return f"Toxiproxy({self.url})"

    # --- HTTP -----------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None,
              expect_json: bool = True) -> Any:
        """One API call; any failure raises ToxiproxyError naming the call."""
        what = f"toxiproxy {method} {self.url}{path}"
        try:
            with self._lock:
                resp = self._session.request(method, self.url + path, json=body,
                                             timeout=self.timeout)
        except requests.RequestException as e:
            raise ToxiproxyError(f"{what}: {type(e).__name__}: {e}") from e
        try:
            validate_response(resp)  # the library's 400 / 404 / 409 classification
        except (ProxyExists, NotFound, InvalidToxic) as e:
            raise ToxiproxyError(f"{what}: {resp.status_code} {type(e).__name__}: "
                                 f"{_error_text(resp)}") from e
        if not resp.ok:  # the library lets these through (5xx, 401, 403, ...)
            raise ToxiproxyError(f"{what}: {resp.status_code}: {_error_text(resp)}")
        if not expect_json:
            return None
        try:
            return resp.json()
        except ValueError as e:
            raise ToxiproxyError(f"{what}: answer is not JSON: {resp.text[:200]!r}") from e

    # --- server ---------------------------------------------------------------

    def version(self) -> str:
        data = self._call("GET", "/version")
        return str(data.get("version")) if isinstance(data, dict) else str(data)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until the API answers; raise ToxiproxyError if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.version()
                return
            except ToxiproxyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def proxies_raw(self) -> dict[str, dict]:
        """GET /proxies as returned: name -> {name, listen, upstream, enabled, toxics}."""
        data = self._call("GET", "/proxies")
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ToxiproxyError(f"toxiproxy GET {self.url}/proxies: unexpected answer")
        return data

    def proxies(self) -> dict[str, Proxy]:
        return {name: _proxy(v) for name, v in self.proxies_raw().items()}

    def toxics(self, proxy: str) -> dict[str, Toxic]:
        data = self._call("GET", f"/proxies/{proxy}/toxics")
        return {t["name"]: Toxic(proxy=proxy, **t) for t in data}

    # --- proxies --------------------------------------------------------------

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> Proxy:
        """Create one proxy; `listen` port 0 lets the server pick a free port."""
        data = self._call("POST", "/proxies",
                          {"name": name, "upstream": upstream, "listen": listen,
                           "enabled": True})
        self.created.add(name)
        return _proxy(data)

    def create_proxies(self, specs: list[dict]) -> dict[str, Proxy]:
        """Create many proxies in one call (POST /populate).

        `specs`: [{"name", "upstream", "listen"}]. Returns name -> Proxy with the
        listen address the server actually bound.
        """
        data = self._call("POST", "/populate", [dict(s, enabled=True) for s in specs])
        got = data.get("proxies") if isinstance(data, dict) else None
        if not isinstance(got, list):
            raise ToxiproxyError(f"toxiproxy POST {self.url}/populate: unexpected answer")
        out = {p["name"]: _proxy(p) for p in got}
        missing = {s["name"] for s in specs} - set(out)
        if missing:
            raise ToxiproxyError(f"toxiproxy POST {self.url}/populate: proxies not "
                                 f"created: {sorted(missing)}")
        self.created.update(out)
        return out

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}", expect_json=False)
        self.created.discard(name)

    # --- toxics ---------------------------------------------------------------

    def add_toxic(self, proxy: str, name: str, type: str, attributes: dict,
                  stream: str = UPSTREAM, toxicity: float = 1.0) -> Toxic:
        data = self._call("POST", f"/proxies/{proxy}/toxics",
                          {"name": name, "type": type, "stream": stream,
                           "toxicity": toxicity, "attributes": attributes})
        return Toxic(proxy=proxy, **data)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}", expect_json=False)

    def cut(self, src: str, dst: str) -> None:
        """Cut the link src -> dst: `dst` no longer hears from `src` (SPEC section 6).

        A `timeout` toxic with timeout 0 holds the connection open and drops every
        byte (a black hole, not a reset). Idempotent: cutting a cut link is a no-op.
        """
        proxy = proxy_name(src, dst)
        try:
            self.add_toxic(proxy, CUT, "timeout", {"timeout": 0})
        except ToxiproxyError as e:
            if not isinstance(e.__cause__, ProxyExists):
                raise
            present = self.toxics(proxy).get(CUT)
            if present is None or present.type != "timeout":
                raise
        log.debug("cut %s", proxy)

    def uncut(self, src: str, dst: str) -> None:
        self.remove_toxic(proxy_name(src, dst), CUT)

    def add_latency(self, src: str, dst: str, latency_ms: int, jitter_ms: int = 0) -> None:
        """Delay every byte on src -> dst by latency_ms +- jitter_ms."""
        self.add_toxic(proxy_name(src, dst), LATENCY, "latency",
                       {"latency": int(latency_ms), "jitter": int(jitter_ms)})

    # --- heal -----------------------------------------------------------------

    def heal(self) -> None:
        """Remove every toxic and enable every proxy (POST /reset), then verify."""
        self._call("POST", "/reset", expect_json=False)
        self.verify_healed()
        log.debug("network healed")

    def verify_healed(self) -> None:
        """Raise ToxiproxyError unless GET /proxies shows a healed network:
        no toxic left, every proxy enabled, every proxy we created still there."""
        proxies = self.proxies_raw()
        problems = []
        for name in sorted(self.created - set(proxies)):
            problems.append(f"{name}: missing")
        for name, p in sorted(proxies.items()):
            toxics = p.get("toxics") or []
            if toxics:
                problems.append(f"{name}: toxics left "
                                f"{[t.get('name') for t in toxics]}")
            if p.get("enabled") is not True:
                problems.append(f"{name}: disabled")
        if problems:
            raise ToxiproxyError(f"toxiproxy {self.url}: heal not verified: "
                                 + "; ".join(problems))

    def close(self) -> None:
        self._session.close()


def _proxy(values: dict) -> Proxy:
    try:
        return Proxy(**values)
    except (KeyError, TypeError) as e:
        raise ToxiproxyError(f"toxiproxy: unexpected proxy description "
                             f"{json.dumps(values)[:200]}") from e


def _error_text(resp: requests.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return resp.text[:200].strip() or resp.reason or ""
