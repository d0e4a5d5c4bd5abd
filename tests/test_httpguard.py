"""The client port's guard (node.shell.httpguard) and rate-limited warnings
(node.shell.quietlog), in-process; the real node under slow and excess connections is
tests/test_node_server.py."""

from __future__ import annotations

import asyncio
import logging
import resource

from node.shell.httpguard import ConnectionGuard, raise_fd_limit
from node.shell.quietlog import QuietLog


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(name: str) -> tuple[logging.Logger, Lines]:
    log = logging.getLogger(name)
    log.propagate = False
    h = Lines()
    log.handlers = [h]
    return log, h


def test_a_flood_of_accept_errors_is_one_line_without_a_traceback():
    log, h = _logger("test.guard")
    guard = ConnectionGuard(log)
    others = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: others.append(ctx["message"]))
        guard._default_handler = loop.get_exception_handler()
        for _ in range(9524):
            guard._on_loop_error(loop, {"message": "socket.accept() out of system resource",
                                        "exception": OSError(24, "Too many open files")})
        guard._on_loop_error(loop, {"message": "something else",
                                    "exception": ValueError("not noise")})
    asyncio.run(main())
    assert len(h.lines) == 1 and "Too many open files" in h.lines[0]
    assert others == ["something else"]  # anything else goes to the default handler


def test_quiet_log_counts_what_it_did_not_print():
    log, h = _logger("test.quiet")
    q = QuietLog(log, every_s=0.0)
    q.warn("a", "first %d", 1)
    q.warn("a", "second %d", 2)
    assert h.lines == ["first 1", "second 2"]
    q = QuietLog(log, every_s=3600)
    for i in range(5):
        q.warn("b", "x %d", i)
    q._last["b"] -= 7200
    q.warn("b", "later")
    assert h.lines[-2:] == ["x 0", "later (4 more since the last such line)"]


def test_raise_fd_limit_reaches_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        new = raise_fd_limit()
        assert new == resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(256, hard)
        if hard != resource.RLIM_INFINITY:
            assert new == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
