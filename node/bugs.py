"""Planted bugs: real, published Raft mistakes that `--bug NAME` turns on.

A *planted bug* makes the node wrong on purpose, the way a real system once was, so
that the suite can be checked against known-wrong nodes (its own mutation test) and a
user can watch it find a violation. The correct node enables none of them. Each bug
is one small switch at the exact place of the rule it breaks, with a comment naming
the rule: `core` bugs live in node/core (the simulation runs them too), `shell` bugs in
node/shell (the server and its storage).

Some bugs only show when a protection the original systems lacked is off:
`Bug.disables` names them ("pre_vote", "check_quorum"), and `core_options(bugs)` gives
the core settings that follow, so the server and the simulation configure their cores
alike. The catalog is `BUGS` (name -> `Bug`), in a fixed order: core bugs first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from node.errors import BadConfig

CORE, SHELL = "core", "shell"
PROTECTIONS = ("pre_vote", "check_quorum")

COMMIT_OLD_TERM = "commit-old-term"
VOTE_RESET_ON_STEP_DOWN = "vote-reset-on-step-down"
TRUNCATE_ON_ANY_APPEND = "truncate-on-any-append"
MATCH_FROM_LEADER_LOG = "match-from-leader-log"
READ_BEFORE_TERM_COMMIT = "read-before-term-commit"
LONGER_LOG_WINS_VOTE = "longer-log-wins-vote"
STALE_TERM_APPEND = "stale-term-append"
LEASE_READS = "lease-reads"
NO_DEDUP = "no-dedup"
LOCAL_READS = "local-reads"
ACK_BEFORE_COMMIT = "ack-before-commit"
VOTE_NOT_DURABLE = "vote-not-durable"
APPEND_NOT_DURABLE = "append-not-durable"
COMMIT_WAIT_DEFINITE = "commit-wait-definite"


@dataclass(frozen=True)
class Bug:
    """One planted bug: what it breaks, where it comes from, what it switches off."""

    name: str
    layer: str                     # CORE or SHELL
    summary: str                   # one line, for --help and the docs
    source: str                    # where the mistake was published
    detail: str                    # what the node then does wrong, and how it shows
    disables: frozenset[str] = field(default_factory=frozenset)  # of PROTECTIONS


_CATALOG = [
    Bug(COMMIT_OLD_TERM, CORE,
        "a leader commits an entry of an earlier term by counting replicas, and a new "
        "leader appends no no-op",
        "Raft paper (Ongaro & Ousterhout 2014) section 5.4.2 and Figure 8; Students' "
        "Guide to Raft (Gjengset 2016), 'Failure to follow The Rules': 'you "
        "specifically need to check that log[N].term == currentTerm'; RedisLabs/"
        "redisraft#22 (no no-op after an election)",
        "The leader sets commitIndex to the largest index held by a majority whatever "
        "the entry's term, and, like the paper's basic algorithm and the 6.824 labs, "
        "appends no no-op when it takes office (the no-op would commit an entry of its "
        "own term at once and hide the bug). Figure 8 follows: an old-term entry "
        "counted as committed is later overwritten by a leader whose last term is "
        "newer. PreVote and CheckQuorum are off, as in the basic algorithm: deposed "
        "leaders keep appending entries of their own terms, the raw material of the "
        "Figure 8 interleaving.",
        frozenset({"pre_vote", "check_quorum"})),
    Bug(VOTE_RESET_ON_STEP_DOWN, CORE,
        "votedFor is cleared whenever the node becomes a follower, also within the same "
        "term, so it can vote twice in one term",
        "etcd-io/etcd#2461 'raft: do not reset vote if term is not changed' (2015); "
        "hazelcast/hazelcast#16643 (a leader stepping down in its term forgot its "
        "vote); camunda/camunda#5356 'Raft elects two leaders at the same term'",
        "Figure 2 keeps votedFor for the whole term. With the bug a node that steps "
        "down without a new term (a lost election or PreVote round, CheckQuorum) "
        "forgets whom it voted for and grants a second vote in that term, so two "
        "leaders can be elected in one term (Election Safety, Figure 3). The node's "
        "'vote' event lines show the second vote.",
        frozenset()),
    Bug(TRUNCATE_ON_ANY_APPEND, CORE,
        "a follower deletes everything after prevLogIndex on every AppendEntries, even "
        "one whose entries it already holds",
        "Students' Guide to Raft (Gjengset 2016), 'The importance of details': 'The if "
        "here is crucial. If the follower has all the entries the leader sent, the "
        "follower MUST NOT truncate its log' (Figure 2, AppendEntries receiver 3)",
        "A stale or reordered AppendEntries, or a heartbeat that checks an earlier "
        "index, takes back entries the follower already acknowledged. The leader, "
        "which like etcd's takes a refusal at or below what a follower acknowledged "
        "for a stale reply, keeps counting them and stops repairing that follower "
        "until the next election: it commits what no majority holds, and when it "
        "fails acknowledged writes are lost. The follower never drops what it knows "
        "committed (the node would refuse that as contradicting a committed entry).",
        frozenset()),
    Bug(MATCH_FROM_LEADER_LOG, CORE,
        "on a successful reply the leader sets matchIndex from what it has sent, not "
        "from what the reply confirms",
        "Students' Guide to Raft (Gjengset 2016), 'Term confusion': setting 'matchIndex "
        "= nextIndex - 1, or matchIndex = len(log)' on a reply 'is not safe'; the "
        "correct value is 'prevLogIndex + len(entries[]) from the arguments you sent'",
        "Any success reply (a heartbeat's, or one for an earlier batch) moves the "
        "follower's matchIndex to nextIndex - 1, covering entries still in flight or "
        "lost, so the leader commits and acknowledges entries no majority holds "
        "(Figure 2, leader rule for commitIndex); a follower that lost them is not "
        "repaired either, since its refusals now look stale.",
        frozenset()),
    Bug(READ_BEFORE_TERM_COMMIT, CORE,
        "a new leader serves ReadIndex reads before an entry of its own term is "
        "committed",
        "Ongaro's dissertation section 6.4, ReadIndex step 1; etcd-io/etcd#7331 "
        "'ReadIndex may read stale value' (fixed by #7332); RedisLabs/redisraft#22 "
        "(stale reads after an election)",
        "A new leader's commit index may lag the one its predecessor reached, until an "
        "entry of its own term commits. With the bug it takes that stale index as the "
        "read index, confirms its leadership with a heartbeat round and answers from a "
        "state that misses writes already acknowledged: a stale read right after an "
        "election.",
        frozenset()),
    Bug(LONGER_LOG_WINS_VOTE, CORE,
        "a vote goes to a candidate whose log is longer, even if its last term is older",
        "Raft paper section 5.4.1 (compare last terms first, then lengths); Students' "
        "Guide to Raft, 'Incorrect RPC handlers': 'No cheating and just checking the "
        "length!'; sile/noraft#22 (the up-to-date check compared only indexes)",
        "A leader cut off from the majority keeps appending client entries of its old "
        "term; once it can campaign again, voters compare lengths only and elect it, "
        "and it overwrites entries the majority committed meanwhile (Leader "
        "Completeness, section 5.4). CheckQuorum is off: with it the cut-off leader "
        "would step down and stop growing its log, and voters would ignore its "
        "requests while they hear from the current leader.",
        frozenset({"check_quorum"})),
    Bug(STALE_TERM_APPEND, CORE,
        "AppendEntries from an older term is accepted",
        "Figure 2, AppendEntries receiver rule 1 ('Reply false if term < "
        "currentTerm'); nats-io/nats-server#7209 (delayed entries from an old leader "
        "truncate the log of a follower whose leader already committed that index); "
        "akiradeveloper/sorock#485 (stale leader replicates stale entries)",
        "A deposed leader that has not yet heard the new term keeps sending "
        "AppendEntries; followers apply them as if they came from their leader and "
        "overwrite entries of the newer term (the reply carries their term, so the "
        "deposed leader then steps down). An overwritten entry the follower had "
        "acknowledged is lost if the new leader fails before repairing it; one it "
        "knew committed is refused with an ERROR line (etcd panics there). "
        "CheckQuorum is off, so a deposed leader keeps acting as one.",
        frozenset({"check_quorum"})),
    Bug(LEASE_READS, CORE,
        "the leader serves reads from local state while it holds a lease counted in "
        "its own ticks",
        "Ongaro's dissertation section 6.4.1 (leases assume bounded clock drift); etcd "
        "raft ReadOnlyLeaseBased ('It can be affected by clock drift'); "
        "hashicorp/consul#54 'Document potential stale read situation'",
        "As etcd's ReadOnlyLeaseBased, the lease is the leadership that CheckQuorum "
        "(dissertation 6.2) ends once an election timeout of its own ticks passes "
        "without a majority: a read is answered at the commit index with no quorum "
        "round. A paused leader counts no ticks while stopped, and a cut-off one may "
        "keep its role up to two election timeouts while the others elect a new "
        "leader after one; either answers stale reads meanwhile. Needs CheckQuorum, "
        "as etcd does.",
        frozenset()),
    Bug(NO_DEDUP, CORE,
        "the register machine ignores client id and seq, so a retried command is "
        "applied twice",
        "Raft paper section 8 and Ongaro's dissertation section 6.3 (client sessions); "
        "etcd-io/etcd#14890 (Jepsen: a client's automatic retry applied a write twice) "
        "and etcd-io/etcd#18424",
        "A client that retries a command whose first attempt committed (say the leader "
        "failed before answering) gets it executed again: a cas applied twice fails "
        "its second time and reports failure although it took effect, and a write "
        "reapplied after a later write undoes it.",
        frozenset()),
    Bug(LOCAL_READS, SHELL,
        "the leader answers reads from local state, without a quorum check",
        "'Jepsen: etcd and Consul' (Kingsbury, aphyr.com/posts/316, 2014): etcd 0.4 "
        "served reads from the leader's local state by default, and Consul's default "
        "read mode did the same",
        "A leader deposed by a partition keeps answering reads from its stale state "
        "until it hears a higher term, so a read can miss a write a newer leader "
        "already acknowledged (a stale read). CheckQuorum is off, as in those systems: "
        "a deposed leader believes it leads until the partition heals.",
        frozenset({"check_quorum"})),
    Bug(ACK_BEFORE_COMMIT, SHELL,
        "writes and cas are acknowledged when appended to the leader's log, not when "
        "committed",
        "The Maelstrom Raft tutorial (jepsen-io/maelstrom, doc/06-raft, 'Committing')",
        "A write or cas is answered once the leader has appended and persisted it, "
        "before a majority holds it; a cas is judged against the leader's applied "
        "state at that moment. A leader that is cut off or killed loses such entries "
        "when a new leader overwrites them (section 5.3), so an acknowledged write "
        "vanishes. CheckQuorum is off, as for local-reads.",
        frozenset({"check_quorum"})),
    Bug(VOTE_NOT_DURABLE, SHELL,
        "a change of term or vote alone is written but not fsynced before the node "
        "replies",
        "Figure 2 (currentTerm and votedFor are 'updated on stable storage before "
        "responding to RPCs'); etcd-io/etcd#14143 'Possible split-brain & loss of "
        "committed write with loss of un-fsynced data' (Jepsen with LazyFS, 2022)",
        "A Ready that changes only the term or the vote skips its fsync (etcd's "
        "MustSync ignored for the hard state). A crash that loses unsynced writes (a "
        "faulty filesystem; SIGKILL alone keeps the page cache) makes the node forget "
        "its vote and term, and vote again in a term where it already voted. Its "
        "'persisted' event line says it believed them durable; its 'start' line after "
        "the restart shows what it lost. PreVote is off, as in Raft without the "
        "dissertation's extensions: a node cut off from the others campaigns again and "
        "again, and each new term is written but never synced.",
        frozenset({"pre_vote"})),
    Bug(APPEND_NOT_DURABLE, SHELL,
        "a follower acknowledges entries it wrote but did not fsync",
        "etcd raft's contract (persist entries before sending messages; node.go "
        "MustSync); etcd-io/etcd#14143 (Jepsen with LazyFS: loss of un-fsynced data "
        "lost committed writes)",
        "A follower's Ready whose only durable change is entries (no term or vote) is "
        "written without an fsync before the AppendEntries reply goes out. The leader "
        "counts that reply to commit; a crash that loses unsynced writes erases the "
        "entries from the follower, and if the leader then fails too a committed, "
        "acknowledged write is gone.",
        frozenset()),
    Bug(COMMIT_WAIT_DEFINITE, SHELL,
        "a proposal whose commit wait ends without a commit is answered as a definite "
        "failure",
        "RedisLabs/redisraft#23 'Aborted reads with NOLEADER' (Jepsen, 2020: a NOLEADER "
        "error was returned for a transaction that committed); Jepsen's rule that a "
        "timeout is indeterminate (:info), not :fail",
        "When the request timeout fires or leadership is lost before the entry "
        "commits, the client gets temporarily-unavailable with definite true. The "
        "entry is in the log and may still commit: a write the client was told failed "
        "becomes visible, which no linearization allows.",
        frozenset()),
]

BUGS: dict[str, Bug] = {b.name: b for b in _CATALOG}


def parse_bugs(spec: str | Iterable[str] | None, field: str = "--bug") -> frozenset[str]:
    """None or '' -> no bug; 'a,b' or an iterable of names -> those bugs; an unknown
    name -> BadConfig naming `field`."""
    if spec is None:
        return frozenset()
    raw = spec.split(",") if isinstance(spec, str) else list(spec)
    if not all(isinstance(n, str) for n in raw):
        raise BadConfig(f"expected bug names, got {raw!r:.80}", field=field)
    names = [n.strip() for n in raw if n.strip()]
    for n in names:
        if n not in BUGS:
            raise BadConfig(f"unknown bug {n!r} (known: {', '.join(BUGS)})", field=field)
    return frozenset(names)


def ordered(bugs: Iterable[str]) -> list[str]:
    """The bugs in catalog order (for status pages and log lines)."""
    chosen = set(bugs)
    return [n for n in BUGS if n in chosen]


def core_options(bugs: Iterable[str]) -> dict[str, bool]:
    """The core protections for these bugs: {"pre_vote": bool, "check_quorum": bool};
    both on unless a chosen bug disables them."""
    off: set[str] = set()
    for n in bugs:
        off |= BUGS[n].disables
    return {p: p not in off for p in PROTECTIONS}


class BugTrace:
    """How often each planted bug made the node act otherwise than the correct node.

    Each switch calls `acted` when the bug changes the outcome (a vote granted that
    the correct rule refuses, an entry committed that it would not commit, ...). The
    first few times and every hundredth are logged ("planted bug NAME acted (N
    times): ..."): the evidence that a run gave the bug its chance, to read beside
    what the checkers made of it (bench/detection.py counts these lines).
    """

    FIRST = 3
    EVERY = 100

    def __init__(self, logger: Any) -> None:
        self.log = logger
        self.counts: Counter[str] = Counter()

    def acted(self, name: str, detail: str, *args: Any) -> None:
        self.counts[name] += 1
        n = self.counts[name]
        if n <= self.FIRST or n % self.EVERY == 0:
            self.log.info("planted bug %s acted (%d times): " + detail, name, n, *args)
