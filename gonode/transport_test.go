package main

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// fakeNode stands for raft.Node: the transport only steps messages in and reports
// unreachable peers.
type fakeNode struct {
	raft.Node
	got         chan *pb.Message
	unreachable atomic.Int32
}

func (f *fakeNode) Step(ctx context.Context, m *pb.Message) error {
	select {
	case f.got <- m:
	default:
	}
	return nil
}
func (f *fakeNode) ReportUnreachable(id uint64) { f.unreachable.Add(1) }

// blackHole forwards TCP to `to`; while cut, it swallows what the client sends and
// keeps the connection open, as a Toxiproxy `timeout` toxic with timeout 0 does.
type blackHole struct {
	ln  net.Listener
	cut atomic.Bool
}

func newBlackHole(t *testing.T, to string) *blackHole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	b := &blackHole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			go io.Copy(c, up)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						up.Close()
						return
					}
					if !b.cut.Load() {
						up.Write(buf[:n])
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return b
}

func testConfig(id uint64, peer string, dial map[uint64]string) *Config {
	return &Config{ID: []string{"", "n1", "n2"}[id], RaftID: id, IDs: []string{"n1", "n2"},
		Peer: peer, Dial: dial, Heartbeat: 10 * time.Millisecond,
		ElectMin: 50 * time.Millisecond, ElectMax: 100 * time.Millisecond}
}

func heartbeat(from, to, term uint64) *pb.Message {
	return &pb.Message{Type: new(pb.MsgHeartbeat), From: new(from), To: new(to), Term: new(term)}
}

// With a peer secret every frame carries an HMAC-SHA256: nodes that share the
// secret talk, a node holding another secret is not heard (spec section 5).
func TestTransportAuthenticatesFrames(t *testing.T) {
	deliver := func(s1, s2 []byte) bool {
		a1, a2 := freeAddr(t), freeAddr(t)
		c1, c2 := testConfig(1, a1, map[uint64]string{2: a2}), testConfig(2, a2, map[uint64]string{1: a1})
		c1.Secret, c2.Secret = s1, s2
		n1 := &fakeNode{got: make(chan *pb.Message, 100)}
		n2 := &fakeNode{got: make(chan *pb.Message, 100)}
		t1, t2 := NewTransport(c1, NewLogger("n1", "gonode")), NewTransport(c2, NewLogger("n2", "gonode"))
		must(t, t1.Listen())
		must(t, t2.Listen())
		t1.Start(n1)
		t2.Start(n2)
		defer t1.Stop()
		defer t2.Stop()
		deadline := time.After(500 * time.Millisecond)
		for {
			t1.Send([]*pb.Message{heartbeat(1, 2, 7)})
			select {
			case m := <-n2.got:
				return m.GetTerm() == 7
			case <-time.After(10 * time.Millisecond):
			case <-deadline:
				if t2.dropped.Load() == 0 && s1 != nil && string(s1) != string(s2) {
					t.Error("no frame was refused for its MAC")
				}
				return false
			}
		}
	}
	same := []byte("0123456789abcdef")
	if !deliver(same, same) {
		t.Fatal("nodes sharing a secret did not hear each other")
	}
	if deliver(same, []byte("fedcba9876543210")) {
		t.Fatal("a frame under another secret was delivered")
	}
	if !deliver(nil, nil) {
		t.Fatal("insecure peers did not hear each other")
	}
}

// Node 1 dials node 2 through a black hole: while cut nothing arrives; after the
// heal node 1 has noticed the silence, redialled, and messages flow again.
func TestTransportRedialsAfterABlackHole(t *testing.T) {
	a1, a2 := freeAddr(t), freeAddr(t)
	hole := newBlackHole(t, a2)
	n1 := &fakeNode{got: make(chan *pb.Message, 100)}
	n2 := &fakeNode{got: make(chan *pb.Message, 100)}
	t1 := NewTransport(testConfig(1, a1, map[uint64]string{2: hole.ln.Addr().String()}), NewLogger("n1", "gonode"))
	t2 := NewTransport(testConfig(2, a2, map[uint64]string{1: a1}), NewLogger("n2", "gonode"))
	must(t, t1.Listen())
	must(t, t2.Listen())
	t1.Start(n1)
	t2.Start(n2)
	defer t1.Stop()
	defer t2.Stop()
	expect := func(term uint64, within time.Duration) bool {
		deadline := time.After(within)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case m := <-n2.got:
				if m.GetTerm() == term && m.GetFrom() == 1 {
					return true
				}
			case <-tick.C:
				t1.Send([]*pb.Message{heartbeat(1, 2, term)})
			case <-deadline:
				return false
			}
		}
	}
	if !expect(1, 2*time.Second) {
		t.Fatal("no message before the cut")
	}
	hole.cut.Store(true)
	if expect(2, 300*time.Millisecond) {
		t.Fatal("a message crossed the cut")
	}
	before := n1.unreachable.Load()
	time.Sleep(200 * time.Millisecond) // > ElectMax: node 1 gives the connection up
	if n1.unreachable.Load() == before {
		t.Fatal("the silent connection was not reported unreachable")
	}
	hole.cut.Store(false)
	if !expect(3, 2*time.Second) {
		t.Fatal("no message after the heal")
	}
	// A message to a node that is not a peer, or from one, is not delivered.
	t2.Send([]*pb.Message{heartbeat(2, 9, 1)})
}
