"""The fault schedule: an explicit, replayable list of faults, drawn from its own stream.

A *fault schedule* is a list of `Fault`s, each with a start time (simulated ms), a
kind, a target and a duration. It is drawn from the seed's own fault stream
(`Random("faults-<seed>")`), apart from the streams the network, the clients and the
nodes draw from, so a seed plus a schedule is one deterministic run: replaying a seed
with a schedule someone edited or shrank (sim.shrink) changes only what the faults
change. That is what makes a failing seed shrinkable to a short reproduction, as
Jepsen's and Hypothesis's shrinkers do with their generators' choices.

Kinds (a target is a node id, `leader` = the leader when the fault starts, or
partition groups):

    partition  A,B|C,D   messages between different groups are cut, both ways; a
                         node in no group still reaches everyone (a bridge)
    one-way    A|B,C     the first group hears no one from the second (it still
                         reaches them)
    isolate    N         N is cut from everyone, both ways
    crash      N         N stops; what it did not fsync is lost; restarts at the end
    torn-write N         N crashes in the middle of its next fsync'd write: ARG, the
                         share of the unsynced bytes that reach the disk (a torn
                         record); restarts at the end
    pause      N         N is stopped (SIGSTOP): no ticks, its inputs wait
    clock      N         N's clock runs ARG times slower (ARG < 1: faster)
    reorder    -         a share of the replies is held 70 ms to over a second

A duration of 0 means "until a majority needs the node back, or the faults stop"
(the figure8 mix's rule; sim.nemesis). Every fault ends when the faults stop.

Text form, for a command line (`;` between faults): `AT:KIND:TARGET:DURATION[:ARG]`,
e.g. `1200:crash:leader:800;3000:partition:n1,n2|n3:1500;5000:reorder:-:2000`;
`none` is the empty schedule.
A file holds either that text or JSON: a list of faults, or an object with "faults".
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from history.errors import BadInput
from sim.params import ELECTION_TICKS, TICK_MS, SimParams

NODE_KINDS = ("isolate", "crash", "torn-write", "pause", "clock")
NETWORK_KINDS = ("partition", "one-way", "reorder")
KINDS = NETWORK_KINDS + NODE_KINDS
LEADER = "leader"
NO_FAULTS = "none"
CLOCK_FACTORS = (0.3, 0.5, 0.7, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class Fault:
    """One fault of a schedule (see the module docstring)."""

    at: int
    kind: str
    target: str = "-"
    duration: int = 0
    arg: float | None = None

    def spec(self) -> str:
        text = f"{self.at}:{self.kind}:{self.target}:{self.duration}"
        return text if self.arg is None else f"{text}:{self.arg:g}"

    def describe(self) -> str:
        """One line for a person: `1200 ms  crash n2 for 800 ms`."""
        what = {"partition": f"partition {self.target}",
                "one-way": f"one-way partition {self.target} (first group deaf)",
                "reorder": "long message reordering",
                "torn-write": f"torn write on {self.target} (keeps {self.arg:g} of "
                              f"the unsynced bytes)" if self.arg is not None else "",
                "clock": f"clock of {self.target} x{self.arg:g}" if self.arg else ""}
        text = what.get(self.kind) or f"{self.kind} {self.target}"
        until = f"for {self.duration} ms" if self.duration else "until a majority needs it"
        return f"{self.at:>7} ms  {text} {until}"


def format_spec(faults: list[Fault]) -> str:
    """The text form; `none` for the empty schedule."""
    return ";".join(f.spec() for f in faults) or NO_FAULTS


def _split_groups(target: str, node_ids: list[str], where: str) -> list[list[str]]:
    groups = [[n for n in g.split(",") if n] for g in target.split("|")]
    seen: set[str] = set()
    for g in groups:
        for n in g:
            if n not in node_ids:
                raise BadInput(f"unknown node {n!r} (nodes: {', '.join(node_ids)})",
                               field=where)
            if n in seen:
                raise BadInput(f"node {n} is in two groups", field=where)
            seen.add(n)
    if len(groups) < 2 or not all(groups):
        raise BadInput(f"expected groups like n1,n2|n3, got {target!r}", field=where)
    return groups


def parse_fault(text: str, node_ids: list[str], where: str = "--faults") -> Fault:
    """One fault from `AT:KIND:TARGET:DURATION[:ARG]`; BadInput naming the field."""
    parts = text.strip().split(":")
    if len(parts) not in (4, 5):
        raise BadInput(f"expected AT:KIND:TARGET:DURATION[:ARG], got {text.strip()!r:.80}",
                       field=where)
    try:
        at, duration = int(parts[0]), int(parts[3])
        arg = float(parts[4]) if len(parts) == 5 else None
    except ValueError:
        raise BadInput(f"AT and DURATION are integers (ms), ARG a number: "
                       f"{text.strip()!r:.80}", field=where) from None
    kind, target = parts[1], parts[2]
    return make_fault(at, kind, target, duration, arg, node_ids, where)


def make_fault(at: int, kind: str, target: str, duration: int, arg: float | None,
               node_ids: list[str], where: str) -> Fault:
    """A checked Fault (BadInput naming `where` for a bad field)."""
    if kind not in KINDS:
        raise BadInput(f"unknown fault kind {kind!r} (kinds: {', '.join(KINDS)})",
                       field=where)
    if at < 0 or duration < 0:
        raise BadInput("AT and DURATION must be >= 0", field=where)
    if kind in ("partition", "one-way"):
        groups = _split_groups(target, node_ids, where)
        if kind == "one-way" and len(groups) != 2:
            raise BadInput("a one-way partition has two groups", field=where)
    elif kind in NODE_KINDS:
        if target != LEADER and target not in node_ids:
            raise BadInput(f"target {target!r}: expected a node ({', '.join(node_ids)}) "
                           f"or leader", field=where)
    else:
        target = "-"
    if kind == "torn-write":
        arg = 0.5 if arg is None else arg
        if not 0 <= arg <= 1:
            raise BadInput("a torn write keeps a share between 0 and 1", field=where)
    elif kind == "clock":
        if arg is None or not 0.1 <= arg <= 10:
            raise BadInput("a clock fault needs ARG, a factor between 0.1 and 10",
                           field=where)
    else:
        arg = None
    if kind in ("pause", "clock", "reorder", "partition", "one-way") and duration == 0:
        raise BadInput(f"a {kind} fault needs a duration > 0", field=where)
    return Fault(at, kind, target, duration, arg)


def parse_spec(text: str, node_ids: list[str], where: str = "--faults") -> list[Fault]:
    """A schedule from its text form (`;` or newlines between faults), sorted by time."""
    if text.strip() == NO_FAULTS:
        return []
    pieces = [p for chunk in text.splitlines() for p in chunk.split(";")]
    faults = [parse_fault(p, node_ids, f"{where}: fault {i + 1}")
              for i, p in enumerate(x for x in pieces if x.strip())]
    return sorted(faults, key=lambda f: f.at)


def load_faults(arg: str, node_ids: list[str]) -> list[Fault]:
    """`--faults FILE|SPEC`: a file (JSON or text) if one exists at that path."""
    path = Path(arg)
    if not path.is_file():
        if ":" not in arg and arg.strip() != NO_FAULTS:
            raise BadInput(f"no such file, and not a fault list: {arg!r:.80}",
                           field="--faults")
        return parse_spec(arg, node_ids)
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith(("[", "{")):
        return parse_spec(text, node_ids, str(path))
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BadInput(f"not JSON: {e}", file=str(path)) from None
    items = data.get("faults") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BadInput("expected a list of faults, or an object with \"faults\"",
                       file=str(path), field="faults")
    faults = []
    for i, d in enumerate(items):
        where = f"faults[{i}]"
        if not isinstance(d, dict):
            raise BadInput("expected an object", file=str(path), field=where)
        try:
            faults.append(make_fault(int(d["at"]), str(d["kind"]), str(d.get("target", "-")),
                                     int(d.get("duration", 0)),
                                     None if d.get("arg") is None else float(d["arg"]),
                                     node_ids, where))
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"bad fault ({type(e).__name__}: {e})", file=str(path),
                           field=where) from None
        except BadInput as e:
            raise BadInput(e.message, file=str(path), field=where) from None
    return sorted(faults, key=lambda f: f.at)


def faults_to_json(faults: list[Fault]) -> list[dict]:
    return [{k: v for k, v in asdict(f).items() if v is not None} for f in faults]


# ---------------------------------------------------------------------- generation
def generate(seed: int, p: SimParams) -> list[Fault]:
    """The schedule seed `seed` draws for its mix, from its own stream."""
    r = random.Random(f"faults-{seed}")
    ids = [f"n{i + 1}" for i in range(p.nodes)]
    faults = _figure8(r, p) if p.mix == "figure8" else _classic(r, p, ids)
    return sorted(faults, key=lambda f: f.at)


def _node_or_leader(r: random.Random, ids: list[str], leader_share: float) -> str:
    return LEADER if r.random() < leader_share else r.choice(ids)


def _classic(r: random.Random, p: SimParams, ids: list[str]) -> list[Fault]:
    """The classic nemesis: one action every rand(1, 2*every) ms; a partition ends
    the one before it, and cuts off the leader 40% of the time."""
    end = p.end_faults
    out: list[Fault] = []
    actions = ((["partition", "partition"] if p.partitions else [])
               + (["crash"] if p.crashes else []) + (["pause"] if p.pauses else [])
               + (["clock"] if p.clock_skew else []))
    last_partition: int | None = None
    t = r.randint(200, 2 * p.nemesis_every)
    while actions and t < end:
        action = r.choice(actions)
        if action == "partition":
            dur = r.randint(200, 3 * p.nemesis_every)
            if last_partition is not None:  # a new partition replaces the last one
                prev = out[last_partition]
                if prev.at + prev.duration > t:
                    out[last_partition] = Fault(prev.at, prev.kind, prev.target,
                                                max(1, t - prev.at), prev.arg)
            last_partition = len(out)
            if r.random() < 0.4:  # the real nemesis's leader bias: cut off the leader
                out.append(Fault(t, "isolate", LEADER, dur))
            else:
                out.append(_partition(r, ids, t, dur))
        elif action == "crash":
            out.append(Fault(t, "crash", _node_or_leader(r, ids, 0.3), r.randint(100, 1500)))
        elif action == "pause":
            out.append(Fault(t, "pause", _node_or_leader(r, ids, 0.3), r.randint(100, 1500)))
        else:  # clocks drift apart, each its own way (Jepsen's clock nemesis)
            dur = r.randint(5000, 15000)
            for node in ids:
                if r.random() < 0.7:
                    out.append(Fault(t, "clock", node, dur, r.choice(CLOCK_FACTORS)))
        t += r.randint(1, 2 * p.nemesis_every)
    out += _torn_writes(r, p, ids, leader_share=0.3)
    if p.reorder_share:
        t = r.randint(0, end)
        while t < end:
            out.append(Fault(t, "reorder", "-", r.randint(500, 3000)))
            t += r.randint(2000, 8000)
    return out


def _partition(r: random.Random, ids: list[str], at: int, duration: int) -> Fault:
    nodes = list(ids)
    r.shuffle(nodes)
    shape = r.choice(["one", "majority", "bridge", "one-way"])
    k = 1 if shape == "one" else len(nodes) // 2
    a, b = nodes[:k], nodes[k:]
    if shape == "bridge" and len(b) >= 2:
        b = b[1:]  # the first of the second group reaches both sides
    kind = "one-way" if shape == "one-way" else "partition"
    return Fault(at, kind, f"{','.join(a)}|{','.join(b)}", duration)


def _torn_writes(r: random.Random, p: SimParams, ids: list[str],
                 leader_share: float) -> list[Fault]:
    out = []
    if p.torn_writes <= 0:
        return out
    mean_gap = 1000 / p.torn_writes
    t = int(r.expovariate(1 / mean_gap))
    while t < p.end_faults:
        out.append(Fault(t, "torn-write", _node_or_leader(r, ids, leader_share),
                         r.randint(100, 1500), round(r.random(), 2)))
        t += max(1, int(r.expovariate(1 / mean_gap)))
    return out


def _figure8(r: random.Random, p: SimParams) -> list[Fault]:
    """6.824's Figure8Unreliable loop: every few ms (now and then up to half an
    election timeout), half the time the leader is cut off (or crashed, a third of
    the time, as in Figure8); it comes back when a majority needs it. Long message
    reordering starts after the first fifth (iteration 200 of 1000)."""
    end = p.end_faults
    half_timeout = ELECTION_TICKS[1] * TICK_MS // 2
    out = []
    t = 500  # the test's first agreement, with everyone up
    while t < end:
        t += r.randint(0, half_timeout) if r.random() < 0.1 else r.randint(0, 13)
        if t < end and r.random() < 0.5:
            kind = "crash" if r.random() < 1 / 3 else "isolate"
            out.append(Fault(t, kind, LEADER, 0))
    reorder_at = end // 5
    out.append(Fault(reorder_at, "reorder", "-", end - reorder_at))
    ids = [f"n{i + 1}" for i in range(p.nodes)]
    out += _torn_writes(r, p, ids, leader_share=0.7)
    return out
