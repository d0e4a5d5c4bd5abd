"""Planted bugs: real, documented Raft mistakes that `--bug NAME` turns on.

A *planted bug* makes the node wrong on purpose, the way a real system once was,
so that a user can watch the suite find a violation in a minute. The correct node
never enables any of them. Each bug is a small switch read by `node.shell.server`; the
consensus core itself stays correct.

`local-reads`
    The leader answers a read from its local state machine at once: no ReadIndex
    quorum check and no log round. A leader deposed by a partition keeps answering
    from its stale state until it notices, so a read can miss a write that a newer
    leader already acknowledged (a stale read).
    Source: etcd 0.4 served reads from the leader's local state by default, found by
    Jepsen ("Jepsen: etcd and Consul", Kyle Kingsbury, aphyr.com/posts/316, 2014);
    Consul's default read mode had the same bug (fixed by its `consistent` mode).

`ack-before-commit`
    A write or cas is acknowledged as soon as the leader has appended (and persisted)
    it in its own log, before a majority holds it, i.e. before it is committed. A
    leader that crashes or is partitioned away loses such entries when a new leader
    overwrites them (paper section 5.3), so an acknowledged write vanishes. A cas is
    answered from the leader's applied state at append time.
    Source: the Maelstrom Raft tutorial (jepsen-io/maelstrom, doc/06-raft, section
    "Committing"): a server that answers clients before its log replication has
    committed their entry passes quiet tests, and its checker finds nonlinearizable
    histories once partitions are injected.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import BadConfig

LOCAL_READS = "local-reads"
ACK_BEFORE_COMMIT = "ack-before-commit"

BUGS: dict[str, str] = {
    LOCAL_READS: "the leader answers reads from local state, without a quorum check "
                 "(etcd 0.4, Consul; Jepsen 2014)",
    ACK_BEFORE_COMMIT: "writes and cas are acknowledged when appended to the leader's log, "
                       "not when committed (Maelstrom Raft tutorial)",
}


@dataclass(frozen=True)
class Bugs:
    """Which planted bugs are on (none for the correct node)."""

    local_reads: bool = False
    ack_before_commit: bool = False

    @property
    def names(self) -> list[str]:
        return [n for n, on in ((LOCAL_READS, self.local_reads),
                                (ACK_BEFORE_COMMIT, self.ack_before_commit)) if on]


def parse_bugs(spec: str | None, field: str = "--bug") -> Bugs:
    """'' or None -> no bug; 'a,b' -> both; an unknown name -> BadConfig."""
    names = [n.strip() for n in (spec or "").split(",") if n.strip()]
    for n in names:
        if n not in BUGS:
            raise BadConfig(f"unknown bug {n!r} (known: {', '.join(sorted(BUGS))})",
                           field=field)
    return Bugs(local_reads=LOCAL_READS in names,
                ack_before_commit=ACK_BEFORE_COMMIT in names)
