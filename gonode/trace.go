package main

import (
	"context"
	"sync"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// traceVersion is the "start" line's `trace`: this node's vote lines carry both logs'
// last [term, index], and it writes follow and read lines (docs/spec.md section 5),
// which raftcheck checks against the rules that govern them (checker.raft_rules).
const traceVersion = 1

// traceInputs records, from the messages the node receives, the inputs of the
// decisions raftcheck's trace rules check: each candidate's last log position from
// its RequestVote (section 5.4.1, the election restriction) and the term of each
// leader's last AppendEntries, heartbeat or snapshot (Figure 2, AppendEntries
// receiver 1: only the leader of the current term is followed). etcd raft makes the
// decisions; these are what it was given.
type traceInputs struct {
	mu         sync.Mutex
	candidate  map[[2]uint64][2]uint64 // [candidate id, term] -> [last log term, last index]
	leaderTerm map[uint64]uint64       // leader id -> the highest term it sent a leader message in
}

func newTraceInputs() *traceInputs {
	return &traceInputs{candidate: map[[2]uint64][2]uint64{}, leaderTerm: map[uint64]uint64{}}
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
	}
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
