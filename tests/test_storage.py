"""The write-ahead log (node/shell/storage.py) on real files with real fsync."""

from __future__ import annotations

import os

import pytest

from node.core.messages import LogEntry
from node.core.state import HardState
from node.shell.storage import (WAL_NAME, DataDirLocked, Storage, StorageCorrupted, decode_wal,
                                encode_batch)


def numbered(start, entries):
    return [(start + k, e) for k, e in enumerate(entries)]


def reopen(path):
    s = Storage(path)
    hs, log = s.load()
    return s, hs, log


def test_round_trip_and_one_fsync_per_save(tmp_path):
    s = Storage(tmp_path / "d")
    assert s.load() == (HardState(0, None), [])
    e = [LogEntry(1, None), LogEntry(1, {"op": "write", "key": "k", "value": "é"}),
         LogEntry(2, [1, 2])]
    s.save(HardState(1, "n2"), None, numbered(1, e[:2]))
    s.save(HardState(2, None), None, numbered(3, e[2:]))
    s.save(None, None, [])  # nothing to write: no fsync
    assert s.fsyncs == 2
    s.close()
    s2, hs, log = reopen(tmp_path / "d")
    assert hs == HardState(2, None) and log == e
    s2.close()


def test_truncation_replays(tmp_path):
    s = Storage(tmp_path)
    s.load()
    s.save(HardState(1, None), None, numbered(1, [LogEntry(1, i) for i in range(5)]))
    s.save(HardState(3, "a"), 3, numbered(3, [LogEntry(3, "x")]))
    s.close()
    s2, hs, log = reopen(tmp_path)
    assert hs == HardState(3, "a")
    assert log == [LogEntry(1, 0), LogEntry(1, 1), LogEntry(3, "x")]
    # appends continue after the truncation
    s2.save(None, None, numbered(4, [LogEntry(3, "y")]))
    s2.close()
    assert reopen(tmp_path)[2][-1] == LogEntry(3, "y")


def test_save_refuses_a_gap(tmp_path):
    s = Storage(tmp_path)
    s.load()
    s.save(None, None, numbered(1, [LogEntry(1, 0)]))
    with pytest.raises(ValueError):
        s.save(None, None, numbered(3, [LogEntry(1, 2)]))
    with pytest.raises(ValueError):
        s.save(None, 5, [])
    s.close()


def test_commit_index_round_trip_and_commit_only_writes_skip_the_fsync(tmp_path):
    s = Storage(tmp_path)
    s.load()
    s.save(HardState(1, "a", 0), None, numbered(1, [LogEntry(1, i) for i in range(4)]))
    assert (s.writes, s.fsyncs) == (1, 1)
    s.save(HardState(1, "a", 3), None, [], sync=False)   # only the commit index moved
    assert (s.writes, s.fsyncs) == (2, 1)
    s.close()
    s2, hs, log = reopen(tmp_path)
    assert hs == HardState(1, "a", 3) and len(log) == 4
    s2.close()
    # compaction keeps it
    wal = decode_wal((tmp_path / WAL_NAME).read_bytes())
    assert wal.hard_state.commit == 3


def test_a_hard_state_record_without_commit_reads_as_commit_0():
    import json
    import struct
    import zlib
    payload = json.dumps({"k": "hs", "term": 4, "vote": "n2"}).encode()
    old = struct.pack(">II", len(payload), zlib.crc32(payload)) + payload
    wal = decode_wal(old + encode_batch(None, None, [(1, LogEntry(4, "x"))]))
    assert wal.hard_state == HardState(4, "n2", 0) and wal.entries == [LogEntry(4, "x")]
    with pytest.raises(StorageCorrupted, match="commit"):
        decode_wal(encode_batch(HardState(4, "n2", -1), None, []))


@pytest.mark.parametrize("cut", [1, 4, 8, 11, -1])
def test_torn_last_record_is_cut(tmp_path, cut):
    s = Storage(tmp_path)
    s.load()
    s.save(HardState(1, "a"), None, numbered(1, [LogEntry(1, "keep")]))
    size = os.path.getsize(tmp_path / WAL_NAME)
    s.save(None, None, numbered(2, [LogEntry(1, "torn")]))
    s.close()
    full = os.path.getsize(tmp_path / WAL_NAME)
    with open(tmp_path / WAL_NAME, "r+b") as f:  # the crash left part of the last write
        f.truncate(size + cut if cut > 0 else full + cut)
    s2, hs, log = reopen(tmp_path)
    assert hs == HardState(1, "a") and log == [LogEntry(1, "keep")]
    assert os.path.getsize(tmp_path / WAL_NAME) == size
    s2.save(None, None, numbered(2, [LogEntry(1, "again")]))
    s2.close()
    assert reopen(tmp_path)[2] == [LogEntry(1, "keep"), LogEntry(1, "again")]


def test_garbage_tail_is_cut(tmp_path):
    s = Storage(tmp_path)
    s.load()
    s.save(HardState(1, None), None, numbered(1, [LogEntry(1, "a")]))
    s.close()
    with open(tmp_path / WAL_NAME, "ab") as f:
        f.write(b"\xff\xff\xff\xff garbage")
    assert reopen(tmp_path)[2] == [LogEntry(1, "a")]


def test_corrupted_record_in_the_middle_stops(tmp_path):
    s = Storage(tmp_path)
    s.load()
    for i in range(1, 4):
        s.save(None, None, [(i, LogEntry(1, f"entry-{i}"))])
    s.close()
    data = bytearray((tmp_path / WAL_NAME).read_bytes())
    data[20] ^= 0x01  # inside the first record's payload
    (tmp_path / WAL_NAME).write_bytes(bytes(data))
    with pytest.raises(StorageCorrupted) as e:
        Storage(tmp_path).load()
    msg = str(e.value)
    assert WAL_NAME in msg and "offset 0" in msg and "\n" not in msg
    assert (tmp_path / WAL_NAME).read_bytes() == bytes(data)  # nothing was cut


def test_valid_crc_but_nonsense_record_stops():
    rec = encode_batch(None, 7, [])  # truncation at 7 of an empty log
    with pytest.raises(StorageCorrupted, match="truncation at 7"):
        decode_wal(rec)


def test_compaction_on_load_keeps_the_state(tmp_path):
    s = Storage(tmp_path)
    s.load()
    for t in range(1, 120):
        s.save(HardState(t, None), 1, [(1, LogEntry(t, t)), (2, LogEntry(t, -t))])
    s.close()
    before = os.path.getsize(tmp_path / WAL_NAME)
    s2, hs, log = reopen(tmp_path)
    after = os.path.getsize(tmp_path / WAL_NAME)
    assert hs == HardState(119, None) and log == [LogEntry(119, 119), LogEntry(119, -119)]
    assert after < before / 10
    s2.save(None, None, [(3, LogEntry(119, "next"))])
    s2.close()
    assert reopen(tmp_path)[2][-1] == LogEntry(119, "next")
    assert not (tmp_path / (WAL_NAME + ".tmp")).exists()


CHILD = r"""
import sys
from node.core.messages import LogEntry
from node.core.state import HardState
from node.shell.storage import Storage
s = Storage(sys.argv[1])
hs, log = s.load()
for i in range(len(log) + 1, len(log) + 5001):
    s.save(HardState(i // 50 + 1, None), None, [(i, LogEntry(i // 50 + 1, {"v": i, "pad": "x" * 300}))])
    print(i, flush=True)   # acknowledged only after the fsync
"""


def test_sigkill_mid_write_keeps_every_acknowledged_record(tmp_path):
    import signal
    import subprocess
    import sys

    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
        acked = 0
        try:
            for line in p.stdout:
                acked = int(line)
                if acked % 5000 >= 40 + 17 * round_:
                    break
            p.send_signal(signal.SIGKILL)
        finally:
            p.wait(timeout=30)
            p.stdout.close()
        s = Storage(tmp_path)
        hs, log = s.load()
        s.close()
        assert len(log) >= acked, f"round {round_}: acknowledged {acked}, recovered {len(log)}"
        assert [e.command["v"] for e in log] == list(range(1, len(log) + 1))
        assert hs.term == len(log) // 50 + 1 or hs.term == (len(log) + 1) // 50 + 1


def test_the_data_directory_is_locked_until_close(tmp_path):
    first = Storage(tmp_path)
    first.load()
    first.save(HardState(term=1), None, [(1, LogEntry(term=1, command={"op": "read", "key": 1}))])
    second = Storage(tmp_path)
    with pytest.raises(DataDirLocked, match="in use by another node"):
        second.load()
    assert (tmp_path / "LOCK").read_text().strip() == str(os.getpid())
    first.load()  # reloading keeps the lock it holds
    first.close()
    hs, entries = second.load()
    assert hs.term == 1 and len(entries) == 1
    second.close()


def _three_entries(tmp_path) -> bytes:
    s = Storage(tmp_path)
    s.load()
    s.save(HardState(2, "n1"), None, numbered(1, [LogEntry(2, "a")]))
    s.save(None, None, numbered(2, [LogEntry(2, "b")]))
    s.save(None, None, numbered(3, [LogEntry(2, "c")]))
    s.close()
    return (tmp_path / WAL_NAME).read_bytes()


def test_a_complete_last_record_with_a_bad_crc_is_damage_not_a_torn_write(tmp_path):
    """etcd's rule: only an incomplete record is torn. A whole record was written
    whole, and may have been acknowledged: the node refuses to start."""
    data = bytearray(_three_entries(tmp_path))
    data[-3] ^= 0x20  # inside the last record's payload
    (tmp_path / WAL_NAME).write_bytes(bytes(data))
    with pytest.raises(StorageCorrupted) as e:
        Storage(tmp_path).load()
    msg = str(e.value)
    assert "record 4 at offset" in msg and "CRC mismatch" in msg and "--repair-wal" in msg
    assert (tmp_path / WAL_NAME).read_bytes() == bytes(data)


@pytest.mark.parametrize("zeros", [8, 4096])
def test_a_zero_filled_wal_or_tail_refuses_to_start(tmp_path, zeros):
    (tmp_path / WAL_NAME).write_bytes(bytes(zeros))
    with pytest.raises(StorageCorrupted, match="offset 0: zero-filled"):
        Storage(tmp_path).load()
    good = _three_entries(tmp_path / "tail")
    (tmp_path / "tail" / WAL_NAME).write_bytes(good + bytes(zeros))
    with pytest.raises(StorageCorrupted, match=f"offset {len(good)}: zero-filled"):
        Storage(tmp_path / "tail").load()


def test_repair_cuts_at_the_first_damaged_record_and_says_so(tmp_path):
    data = bytearray(_three_entries(tmp_path))
    second = decode_wal(bytes(data)).records  # 4 records: hs, a, b, c
    assert second == 4
    cut_at = len(encode_batch(HardState(2, "n1"), None, [])) + len(
        encode_batch(None, None, numbered(1, [LogEntry(2, "a")])))
    data[cut_at + 10] ^= 0x01  # record 3 ("b"): a valid record ("c") follows
    (tmp_path / WAL_NAME).write_bytes(bytes(data))
    with pytest.raises(StorageCorrupted, match="a valid record follows"):
        Storage(tmp_path).load()
    s = Storage(tmp_path)
    hs, log = s.load(repair=True)
    assert hs == HardState(2, "n1") and log == [LogEntry(2, "a")]
    assert f"record 3 at offset {cut_at}: CRC mismatch" in s.last_repair
    s.close()
    assert os.path.getsize(tmp_path / WAL_NAME) == cut_at
    assert reopen(tmp_path)[2] == [LogEntry(2, "a")]



def test_a_missing_wal_in_a_directory_that_held_one_refuses_to_start(tmp_path):
    s = Storage(tmp_path)
    s.load()
    s.save(HardState(5, "n2"), None, numbered(1, [LogEntry(5, "a")]))
    s.close()
    assert (tmp_path / "raft.wal.created").exists()
    (tmp_path / WAL_NAME).unlink()
    with pytest.raises(StorageCorrupted, match="write-ahead log is missing") as e:
        Storage(tmp_path).load()
    assert "\n" not in str(e.value) and not (tmp_path / WAL_NAME).exists()
    s = Storage(tmp_path)
    assert s.load(repair=True) == (HardState(), [])
    assert "started from an empty log" in s.last_repair
    s.close()
    assert reopen(tmp_path)[1] == HardState()   # repaired: an ordinary empty log now
    fresh = tmp_path / "fresh"
    assert Storage(fresh).load() == (HardState(), [])  # a new directory is no loss
