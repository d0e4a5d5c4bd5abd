"""The register workload: concurrent clients driving the node's HTTP API.

A *worker* is one logical client process (SPEC section 2): it has at most one open op,
records it as an invoke and then exactly one completion (ok / fail / info), and after an
info continues under a new process id (the old op may still take effect at any time).
Workers share an overall rate (`rate` ops/s, randomly staggered) and run until the time
limit. Each op starts at the worker's home node, as Jepsen's clients do, so that every
node, a deposed or paused leader included, keeps being asked. Besides the `concurrency`
workers of the read / write / cas mix, `readers` workers only read: a worker of the mix
that meets a deposed or paused leader spends seconds in one write's retries, while a
reader keeps asking its home node at once, which is when a stale read shows (a leader
cut off, paused or newly elected answering from an old state). Op outcomes follow SPEC
section 4:

- ``ok:true`` -> ok; a definite error -> fail (``error`` = its name); an indefinite
  one -> info.
- a timeout or a lost connection -> info, never fail; a read may be fail instead (a
  read changes nothing). A refused connection never reached the node: fail.
- a definite "not executed here" answer (``not-leader``, ``temporarily-unavailable``,
  a refused connection) moves the op to the hinted leader, or else the next node, at
  most twice; then the op failed. A definite answer is trusted, as Jepsen's clients
  trust it: a node that says "not executed" about an op that later takes effect is
  caught that way.

*Retry mode* (on by default) makes a write or cas an exactly-once request, as Raft's client
sessions intend (dissertation section 6.3): every attempt of one op carries the SAME
client id and seq, and an indefinite answer (the node's own commit-wait timeout, a
lost leadership, a client-side timeout, a lost connection) is retried, on the hinted
leader or the next node, until a definite answer or the op's deadline
(`op_timeout`). The node's register machine applies a (client, seq) at most once and
answers a retry with the first attempt's result, so the op took effect at most once,
between its invoke and its completion. The history stays honest: one invoke, one
completion with the final answer. After an indefinite attempt, a later "not executed
here" says nothing about the earlier attempt, so only an answer from the state
machine (ok, precondition-failed, key-does-not-exist) ends the op early; at the
deadline it is info. Between attempts that no node took, the client backs off
(doubling, jittered) so as not to flood an election. One attempt waits at most
`attempt_timeout`, chosen longer than the node's commit wait so that the node's own
answer to a slow op reaches the client. Without retry mode an indefinite answer ends
the op at once (info). A read is never retried after an indefinite answer: it fails
at once (a read changes nothing), and its client's next op goes to its home node
again, which keeps a paused or deposed leader asked. In retry mode a read that no node
could take (no leader yet) waits for one like a write does, so reads reach a new
leader the moment it takes office.

The final phase (`final_reads`) reads every key the run touched until one read of it
succeeds (bounded in time), so that the last write of each key is observed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from history.ops import FAIL, INFO, INVOKE, OK
from history.writer import HistoryWriter
from workloads.generator import CAS, READ, WRITE, RegisterGenerator, RegisterOp

log = logging.getLogger("raftcheck.workload")

_MAX_REDIRECTS = 2          # without retry mode: "not executed" answers followed
# definite answers that say the op was not executed here: it may go elsewhere
_NOT_EXECUTED = ("not-leader", "temporarily-unavailable", "connection-refused")
_BACKOFF_S = (0.02, 0.25)   # first and longest wait before asking again when no node
                            # could take the op (doubling in between, jittered)
_MAX_ATTEMPTS = 200         # bound on attempts of one op (the deadline comes first)


@dataclass
class WorkloadOptions:
    """Knobs of the register workload (`raftcheck test` flags)."""

    rate: float = 200.0           # ops/s over all workers
    concurrency: int = 12         # number of workers (logical client processes)
    readers: int = 0              # more workers that only read (one home node each)
    time_limit: float = 30.0      # seconds of load
    ops_per_key: int = 50         # invocations per key before it rotates
    active_keys: int = 0          # keys in use at once; 0 = max(1, concurrency // 2)
    op_timeout: float = 5.0       # seconds per op: its deadline, every attempt included
    attempt_timeout: float = 1.0  # seconds per attempt (one request to one node)
    retry: bool = True            # retry indefinite answers with the same client/seq
    final_timeout: float = 10.0   # seconds for the final reads, all keys together
    read_weight: float = 1.0
    write_weight: float = 1.0
    cas_weight: float = 1.0


@dataclass
class _Outcome:
    type: str                 # ok / fail / info
    value: Any = None
    error: str | None = None
    node: str | None = None
    leader: str | None = None


class RegisterWorkload:
    """Drives `nodes` ({id: "http://host:port"}) and appends every op to `history`."""

    def __init__(self, history: HistoryWriter, nodes: dict[str, str],
                 options: WorkloadOptions, seed: int, client_prefix: str = "c") -> None:
        if not nodes:
            raise ValueError("the workload needs at least one node")
        self.history = history
        self.nodes = dict(nodes)
        self.node_ids = list(nodes)
        self.options = options
        self.rng = random.Random(seed)
        active = options.active_keys or max(1, options.concurrency // 2)
        self.generator = RegisterGenerator(
            random.Random(seed + 1), ops_per_key=options.ops_per_key, active_keys=active,
            mix=(options.read_weight, options.write_weight, options.cas_weight))
        self.client_prefix = client_prefix
        self.counts: Counter[str] = Counter()   # completions by type, for progress
        self.in_flight = 0
        self.leader_hint: str | None = None     # the last leader a node named
        self._next_process = options.concurrency + options.readers
        self._next_slot = 0.0
        self._session: aiohttp.ClientSession | None = None

    # -- plumbing -------------------------------------------------------------

    def _new_session(self) -> aiohttp.ClientSession:
        # Kept-alive connections (a new one per request costs the 2-core machine
        # about 40% of the load it can drive). A refused connection still means the
        # request never left (definite); a pooled connection that a killed node
        # reset fails as "connection-lost", which is indefinite, as it must be when
        # the client cannot tell whether the request got out.
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    def _fresh_process(self) -> int:
        p = self._next_process
        self._next_process += 1
        return p

    async def _pace(self) -> None:
        """Wait for this worker's slot: `rate` ops/s overall, uniformly staggered."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(self._next_slot, now)
        self._next_slot = slot + self.rng.uniform(0, 2.0 / self.options.rate)
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _post(self, node: str, body: dict, timeout: float) -> dict:
        assert self._session is not None
        url = self.nodes[node] + "/op"
        async with self._session.post(url, json=body,
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
        data = json.loads(text)
        if not isinstance(data, dict) or "ok" not in data:
            raise ValueError("no 'ok' field")
        return data

    async def _attempt(self, node: str, body: dict, timeout: float) -> dict:
        """One request to one node, as a SPEC section 4 answer: transport failures
        become errors with `definite` telling whether the node may have executed it."""
        try:
            return await self._post(node, body, timeout)
        except asyncio.TimeoutError:
            return {"ok": False, "error": "timeout", "definite": False}
        except aiohttp.ClientConnectorError:
            # never connected, so never sent: definitely not executed
            return {"ok": False, "error": "connection-refused", "definite": True}
        except aiohttp.ClientError as e:
            log.debug("%s: connection lost: %s", node, e)
            return {"ok": False, "error": "connection-lost", "definite": False}
        except (ValueError, UnicodeDecodeError) as e:
            log.debug("%s: bad response: %s", node, e)
            return {"ok": False, "error": "bad-response", "definite": False}

    async def _execute(self, node: str, body: dict) -> _Outcome:
        """One op, first on `node`, every attempt with the same client/seq (module
        doc: retry mode, or at most two "not executed" redirects without it)."""
        opts = self.options
        deadline = time.monotonic() + opts.op_timeout
        reading = body["op"] == READ
        uncertain: str | None = None    # the first indefinite answer, if any
        error, leader = "timeout", None
        tried: list[str] = []
        backoff = _BACKOFF_S[0]
        while len(tried) < _MAX_ATTEMPTS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            tried.append(node)
            data = await self._attempt(node, body, min(remaining, opts.attempt_timeout))
            if data.get("ok") is True:
                return _Outcome(OK, value=data.get("value"), node=node)
            error = str(data.get("error") or f"code-{data.get('code')}")
            hint = data.get("leader")
            leader = hint if isinstance(hint, str) and hint in self.nodes else None
            if leader is not None:
                self.leader_hint = leader
            definite = data.get("definite") is True
            if definite and error not in _NOT_EXECUTED:
                return _Outcome(FAIL, error=error, node=node, leader=leader)
            if not definite:
                if reading or not opts.retry:
                    # a read changes nothing: it fails at once and the client moves on
                    # (to its home node, which may answer the next one stale)
                    return _Outcome(FAIL if reading else INFO, error=error, node=node,
                                    leader=leader)
                uncertain = uncertain or error
            if uncertain is None and not (reading and opts.retry):
                # every attempt so far was refused before it ran: try another node,
                # at most _MAX_REDIRECTS times, then the op failed (a definite answer
                # is trusted, as Jepsen's clients trust it)
                nxt = self._next_node(node, leader, tried, untried_only=True)
                if nxt is None or len(tried) > _MAX_REDIRECTS:
                    break
            else:
                # the op may have run: only its own result may end it (retry mode); a
                # read waits the same way for a node that can serve it, so reads reach
                # a new leader the moment it takes office
                nxt = self._next_node(node, leader, tried) or (
                    self._ring_from(node)[0] if len(self.nodes) > 1 else node)
                if not definite or nxt in tried:
                    # everyone said no, or an answer was lost: give the cluster a
                    # moment (an election takes a few hundred ms; do not flood it)
                    await asyncio.sleep(min(max(0.0, deadline - time.monotonic()),
                                            backoff * self.rng.uniform(0.5, 1.5)))
                    backoff = min(_BACKOFF_S[1], backoff * 2)
            node = nxt  # the same client/seq, elsewhere
        if uncertain is not None and not reading:
            return _Outcome(INFO, error=uncertain, node=node, leader=leader)
        return _Outcome(FAIL, error=uncertain or error, node=node, leader=leader)

    def _next_node(self, node: str, leader: str | None, tried: list[str],
                   untried_only: bool = False) -> str | None:
        """Where the next attempt goes: the hinted leader, else the workload's last
        known leader, else the next node in the ring not tried yet (with
        `untried_only`, never a node this op already tried)."""
        recent = tried if untried_only else tried[-2:]
        for candidate in (leader, self.leader_hint):
            if candidate is not None and candidate != node and candidate not in recent:
                return candidate
        return next((n for n in self._ring_from(node) if n not in tried), None)

    def _ring_from(self, node: str) -> list[str]:
        i = self.node_ids.index(node)
        return self.node_ids[i + 1:] + self.node_ids[:i]

    async def _run_op(self, process: int, seq: int, op: RegisterOp, node: str) -> _Outcome:
        """Invoke, execute and complete one op in the history."""
        body: dict[str, Any] = {"op": op.f, "key": op.key,
                                "client": f"{self.client_prefix}{process}", "seq": seq}
        if op.f == WRITE:
            body["value"] = op.value
        elif op.f == CAS:
            body["from"], body["to"] = op.value
        self.history.append(INVOKE, process, op.f, value=op.value, key=op.key, node=node)
        self.in_flight += 1
        try:
            out = await self._execute(node, body)
        finally:
            self.in_flight -= 1
        value = out.value if op.f == READ else op.value
        if out.type != OK:
            value = None if op.f == READ else op.value
        self.history.append(out.type, process, op.f, value=value, key=op.key,
                            node=out.node, error=out.error)
        self.counts[out.type] += 1
        if out.type == OK:
            observed = {READ: out.value, WRITE: op.value}.get(op.f)
            self.generator.observe(op.key, op.value[1] if op.f == CAS else observed)
        return out

    # -- phases ---------------------------------------------------------------

    async def _worker(self, w: int, deadline: float) -> None:
        """One client: every op starts at its home node (as Jepsen's clients do), so
        that each node, a deposed leader included, keeps being asked. Workers from
        `concurrency` on are readers."""
        process = w
        seq = 0
        reader = w >= self.options.concurrency
        home = self.node_ids[(w - self.options.concurrency if reader else w)
                             % len(self.node_ids)]
        loop = asyncio.get_running_loop()
        while True:
            await self._pace()
            if loop.time() >= deadline:
                return
            seq += 1
            op = self.generator.next_read() if reader else self.generator.next_op()
            out = await self._run_op(process, seq, op, home)
            if out.type == INFO:
                process, seq = self._fresh_process(), 0

    async def run(self) -> None:
        """The load phase: `concurrency` workers and `readers` readers for
        `time_limit` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.time_limit
        self._next_slot = loop.time()
        async with self._new_session() as self._session:
            await asyncio.gather(*(self._worker(w, deadline) for w in
                                   range(self.options.concurrency + self.options.readers)))
        self._session = None

    async def wait_for_leader(self, timeout: float) -> str | None:
        """Poll GET /status until a node says it leads (bounded); its id, or None."""
        deadline = time.monotonic() + timeout
        async with self._new_session() as session:
            while time.monotonic() < deadline:
                for node, url in self.nodes.items():
                    try:
                        async with session.get(url + "/status",
                                               timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                            status = json.loads(await r.text())
                        if isinstance(status, dict) and status.get("role") == "leader":
                            return node
                    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                        pass
                await asyncio.sleep(0.1)
        return None

    async def final_reads(self, timeout: float | None = None) -> dict[Any, Any]:
        """Read every key touched until a read of it succeeds; {key: value} read.

        Keys whose reads kept failing until the deadline are missing from the result.
        """
        timeout = self.options.final_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.wait_for_leader(min(timeout / 2, 10.0))
        values: dict[Any, Any] = {}
        sem = asyncio.Semaphore(max(1, min(8, self.options.concurrency)))
        start = self.rng.randrange(len(self.node_ids))

        async def read_key(i: int, key: int) -> None:
            target = self.node_ids[(start + i) % len(self.node_ids)]
            async with sem:
                while loop.time() < deadline:
                    out = await self._run_op(self._fresh_process(), 1, RegisterOp(READ, key),
                                             target)
                    if out.type == OK:
                        values[key] = out.value
                        return
                    target = self._ring_from(target)[0] if len(self.nodes) > 1 else target
                    await asyncio.sleep(0.1)

        async with self._new_session() as self._session:
            await asyncio.gather(*(read_key(i, k)
                                   for i, k in enumerate(self.generator.keys)))
        self._session = None
        return values
