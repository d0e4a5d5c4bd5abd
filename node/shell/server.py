"""The node: an asyncio event loop that drives one Raft core behind an HTTP API.

A *node* owns a `RaftCore` (node/core/raft.py), its `Storage` (the WAL), a
`RegisterMachine`, a peer `Transport` and an aiohttp client API (SPEC section 4).
Every input (a tick, a peer message, a client proposal or read) lands in an inbox;
one task, the *pump*, is the only code that touches the core. Each turn it feeds the
whole inbox to the core, then handles each `Ready` in the order of the core's
contract (raft.py, module docstring):

1. persist hard state, truncation and entries with one write and one fsync (in a
   worker thread, so the loop keeps accepting inputs, which then form the next
   batch); a Ready that only moves the commit index is written without an fsync
   (etcd's MustSync);
2. send the messages (persist before send, Figure 2);
3. apply committed entries and answer the clients waiting for them;
4. answer ReadIndex reads once `last_applied >= read index` (dissertation 6.4);
5. `advance`.

Client answers follow "when in doubt, indefinite": a request refused before its entry
was appended gets a definite error (not-leader 30 with a leader hint, or 11); once
appended, a lost leadership or a timeout gives code 0 with `definite: false`.

HTTP statuses (the JSON body is authoritative): 200 ok, 400 malformed (12),
409 key-does-not-exist / precondition-failed (20, 22), 503 not-leader or unavailable
(30, 11), 504 timeout (0), 500 crash (13).

Event lines: besides its ordinary log, the node writes the facts a run checks after
the fact (docs/spec.md section 5) as lines of the logger `raftcheck.node.events`:
`raft-event {"event": ...}` for start, persisted, stable, vote, follow, leader, commit,
read, snapshot and fatal (vote, follow and read are the core's Ready.trace).

Snapshots (paper section 7): every `snapshot_entries` applied entries the pump saves
the register machine's state (registers and the exactly-once table) and compacts the
WAL behind it (Storage.save_snapshot), then tells the core (`compact`); a snapshot
from the leader (Ready.snapshot, Figure 13) is saved with the Ready's other writes
and resets the machine before the Ready's committed entries are applied. A restart
restores the machine from the snapshot and replays the WAL's tail.

The shell's planted bugs (node.bugs: local-reads, ack-before-commit,
vote-not-durable, append-not-durable, commit-wait-definite) are switches here, each
marked "Planted bug"; the core's bugs travel in RaftConfig.bugs.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import signal
import time
from typing import Any

from aiohttp import web

from node.errors import BadConfig
from node.bugs import (ACK_BEFORE_COMMIT, APPEND_NOT_DURABLE, COMMIT_WAIT_DEFINITE,
                       LOCAL_READS, VOTE_NOT_DURABLE, BugTrace, core_options, ordered)
from node.shell.config import NodeConfig
from node.core.messages import CommitEntry, message_from_dict
from node.core.raft import LEADER, RaftCore
from node.core.state import RaftConfig, Ready, Snapshot
from node.core.register import RegisterMachine
from node.shell.api import (CRASH, HTTP_STATUS, MALFORMED, MAX_BODY, NOT_LEADER,  # noqa: F401
                            TIMEOUT, UNAVAILABLE, Malformed, error_reply, parse_request)
from node.shell.httpguard import BODY_TIMEOUT_S, ConnectionGuard, raise_fd_limit
from node.shell.storage import DataDirLocked, Storage, StorageCorrupted
from node.shell.events import TRACE_VERSION, EventLines
from node.shell.transport import Transport

_log = logging.getLogger("raftcheck.node.server")

STALL_WARN_S = 0.1


class _Pending:
    """A proposal waiting for its entry (index, term) to commit (raft.py contract 2)."""

    __slots__ = ("fut", "term", "cmd")

    def __init__(self, fut: asyncio.Future, term: int, cmd: dict) -> None:
        self.fut, self.term, self.cmd = fut, term, cmd


def _answer(fut: asyncio.Future | None, reply: dict) -> None:
    if fut is not None and not fut.done():
        fut.set_result(reply)


class NodeServer:
    """One Raft register node (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, bugs: frozenset[str] = frozenset()) -> None:
        self.cfg = cfg
        self.bugs = frozenset(bugs)
        self.log = logging.LoggerAdapter(_log, {"node_id": cfg.node_id})
        self.trace = BugTrace(self.log)
        self.events = EventLines(cfg.node_id)
        self.storage = Storage(cfg.data_dir, fsync=cfg.fsync, node_id=cfg.node_id)
        self.machine = RegisterMachine(self.bugs)
        self.core: RaftCore | None = None
        self.transport: Transport | None = None
        self._runner: web.AppRunner | None = None
        self.guard: ConnectionGuard | None = None
        self._inbox: collections.deque[tuple] = collections.deque()
        self._wake = asyncio.Event()
        self._ticks = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_due = 0.0
        self._pump_task: asyncio.Task | None = None
        self._pending: dict[int, _Pending] = {}        # index -> proposal
        self._reads: dict[int, tuple[asyncio.Future, Any]] = {}  # request id -> (fut, key)
        self._confirmed: list[tuple[int, int]] = []      # (read index, request id)
        self._read_seq = 0
        self._was_leader = False
        self._led_term: int | None = None    # the last term announced as leader
        # the commit index when it took office; None once its first commit was told
        self._led_from: int | None = None
        self.stopped = asyncio.Event()
        self._stopping = False
        self.fatal: str | None = None
        self.stats = collections.Counter()

    # ---- lifecycle -------------------------------------------------------------

    def _raft_config(self) -> RaftConfig:
        c = self.cfg
        tick = c.tick_ms
        et_min = max(2, c.election_timeout_ms[0] // tick)
        et_max = max(et_min, c.election_timeout_ms[1] // tick)
        hb = max(1, min(c.heartbeat_ms // tick, et_min - 1))
        # A planted bug may come without a protection its original system lacked
        # (Bug.disables); the simulation configures its cores the same way.
        # An InstallSnapshot chunk stays within a frame even if every character is
        # escaped (6 bytes), with room for the message around it.
        chunk = max(64, min(64 * 1024, (c.max_frame_bytes - 4096) // 6))
        return RaftConfig(election_ticks_min=et_min, election_ticks_max=et_max,
                          heartbeat_ticks=hb, snapshot_chunk_chars=chunk, bugs=self.bugs,
                          **core_options(self.bugs))

    def event(self, name: str, **fields: Any) -> None:
        """One event line (node.shell.events)."""
        self.events.event(name, **fields)

    async def start(self) -> None:
        """Recover from the WAL, bind the peer and client ports, start ticking."""
        c = self.cfg
        try:
            hard_state, entries = await asyncio.to_thread(self.storage.load)
            snap = self.storage.snapshot
            if snap is not None:
                try:
                    self.machine.restore(snap.data, snap.index)
                except ValueError as e:
                    self.storage.close()
                    raise StorageCorrupted(f"{self.storage.snap_path}: the snapshot is "
                                           f"damaged ({e}); refusing to start") from None
        except (StorageCorrupted, DataDirLocked) as e:
            raise BadConfig(str(e), field="data_dir") from None
        except OSError as e:
            raise BadConfig(f"cannot open the data directory: {e}", c.data_dir,
                           None, "data_dir") from None
        # The core starts from the snapshot and the durable commit index (clamped to
        # the log): the first Ready replays the state machine's tail up to it.
        self.core = RaftCore(c.node_id, c.peer_ids, hard_state, entries, self._raft_config(),
                             random.Random(int.from_bytes(os.urandom(8), "big")),
                             snapshot=snap)
        self.log.info("recovered term %d, vote %s, commit %d, %d log entries from %s; "
                      "bugs: %s", hard_state.term, hard_state.voted_for,
                      self.core.commit_index, len(entries), c.data_dir,
                      ",".join(ordered(self.bugs)) or "none")
        self.event("start", term=hard_state.term, vote=hard_state.voted_for,
                   commit=self.core.commit_index, last_index=self.core.log_length(),
                   snapshot_index=self.core.snapshot_index, bugs=ordered(self.bugs),
                   trace=TRACE_VERSION)
        self.transport = Transport(c.node_id, c.peer_bind(), c.peer_addrs, message_from_dict,
                                   self._on_message, max_frame=c.max_frame_bytes,
                                   silence_s=c.election_timeout_ms[1] / 1000.0,
                                   secret=c.peer_secret)
        if c.peer_secret is None:
            self.log.warning("insecure_peers: peer frames are not authenticated; anyone "
                             "who reaches the peer port %s:%d can forge votes and entries",
                             *c.peer_bind())
        raise_fd_limit()
        idle_s = c.client_idle_timeout_ms / 1000.0
        self.guard = ConnectionGuard(self.log, idle_timeout_s=idle_s,
                                     body_timeout_s=min(BODY_TIMEOUT_S, idle_s),
                                     max_connections=c.max_client_connections)
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.guard.middleware])
        app.router.add_post("/op", self._handle_op)
        app.router.add_get("/status", self._handle_status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=idle_s)
        await self._runner.setup()
        self.guard.start(self._runner)
        try:
            await self.transport.start()
            site = web.TCPSite(self._runner, *c.client_bind(), reuse_address=True)
            await site.start()
        except OSError as e:
            await self.stop()
            raise BadConfig(f"cannot listen: {e.strerror or e}", field="nodes."
                           f"{c.node_id}") from None
        self.client_port = self._runner.addresses[0][1]
        self._pump_task = asyncio.create_task(self._pump(), name="pump")
        self._schedule_tick()
        self.log.info("serving clients on %s:%d, peers on %s:%d", *c.client_bind(),
                      *c.peer_bind())

    async def stop(self) -> None:
        """Stop serving: answer waiting clients (indefinitely), close ports and the WAL."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._pump_task is not None:
            # Let the pump finish the Ready in hand (a WAL write must not be cut off
            # by closing its file); cancel only if it hangs.
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._pump_task), 5.0)
            except (asyncio.TimeoutError, Exception):
                self._pump_task.cancel()
        self._fail_all(error_reply(TIMEOUT, "node shutting down"))
        if self.guard is not None:
            await self.guard.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.transport is not None:
            await self.transport.close()
        self.storage.close()
        self.stopped.set()

    def _schedule_tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._tick_due = loop.time() + self.cfg.tick_ms / 1000.0
        self._tick_handle = loop.call_at(self._tick_due, self._on_tick)

    def _on_tick(self) -> None:
        late = asyncio.get_running_loop().time() - self._tick_due
        if late > STALL_WARN_S:
            # Ticks are logical time: a stalled loop (CPU starvation, a slow disk)
            # delays elections and heartbeats alike; say so, it explains elections.
            self.log.warning("event loop stalled: tick %.0f ms late", late * 1000)
        self._ticks += 1
        self._wake.set()
        self._schedule_tick()

    def _on_message(self, msg: Any) -> None:
        self._inbox.append(("msg", msg, None))
        self._wake.set()

    # ---- the pump: the only code that touches the core ------------------------

    async def _pump(self) -> None:
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    break
                self._feed()
                while self.core.has_ready() and not self._stopping:  # type: ignore[union-attr]
                    await self._handle_ready(self.core.ready())  # type: ignore[union-attr]
                    await asyncio.sleep(0)  # let sockets in: never starve the loop
                    self._feed()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a core or disk failure: stop rather than lie
            self.fatal = f"{type(e).__name__}: {e}"
            self.log.exception("fatal error in the Raft loop; stopping")
            self.event("fatal", error=self.fatal)
            self._fail_all(error_reply(CRASH, "node failed"))
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop()))

    def _feed(self) -> None:
        """Hand every queued input to the core (between advance() and ready())."""
        core = self.core
        assert core is not None
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            core.tick()
        inbox = self._inbox
        while inbox:
            kind, payload, fut = inbox.popleft()
            if kind == "msg":
                core.step(payload)
            elif fut.done():
                continue  # the client gave up before we got to it
            elif kind == "propose":
                self._propose(payload, fut)
            elif kind == "read":
                self._read(payload, fut)

    def _not_leader(self) -> dict:
        leader = self.core.leader_id  # type: ignore[union-attr]
        if leader is None or leader == self.cfg.node_id:
            return error_reply(UNAVAILABLE, "no leader known")
        return error_reply(NOT_LEADER, leader=leader)

    def _propose(self, cmd: dict, fut: asyncio.Future) -> None:
        core = self.core
        index = core.propose(cmd)  # type: ignore[union-attr]
        if index is None:
            _answer(fut, self._not_leader())  # refused before being appended: definite
            return
        self._pending[index] = _Pending(fut, core.term, cmd)  # type: ignore[union-attr]
        self._was_leader = True

    def _read(self, key: Any, fut: asyncio.Future) -> None:
        core = self.core
        if LOCAL_READS in self.bugs and core.role == LEADER:  # type: ignore[union-attr]
            # Planted bug: a read from local state, with no ReadIndex quorum check
            # (section 8, dissertation 6.4).
            self.trace.acted(LOCAL_READS, "read of key %r answered from local state at "
                             "applied index %d", key, self.machine.last_applied)
            _answer(fut, self.machine.read(key))
            return
        self._read_seq += 1
        rid = self._read_seq
        if not core.read_index(rid):  # type: ignore[union-attr]
            _answer(fut, self._not_leader())
            return
        self._reads[rid] = (fut, key)

    async def _handle_ready(self, rd: Ready) -> None:
        core = self.core
        assert core is not None and self.transport is not None
        if rd.must_write():
            await self._persist(rd)
        if core.role == LEADER:
            if self._led_term != core.term:
                self._led_term, self._led_from = core.term, core.commit_index
                self.event("leader", term=core.term)
            elif self._led_from is not None and core.commit_index > self._led_from:
                # Figure 2, rules for leaders: a leader advances commitIndex by counting
                # only to an entry of its own term (Figure 8); the first advance of the
                # term says which entry it counted (checker.invariants commit-rule).
                self._led_from = None
                self.event("commit", term=core.term, index=core.commit_index,
                           entry_term=core.term_at(core.commit_index))
        for name, fields in rd.trace:   # persisted, not yet sent
            self.event(name, **fields)
        for to, msg in rd.messages:
            self.transport.send(to, msg)
        if ACK_BEFORE_COMMIT in self.bugs and rd.entries:
            self._ack_appended(rd.entries[-1][0])
        if rd.snapshot is not None:
            self._restore(rd.snapshot)
        for entry in rd.committed:
            self._apply(entry)
        for rid, index in rd.reads:
            self._confirmed.append((index, rid))
        for rid in rd.dropped_reads:
            fut, _ = self._reads.pop(rid, (None, None))
            _answer(fut, self._not_leader())
        core.advance(rd)
        self._serve_reads()
        if (self.cfg.snapshot_entries
                and self.machine.last_applied - core.snapshot_index >= self.cfg.snapshot_entries):
            await self._snapshot()
        if self._was_leader and core.role != LEADER:
            # Leadership lost: appended entries may or may not commit later.
            self._was_leader = False
            pending, self._pending = self._pending, {}
            for p in pending.values():
                _answer(p.fut, self._commit_wait_ended("leadership lost"))
        elif core.role == LEADER:
            self._was_leader = True

    def _restore(self, snap: Snapshot) -> None:
        """Figure 13, receiver 8: reset the state machine from the leader's snapshot
        (already durable). Proposals it covers have an unknown fate."""
        self.machine.restore(snap.data, snap.index)
        for index in [i for i in self._pending if i <= snap.index]:
            _answer(self._pending.pop(index).fut,
                    self._commit_wait_ended("replaced by a snapshot"))
        self.event("snapshot", index=snap.index, term=snap.term, source="leader")

    async def _snapshot(self) -> None:
        """Section 7: save the machine's state at its applied index, compact the WAL
        behind it (snapshot file first, both atomic), then the core's log."""
        core = self.core
        assert core is not None
        index = self.machine.last_applied
        term = core.term_at(index)
        assert term is not None
        snap = Snapshot(index, term, self.machine.snapshot())
        started = time.monotonic()
        await asyncio.to_thread(self.storage.save_snapshot, snap, core.stable_entries(index))
        core.compact(snap)
        self.stats["snapshots"] += 1
        self.log.info("snapshot at %d (term %d, %d chars) in %.0f ms", index, term,
                      len(snap.data), (time.monotonic() - started) * 1000)
        self.event("snapshot", index=index, term=term, source="local")

    async def _persist(self, rd: Ready) -> None:
        """Persist before send (Figure 2): one write per Ready, with one fsync unless
        only the commit index moved (etcd's MustSync)."""
        sync = self._must_fsync(rd)
        if sync:
            started = time.monotonic()
            # In a worker thread: while the disk works, the loop keeps answering
            # /status and queueing inputs (they form the next batch).
            await asyncio.to_thread(self.storage.save, rd.hard_state, rd.truncate_from,
                                    rd.entries, True, rd.snapshot)
            took = time.monotonic() - started
            if took > STALL_WARN_S:
                self.log.warning("persisting %d entries took %.0f ms (a slow disk, or "
                                 "the process was paused)", len(rd.entries), took * 1000)
            self.stats["syncs"] += 1
        else:
            self.storage.save(rd.hard_state, rd.truncate_from, rd.entries, False, rd.snapshot)
            self.stats["unsynced_writes"] += 1
        if rd.term_or_vote_changed and rd.hard_state is not None:
            # The node now believes its term and vote durable.
            self.event("persisted", term=rd.hard_state.term, vote=rd.hard_state.voted_for)
        assert self.core is not None
        self.events.stable(self.core.commit_index, self.core.log_length())

    def _must_fsync(self, rd: Ready) -> bool:
        if not rd.must_sync():
            return False  # only the commit index moved: knowledge, safe to lose
        writes_entries = rd.truncate_from is not None or bool(rd.entries)
        if VOTE_NOT_DURABLE in self.bugs and not writes_entries:
            # Planted bug: currentTerm and votedFor are "updated on stable storage
            # before responding to RPCs" (Figure 2); here only written.
            if rd.hard_state is not None:
                self.trace.acted(VOTE_NOT_DURABLE, "term %d, vote %s written without "
                                 "fsync", rd.hard_state.term, rd.hard_state.voted_for)
            return False
        if (APPEND_NOT_DURABLE in self.bugs and not rd.term_or_vote_changed
                and self.core is not None and self.core.role != LEADER):
            # Planted bug: a follower's entries written but not fsynced before its
            # AppendEntries reply (persist before send, Figure 2).
            if rd.entries:
                self.trace.acted(APPEND_NOT_DURABLE, "entries %d..%d written without "
                                 "fsync", rd.entries[0][0], rd.entries[-1][0])
            return False
        return True

    def _commit_wait_ended(self, why: str) -> dict:
        """The answer to a proposal whose wait for its commit ended without one: the
        entry may still commit, so the outcome is unknown (code 0, indefinite)."""
        if COMMIT_WAIT_DEFINITE in self.bugs:
            # Planted bug: a definite failure for an entry that may still commit.
            self.trace.acted(COMMIT_WAIT_DEFINITE, "%s: answered as a definite failure", why)
            return error_reply(UNAVAILABLE, f"{why}; not committed")
        return error_reply(TIMEOUT, f"{why}; the outcome is unknown")

    def _ack_appended(self, last: int) -> None:
        """The planted ack-before-commit bug: answer as soon as the entry is on the
        leader's disk, judging a cas by the leader's applied state."""
        for index in [i for i in self._pending if i <= last]:
            self.trace.acted(ACK_BEFORE_COMMIT, "entry %d acknowledged before its commit",
                             index)
            p = self._pending.pop(index)
            cmd = p.cmd
            if cmd["op"] == "cas":
                values = self.machine.values
                if cmd["key"] not in values:
                    reply = error_reply(20)
                elif values[cmd["key"]] != cmd["from"]:
                    reply = error_reply(22)
                else:
                    reply = {"ok": True}
            else:
                reply = {"ok": True}
            _answer(p.fut, reply)

    def _apply(self, entry: CommitEntry) -> None:
        result = self.machine.apply(entry)
        p = self._pending.pop(entry.index, None)
        if p is None:
            return
        if entry.term == p.term:
            _answer(p.fut, result if result is not None else {"ok": True})
        else:
            # Another entry committed at this index: ours never will (raft.py contract 2).
            _answer(p.fut, error_reply(UNAVAILABLE, "entry overwritten by a new leader"))

    def _serve_reads(self) -> None:
        if not self._confirmed:
            return
        applied = self.machine.last_applied
        keep = []
        for index, rid in self._confirmed:
            if index <= applied:
                fut, key = self._reads.pop(rid, (None, None))
                if fut is not None:
                    _answer(fut, self.machine.read(key))
            else:
                keep.append((index, rid))
        self._confirmed = keep

    def _fail_all(self, reply: dict) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            _answer(p.fut, reply)
        reads, self._reads = self._reads, {}
        for fut, _ in reads.values():
            _answer(fut, reply)
        self._confirmed = []
        while self._inbox:
            _, _, fut = self._inbox.popleft()
            _answer(fut, reply)

    # ---- HTTP ------------------------------------------------------------------

    @staticmethod
    def _respond(reply: dict) -> web.Response:
        status = 200 if reply.get("ok") else HTTP_STATUS.get(reply.get("code", 13), 500)
        return web.Response(text=json.dumps(reply, separators=(",", ":")), status=status,
                            content_type="application/json")

    async def _handle_op(self, request: web.Request) -> web.Response:
        try:
            try:
                body = await self.guard.read_body(request)
                cmd = parse_request(body)
            except (Malformed, TimeoutError) as e:
                return self._respond(error_reply(MALFORMED, str(e)))
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                # the client went away before its request arrived: nothing was done
                self.guard.quiet.warn("client-gone", "a client went away before its "
                                      "request arrived: %s", e)
                return self._respond(error_reply(MALFORMED, "body: connection lost"))
            except web.HTTPRequestEntityTooLarge:
                return self._respond(error_reply(MALFORMED, f"body: over {MAX_BODY} bytes"))
            if self.fatal is not None:
                return self._respond(error_reply(CRASH, self.fatal))
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            if cmd["op"] == "read":
                self._inbox.append(("read", cmd["key"], fut))
            else:
                self._inbox.append(("propose", cmd, fut))
            self._wake.set()
            late = (error_reply(TIMEOUT, "no answer within the request timeout")
                    if cmd["op"] == "read" else
                    self._commit_wait_ended("no commit within the request timeout"))
            timer = loop.call_later(self.cfg.request_timeout_ms / 1000.0, _answer, fut, late)
            try:
                reply = await fut
            finally:
                timer.cancel()
            self.stats[reply.get("error", "ok")] += 1
            return self._respond(reply)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never fatal: answer, log, go on
            self.log.exception("error handling a request")
            return self._respond(error_reply(CRASH, f"{type(e).__name__}: {e}"))

    async def _handle_status(self, request: web.Request) -> web.Response:
        core = self.core
        assert core is not None
        status = core.status()
        status["last_applied"] = self.machine.last_applied
        status["bugs"] = ordered(self.bugs)
        return web.Response(text=json.dumps(status), content_type="application/json")


async def serve(cfg: NodeConfig, bugs: frozenset[str] = frozenset()) -> int:
    """Run a node until SIGTERM/SIGINT (exit 0) or a fatal error (exit 255)."""
    node = NodeServer(cfg, bugs)
    await node.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    waiter = asyncio.ensure_future(stopping.wait())
    died = asyncio.ensure_future(node.stopped.wait())
    await asyncio.wait({waiter, died}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    died.cancel()
    if node.fatal is not None:
        await node.stop()
        node.log.error("stopped after a fatal error: %s", node.fatal)
        return 255
    node.log.info("stopping on signal")
    await node.stop()
    return 0


def run_node(cfg: NodeConfig, bugs: frozenset[str] = frozenset()) -> int:
    """The `raftcheck node` entry point (node/cli.py); uvloop when installed."""
    try:
        import uvloop  # optional: a faster event loop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(serve(cfg, bugs))
