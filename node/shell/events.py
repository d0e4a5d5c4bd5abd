"""A node's event lines: the facts a run checks after the fact (docs/spec.md section 5).

Each is one line of the logger `raftcheck.node.events` at INFO: the text `raft-event `
then one compact JSON object, `{"event": name, ...}`. `EventLines` writes them for one
node, and keeps the one piece of state a line needs: when the last `stable` line was
written and what it said.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

EVENT_PREFIX = "raft-event "
# The "start" line's `trace`: 1, this node's vote lines carry both logs' last (term,
# index) and it writes stable, follow and read lines; 2, also acked and confirmed lines
TRACE_VERSION = 2
STABLE_EVERY_S = 1.0    # at most one `stable` line a second

_events = logging.getLogger("raftcheck.node.events")


class EventLines:
    """The event lines of one node (`node_id` in every line, as the node's log)."""

    def __init__(self, node_id: str) -> None:
        self.log = logging.LoggerAdapter(_events, {"node_id": node_id})
        self._stable_told, self._stable_at = 0, 0.0

    def event(self, name: str, **fields: Any) -> None:
        """One event line: `raft-event {"event": name, ...}`."""
        self.log.info("%s%s", EVENT_PREFIX, json.dumps({"event": name, **fields},
                                                       separators=(",", ":")))

    def stable(self, commit_index: int, last_index: int) -> None:
        """Figure 2: log[] is persistent state, and a committed entry is never removed
        (section 5.4): once a Ready is written, every entry up to min(commit index,
        last index) is committed and believed durable, and a restart must recover it
        (checker.invariants log-durable). Told as it moves, at most once a second."""
        known = min(commit_index, last_index)
        now = time.monotonic()
        if known > self._stable_told and now - self._stable_at >= STABLE_EVERY_S:
            self._stable_told, self._stable_at = known, now
            self.event("stable", index=known)
