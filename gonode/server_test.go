package main

import (
	"fmt"
	"net"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// A one-node cluster in process: it elects itself, serves writes, cas and ReadIndex
// reads, and after a restart on the same data directory has them all.
func TestOneNodeServesAndRecovers(t *testing.T) {
	dir := t.TempDir()
	text := fmt.Sprintf("nodes:\n  n1: {client: %q, peer: %q}\npeers: {n1: {}}\ndata_dir: %q\ninsecure_peers: true\n",
		freeAddr(t), freeAddr(t), dir)
	path := write(t, text)
	start := func() *Server {
		cfg, err := LoadConfig(path, "n1", "")
		must(t, err)
		wal, rec, err := OpenWAL(cfg.DataDir)
		must(t, err)
		tr := NewTransport(cfg, NewLogger("n1", "gonode"))
		must(t, tr.Listen())
		s := NewServer(cfg, NewLogger("n1", "gonode"), wal, rec, tr)
		tr.Start(s.node)
		go s.Run()
		deadline := time.Now().Add(5 * time.Second)
		for s.Status()["role"] != "leader" {
			if time.Now().After(deadline) {
				t.Fatal("no leader")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Cleanup(func() { tr.Stop() })
		return s
	}
	s := start()
	if got := do(t, s, `{"op":"write","key":"a","value":{"x":[1,2]}}`); got != `{"ok":true}` {
		t.Fatal(got)
	}
	if got := do(t, s, `{"op":"cas","key":"a","from":{"x":[1,2.0]},"to":3,"client":"c","seq":1}`); got != `{"ok":true}` {
		t.Fatal(got)
	}
	if got := do(t, s, `{"op":"cas","key":"a","from":{"x":[1,2.0]},"to":3,"client":"c","seq":1}`); got != `{"ok":true}` {
		t.Fatal("retry:", got)
	}
	if got := do(t, s, `{"op":"read","key":"a"}`); got != `{"ok":true,"value":3}` {
		t.Fatal(got)
	}
	s.tr.Stop()
	s.Stop()
	s = start()
	if got := do(t, s, `{"op":"read","key":"a"}`); got != `{"ok":true,"value":3}` {
		t.Fatal("after restart:", got)
	}
	if st := s.Status(); st["last_applied"].(uint64) < 3 {
		t.Fatal(st)
	}
	s.Stop()
}
