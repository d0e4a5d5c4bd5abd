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
peer_secret: "000102030405060708090a0b0c0d0e0f"
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

// The peer secret (spec section 5): hex of at least 16 bytes, inline or in a file
// beside the cluster file; none at all only with insecure_peers: true.
func TestPeerSecret(t *testing.T) {
	c, err := LoadConfig(write(t, good), "n1", "")
	must(t, err)
	if len(c.Secret) != 16 || c.Secret[15] != 0x0f || c.Insecure {
		t.Fatalf("%x %v", c.Secret, c.Insecure)
	}
	p := write(t, strings.Replace(good, `peer_secret: "000102030405060708090a0b0c0d0e0f"`, `peer_secret_file: "secret.hex"`, 1))
	must(t, os.WriteFile(filepath.Join(filepath.Dir(p), "secret.hex"), []byte("ff"+strings.Repeat("01", 15)+"\n"), 0o600))
	if c, err = LoadConfig(p, "n1", ""); err != nil || len(c.Secret) != 16 || c.Secret[0] != 0xff {
		t.Fatalf("%v %+v", err, c)
	}
	without := strings.Replace(good, `peer_secret: "000102030405060708090a0b0c0d0e0f"`+"\n", "", 1)
	for text, says := range map[string]string{
		without: "no peer secret",
		strings.Replace(good, `"000102030405060708090a0b0c0d0e0f"`, `"00"`, 1): "at least 16 bytes",
		strings.Replace(good, `"000102030405060708090a0b0c0d0e0f"`, `"zz"`, 1): "hex",
		good + "peer_secret_file: x\n":                                         "not both",
	} {
		if _, err := LoadConfig(write(t, text), "n1", ""); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: got %v, want %q", says, err, says)
		}
	}
	if c, err = LoadConfig(write(t, without+"insecure_peers: true\n"), "n1", ""); err != nil || c.Secret != nil || !c.Insecure {
		t.Fatalf("insecure_peers: %v %+v", err, c)
	}
}
