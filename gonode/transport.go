package main

// The peer transport: etcd raft only hands messages over (Ready.Messages) and takes
// them in (Node.Step); moving them is the application's job. Frames over TCP:
//
//	[4-byte big-endian length n][4-byte CRC-32C of the n bytes][kind byte][body][MAC]
//
// MAC: with the cluster's peer secret, a 32-byte HMAC-SHA256 of the 4-byte length,
// the kind byte and the body (spec section 5: peers authenticate every frame); a
// frame whose MAC does not verify is dropped and its connection closed, and nothing
// in the node changes. A replayed frame is a duplicated, delayed message, which Raft
// tolerates (section 5.1). Without a secret (insecure_peers: true) there is no MAC.
//
// kind 0: a raftpb.Message; kind 1: ping, kind 2: pong (body: the sender's Raft id,
// 8 bytes). One outgoing connection per peer j, dialled ONLY at peers[i][j] (a
// Toxiproxy proxy: spec section 6) and redialled with backoff; accepted connections
// are receive-only, and a frame's sender is read from the frame (Message.From or
// the ping's id), never from the remote address (which is the proxy's).
//
// A Toxiproxy cut black-holes a connection: bytes vanish, the connection stays
// open. So every outgoing connection is pinged each heartbeat and the peer answers
// with a pong on its own outgoing connection; when no pong came back for the
// longest election timeout, the connection is closed and redialled and raft is told
// (Node.ReportUnreachable, as etcd's rafthttp does on a failed send). A CRC
// mismatch (a stream cut mid-frame) closes the connection too.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const (
	kindRaft  byte = 0
	kindPing  byte = 1
	kindPong  byte = 2
	maxFrame       = 64 << 20
	queueSize      = 4096
)

type Transport struct {
	cfg    *Config
	log    *Logger
	node   raft.Node
	peers  map[uint64]*peer
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropped atomic.Int64 // frames that failed authentication
	quiet   *every       // their warnings: at most one per 5 s
}

// every lets an action through at most once per period (a rate-limited log line).
type every struct {
	period time.Duration
	mu     sync.Mutex
	last   time.Time
}

func (e *every) Allow() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); e.last.IsZero() || now.Sub(e.last) >= e.period {
		e.last = now
		return true
	}
	return false
}

// mac is the frame's HMAC-SHA256 under the peer secret (nil without one): of the
// length, the kind byte and the body, so no part of a frame can be changed.
func (t *Transport) mac(length, kind, body []byte) []byte {
	if t.cfg.Secret == nil {
		return nil
	}
	h := hmac.New(sha256.New, t.cfg.Secret)
	h.Write(length)
	h.Write(kind)
	h.Write(body)
	return h.Sum(nil)
}

type peer struct {
	t        *Transport
	id       uint64
	name     string
	addr     string
	queue    chan *pb.Message
	pongs    chan struct{}
	lastPong atomic.Int64 // unix nanos of the last pong from this peer
}

func NewTransport(cfg *Config, log *Logger) *Transport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{cfg: cfg, log: log, peers: map[uint64]*peer{}, ctx: ctx, cancel: cancel,
		quiet: &every{period: 5 * time.Second}}
	for id, addr := range cfg.Dial {
		t.peers[id] = &peer{t: t, id: id, name: cfg.NameOf(id), addr: addr,
			queue: make(chan *pb.Message, queueSize), pongs: make(chan struct{}, 1)}
	}
	return t
}

// Listen binds the peer address; Start then accepts and dials (once the node exists).
func (t *Transport) Listen() (err error) {
	t.ln, err = net.Listen("tcp", t.cfg.Peer)
	return err
}

func (t *Transport) Start(node raft.Node) {
	t.node = node
	t.wg.Add(1)
	go t.accept()
	for _, p := range t.peers {
		t.wg.Add(1)
		go p.run()
	}
}

func (t *Transport) Stop() {
	t.cancel()
	t.ln.Close()
}

// Send queues messages to their peers without blocking the Ready loop; a message
// that finds the queue full is dropped (Raft tolerates loss; raft is told so).
func (t *Transport) Send(msgs []*pb.Message) {
	for _, m := range msgs {
		p := t.peers[m.GetTo()]
		if p == nil {
			continue
		}
		select {
		case p.queue <- m:
		default:
			t.node.ReportUnreachable(p.id)
		}
	}
}

// ---- sending ---------------------------------------------------------------

func (p *peer) run() {
	defer p.t.wg.Done()
	backoff, failures := 20*time.Millisecond, 0
	for p.t.ctx.Err() == nil {
		conn, err := net.DialTimeout("tcp", p.addr, 500*time.Millisecond)
		if err == nil {
			// Back off from a peer that is down (the proxy accepts, then closes at
			// once); redial at once a link that lived (a black hole, now maybe healed).
			start := time.Now()
			if p.serve(conn) || time.Since(start) >= p.t.cfg.ElectMax {
				backoff, failures = 20*time.Millisecond, 0
			}
			conn.Close()
		} else if failures%50 == 0 {
			p.t.log.Warningf("cannot reach %s at %s: %v", p.name, p.addr, err)
		}
		failures++
		p.t.node.ReportUnreachable(p.id)
		// Messages queued while there was no connection are dropped: raft resends
		// what matters (etcd's rafthttp drops them too).
		p.drain()
		select {
		case <-p.t.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 640*time.Millisecond)
	}
}

func (p *peer) drain() {
	for {
		select {
		case <-p.queue:
		default:
			return
		}
	}
}

// serve writes frames on one connection until it fails, goes silent or the node
// stops; it says whether the peer answered at all (a pong) on it.
func (p *peer) serve(conn net.Conn) (answered bool) {
	cfg := p.t.cfg
	silence := cfg.ElectMax
	start := time.Now()
	p.lastPong.Store(start.UnixNano())
	dead := make(chan struct{})
	go func() { // nothing is ever sent back on this connection: EOF or error = closed
		io.Copy(io.Discard, conn)
		close(dead)
	}()
	w := bufio.NewWriterSize(conn, 256<<10)
	var hdr [9]byte
	frame := func(kind byte, body []byte) error {
		binary.BigEndian.PutUint32(hdr[0:], uint32(len(body)+1))
		hdr[8] = kind // the CRC covers the kind byte and the body
		binary.BigEndian.PutUint32(hdr[4:], crc32.Update(crc32.Checksum(hdr[8:], crcTable), crcTable, body))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
		if mac := p.t.mac(hdr[0:4], hdr[8:9], body); mac != nil {
			_, err := w.Write(mac)
			return err
		}
		return nil
	}
	flush := w.Flush
	var idBody [8]byte
	binary.BigEndian.PutUint64(idBody[:], p.t.cfg.RaftID)
	// A few pings per silence window are enough; each is a separate write (a
	// separate chunk in a Toxiproxy latency toxic), so not one per heartbeat.
	ticker := time.NewTicker(max(cfg.Heartbeat, silence/4))
	defer ticker.Stop()
	lastTick := time.Now()
	p.t.log.Infof("connected to %s at %s", p.name, p.addr)
	var buf []byte
	for {
		var err error
		// A peer that stops reading (paused) must not block us forever: every write,
		// including the writer's own flushes of a full buffer, has a deadline.
		conn.SetWriteDeadline(time.Now().Add(silence))
		select {
		case <-p.t.ctx.Done():
			return answered
		case <-dead:
			p.t.log.Warningf("connection to %s closed by the other side", p.name)
			return answered
		case <-p.pongs:
			if err = frame(kindPong, idBody[:]); err == nil {
				err = flush()
			}
		case m := <-p.queue:
			// Write what is queued (up to a batch), then flush once.
			for n := 1; ; n++ {
				buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], m)
				if err == nil {
					err = frame(kindRaft, buf)
				}
				if err != nil || n == 256 {
					break
				}
				select {
				case m = <-p.queue:
					continue
				default:
				}
				break
			}
			if err == nil {
				err = flush()
			}
		case now := <-ticker.C:
			if now.Sub(lastTick) > silence/2 {
				// This process was paused (SIGSTOP): the silence is ours, not the link's.
				p.lastPong.Store(now.UnixNano())
			}
			lastTick = now
			heard := time.Unix(0, p.lastPong.Load())
			if heard.After(start) {
				answered = true
			}
			if now.Sub(heard) > silence {
				p.t.log.Warningf("no answer from %s for %v: redialling %s", p.name,
					now.Sub(heard).Round(time.Millisecond), p.addr)
				return answered
			}
			if err = frame(kindPing, idBody[:]); err == nil {
				err = flush()
			}
		}
		if err != nil {
			p.t.log.Warningf("sending to %s failed: %v", p.name, err)
			return answered
		}
	}
}

// ---- receiving -------------------------------------------------------------

func (t *Transport) accept() {
	defer t.wg.Done()
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			t.log.Warningf("accept: %v", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go t.receive(conn)
	}
}

// receive reads frames from one accepted connection until it fails or stays quiet
// (the sender pings every heartbeat, so a quiet connection is a dead one).
func (t *Transport) receive(conn net.Conn) {
	defer conn.Close()
	go func() { <-t.ctx.Done(); conn.Close() }()
	r := bufio.NewReaderSize(conn, 256<<10)
	quiet := 2 * t.cfg.ElectMax
	var hdr [8]byte
	var got [sha256.Size]byte
	var body []byte
	for {
		conn.SetReadDeadline(time.Now().Add(quiet))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[0:])
		if n < 1 || n > maxFrame {
			t.log.Warningf("bad frame length %d from %s: closing", n, conn.RemoteAddr())
			return
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			t.log.Warningf("bad frame checksum from %s: closing", conn.RemoteAddr())
			return
		}
		if t.cfg.Secret != nil {
			if _, err := io.ReadFull(r, got[:]); err != nil {
				return
			}
			if !hmac.Equal(got[:], t.mac(hdr[0:4], body[:1], body[1:])) {
				t.dropped.Add(1)
				if t.quiet.Allow() {
					t.log.Warningf("frame from %s failed authentication (%d dropped so far): closing", conn.RemoteAddr(), t.dropped.Load())
				}
				return
			}
		}
		switch body[0] {
		case kindPing, kindPong:
			if len(body) != 9 {
				return
			}
			p := t.peers[binary.BigEndian.Uint64(body[1:])]
			if p == nil {
				continue
			}
			if body[0] == kindPing {
				select { // answer on our own connection to the sender
				case p.pongs <- struct{}{}:
				default:
				}
			} else {
				p.lastPong.Store(time.Now().UnixNano())
			}
		case kindRaft:
			m := &pb.Message{}
			if err := proto.Unmarshal(body[1:], m); err != nil {
				t.log.Warningf("bad message from %s: %v", conn.RemoteAddr(), err)
				return
			}
			if m.GetTo() != t.cfg.RaftID || t.peers[m.GetFrom()] == nil || raft.IsLocalMsg(m.GetType()) {
				continue // not for us, from no peer, or a type that never travels
			}
			if err := t.node.Step(t.ctx, m); err != nil {
				return
			}
		default:
			return
		}
	}
}
