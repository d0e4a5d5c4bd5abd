"""Peer transport: one-way, length-prefixed JSON messages between Raft nodes (SPEC 5).

A *frame* is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
(one message object). Frames longer than `max_frame` are refused and the connection
is closed.

Messaging is *one-way*: node i sends to node j only on a connection that i dialled to
`peers[j]` (which may be a Toxiproxy proxy); connections that i accepts are
receive-only. A message names its sender (and term), so a node never identifies a
peer by its remote address.

Failure handling:
- a sender redials with jittered exponential backoff when its connection fails;
- a *black hole* (bytes vanish without an error, Toxiproxy's `timeout` toxic) is
  detected through missing replies: when messages went to j and nothing came back from
  j for `silence_s`, the connection to j is closed and redialled, so the node works
  again once the network heals;
- a malformed frame is logged and dropped, never fatal: undecodable bytes close that
  connection (the stream cannot be trusted past them; the sender redials), a
  well-formed JSON object that is not a valid message is dropped alone.

Delivery is best-effort, like the network Raft assumes: a bounded queue per peer, and
messages beyond it are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import socket
import time
from typing import Any, Callable

from node.shell.config import Address

log = logging.getLogger("raftcheck.node.transport")

HEADER = 4
MAX_QUEUE = 2048                  # frames waiting per peer; beyond that, dropped
KEEP_WHILE_DOWN = 64              # frames kept for a peer we cannot reach
CONNECT_TIMEOUT_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.02, 0.5
STABLE_S = 1.0                    # a connection that lived this long resets the backoff
WRITE_BUFFER_LIMIT = 256 * 1024   # bytes queued in user space before we wait for drain


def _wake(fut: asyncio.Future | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def encode_frame(obj: dict[str, Any]) -> bytes:
    """One frame: 4-byte big-endian length, then compact UTF-8 JSON."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return len(body).to_bytes(HEADER, "big") + body


class _Peer:
    """The outgoing side of one peer: a queue and the task that dials and writes."""

    def __init__(self, peer_id: str, addr: Address) -> None:
        self.peer_id = peer_id
        self.addr = addr
        self.queue: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None   # the writer sleeps on it
        self.unanswered_since: float | None = None  # first send since we last heard
        self.dropped = 0
        self.task: asyncio.Task | None = None


class Transport:
    """Dials every peer, listens for peers, delivers decoded messages to a callback.

    `decode(dict) -> message` raises ValueError (or KeyError/TypeError) on a malformed
    message; a message has `.sender` and `.to_dict()`.
    """

    def __init__(self, node_id: str, listen: Address, peers: dict[str, Address],
                 decode: Callable[[dict], Any], on_message: Callable[[Any], None],
                 max_frame: int = 64 * 1024 * 1024, silence_s: float = 0.6,
                 logger: logging.LoggerAdapter | logging.Logger | None = None) -> None:
        self.node_id = node_id
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

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Bind the peer listener (fails loudly if the port is taken) and dial peers."""
        self._server = await asyncio.start_server(self._serve, self.listen[0], self.listen[1],
                                                  reuse_address=True)
        for p in self.peers.values():
            p.task = asyncio.create_task(self._run_peer(p), name=f"dial-{p.peer_id}")

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
        tasks = [p.task for p in self.peers.values() if p.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ---- sending ---------------------------------------------------------------

    def send(self, to: str, message: Any) -> None:
        """Queue a message for peer `to`; never blocks; drops when the queue is full."""
        p = self.peers.get(to)
        if p is None:
            self.log.warning("no address for peer %s; message dropped", to)
            return
        if len(p.queue) >= MAX_QUEUE:
            p.dropped += 1
            if p.dropped % 1000 == 1:
                self.log.warning("queue to %s full; %d messages dropped so far", to, p.dropped)
            return
        p.queue.append(encode_frame(message.to_dict()))
        if p.unanswered_since is None:
            p.unanswered_since = time.monotonic()
        _wake(p.waiter)

    def _heard(self, peer_id: str) -> None:
        p = self.peers.get(peer_id)
        if p is not None:
            p.unanswered_since = None

    async def _run_peer(self, p: _Peer) -> None:
        """Dial p, write its queue, redial with backoff on failure or silence."""
        backoff = BACKOFF_MIN_S
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(p.addr[0], p.addr[1]), CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as e:
                self.log.debug("dial %s at %s:%d failed: %s", p.peer_id, *p.addr, e)
                # The peer is unreachable: like a network, lose what it would have got,
                # but keep the newest few (a restarting peer gets fresh state at once).
                while len(p.queue) > KEEP_WHILE_DOWN:
                    p.queue.popleft()
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["dials"] += 1
            self.log.debug("connected to %s at %s:%d", p.peer_id, *p.addr)
            p.unanswered_since = time.monotonic() if p.queue else None
            connected_at = time.monotonic()
            try:
                silent = await self._write_loop(p, reader, writer)
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

    async def _write_loop(self, p: _Peer, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> bool:
        """Write until the connection fails (False) or the peer goes silent (True)."""
        loop = asyncio.get_running_loop()
        # A dialled connection is send-only: the peer never writes on it, so a read
        # returns only at EOF (the peer or a proxy closed it).
        eof = asyncio.ensure_future(reader.read(1))
        eof.add_done_callback(lambda _: _wake(p.waiter))
        try:
            while not self._closing:
                if not p.queue:
                    # Sleep until send(), EOF, or the next silence check.
                    p.waiter = loop.create_future()
                    timer = loop.call_later(self.silence_s / 4, _wake, p.waiter)
                    await p.waiter
                    timer.cancel()
                    p.waiter = None
                if eof.done():
                    self.log.debug("connection to %s closed by the far end", p.peer_id)
                    return False
                if p.queue:
                    data = b"".join(p.queue)
                    self.stats["frames_out"] += len(p.queue)
                    p.queue.clear()
                    try:
                        writer.write(data)
                        # Wait only when the kernel stopped taking bytes (a paused or
                        # black-holed peer); otherwise writing never blocks.
                        if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                            await asyncio.wait_for(writer.drain(), self.silence_s)
                    except asyncio.TimeoutError:
                        self.log.info("peer %s does not read (paused?); redialling", p.peer_id)
                        return True
                    except (OSError, ConnectionError) as e:
                        self.log.debug("write to %s failed: %s", p.peer_id, e)
                        return False
                since = p.unanswered_since
                if since is not None and time.monotonic() - since > self.silence_s:
                    self.log.info("no reply from %s for %.0f ms; redialling",
                                  p.peer_id, (time.monotonic() - since) * 1000)
                    p.unanswered_since = None
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
                    self.log.warning("frame of %d bytes from %s exceeds the maximum %d; "
                                     "closing the connection", n, remote, self.max_frame)
                    self.stats["frames_refused"] += 1
                    return
                body = await reader.readexactly(n)
                try:
                    obj = json.loads(body)  # bytes: UTF-8 errors raise ValueError too
                except ValueError as e:
                    self.log.warning("malformed frame from %s (%s); dropped, closing the "
                                     "connection", remote, e)
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
            self.log.warning("malformed message from %s dropped: %s", remote, e)
            self.stats["frames_malformed"] += 1
            return
        self.stats["frames_in"] += 1
        self._heard(sender)
        self.on_message(msg)
