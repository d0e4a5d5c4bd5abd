package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `
nodes:
  n1: {client: "127.0.0.1:8001", peer: "127.0.0.1:9001"}
  n2: {client: "127.0.0.1:8003", peer: "127.0.0.1:9003"}
  n10: {client: "127.0.0.1:8005", peer: "127.0.0.1:9005"}
peers:
  n1: {n2: "127.0.0.1:31001", n10: "127.0.0.1:31002"}
  n2: {n1: "127.0.0.1:31003", n10: "127.0.0.1:31004"}
  n10: {n1: "127.0.0.1:31005", n2: "127.0.0.1:31006"}
data_dir: "/tmp/run/data/{id}"
peer_secret: "00"
fsync: true
request_timeout_ms: 500
`

func write(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	must(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

func TestConfig(t *testing.T) {
	c, err := LoadConfig(write(t, good), "n2", "")
	must(t, err)
	if c.RaftID != 2 || c.RaftIDs["n10"] != 3 || c.Dial[1] != "127.0.0.1:31003" || c.Dial[3] != "127.0.0.1:31004" {
		t.Fatalf("%+v", c)
	}
	if c.DataDir != "/tmp/run/data/n2" || c.Request.Milliseconds() != 500 || c.ElectionTicks() != 30 || c.HeartbeatTicks() != 5 {
		t.Fatalf("%+v", c)
	}
	c, err = LoadConfig(write(t, good), "n1", "/elsewhere")
	must(t, err)
	if c.DataDir != "/elsewhere" {
		t.Fatal(c.DataDir)
	}
}

func TestBadConfig(t *testing.T) {
	for _, text := range []string{"nodes: [", "nodes: {}", good + "heartbeat_ms: -1\n",
		good + "election_timeout_ms: [600, 300]\n", strings.Replace(good, `n10: {n1: "127.0.0.1:31005", n2: "127.0.0.1:31006"}`, `n10: {n1: "127.0.0.1:31005"}`, 1),
		strings.Replace(good, `"127.0.0.1:9003"`, `"nowhere"`, 1)} {
		if _, err := LoadConfig(write(t, text), "n10", ""); err == nil {
			t.Errorf("accepted %q", text)
		}
	}
	if _, err := LoadConfig(write(t, good), "n4", ""); err == nil {
		t.Error("accepted an unknown id")
	}
}
