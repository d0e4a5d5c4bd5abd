"""The client API's requests and replies (SPEC section 4): parsing a POST /op body
into a register command, and the error replies with their codes and HTTP statuses."""

from __future__ import annotations

from typing import Any

from node.core.register import validate_command
from node.core.values import NotStrictJSON, loads_strict

TIMEOUT, UNAVAILABLE, MALFORMED, CRASH = 0, 11, 12, 13
NOT_LEADER = 30
ERROR_NAMES = {0: "timeout", 11: "temporarily-unavailable", 12: "malformed-request",
               13: "crash", 20: "key-does-not-exist", 22: "precondition-failed",
               30: "not-leader"}
HTTP_STATUS = {0: 504, 11: 503, 12: 400, 13: 500, 20: 409, 22: 409, 30: 503}
MAX_BODY = 64 * 1024   # with max_batch_entries 256, an AppendEntries stays < 64 MiB


def error_reply(code: int, detail: str | None = None, leader: str | None = None) -> dict:
    """A SPEC section 4 error; timeout and crash are indefinite."""
    reply: dict[str, Any] = {"ok": False, "code": code, "error": ERROR_NAMES[code],
                             "definite": code not in (TIMEOUT, CRASH)}
    if leader is not None:
        reply["leader"] = leader
    if detail:
        reply["detail"] = detail
    return reply


class Malformed(ValueError):
    """A client request that is not a valid SPEC section 4 request."""


def parse_request(body: bytes) -> dict:
    """The register command for a POST /op body; Malformed naming the field."""
    try:
        req = loads_strict(body)
    except NotStrictJSON as e:
        raise Malformed(f"body: {e}") from None
    if not isinstance(req, dict):
        raise Malformed("body: expected a JSON object")
    why = validate_command(req)
    if why is not None:
        raise Malformed(why)
    client, seq = req.get("client"), req.get("seq")
    if (client is None) != (seq is None):
        raise Malformed("fields 'client' and 'seq': give both or neither")
    if client is not None and (client == "" or (isinstance(client, str) and len(client) > 256)):
        raise Malformed("field 'client': expected a non-empty id of at most 256 characters")
    if seq is not None and seq < 0:
        raise Malformed("field 'seq': expected a non-negative integer")
    cmd = {"op": req["op"], "key": req["key"]}
    if req["op"] == "write":
        cmd["value"] = req["value"]
    elif req["op"] == "cas":
        cmd["from"], cmd["to"] = req["from"], req["to"]
    if client is not None:
        cmd["client"], cmd["seq"] = client, seq
    return cmd
