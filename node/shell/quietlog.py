"""Rate-limited warnings, for events a hostile or broken peer or client can repeat
at will (dropped frames, refused connections, failed accepts): the first of a kind is
logged at once, then one line per period with how many happened in between, so a
flood of them cannot flood the log."""

from __future__ import annotations

import collections
import time
from typing import Any

EVERY_S = 5.0


class QuietLog:
    """`warn(kind, text, *args)`: at most one line per kind every `every_s`."""

    def __init__(self, logger: Any, every_s: float = EVERY_S) -> None:
        self.log = logger
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._quiet: collections.Counter[str] = collections.Counter()

    def warn(self, kind: str, text: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every_s:
            self._quiet[kind] += 1
            return
        more = self._quiet.pop(kind, 0)
        self._last[kind] = now
        self.log.warning(text + (f" ({more} more since the last such line)" if more else ""),
                         *args)
