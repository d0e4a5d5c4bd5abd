"""A recording client: register ops against one node, each recorded as an invoke and
its completion (docs/spec.md section 2), the way the workload's clients record them.

A definite error is a `fail`; a timeout, a lost connection or an indefinite error is
an `info` (the op may or may not have happened). `follow_leader=True` sends each op to
the current leader, following a `not-leader` hint once; otherwise every op goes to the
client's own node and a refusal is recorded as it came.
"""

from __future__ import annotations

import itertools
from typing import Any

import requests

from history.ops import FAIL, INFO, INVOKE, OK
from history.writer import HistoryWriter

TIMEOUT_S = 3.0
_NOT_EXECUTED = {"not-leader", "temporarily-unavailable"}


class RecordingClient:
    """One client process. `read`, `write` and `cas` return the node's reply (a dict
    with "ok", and "value" for a read, or "error" and "definite")."""

    _ids = itertools.count(1)

    def __init__(self, history: HistoryWriter, urls: dict[str, str], node: str | None,
                 follow_leader: bool = False, timeout_s: float = TIMEOUT_S) -> None:
        self.history = history
        self.urls = urls
        self.node = node
        self.follow_leader = follow_leader or node is None
        self.timeout_s = timeout_s
        self.process = next(self._ids)
        self._leader = node
        self._http = requests.Session()
        self._http.trust_env = False

    def read(self, key: Any) -> dict:
        return self._op("read", key, None, {"op": "read", "key": key})

    def write(self, key: Any, value: Any) -> dict:
        return self._op("write", key, value, {"op": "write", "key": key, "value": value})

    def cas(self, key: Any, old: Any, new: Any) -> dict:
        return self._op("cas", key, [old, new], {"op": "cas", "key": key, "from": old,
                                                 "to": new})

    def close(self) -> None:
        self._http.close()

    def _op(self, f: str, key: Any, value: Any, body: dict) -> dict:
        node = self._target()
        self.history.append(INVOKE, self.process, f, value=value, key=key, node=node)
        reply = self._send(node, body)
        if not reply.get("ok") and self.follow_leader and reply.get("error") in \
                _NOT_EXECUTED and reply.get("definite") and reply.get("leader") in self.urls:
            node = self._leader = reply["leader"]
            reply = self._send(node, body)
        if reply.get("ok"):
            done = reply.get("value") if f == "read" else value
            self.history.append(OK, self.process, f, value=done, key=key, node=node)
        else:
            kind = FAIL if reply.get("definite") is True else INFO
            self.history.append(kind, self.process, f, value=value, key=key, node=node,
                                error=str(reply.get("error")))
        return reply

    def _target(self) -> str:
        if self.node is not None and not self.follow_leader:
            return self.node
        return self._leader or self.node or next(iter(self.urls))

    def _send(self, node: str, body: dict) -> dict:
        try:
            r = self._http.post(self.urls[node] + "/op", json=body, timeout=self.timeout_s)
            reply = r.json()
            return reply if isinstance(reply, dict) else {
                "ok": False, "error": "bad-response", "definite": False}
        except requests.ConnectionError as e:
            refused = "refused" in str(e).lower()
            return {"ok": False, "error": "connection-refused" if refused
                    else "connection-lost", "definite": refused}
        except requests.Timeout:
            return {"ok": False, "error": "timeout", "definite": False}
        except ValueError:
            return {"ok": False, "error": "bad-response", "definite": False}
