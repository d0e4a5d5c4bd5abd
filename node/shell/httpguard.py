"""The client port's guard against slow, idle and too many connections.

A node's HTTP server (aiohttp) must outlive hostile or broken clients:

- *slowloris*: a connection that sends a request's headers a byte at a time, or
  never finishes them, holds a file descriptor for ever. aiohttp has no header read
  timeout, so the guard sweeps the open connections once a second and closes every
  one that has no request in progress and has been quiet (no request started since
  it opened, or since its last request ended) for `idle_timeout_s`. A keep-alive
  client that idles that long reconnects, as HTTP allows.
- *slow bodies*: the handler reads a body within `body_timeout_s` (`read_body`).
- *too many connections*: beyond `max_connections` open at once, a request is
  refused at once with code 11 (temporarily-unavailable, definite) and
  `Connection: close`; the node also raises its open-file limit to the hard limit,
  so a flood of idle connections meets the sweep before the descriptors run out.
- *noise*: an `accept()` that fails (EMFILE) or a client that vanishes makes asyncio
  log a traceback per event; the guard's loop exception handler turns those into one
  line per kind every 5 s (the count in between), and hands anything else to the
  default handler.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from node.shell.quietlog import QuietLog

IDLE_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 1024
SWEEP_EVERY_S = 1.0

# exceptions from a client going away or the process running out of descriptors
_NOISE = (ConnectionError, TimeoutError, OSError)


def _waiting_for_a_request(proto: Any) -> bool:
    """Whether the connection's handler waits for a (complete) request: aiohttp's own
    idle test for its keep-alive timeout (a pending `_waiter`). A request whose
    headers arrived, or whose handler is about to run, is never cut off; if aiohttp
    ever lacks the attribute, no connection counts as idle (nothing is closed)."""
    waiter = getattr(proto, "_waiter", None)
    return waiter is not None and not waiter.done()


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft


class ConnectionGuard:
    """Idle sweep, body timeout, connection cap and quiet errors for one AppRunner
    (see the module docstring). `middleware` goes into the Application; `start`
    after the runner is set up; `stop` before it is cleaned up."""

    def __init__(self, log: Any, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 body_timeout_s: float = BODY_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.log = log
        self.idle_timeout_s = idle_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.stats: dict[str, int] = {"idle_closed": 0, "refused": 0, "slow_bodies": 0}
        self._runner: web.AppRunner | None = None
        self._quiet_since: dict[Any, float] = {}     # protocol -> quiet since
        self._busy: dict[Any, int] = {}              # protocol -> requests in progress
        self._task: asyncio.Task | None = None
        self._default_handler: Any = None
        self.quiet = QuietLog(log)

    # ---- aiohttp hooks ----------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        proto = request.protocol
        open_now = len(self._runner.server.connections) if self._runner and \
            self._runner.server else 0
        if open_now > self.max_connections:
            self.stats["refused"] += 1
            self.quiet.warn("refused", "refusing a request: %d client connections open "
                          "(at most %d)", open_now, self.max_connections)
            body = {"ok": False, "code": 11, "error": "temporarily-unavailable",
                    "definite": True, "detail": f"too many connections ({open_now})"}
            return web.Response(text=json.dumps(body), status=503,
                                content_type="application/json",
                                headers={"Connection": "close"})
        self._busy[proto] = self._busy.get(proto, 0) + 1
        try:
            return await handler(request)
        finally:
            left = self._busy.get(proto, 1) - 1
            if left:
                self._busy[proto] = left
            else:
                self._busy.pop(proto, None)
                self._quiet_since[proto] = time.monotonic()

    async def read_body(self, request: web.Request) -> bytes:
        """The request's body, or TimeoutError after body_timeout_s."""
        try:
            return await asyncio.wait_for(request.read(), self.body_timeout_s)
        except asyncio.TimeoutError:
            self.stats["slow_bodies"] += 1
            raise TimeoutError(f"body: not received within {self.body_timeout_s:g} s") \
                from None

    # ---- life cycle -------------------------------------------------------------

    def start(self, runner: web.AppRunner) -> None:
        self._runner = runner
        loop = asyncio.get_running_loop()
        self._default_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_error)
        self._task = asyncio.create_task(self._sweep(), name="http-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.sweep_once()

    def sweep_once(self, now: float | None = None) -> int:
        """Close the connections quiet for idle_timeout_s; how many were closed."""
        server = self._runner.server if self._runner is not None else None
        if server is None:
            return 0
        now = time.monotonic() if now is None else now
        live = set(server.connections)
        for gone in [p for p in self._quiet_since if p not in live]:
            del self._quiet_since[gone]
        closed = 0
        for proto in live:
            since = self._quiet_since.setdefault(proto, now)
            if proto in self._busy or now - since < self.idle_timeout_s:
                continue
            if not _waiting_for_a_request(proto):
                # a request arrived and waits for its handler: not quiet any more
                self._quiet_since[proto] = now
                continue
            transport = proto.transport
            if transport is not None and not transport.is_closing():
                proto.force_close()
                closed += 1
            self._quiet_since.pop(proto, None)
        if closed:
            self.stats["idle_closed"] += closed
            self.quiet.warn("idle", "closed %d client connections quiet for %g s (no "
                          "request started)", closed, self.idle_timeout_s)
        return closed

    # ---- quiet errors -----------------------------------------------------------

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, _NOISE):
            self.quiet.warn(type(exc).__name__, "%s: %s", context.get("message", "error"),
                          exc)
            return
        if self._default_handler is not None:
            self._default_handler(loop, context)
        else:
            loop.default_exception_handler(context)
