package main

// The cluster file (docs/node-contract.md section 1): which nodes exist, where this
// node listens, where it dials each peer (a Toxiproxy proxy), and the Raft timings.

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the part of the cluster file this node uses; unknown keys are ignored.
type Config struct {
	ID        string            // this node's id, e.g. "n1"
	RaftID    uint64            // its Raft id (1..N)
	IDs       []string          // every node id, in Raft-id order
	RaftIDs   map[string]uint64 // node id -> Raft id
	Client    string            // where clients reach this node (HTTP)
	Peer      string            // where peers reach this node (its listener)
	Dial      map[uint64]string // Raft id of peer j -> the address this node dials for j
	Direct    bool              // no peers table: peers are dialled at their own address
	DataDir   string
	Heartbeat time.Duration
	ElectMin  time.Duration
	ElectMax  time.Duration
	Request   time.Duration // the commit wait before answering "timeout"
	Tick      time.Duration
	Secret    []byte // the cluster's peer secret (nil only with insecure_peers)
	Insecure  bool   // insecure_peers: true: frames are not authenticated
}

// minSecretBytes is the shortest peer secret accepted, as raftcheck's node does.
const minSecretBytes = 16

type fileNode struct {
	Client string `yaml:"client"`
	Peer   string `yaml:"peer"`
}

type file struct {
	Nodes            map[string]fileNode          `yaml:"nodes"`
	Peers            map[string]map[string]string `yaml:"peers"`
	DataDir          *string                      `yaml:"data_dir"`
	HeartbeatMs      *int                         `yaml:"heartbeat_ms"`
	ElectionTimeout  []int                        `yaml:"election_timeout_ms"`
	RequestTimeoutMs *int                         `yaml:"request_timeout_ms"`
	TickMs           *int                         `yaml:"tick_ms"`
	PeerSecret       *string                      `yaml:"peer_secret"`
	PeerSecretFile   *string                      `yaml:"peer_secret_file"`
	InsecurePeers    bool                         `yaml:"insecure_peers"`
}

// parseSecret reads a peer secret written as hex (at least minSecretBytes bytes).
func parseSecret(what, text string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("%s: expected a hex string", what)
	}
	if len(b) < minSecretBytes {
		return nil, fmt.Errorf("%s: expected at least %d bytes (%d hex digits), got %d", what, minSecretBytes, 2*minSecretBytes, len(b))
	}
	return b, nil
}

// peerSecret is the cluster file's peer_secret or peer_secret_file (a relative path
// is relative to the cluster file), as docs/spec.md section 5 says; without either,
// the file must say insecure_peers: true.
func peerSecret(path string, f *file) ([]byte, error) {
	switch {
	case f.PeerSecret != nil && f.PeerSecretFile != nil:
		return nil, fmt.Errorf("peer_secret_file: give peer_secret or peer_secret_file, not both")
	case f.PeerSecret != nil:
		return parseSecret("peer_secret", *f.PeerSecret)
	case f.PeerSecretFile != nil:
		name := *f.PeerSecretFile
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(path), name)
		}
		raw, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("peer_secret_file: cannot read %s: %v", name, err)
		}
		return parseSecret("peer_secret_file "+name, string(raw))
	case f.InsecurePeers:
		return nil, nil
	}
	return nil, fmt.Errorf("peer_secret: no peer secret: give peer_secret_file (or peer_secret: HEX) so that peers authenticate each other, or insecure_peers: true")
}

// nodeOrder sorts node ids so that n1..nN get Raft ids 1..N (n2 before n10).
func nodeOrder(ids []string) {
	sort.Slice(ids, func(a, b int) bool {
		if len(ids[a]) != len(ids[b]) {
			return len(ids[a]) < len(ids[b])
		}
		return ids[a] < ids[b]
	})
}

func checkAddr(what, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%s: %q is not host:port", what, addr)
	}
	_ = host
	return nil
}

func positive(name string, v *int, def int) (time.Duration, error) {
	if v == nil {
		return time.Duration(def) * time.Millisecond, nil
	}
	if *v <= 0 {
		return 0, fmt.Errorf("%s must be a positive integer, got %d", name, *v)
	}
	return time.Duration(*v) * time.Millisecond, nil
}

// LoadConfig reads and checks the cluster file for node `id`; dataDir, when not
// empty, overrides the file's data_dir.
func LoadConfig(path, id, dataDir string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f file
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%s: %v", path, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if len(f.Nodes) == 0 {
		return nil, fmt.Errorf("%s: no nodes", path)
	}
	c := &Config{ID: id, RaftIDs: map[string]uint64{}, Dial: map[uint64]string{}}
	for nid, n := range f.Nodes {
		if err := checkAddr("nodes."+nid+".client", n.Client); err != nil {
			return nil, err
		}
		if err := checkAddr("nodes."+nid+".peer", n.Peer); err != nil {
			return nil, err
		}
		c.IDs = append(c.IDs, nid)
	}
	nodeOrder(c.IDs)
	for i, nid := range c.IDs {
		c.RaftIDs[nid] = uint64(i + 1)
	}
	self, ok := f.Nodes[id]
	if !ok {
		return nil, fmt.Errorf("--id %q is not in nodes (%s)", id, strings.Join(c.IDs, ", "))
	}
	c.RaftID, c.Client, c.Peer = c.RaftIDs[id], self.Client, self.Peer
	// Node i dials peer j only at peers[i][j] (spec section 6): a proxy that
	// partitions can cut. Without a peers table at all, peers are dialled directly.
	mine, hasTable := f.Peers[id]
	if f.Peers != nil && !hasTable {
		return nil, fmt.Errorf("peers has no entry for %s", id)
	}
	c.Direct = f.Peers == nil
	for _, nid := range c.IDs {
		if nid == id {
			continue
		}
		addr := f.Nodes[nid].Peer
		if !c.Direct {
			if addr, ok = mine[nid]; !ok {
				return nil, fmt.Errorf("peers.%s has no address for %s", id, nid)
			}
			if err := checkAddr("peers."+id+"."+nid, addr); err != nil {
				return nil, err
			}
		}
		c.Dial[c.RaftIDs[nid]] = addr
	}
	switch {
	case dataDir != "":
		c.DataDir = dataDir
	case f.DataDir != nil && *f.DataDir != "":
		c.DataDir = strings.ReplaceAll(*f.DataDir, "{id}", id)
	default:
		return nil, fmt.Errorf("no data_dir in %s and no --data-dir", path)
	}
	if c.Heartbeat, err = positive("heartbeat_ms", f.HeartbeatMs, 50); err != nil {
		return nil, err
	}
	if c.Request, err = positive("request_timeout_ms", f.RequestTimeoutMs, 2000); err != nil {
		return nil, err
	}
	if c.Tick, err = positive("tick_ms", f.TickMs, 10); err != nil {
		return nil, err
	}
	c.ElectMin, c.ElectMax = 300*time.Millisecond, 600*time.Millisecond
	if f.ElectionTimeout != nil {
		e := f.ElectionTimeout
		if len(e) != 2 || e[0] <= 0 || e[1] < e[0] {
			return nil, fmt.Errorf("election_timeout_ms must be [min, max] with 0 < min <= max, got %v", e)
		}
		c.ElectMin, c.ElectMax = time.Duration(e[0])*time.Millisecond, time.Duration(e[1])*time.Millisecond
	}
	if c.Heartbeat >= c.ElectMin {
		return nil, fmt.Errorf("heartbeat_ms (%v) must be shorter than the election timeout (%v)", c.Heartbeat, c.ElectMin)
	}
	if c.Tick > c.Heartbeat {
		return nil, fmt.Errorf("tick_ms (%v) must not be longer than heartbeat_ms (%v)", c.Tick, c.Heartbeat)
	}
	if c.Secret, err = peerSecret(path, &f); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	c.Insecure = c.Secret == nil
	return c, nil
}

// Ticks are etcd raft's unit of time: HeartbeatTick and ElectionTick count ticks.
// etcd raft draws each election timeout in [ElectionTick, 2*ElectionTick), so the
// file's [min, max] maps to ElectionTick = min (max is then 2*min, as by default).
func (c *Config) HeartbeatTicks() int { return max(1, int(c.Heartbeat/c.Tick)) }
func (c *Config) ElectionTicks() int {
	return max(c.HeartbeatTicks()+1, int((c.ElectMin+c.Tick-1)/c.Tick))
}

// NameOf is the node id of Raft id r ("" for none).
func (c *Config) NameOf(r uint64) string {
	if r == 0 || r > uint64(len(c.IDs)) {
		return ""
	}
	return c.IDs[r-1]
}
