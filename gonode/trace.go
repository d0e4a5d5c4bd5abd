package main

import (
	"context"
	"sync"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// traceVersion is the "start" line's `trace`: this node's vote lines carry both logs'
// last [term, index], and it writes follow, read, acked and confirmed lines
// (docs/spec.md section 5), which raftcheck checks against the rules that govern
// them (checker.raft_rules).
const traceVersion = 2

// traceInputs records, from the messages the node receives, the inputs of the
// decisions raftcheck's trace rules check: each candidate's last log position from
// its RequestVote (section 5.4.1, the election restriction) and the term of each
// leader's last AppendEntries, heartbeat or snapshot (Figure 2, AppendEntries
// receiver 1: only the leader of the current term is followed). etcd raft makes the
// decisions; these are what it was given.
//
// As a leader, also what its followers' replies confirmed: the highest index each
// acknowledged in the newest term (Figure 2: matchIndex, which a commit counts), and
// which followers answered a read heartbeat after each read was asked (dissertation
// 6.4, ReadIndex step 3).
type traceInputs struct {
	mu         sync.Mutex
	candidate  map[[2]uint64][2]uint64    // [candidate id, term] -> [last log term, last index]
	leaderTerm map[uint64]uint64          // leader id -> the highest term it sent a leader message in
	ackTerm    uint64                     // the term of the acknowledgements in acked
	acked      map[uint64]uint64          // follower id -> highest index its MsgAppResp confirmed
	readOrder  []string                   // read contexts in the order they were asked
	readAcks   map[string]map[uint64]bool // read context -> followers that echoed it
}

func newTraceInputs() *traceInputs {
	return &traceInputs{candidate: map[[2]uint64][2]uint64{}, leaderTerm: map[uint64]uint64{},
		acked: map[uint64]uint64{}, readAcks: map[string]map[uint64]bool{}}
}

func (ti *traceInputs) observe(m *pb.Message) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	switch m.GetType() {
	case pb.MsgVote:
		if len(ti.candidate) > 64 { // keep only the newer terms' requests
			for k := range ti.candidate {
				if k[1] < m.GetTerm() {
					delete(ti.candidate, k)
				}
			}
		}
		ti.candidate[[2]uint64{m.GetFrom(), m.GetTerm()}] = [2]uint64{m.GetLogTerm(), m.GetIndex()}
	case pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap:
		// a delayed message of an older term must not hide the current one
		ti.leaderTerm[m.GetFrom()] = max(ti.leaderTerm[m.GetFrom()], m.GetTerm())
	case pb.MsgAppResp:
		if m.GetReject() || m.GetTerm() < ti.ackTerm {
			return
		}
		if m.GetTerm() > ti.ackTerm {
			ti.ackTerm, ti.acked = m.GetTerm(), map[uint64]uint64{}
		}
		ti.acked[m.GetFrom()] = max(ti.acked[m.GetFrom()], m.GetIndex())
	case pb.MsgHeartbeatResp:
		// etcd's read heartbeats carry its own read position, not the request's
		// context: a follower that answers one after a read was asked confirmed the
		// leadership for it (a superset of the acknowledgements etcd counted)
		if len(m.GetContext()) > 0 {
			for _, acks := range ti.readAcks {
				acks[m.GetFrom()] = true
			}
		}
	}
}

// readAsked records a read context about to be given to ReadIndex.
func (ti *traceInputs) readAsked(ctx string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if len(ti.readOrder) >= 4096 { // reads asked of a node that lost leadership
		for _, c := range ti.readOrder[:2048] {
			delete(ti.readAcks, c)
		}
		ti.readOrder = append([]string(nil), ti.readOrder[2048:]...)
	}
	ti.readOrder = append(ti.readOrder, ctx)
	ti.readAcks[ctx] = map[uint64]bool{}
}

// readConfirmed is the followers that answered a read heartbeat after this read was
// asked, and forgets the read; false if it is unknown.
func (ti *traceInputs) readConfirmed(ctx string) (map[uint64]bool, bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	acks, ok := ti.readAcks[ctx]
	if !ok {
		return nil, false
	}
	delete(ti.readAcks, ctx)
	for i, c := range ti.readOrder {
		if c == ctx {
			ti.readOrder = append(ti.readOrder[:i], ti.readOrder[i+1:]...)
			break
		}
	}
	return acks, true
}

// ackedIn is each follower's highest acknowledged index in this term (0: none).
func (ti *traceInputs) ackedIn(term uint64) map[uint64]uint64 {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	out := map[uint64]uint64{}
	if ti.ackTerm == term {
		for id, i := range ti.acked {
			out[id] = i
		}
	}
	return out
}

// candidateLast is the last log position the candidate sent in its RequestVote of
// that term.
func (ti *traceInputs) candidateLast(id, term uint64) ([2]uint64, bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	p, ok := ti.candidate[[2]uint64{id, term}]
	return p, ok
}

// termOf is the highest term of the leader's AppendEntries, heartbeats or snapshots.
func (ti *traceInputs) termOf(id uint64) (uint64, bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	t, ok := ti.leaderTerm[id]
	return t, ok
}

// observingNode is the node as the transport sees it: every message is observed,
// then stepped.
type observingNode struct {
	raft.Node
	in *traceInputs
}

func (o observingNode) Step(ctx context.Context, m *pb.Message) error {
	o.in.observe(m)
	return o.Node.Step(ctx, m)
}
