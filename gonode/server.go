package main

// The node: etcd raft's raft.Node driven the way etcd drives it (the Ready loop of
// raft/README.md "Usage"): tick on a timer; for each Ready, (1) write HardState and
// Entries to the WAL, fsynced when Ready.MustSync, (2) append them to the
// MemoryStorage, (3) only then send Ready.Messages ("persist before send"), (4) apply
// CommittedEntries to the state machine and answer the clients waiting for them,
// (5) serve ReadIndex reads whose index is applied, (6) Advance.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

type Server struct {
	cfg     *Config
	log     *Logger
	node    raft.Node
	storage *raft.MemoryStorage
	wal     *WAL
	tr      *Transport
	sm      *StateMachine // touched by the Ready loop only
	events  *Events
	pTerm   uint64 // the term and vote last written to the WAL (for `persisted`)
	pVote   uint64
	// the commit index when this node took office, and the last term whose first
	// commit was told (for `commit`: Figure 2 lets a leader count only its own term)
	ledTerm, ledFrom, toldTerm uint64
	// trace lines (docs/spec.md section 5): what each decision was given, the leader
	// and term last followed, the last term whose first read index was told
	trace    *traceInputs
	followed [2]uint64
	readTerm uint64
	// the last `stable` line: the index told and when
	stableTold uint64
	stableAt   time.Time
	boot       string
	nextID     atomic.Uint64
	stopc      chan struct{}
	done       chan struct{}

	mu        sync.Mutex // guards what follows (shared with the HTTP handlers)
	role      raft.StateType
	lead      uint64
	term      uint64
	commit    uint64
	applied   uint64
	lastIndex uint64
	waiters   map[string]chan Result // proposal id -> its client
	reads     map[string]*pendingRead
	readable  []*pendingRead // index known, waiting for applied >= index
}

type pendingRead struct {
	key   json.RawMessage
	index uint64
	ch    chan Result
}

// staticStorage is MemoryStorage with the cluster's fixed membership: the voters are
// the nodes of the cluster file, so no configuration entries are ever needed (etcd
// raft takes the membership from Storage.InitialState's ConfState).
type staticStorage struct {
	*raft.MemoryStorage
	cs *pb.ConfState
}

func (s staticStorage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	hs, _, err := s.MemoryStorage.InitialState()
	return hs, s.cs, err
}

func NewServer(cfg *Config, log *Logger, wal *WAL, rec *Recovered, tr *Transport) *Server {
	s := &Server{cfg: cfg, log: log, wal: wal, tr: tr, sm: NewStateMachine(), events: NewEvents(cfg.ID),
		storage: raft.NewMemoryStorage(), boot: fmt.Sprintf("%s.%x", cfg.ID, time.Now().UnixNano()),
		stopc: make(chan struct{}), done: make(chan struct{}),
		waiters: map[string]chan Result{}, reads: map[string]*pendingRead{}, trace: newTraceInputs()}
	hs := rec.HardState
	last := uint64(len(rec.Entries))
	if hs.GetCommit() > last {
		// etcd raft refuses a commit index beyond the log; a commit is only a hint
		// (Figure 2: volatile state), so clamp it.
		log.Warningf("stored commit %d is beyond the last index %d: using %d", hs.GetCommit(), last, last)
		hs = &pb.HardState{Term: new(hs.GetTerm()), Vote: new(hs.GetVote()), Commit: new(last)}
	}
	s.storage.SetHardState(hs)
	if err := s.storage.Append(rec.Entries); err != nil {
		log.Fatalf("recovering the log: %v", err)
	}
	s.term, s.commit, s.lastIndex, s.role = hs.GetTerm(), hs.GetCommit(), last, raft.StateFollower
	voters := make([]uint64, len(cfg.IDs))
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	c := &raft.Config{
		ID:                        cfg.RaftID,
		ElectionTick:              cfg.ElectionTicks(),
		HeartbeatTick:             cfg.HeartbeatTicks(),
		Storage:                   staticStorage{s.storage, pb.EnsureConfState(&pb.ConfState{Voters: voters})},
		Applied:                   0, // the state machine is rebuilt from the log at every start
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true, // a leader cut off from a majority steps down
		PreVote:                   true, // a rejoining node does not disrupt (dissertation 9.6)
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true, // proposals only at the leader: a dropped one is definite
		Logger:                    raftLogger{NewLogger(cfg.ID, "raft")},
	}
	log.Infof("recovered: term %d, vote %s, commit %d, last index %d, election %d ticks, heartbeat %d ticks of %v",
		hs.GetTerm(), orNone(cfg.NameOf(hs.GetVote())), s.commit, last, c.ElectionTick, c.HeartbeatTick, cfg.Tick)
	s.pTerm, s.pVote = hs.GetTerm(), hs.GetVote()
	s.events.Emit("start", map[string]any{"term": hs.GetTerm(),
		"vote": nameOrNull(cfg.NameOf(hs.GetVote())), "commit": s.commit,
		"last_index": last, "bugs": []string{}, "trace": traceVersion})
	// RestartNode, not StartNode: the membership comes from storage, not from
	// bootstrap configuration entries, so a fresh node and a restarted one start alike.
	s.node = raft.RestartNode(c)
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (s *Server) Run() {
	defer close(s.done)
	ticker := time.NewTicker(s.cfg.Tick)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			s.node.Tick()
		case rd := <-s.node.Ready():
			s.ready(rd)
		case <-s.stopc:
			return
		}
	}
}

// Stop ends the Ready loop, then raft, then closes the WAL (fsync).
func (s *Server) Stop() {
	close(s.stopc)
	<-s.done
	s.node.Stop()
	if err := s.wal.Close(); err != nil {
		s.log.Warningf("closing the WAL: %v", err)
	}
}

func (s *Server) ready(rd raft.Ready) {
	// (1)+(2) Persist before anything leaves this node (Raft Figure 2: currentTerm,
	// votedFor and log[] are "updated on stable storage before responding").
	if err := s.wal.Save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
		s.log.Fatalf("writing the WAL: %v", err)
	}
	if rd.HardState != nil {
		s.storage.SetHardState(rd.HardState)
		if t, v := rd.HardState.GetTerm(), rd.HardState.GetVote(); t != s.pTerm || v != s.pVote {
			// written, and fsynced: etcd raft sets MustSync whenever term or vote change
			s.pTerm, s.pVote = t, v
			s.events.Emit("persisted", map[string]any{"term": t, "vote": nameOrNull(s.cfg.NameOf(v))})
		}
	}
	// the log as the vote decisions of this Ready saw it at most (section 5.4.1)
	ownIndex, _ := s.storage.LastIndex()
	ownTerm, _ := s.storage.Term(ownIndex)
	if len(rd.Entries) > 0 {
		if err := s.storage.Append(rd.Entries); err != nil {
			s.log.Fatalf("appending to the log: %v", err)
		}
	}
	s.tellStable(rd)
	if !raft.IsEmptySnap(rd.Snapshot) {
		s.log.Warningf("ignoring a snapshot at index %d (this node never compacts)", rd.Snapshot.GetMetadata().GetIndex())
	}
	role := s.role
	if rd.SoftState != nil {
		role = rd.SoftState.RaftState
	}
	if role == raft.StateLeader && s.role != raft.StateLeader {
		s.events.Emit("leader", map[string]any{"term": s.pTerm})
		s.ledTerm, s.ledFrom = s.pTerm, s.commit // what it learned as a follower
		if rd.HardState != nil {
			s.ledFrom = rd.HardState.GetCommit()
		}
	}
	if role == raft.StateLeader && rd.HardState != nil && rd.HardState.GetCommit() > s.commit {
		s.traceCommit(rd.HardState.GetCommit())
	}
	if role == raft.StateLeader && rd.HardState != nil && s.ledTerm == s.pTerm &&
		s.toldTerm != s.pTerm && rd.HardState.GetCommit() > s.ledFrom {
		// the leader's first commit of its term, and the term of the entry it counted
		c := rd.HardState.GetCommit()
		if et, err := s.storage.Term(c); err == nil {
			s.toldTerm = s.pTerm
			s.events.Emit("commit", map[string]any{"term": s.pTerm, "index": c, "entry_term": et})
		}
	}
	lead := s.lead
	if rd.SoftState != nil {
		lead = rd.SoftState.Lead
	}
	if role == raft.StateFollower && lead != raft.None && s.followed != [2]uint64{lead, s.pTerm} {
		// Figure 2, AppendEntries receiver 1: the leader followed leads the current term
		s.followed = [2]uint64{lead, s.pTerm}
		fields := map[string]any{"term": s.pTerm, "leader": s.cfg.NameOf(lead)}
		if t, ok := s.trace.termOf(lead); ok {
			fields["leader_term"] = t
		}
		s.events.Emit("follow", fields)
	}
	for _, m := range rd.Messages {
		if m.GetType() == pb.MsgVoteResp && !m.GetReject() {
			fields := map[string]any{"term": m.GetTerm(), "candidate": s.cfg.NameOf(m.GetTo())}
			if c, ok := s.trace.candidateLast(m.GetTo(), m.GetTerm()); ok {
				fields["candidate_last"] = c
				fields["own_last"] = [2]uint64{ownTerm, ownIndex}
			}
			s.events.Emit("vote", fields)
		}
	}
	// (3) Send.
	s.tr.Send(rd.Messages)

	s.mu.Lock()
	lost := false
	if rd.SoftState != nil {
		old := s.role
		s.role, s.lead = rd.SoftState.RaftState, rd.SoftState.Lead
		lost = old == raft.StateLeader && s.role != raft.StateLeader
		if old != s.role {
			term := s.term
			if rd.HardState != nil {
				term = rd.HardState.GetTerm()
			}
			s.log.Infof("%s -> %s at term %d (leader %s)", roleName(old), roleName(s.role), term, orNone(s.cfg.NameOf(s.lead)))
		}
	}
	if rd.HardState != nil {
		s.term, s.commit = rd.HardState.GetTerm(), rd.HardState.GetCommit()
	}
	if n := len(rd.Entries); n > 0 {
		s.lastIndex = rd.Entries[n-1].GetIndex()
	}
	s.mu.Unlock()

	// (4) Apply, in log order; the proposer of an entry (found by its id) gets the result.
	for _, e := range rd.CommittedEntries {
		var id string
		var r Result
		if e.GetType() == pb.EntryNormal && len(e.GetData()) > 0 {
			id, r = s.sm.Apply(e.GetData())
		}
		s.mu.Lock()
		s.applied = e.GetIndex()
		if ch, ok := s.waiters[id]; ok && id != "" {
			delete(s.waiters, id)
			ch <- r
		}
		s.mu.Unlock()
	}

	// (5) ReadIndex (dissertation 6.4): a read is served once the state machine has
	// applied up to the commit index the leader confirmed with a quorum.
	s.mu.Lock()
	for _, rs := range rd.ReadStates {
		if s.role == raft.StateLeader {
			s.traceConfirmed(rs)
		}
		if s.role == raft.StateLeader && s.readTerm != s.pTerm {
			// dissertation 6.4: the first read index of a term holds an entry of it
			s.readTerm = s.pTerm
			if et, err := s.storage.Term(rs.Index); err == nil {
				s.events.Emit("read", map[string]any{"term": s.pTerm, "index": rs.Index, "entry_term": et})
			}
		}
		if pr, ok := s.reads[string(rs.RequestCtx)]; ok {
			delete(s.reads, string(rs.RequestCtx))
			pr.index = rs.Index
			s.readable = append(s.readable, pr)
		}
	}
	keep := s.readable[:0]
	for _, pr := range s.readable {
		if pr.index <= s.applied {
			pr.ch <- s.sm.Read(pr.key)
		} else {
			keep = append(keep, pr)
		}
	}
	s.readable = keep
	if lost {
		// A deposed leader cannot tell whether its pending proposals will commit
		// under the next leader: their clients hear "timeout", indefinite.
		for id, ch := range s.waiters {
			ch <- fail(CodeTimeout)
			delete(s.waiters, id)
		}
		for k, pr := range s.reads {
			pr.ch <- fail(CodeTimeout)
			delete(s.reads, k)
		}
		for _, pr := range s.readable {
			pr.ch <- fail(CodeTimeout)
		}
		s.readable = nil
	}
	s.mu.Unlock()
	// (6)
	s.node.Advance()
}

func roleName(r raft.StateType) string {
	switch r {
	case raft.StateLeader:
		return "leader"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	}
	return "follower"
}

// traceCommit writes an `acked` line: the leader moved its commit index to c (Figure 2,
// rules for leaders: an entry of its term held by a majority), with the index each
// follower's replies confirmed in this term and the leader's own last index.
func (s *Server) traceCommit(c uint64) {
	et, err := s.storage.Term(c)
	if err != nil {
		return
	}
	own, _ := s.storage.LastIndex()
	acked := s.trace.ackedIn(s.pTerm)
	peers := map[string]uint64{}
	for i, id := range s.cfg.IDs {
		if rid := uint64(i + 1); rid != s.cfg.RaftID {
			peers[id] = acked[rid]
		}
	}
	s.events.Emit("acked", map[string]any{"term": s.pTerm, "index": c, "entry_term": et,
		"own": own, "peers": peers})
}

// traceConfirmed writes a `confirmed` line: the leader released a read at rs.Index
// (dissertation 6.4, ReadIndex step 3) after these followers answered a read heartbeat
// sent after it was asked.
func (s *Server) traceConfirmed(rs raft.ReadState) {
	acks, ok := s.trace.readConfirmed(string(rs.RequestCtx))
	if !ok {
		return
	}
	peers := []string{}
	for id := range acks {
		if id != s.cfg.RaftID {
			peers = append(peers, s.cfg.NameOf(id))
		}
	}
	sort.Strings(peers)
	s.events.Emit("confirmed", map[string]any{"term": s.pTerm, "index": rs.Index, "reads": 1,
		"voters": len(s.cfg.IDs), "peers": peers})
}

// tellStable writes a `stable` line (at most once a second, as it moves): every entry
// up to min(commit, last index) is committed and now written and fsynced, so every
// restart must recover it (Figure 2: log[] is persistent; section 5.4).
func (s *Server) tellStable(rd raft.Ready) {
	commit := s.commit
	if rd.HardState != nil {
		commit = rd.HardState.GetCommit()
	}
	last, _ := s.storage.LastIndex()
	known := min(commit, last)
	if known > s.stableTold && time.Since(s.stableAt) >= time.Second {
		s.stableTold, s.stableAt = known, time.Now()
		s.events.Emit("stable", map[string]any{"index": known})
	}
}

// Stepper is the node as the transport should step it: each message's trace inputs
// recorded first.
func (s *Server) Stepper() raft.Node {
	return observingNode{Node: s.node, in: s.trace}
}

// notLeader is the answer for a request this node cannot serve as a follower:
// not-leader (with the leader when known) or, with no leader, temporarily-unavailable.
func (s *Server) notLeader() (Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.role == raft.StateLeader {
		return Result{}, false
	}
	return s.redirect(), true
}

func (s *Server) redirect() Result {
	if s.lead != 0 && s.lead != s.cfg.RaftID {
		r := fail(CodeNotLeader)
		r.Leader = s.cfg.NameOf(s.lead)
		return r
	}
	return fail(CodeUnavailable)
}

func (s *Server) newID() string { return fmt.Sprintf("%s.%d", s.boot, s.nextID.Add(1)) }

// Propose replicates a write or cas and waits (at most the commit wait) for it to
// be applied here; the state machine's result is the answer.
func (s *Server) Propose(c *Command) Result {
	if r, ok := s.notLeader(); ok {
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Request)
	defer cancel()
	c.ID = s.newID()
	data, err := json.Marshal(c)
	if err != nil {
		return fail(CodeMalformed)
	}
	ch := make(chan Result, 1)
	s.mu.Lock()
	s.waiters[c.ID] = ch
	s.mu.Unlock()
	if err := s.node.Propose(ctx, data); err != nil {
		s.forget(c.ID)
		if errors.Is(err, raft.ErrProposalDropped) {
			// Not appended anywhere (we are not the leader, or a transfer is under way).
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.redirect()
		}
		return fail(CodeTimeout) // it may have been appended: indefinite
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		s.forget(c.ID)
		select {
		case r := <-ch:
			return r
		default:
			return fail(CodeTimeout)
		}
	}
}

func (s *Server) forget(id string) {
	s.mu.Lock()
	delete(s.waiters, id)
	s.mu.Unlock()
}

// Read is a linearizable read through etcd raft's ReadIndex (ReadOnlySafe: the
// leader confirms its leadership with a heartbeat round to a quorum, and waits for
// an entry of its own term to commit first), never from local state alone.
func (s *Server) Read(key json.RawMessage) Result {
	if r, ok := s.notLeader(); ok {
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Request)
	defer cancel()
	rctx := s.newID()
	pr := &pendingRead{key: key, ch: make(chan Result, 1)}
	s.mu.Lock()
	s.reads[rctx] = pr
	s.mu.Unlock()
	s.trace.readAsked(rctx)
	if err := s.node.ReadIndex(ctx, []byte(rctx)); err != nil {
		s.mu.Lock()
		delete(s.reads, rctx)
		s.mu.Unlock()
		return fail(CodeTimeout)
	}
	select {
	case r := <-pr.ch:
		return r
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.reads, rctx)
		s.mu.Unlock()
		select {
		case r := <-pr.ch:
			return r
		default:
			return fail(CodeTimeout)
		}
	}
}

// Status is GET /status.
func (s *Server) Status() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lead any
	if name := s.cfg.NameOf(s.lead); name != "" {
		lead = name
	}
	return map[string]any{"id": s.cfg.ID, "role": roleName(s.role), "term": s.term, "leader": lead,
		"commit_index": s.commit, "last_applied": s.applied, "log_length": s.lastIndex}
}
