package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

type testNode struct {
	s  *Server
	tr *Transport
}

func startNode(t *testing.T, path, id string) *testNode {
	cfg, err := LoadConfig(path, id, "")
	must(t, err)
	wal, rec, err := OpenWAL(cfg.DataDir)
	must(t, err)
	tr := NewTransport(cfg, NewLogger(id, "gonode"))
	must(t, tr.Listen())
	s := NewServer(cfg, NewLogger(id, "gonode"), wal, rec, tr)
	tr.Start(s.Stepper())
	go s.Run()
	return &testNode{s, tr}
}

func (n *testNode) stop() {
	n.tr.Stop()
	n.s.Stop()
}

func leaderOf(t *testing.T, nodes map[string]*testNode) string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for id, n := range nodes {
			if n != nil && n.s.Status()["role"] == "leader" {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return ""
}

func do(t *testing.T, s *Server, body string) string {
	c, ok := parseRequest([]byte(body))
	if !ok {
		t.Fatalf("refused %s", body)
	}
	var r Result
	if c.Op == "read" {
		r = s.Read(c.Key)
	} else {
		r = s.Propose(c)
	}
	b, _ := json.Marshal(r)
	return string(b)
}

// Three nodes in process: writes at the leader are read back; a follower redirects;
// the leader stops, a new one is elected and has every acknowledged write; the old
// one restarts from its WAL and catches up.
func TestThreeNodes(t *testing.T) {
	dir := t.TempDir()
	text := "nodes:\n"
	ids := []string{"n1", "n2", "n3"}
	peer := map[string]string{}
	for _, id := range ids {
		peer[id] = freeAddr(t)
		text += fmt.Sprintf("  %s: {client: %q, peer: %q}\n", id, freeAddr(t), peer[id])
	}
	text += "peers:\n"
	for _, i := range ids {
		text += fmt.Sprintf("  %s: {", i)
		for _, j := range ids {
			if i != j {
				text += fmt.Sprintf("%s: %q, ", j, peer[j])
			}
		}
		text += "}\n"
	}
	text += fmt.Sprintf("data_dir: %q\nrequest_timeout_ms: 1000\npeer_secret: \"00112233445566778899aabbccddeeff\"\n", filepath.Join(dir, "{id}"))
	path := write(t, text)
	nodes := map[string]*testNode{}
	for _, id := range ids {
		nodes[id] = startNode(t, path, id)
	}
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.stop()
			}
		}
	}()
	lead := leaderOf(t, nodes)
	for i := 0; i < 20; i++ {
		if got := do(t, nodes[lead].s, fmt.Sprintf(`{"op":"write","key":"k","value":%d,"client":"c","seq":%d}`, i, i)); got != `{"ok":true}` {
			t.Fatal(got)
		}
	}
	if got := do(t, nodes[lead].s, `{"op":"read","key":"k"}`); got != `{"ok":true,"value":19}` {
		t.Fatal(got)
	}
	for id, n := range nodes {
		if id != lead {
			if got := do(t, n.s, `{"op":"read","key":"k"}`); got != fmt.Sprintf(`{"ok":false,"code":30,"error":"not-leader","definite":true,"leader":%q}`, lead) {
				t.Fatal(got)
			}
		}
	}
	nodes[lead].stop()
	nodes[lead] = nil
	second := leaderOf(t, nodes)
	if got := do(t, nodes[second].s, `{"op":"cas","key":"k","from":19,"to":20}`); got != `{"ok":true}` {
		t.Fatal(got)
	}
	nodes[lead] = startNode(t, path, lead)
	deadline := time.Now().Add(5 * time.Second)
	for nodes[lead].s.Status()["last_applied"].(uint64) < nodes[second].s.Status()["last_applied"].(uint64) {
		if time.Now().After(deadline) {
			t.Fatal("the restarted node did not catch up", nodes[lead].s.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
