"""Peer transport: one-way, length-prefixed JSON messages between Raft nodes (SPEC 5).

A *frame* is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
(one message object) and, when the cluster has a peer secret, a 32-byte
HMAC-SHA256 of the length and the JSON under that secret. Frames longer than
`max_frame` are refused and the connection is closed.

*Peer authentication.* Every node of a cluster holds the same secret (docs/spec.md
section 5); a frame whose MAC does not verify is dropped, the connection closed, and
nothing in the node changes, so a process that can reach a peer port but does not
know the secret cannot forge a vote or an entry. A MAC does not stop a frame that was
sent once from being sent again; a replayed frame is a duplicated, delayed message,
which Raft tolerates by design (section 5.1: the network may duplicate, delay and
reorder messages). Without a secret (`insecure_peers: true`) frames carry no MAC.

Messaging is *one-way*: node i sends to node j only on a connection that i dialled to
`peers[j]` (which may be a Toxiproxy proxy); connections that i accepts are
receive-only. A message names its sender (and term), so a node never identifies a
peer by its remote address.

Two *lanes* per peer, each its own connection to the same address (so a partition
through the proxy cuts both): the *data* lane carries AppendEntries with entries and
InstallSnapshot chunks, the *control* lane everything else (votes, heartbeats,
replies). A long batch of entries then never delays a heartbeat or a vote, as
hashicorp/raft sends heartbeats "async of replicate(), since that routine could
potentially be blocked on disk IO". Messages on the two lanes may overtake each
other; the core is built for reordering.

Failure handling:
- a sender redials with jittered exponential backoff when its connection fails;
- a *black hole* (bytes vanish without an error, Toxiproxy's `timeout` toxic) is
  detected through missing replies, per lane: when a lane sent to j and nothing came
  back from j (on any connection) for `silence_s`, that lane's connection is closed
  and redialled, so the node works again once the network heals;
- a malformed frame is logged and dropped, never fatal: undecodable bytes close that
  connection (the stream cannot be trusted past them; the sender redials), a
  well-formed JSON object that is not a valid message is dropped alone.

Delivery is best-effort, like the network Raft assumes: a bounded queue per lane, and
messages beyond it are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import random
import socket
import time
from typing import Any, Callable

from node.core.values import NotStrictJSON, loads_strict
from node.shell.config import Address
from node.shell.quietlog import QuietLog

log = logging.getLogger("raftcheck.node.transport")

HEADER = 4
MAX_QUEUE = 2048                  # frames waiting per lane; beyond that, dropped
KEEP_WHILE_DOWN = 64              # frames kept for a peer we cannot reach
CONNECT_TIMEOUT_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.02, 0.5
STABLE_S = 1.0                    # a connection that lived this long resets the backoff
WRITE_BUFFER_LIMIT = 256 * 1024   # bytes queued in user space before we wait for drain
CONTROL, DATA = "control", "data"
LANES = (CONTROL, DATA)


def _wake(fut: asyncio.Future | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


MAC = 32                          # bytes of HMAC-SHA256 after a frame's body


def frame_mac(secret: bytes, header: bytes, body: bytes) -> bytes:
    """The frame's HMAC-SHA256 under the cluster's peer secret."""
    return hmac.new(secret, header + body, hashlib.sha256).digest()


def encode_frame(obj: dict[str, Any], secret: bytes | None = None) -> bytes:
    """One frame: 4-byte big-endian length, compact UTF-8 JSON, and with a secret
    its MAC."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header = len(body).to_bytes(HEADER, "big")
    return header + body + (frame_mac(secret, header, body) if secret else b"")


def lane_of(message: Any) -> str:
    """DATA for an AppendEntries with entries or an InstallSnapshot chunk (bulk
    data), CONTROL for every other message."""
    bulk = getattr(message, "entries", None) or isinstance(getattr(message, "data", None), str)
    return DATA if bulk else CONTROL


class _Lane:
    """One outgoing connection to a peer: a queue and the task that dials and writes."""

    def __init__(self, peer_id: str, addr: Address, name: str) -> None:
        self.peer_id = peer_id
        self.addr = addr
        self.name = name
        self.queue: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None   # the writer sleeps on it
        self.unanswered_since: float | None = None  # first send since we last heard
        self.dropped = 0
        self.task: asyncio.Task | None = None


class _Peer:
    """The outgoing side of one peer: its two lanes."""

    def __init__(self, peer_id: str, addr: Address) -> None:
        self.peer_id = peer_id
        self.addr = addr
        self.lanes = {name: _Lane(peer_id, addr, name) for name in LANES}


class Transport:
    """Dials every peer, listens for peers, delivers decoded messages to a callback.

    `decode(dict) -> message` raises ValueError (or KeyError/TypeError) on a malformed
    message; a message has `.sender` and `.to_dict()`.
    """

    def __init__(self, node_id: str, listen: Address, peers: dict[str, Address],
                 decode: Callable[[dict], Any], on_message: Callable[[Any], None],
                 max_frame: int = 64 * 1024 * 1024, silence_s: float = 0.6,
                 logger: logging.LoggerAdapter | logging.Logger | None = None,
                 secret: bytes | None = None) -> None:
        self.node_id = node_id
        self.secret = secret
        self.listen = listen
        self.decode = decode
        self.on_message = on_message
        self.max_frame = max_frame
        self.silence_s = silence_s
        self.log = logger or logging.LoggerAdapter(log, {"node_id": node_id})
        self.peers = {j: _Peer(j, a) for j, a in peers.items()}
        self._server: asyncio.base_events.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self._closing = False
        self.stats = collections.Counter()
        self.drops = QuietLog(self.log)

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Bind the peer listener (fails loudly if the port is taken) and dial peers."""
        self._server = await asyncio.start_server(self._serve, self.listen[0], self.listen[1],
                                                  reuse_address=True)
        for p in self.peers.values():
            for lane in p.lanes.values():
                lane.task = asyncio.create_task(self._run_lane(lane),
                                                name=f"dial-{p.peer_id}-{lane.name}")

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for w in list(self._inbound):
            w.close()
        tasks = [lane.task for p in self.peers.values() for lane in p.lanes.values()
                 if lane.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ---- sending ---------------------------------------------------------------

    def send(self, to: str, message: Any) -> None:
        """Queue a message for peer `to` on its lane; never blocks; drops when the
        lane's queue is full."""
        p = self.peers.get(to)
        if p is None:
            self.log.warning("no address for peer %s; message dropped", to)
            return
        lane = p.lanes[lane_of(message)]
        if len(lane.queue) >= MAX_QUEUE:
            lane.dropped += 1
            if lane.dropped % 1000 == 1:
                self.log.warning("%s queue to %s full; %d messages dropped so far",
                                 lane.name, to, lane.dropped)
            return
        lane.queue.append(encode_frame(message.to_dict(), self.secret))
        if lane.unanswered_since is None:
            lane.unanswered_since = time.monotonic()
        _wake(lane.waiter)

    def _heard(self, peer_id: str) -> None:
        p = self.peers.get(peer_id)
        if p is not None:
            for lane in p.lanes.values():
                lane.unanswered_since = None

    async def _run_lane(self, lane: _Lane) -> None:
        """Dial the lane's peer, write its queue, redial with backoff on failure or
        silence."""
        backoff = BACKOFF_MIN_S
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(lane.addr[0], lane.addr[1]), CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as e:
                self.log.debug("dial %s at %s:%d failed: %s", lane.peer_id, *lane.addr, e)
                # The peer is unreachable: like a network, lose what it would have got,
                # but keep the newest few (a restarting peer gets fresh state at once).
                while len(lane.queue) > KEEP_WHILE_DOWN:
                    lane.queue.popleft()
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["dials"] += 1
            self.stats[f"dials_{lane.name}"] += 1
            self.log.debug("connected to %s at %s:%d (%s lane)", lane.peer_id, *lane.addr,
                           lane.name)
            lane.unanswered_since = time.monotonic() if lane.queue else None
            connected_at = time.monotonic()
            try:
                silent = await self._write_loop(lane, reader, writer)
            finally:
                writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 0.5)
            except (OSError, asyncio.TimeoutError):
                pass
            if silent or time.monotonic() - connected_at < STABLE_S:
                # A black hole, or a connection closed at once (a proxy whose target
                # is down accepts, then hangs up): back off, longer each time.
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            else:
                backoff = BACKOFF_MIN_S

    async def _write_loop(self, lane: _Lane, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> bool:
        """Write until the connection fails (False) or the peer goes silent (True)."""
        loop = asyncio.get_running_loop()
        # A dialled connection is send-only: the peer never writes on it, so a read
        # returns only at EOF (the peer or a proxy closed it).
        eof = asyncio.ensure_future(reader.read(1))
        eof.add_done_callback(lambda _: _wake(lane.waiter))
        try:
            while not self._closing:
                if not lane.queue:
                    # Sleep until send(), EOF, or the next silence check.
                    lane.waiter = loop.create_future()
                    timer = loop.call_later(self.silence_s / 4, _wake, lane.waiter)
                    await lane.waiter
                    timer.cancel()
                    lane.waiter = None
                if eof.done():
                    self.log.debug("connection to %s closed by the far end", lane.peer_id)
                    return False
                if lane.queue:
                    data = b"".join(lane.queue)
                    self.stats["frames_out"] += len(lane.queue)
                    self.stats[f"frames_out_{lane.name}"] += len(lane.queue)
                    lane.queue.clear()
                    try:
                        writer.write(data)
                        # Wait only when the kernel stopped taking bytes (a paused or
                        # black-holed peer); otherwise writing never blocks.
                        if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                            await asyncio.wait_for(writer.drain(), self.silence_s)
                    except asyncio.TimeoutError:
                        self.log.info("peer %s does not read (paused?); redialling its "
                                      "%s lane", lane.peer_id, lane.name)
                        return True
                    except (OSError, ConnectionError) as e:
                        self.log.debug("write to %s failed: %s", lane.peer_id, e)
                        return False
                since = lane.unanswered_since
                if since is not None and time.monotonic() - since > self.silence_s:
                    self.log.info("no reply from %s for %.0f ms; redialling its %s lane",
                                  lane.peer_id, (time.monotonic() - since) * 1000, lane.name)
                    lane.unanswered_since = None
                    self.stats["silence_redials"] += 1
                    return True
                if writer.is_closing():
                    return False
            return False
        finally:
            eof.cancel()

    # ---- receiving -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A receive-only connection: read frames, decode, deliver; never fatal."""
        self._inbound.add(writer)
        remote = writer.get_extra_info("peername")
        try:
            while not self._closing:
                header = await reader.readexactly(HEADER)
                n = int.from_bytes(header, "big")
                if n > self.max_frame:
                    self.drops.warn("oversized", "frame of %d bytes from %s exceeds the "
                                    "maximum %d; closing the connection", n, remote,
                                    self.max_frame)
                    self.stats["frames_refused"] += 1
                    return
                body = await reader.readexactly(n)
                if self.secret is not None:
                    mac = await reader.readexactly(MAC)
                    if not hmac.compare_digest(mac, frame_mac(self.secret, header, body)):
                        self.drops.warn("unauthenticated", "frame from %s fails peer "
                                        "authentication (wrong or no peer secret); "
                                        "dropped, closing the connection", remote)
                        self.stats["frames_unauthenticated"] += 1
                        return
                try:
                    obj = loads_strict(body)
                except NotStrictJSON as e:
                    self.drops.warn("malformed", "malformed frame from %s (%s); dropped, "
                                    "closing the connection", remote, e)
                    self.stats["frames_malformed"] += 1
                    return
                self._deliver(obj, remote)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._inbound.discard(writer)
            writer.close()

    def _deliver(self, obj: Any, remote: Any) -> None:
        try:
            if not isinstance(obj, dict):
                raise ValueError("a message is a JSON object")
            msg = self.decode(obj)
            sender = getattr(msg, "sender", None)
            if sender not in self.peers:
                raise ValueError(f"unknown sender {sender!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.drops.warn("invalid", "malformed message from %s dropped: %s", remote, e)
            self.stats["frames_malformed"] += 1
            return
        self.stats["frames_in"] += 1
        self._heard(sender)
        self.on_message(msg)
