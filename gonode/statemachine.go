package main

// The replicated state machine: a map of registers plus, per client, the last seq it
// applied and its result (exactly-once for retries: Raft dissertation section 6.3,
// "Implementing linearizable semantics"). It is rebuilt at every start by applying
// the committed log from index 1 (etcd raft's Config.Applied = 0), so it needs no
// snapshot of its own. Every node applies the same entries in the same order, so a
// command's result (including "malformed") is the same everywhere.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Command is one log entry's payload (JSON).
type Command struct {
	ID     string          `json:"id"` // unique per proposal: tells its proposer it was applied
	Op     string          `json:"op"`
	Key    json.RawMessage `json:"key"`
	Value  json.RawMessage `json:"value,omitempty"`
	From   json.RawMessage `json:"from,omitempty"`
	To     json.RawMessage `json:"to,omitempty"`
	Client string          `json:"client,omitempty"`
	Seq    *int64          `json:"seq,omitempty"`
}

// Result is an operation's outcome, as the client gets it.
type Result struct {
	OK       bool            `json:"ok"`
	Value    json.RawMessage `json:"value,omitempty"` // reads only ("null" for a key never written)
	Code     int             `json:"code"`
	Error    string          `json:"error,omitempty"`
	Definite bool            `json:"definite"`
	Leader   string          `json:"leader,omitempty"`
	read     bool
}

// Error codes: docs/spec.md section 4 (Maelstrom's table plus 30).
const (
	CodeTimeout      = 0
	CodeUnavailable  = 11
	CodeMalformed    = 12
	CodeNoKey        = 20
	CodePrecondition = 22
	CodeNotLeader    = 30
)

var codeNames = map[int]string{CodeTimeout: "timeout", CodeUnavailable: "temporarily-unavailable",
	CodeMalformed: "malformed-request", CodeNoKey: "key-does-not-exist",
	CodePrecondition: "precondition-failed", CodeNotLeader: "not-leader"}

func okResult() Result { return Result{OK: true} }

// fail is an error result; only a timeout is indefinite ("when in doubt, indefinite").
func fail(code int) Result {
	return Result{Code: code, Error: codeNames[code], Definite: code != CodeTimeout}
}

// MarshalJSON writes {"ok":true[,"value":V]} or {"ok":false,"code","error","definite"[,"leader"]}.
func (r Result) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if r.OK {
		b.WriteString(`{"ok":true`)
		if r.read {
			b.WriteString(`,"value":`)
			if len(r.Value) == 0 {
				b.WriteString("null")
			} else {
				b.Write(r.Value)
			}
		}
		b.WriteString("}")
		return b.Bytes(), nil
	}
	fmt.Fprintf(&b, `{"ok":false,"code":%d,"error":%q,"definite":%t`, r.Code, r.Error, r.Definite)
	if r.Leader != "" {
		fmt.Fprintf(&b, `,"leader":%q`, r.Leader)
	}
	b.WriteString("}")
	return b.Bytes(), nil
}

type session struct {
	seq    int64
	result Result
}

type StateMachine struct {
	data     map[string]json.RawMessage
	sessions map[string]*session
}

func NewStateMachine() *StateMachine {
	return &StateMachine{data: map[string]json.RawMessage{}, sessions: map[string]*session{}}
}

// Apply applies one committed entry's payload; a payload that is not a valid
// command is applied as nothing, with a malformed result (spec section 4).
func (sm *StateMachine) Apply(data []byte) (string, Result) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return "", fail(CodeMalformed)
	}
	if err := c.Check(); err != nil {
		return c.ID, fail(CodeMalformed)
	}
	if c.Client == "" || c.Seq == nil {
		return c.ID, sm.apply(&c)
	}
	// Exactly once: a retry (same client and seq) gets the stored result and is not
	// applied again; an older seq than the last is a stale retry whose result is gone.
	s := sm.sessions[c.Client]
	if s != nil && *c.Seq == s.seq {
		return c.ID, s.result
	}
	if s != nil && *c.Seq < s.seq {
		return c.ID, fail(CodeTimeout)
	}
	r := sm.apply(&c)
	sm.sessions[c.Client] = &session{seq: *c.Seq, result: r}
	return c.ID, r
}

func (sm *StateMachine) apply(c *Command) Result {
	k, _ := keyOf(c.Key)
	switch c.Op {
	case "write":
		sm.data[k] = c.Value
		return okResult()
	case "cas":
		cur, ok := sm.data[k]
		if !ok {
			return fail(CodeNoKey)
		}
		if !jsonEqual(cur, c.From) {
			return fail(CodePrecondition)
		}
		sm.data[k] = c.To
		return okResult()
	}
	return fail(CodeMalformed)
}

// Read is the value of a key (JSON null for a key never written).
func (sm *StateMachine) Read(key json.RawMessage) Result {
	k, _ := keyOf(key)
	r := okResult()
	r.read, r.Value = true, sm.data[k]
	return r
}

// Check validates a command as a client request (also used on committed entries).
func (c *Command) Check() error {
	if _, err := keyOf(c.Key); err != nil {
		return err
	}
	switch c.Op {
	case "read":
	case "write":
		return checkValue("value", c.Value)
	case "cas":
		if err := checkValue("from", c.From); err != nil {
			return err
		}
		return checkValue("to", c.To)
	default:
		return fmt.Errorf("unknown op %q", c.Op)
	}
	return nil
}

const maxDepth = 32

// checkValue: present, strict JSON, nesting at most 32 levels of arrays/objects.
func checkValue(name string, v json.RawMessage) error {
	if len(v) == 0 {
		return fmt.Errorf("missing %q", name)
	}
	var x any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	if depth(x) > maxDepth {
		return fmt.Errorf("%s: nested deeper than %d levels", name, maxDepth)
	}
	return nil
}

func depth(x any) int {
	n := 0
	switch v := x.(type) {
	case []any:
		for _, e := range v {
			n = max(n, depth(e))
		}
		return n + 1
	case map[string]any:
		for _, e := range v {
			n = max(n, depth(e))
		}
		return n + 1
	}
	return 0
}

// keyOf maps a key (a JSON string or integer) to a map key: "s..." or "i...", so
// that the string "1" and the integer 1 are different keys, and 1 and 1.0 the same.
func keyOf(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", errors.New(`missing "key"`)
	}
	var x any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return "", err
	}
	switch v := x.(type) {
	case string:
		return "s" + v, nil
	case json.Number:
		r, ok := new(big.Rat).SetString(string(v))
		if !ok || !r.IsInt() {
			return "", fmt.Errorf("key %s is not an integer", v)
		}
		return "i" + r.Num().String(), nil
	}
	return "", errors.New("key must be a string or an integer")
}

// jsonEqual compares two JSON texts as values, all the way down: true is not 1,
// [true] is not [1], 1 equals 1.0 (numbers compare exactly, as rationals).
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return equal(x, y)
}

func equal(x, y any) bool {
	switch a := x.(type) {
	case nil:
		return y == nil
	case bool:
		b, ok := y.(bool)
		return ok && a == b
	case string:
		b, ok := y.(string)
		return ok && a == b
	case json.Number:
		b, ok := y.(json.Number)
		if !ok {
			return false
		}
		ra, oka := new(big.Rat).SetString(string(a))
		rb, okb := new(big.Rat).SetString(string(b))
		return oka && okb && ra.Cmp(rb) == 0
	case []any:
		b, ok := y.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := y.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	return false
}
