"""Snapshots on disk (node/shell/storage.py, paper section 7): raft.snap written
atomically, the WAL compacted behind it, a crash between the two recovered, damage
refused."""

from __future__ import annotations

import pytest

from node.core.messages import LogEntry
from node.core.state import HardState, Snapshot
from node.shell.storage import (SNAP_NAME, WAL_NAME, Storage, StorageCorrupted, decode_snapshot,
                                decode_wal, encode_snapshot)


def entries(lo, hi, term=1):
    return [(i, LogEntry(term, {"op": "write", "key": i % 4, "value": i})) for i in range(lo, hi + 1)]


def filled(path, n=20, term=1):
    s = Storage(path)
    s.load()
    s.save(HardState(term, "n1", 0), None, entries(1, n, term))
    return s


def test_snapshot_compacts_the_wal_and_restart_loads_snapshot_and_tail(tmp_path):
    s = filled(tmp_path)
    big = (tmp_path / WAL_NAME).stat().st_size
    s.save_snapshot(Snapshot(15, 1, '{"state": 15}'), entries(16, 20))
    s.save(HardState(1, "n1", 18), None, entries(21, 22))
    s.close()
    wal = decode_wal((tmp_path / WAL_NAME).read_bytes())
    assert (wal.base, wal.base_term, len(wal.entries)) == (15, 1, 7)
    assert (tmp_path / WAL_NAME).stat().st_size < big
    s = Storage(tmp_path)
    hs, log = s.load()
    assert s.snapshot == Snapshot(15, 1, '{"state": 15}')
    assert hs == HardState(1, "n1", 18) and log == [e for _, e in entries(16, 22)]
    # appends and truncations go on from there, by absolute index
    s.save(None, 21, entries(21, 21, term=2))
    with pytest.raises(ValueError):
        s.save(None, 15, [])  # inside the snapshot
    s.close()
    s = Storage(tmp_path)
    _, log = s.load()
    assert len(log) == 6 and log[-1].term == 2
    s.close()


def test_the_wal_stays_bounded_with_periodic_snapshots(tmp_path):
    s = Storage(tmp_path)
    s.load()
    every, last_snap, sizes = 50, 0, []
    for i in range(1, 1001):
        s.save(HardState(1, None, i - 1), None, entries(i, i))
        if i - last_snap >= every:
            s.save_snapshot(Snapshot(i, 1, f'{{"at": {i}}}'), [])
            last_snap = i
        sizes.append(decode_wal((tmp_path / WAL_NAME).read_bytes()).records)
    s.close()
    assert max(sizes) <= 2 * every + 2


def test_a_crash_between_the_snapshot_and_the_compaction_recovers(tmp_path):
    s = filled(tmp_path)
    s.write_snapshot(Snapshot(12, 1, "{}"))   # the crash: the WAL was not rewritten
    s.close()
    assert decode_wal((tmp_path / WAL_NAME).read_bytes()).base == 0
    s = Storage(tmp_path)
    hs, log = s.load()
    assert s.snapshot.index == 12 and log == [e for _, e in entries(13, 20)]
    s.close()
    # recovery finished the compaction, durably
    wal = decode_wal((tmp_path / WAL_NAME).read_bytes())
    assert (wal.base, len(wal.entries)) == (12, 8)


def test_a_crash_after_installing_a_leaders_snapshot_drops_a_conflicting_log(tmp_path):
    s = filled(tmp_path, n=5, term=1)
    s.write_snapshot(Snapshot(8, 3, "{}"))    # the leader's: past this log, term 3
    s.close()
    s = Storage(tmp_path)
    _, log = s.load()
    assert s.snapshot.index == 8 and log == []   # Figure 13, rule 7
    s.close()


def test_a_crash_before_the_rename_leaves_the_old_snapshot(tmp_path):
    s = filled(tmp_path)
    s.save_snapshot(Snapshot(10, 1, "{}"), entries(11, 20))
    s.close()
    (tmp_path / (SNAP_NAME + ".tmp")).write_bytes(b"half a snapsh")
    (tmp_path / (WAL_NAME + ".tmp")).write_bytes(b"\0\0")
    s = Storage(tmp_path)
    _, log = s.load()
    assert s.snapshot.index == 10 and len(log) == 10
    assert not (tmp_path / (SNAP_NAME + ".tmp")).exists()
    s.close()


@pytest.mark.parametrize("damage", ["flip", "cut", "zero", "empty", "append"])
def test_a_damaged_snapshot_is_refused_in_one_line(tmp_path, damage):
    s = filled(tmp_path)
    s.save_snapshot(Snapshot(10, 1, '{"k": "v"}'), entries(11, 20))
    s.close()
    snap = tmp_path / SNAP_NAME
    data = bytearray(snap.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x20
    elif damage == "cut":
        data = data[:-4]
    elif damage == "zero":
        data = bytearray(len(data))
    elif damage == "empty":
        data = bytearray()
    else:
        data += b"x"
    snap.write_bytes(bytes(data))
    for repair in (False, True):
        s = Storage(tmp_path)
        with pytest.raises(StorageCorrupted) as e:
            s.load(repair=repair)
        text = str(e.value)
        assert "\n" not in text and SNAP_NAME in text and "damaged" in text
        s = Storage(tmp_path)   # the refusal left the directory unlocked
        s.close()


def test_a_compacted_wal_without_its_snapshot_is_refused(tmp_path):
    s = filled(tmp_path)
    s.save_snapshot(Snapshot(10, 1, "{}"), entries(11, 20))
    s.close()
    (tmp_path / SNAP_NAME).unlink()
    with pytest.raises(StorageCorrupted, match="missing"):
        Storage(tmp_path).load()


def test_a_wal_compacted_past_its_snapshot_is_refused(tmp_path):
    s = filled(tmp_path)
    s.save_snapshot(Snapshot(10, 1, "{}"), entries(11, 20))
    s.close()
    (tmp_path / SNAP_NAME).write_bytes(encode_snapshot(Snapshot(8, 1, "{}")))
    with pytest.raises(StorageCorrupted, match="does not cover"):
        Storage(tmp_path).load()


def test_snapshot_record_round_trip():
    snap = Snapshot(7, 2, '{"values": [["k", "é"]]}')
    assert decode_snapshot(encode_snapshot(snap)) == snap
