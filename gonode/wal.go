package main

// The write-ahead log: etcd raft leaves durability to the application ("persist
// HardState and Entries BEFORE sending Messages"). One append-only file in the data
// directory, gonode.wal, holds records
//
//	[4-byte big-endian length n][4-byte CRC-32C of the next n bytes][type byte][protobuf]
//
// of two types: an entry (raftpb.Entry) and a hard state (raftpb.HardState). At start
// the file is replayed in order into what raft.MemoryStorage needs: an entry whose
// index is already in the log replaces it and everything after (a follower's log
// truncated by a new leader, Raft Figure 2, AppendEntries receiver 3); the last hard
// state wins. A torn final record (a crash in the middle of a write) is cut off.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const (
	recEntry     byte = 1
	recHardState byte = 2
	walName           = "gonode.wal"
	maxRecord         = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type WAL struct {
	f   *os.File
	buf []byte
}

// Recovered is what a WAL held at start.
type Recovered struct {
	HardState *pb.HardState
	Entries   []*pb.Entry // indexes 1..n, in order
	CutBytes  int         // the size of a torn tail that was cut off
}

// OpenWAL opens (or creates) the WAL in dir and replays it.
func OpenWAL(dir string) (*WAL, *Recovered, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, walName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// A new file is durable only once its directory entry is: fsync the directory.
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	rec, good, err := replay(data)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if good < len(data) {
		// Cut the torn tail, so that new records follow the last whole one.
		rec.CutBytes = len(data) - good
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	if _, err := f.Seek(int64(good), 0); err != nil {
		f.Close()
		return nil, nil, err
	}
	return &WAL{f: f}, rec, nil
}

// replay parses records until the first incomplete or corrupt one; it returns the
// state and the length of the good prefix. Only a broken tail is tolerated: a
// record that is whole but does not fit the log (a gap) is an error.
func replay(data []byte) (*Recovered, int, error) {
	rec := &Recovered{HardState: &pb.HardState{}}
	off := 0
	for {
		if len(data)-off < 9 {
			return rec, off, nil
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n < 1 || n > maxRecord || len(data)-off-8 < n {
			return rec, off, nil
		}
		body := data[off+8 : off+8+n]
		if crc32.Checksum(body, crcTable) != sum {
			return rec, off, nil
		}
		switch body[0] {
		case recEntry:
			e := &pb.Entry{}
			if err := proto.Unmarshal(body[1:], e); err != nil {
				return nil, 0, fmt.Errorf("entry record at offset %d: %v", off, err)
			}
			i := e.GetIndex()
			if i < 1 || i > uint64(len(rec.Entries))+1 {
				return nil, 0, fmt.Errorf("entry %d at offset %d leaves a gap after %d", i, off, len(rec.Entries))
			}
			rec.Entries = append(rec.Entries[:i-1], e)
		case recHardState:
			hs := &pb.HardState{}
			if err := proto.Unmarshal(body[1:], hs); err != nil {
				return nil, 0, fmt.Errorf("hard state record at offset %d: %v", off, err)
			}
			rec.HardState = hs
		default:
			return nil, 0, fmt.Errorf("unknown record type %d at offset %d", body[0], off)
		}
		off += 8 + n
	}
}

func (w *WAL) add(typ byte, m proto.Message) error {
	start := len(w.buf)
	w.buf = append(w.buf, 0, 0, 0, 0, 0, 0, 0, 0, typ)
	var err error
	if w.buf, err = (proto.MarshalOptions{}).MarshalAppend(w.buf, m); err != nil {
		return err
	}
	body := w.buf[start+8:]
	binary.BigEndian.PutUint32(w.buf[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(w.buf[start+4:], crc32.Checksum(body, crcTable))
	return nil
}

// Save appends the entries, then the hard state (so that a commit index never
// names an entry written after it), in one write; with sync, fsyncs before
// returning. etcd raft's Ready.MustSync says when sync is needed: new entries, or a
// new term or vote (Raft Figure 2: "updated on stable storage before responding").
func (w *WAL) Save(hs *pb.HardState, ents []*pb.Entry, sync bool) error {
	w.buf = w.buf[:0]
	for _, e := range ents {
		if err := w.add(recEntry, e); err != nil {
			return err
		}
	}
	if hs != nil {
		if err := w.add(recHardState, hs); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.Write(w.buf); err != nil {
		return err
	}
	if sync {
		return w.f.Sync()
	}
	return nil
}

func (w *WAL) Close() error {
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
