package main

import (
	"os"
	"path/filepath"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

func ent(i, t uint64, data string) *pb.Entry {
	return &pb.Entry{Index: new(i), Term: new(t), Type: new(pb.EntryNormal), Data: []byte(data)}
}

func hs(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func TestWALReplayOverwritesAndKeepsLastHardState(t *testing.T) {
	dir := t.TempDir()
	w, rec, err := OpenWAL(dir)
	if err != nil || len(rec.Entries) != 0 {
		t.Fatal(err, rec)
	}
	must(t, w.Save(hs(1, 1, 0), []*pb.Entry{ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c")}, true))
	// A new leader's entries replace index 2 onwards (Figure 2, receiver step 3).
	must(t, w.Save(hs(2, 2, 2), []*pb.Entry{ent(2, 2, "B")}, true))
	must(t, w.Close())
	_, rec, err = OpenWAL(dir)
	must(t, err)
	if len(rec.Entries) != 2 || string(rec.Entries[1].GetData()) != "B" || rec.Entries[1].GetTerm() != 2 {
		t.Fatalf("entries %v", rec.Entries)
	}
	if rec.HardState.GetTerm() != 2 || rec.HardState.GetVote() != 2 || rec.HardState.GetCommit() != 2 {
		t.Fatalf("hard state %v", rec.HardState)
	}
}

func TestWALCutsATornTail(t *testing.T) {
	dir := t.TempDir()
	w, _, err := OpenWAL(dir)
	must(t, err)
	must(t, w.Save(hs(1, 1, 1), []*pb.Entry{ent(1, 1, "a")}, true))
	must(t, w.Save(nil, []*pb.Entry{ent(2, 1, "bbbbbbbb")}, true))
	must(t, w.Close())
	path := filepath.Join(dir, walName)
	st, _ := os.Stat(path)
	for cut := int64(1); cut < 20; cut += 3 { // every torn length of the last record
		must(t, os.Truncate(path, st.Size()-cut))
		w, rec, err := OpenWAL(dir)
		must(t, err)
		if len(rec.Entries) != 1 || rec.CutBytes == 0 {
			t.Fatalf("cut %d: entries %d, cut bytes %d", cut, len(rec.Entries), rec.CutBytes)
		}
		// Appending after the cut gives a readable log again.
		must(t, w.Save(nil, []*pb.Entry{ent(2, 1, "bbbbbbbb")}, true))
		must(t, w.Close())
		_, rec, err = OpenWAL(dir)
		must(t, err)
		if len(rec.Entries) != 2 || rec.CutBytes != 0 {
			t.Fatalf("cut %d: after rewrite %d entries", cut, len(rec.Entries))
		}
		st, _ = os.Stat(path)
	}
}

func TestWALCorruptTailIsCut(t *testing.T) {
	dir := t.TempDir()
	w, _, err := OpenWAL(dir)
	must(t, err)
	must(t, w.Save(hs(1, 1, 0), []*pb.Entry{ent(1, 1, "a"), ent(2, 1, "b")}, true))
	must(t, w.Close())
	path := filepath.Join(dir, walName)
	data, _ := os.ReadFile(path)
	data[len(data)-1] ^= 0xff // the hard state record, last, no longer matches its CRC
	must(t, os.WriteFile(path, data, 0o644))
	_, rec, err := OpenWAL(dir)
	must(t, err)
	if len(rec.Entries) != 2 || rec.HardState.GetTerm() != 0 || rec.CutBytes == 0 {
		t.Fatalf("entries %d hard state %v cut %d", len(rec.Entries), rec.HardState, rec.CutBytes)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
