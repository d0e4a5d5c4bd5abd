package main

// Reading our history.jsonl (SPEC section 2) into Porcupine operations.
//
// Call and return times are positions in the file, so real-time order is the
// file's order, as for Jepsen histories. Ops kept: ok ops; fail cas with error
// "precondition-failed" (an observation: the register did not hold `from`);
// info ops and invokes with no completion, which return at infinity with an
// unknown output. Every other fail is dropped; nemesis lines are skipped.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/anishathalye/porcupine"
)

type badInput struct {
	file  string
	line  int
	field string
	msg   string
}

func (e *badInput) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.field, e.msg)
}

// namedHistory is one history to check, with the name printed on its verdict line.
type namedHistory struct {
	name string
	ops  []porcupine.Operation
}

type openOp struct {
	call  int64
	line  int
	f     string
	key   string
	input regInput
}

// canonical re-encodes a JSON value so that equal values have equal text:
// object keys sorted, numbers by value (1, 1.0 and 1e0 are one number; true is
// not a number).
func canonical(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return initialValue, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	out, err := json.Marshal(normalizeNumbers(v))
	if err != nil {
		return "", err
	}
	return string(out), nil
}

func normalizeNumbers(v interface{}) interface{} {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return json.Number(strconv.FormatInt(i, 10))
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return x
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(f), 10))
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	case []interface{}:
		for i := range x {
			x[i] = normalizeNumbers(x[i])
		}
	case map[string]interface{}:
		for k := range x {
			x[k] = normalizeNumbers(x[k])
		}
	}
	return v
}

// historyParser turns lines into operations; one parser per history.
type historyParser struct {
	file   string
	model  string
	pos    int64
	open   map[string]*openOp
	ops    []porcupine.Operation
	client map[string]int
}

func newHistoryParser(file, model string) *historyParser {
	return &historyParser{file: file, model: model, open: map[string]*openOp{}, client: map[string]int{}}
}

func (p *historyParser) bad(line int, field, format string, args ...interface{}) error {
	return &badInput{file: p.file, line: line, field: field, msg: fmt.Sprintf(format, args...)}
}

func (p *historyParser) line(lineNo int, text []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(text, &m); err != nil {
		return p.bad(lineNo, "line", "not a JSON object: %v", err)
	}
	var typ, f, errName string
	if err := json.Unmarshal(m["type"], &typ); err != nil {
		return p.bad(lineNo, "type", "missing or not a string")
	}
	var procName string
	if err := json.Unmarshal(m["process"], &procName); err == nil {
		if procName == "nemesis" {
			return nil
		}
		return p.bad(lineNo, "process", "must be an int or \"nemesis\"")
	}
	var proc int64
	if err := json.Unmarshal(m["process"], &proc); err != nil {
		return p.bad(lineNo, "process", "missing or not an int")
	}
	procKey := fmt.Sprint(proc)
	if err := json.Unmarshal(m["f"], &f); err != nil {
		return p.bad(lineNo, "f", "missing or not a string")
	}
	if raw, ok := m["error"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &errName); err != nil {
			return p.bad(lineNo, "error", "not a string")
		}
	}
	key := ""
	if raw, ok := m["key"]; ok {
		k, err := canonical(raw)
		if err != nil {
			return p.bad(lineNo, "key", "%v", err)
		}
		key = k
	}
	p.pos++
	switch typ {
	case "invoke":
		if prev, busy := p.open[procKey]; busy {
			return p.bad(lineNo, "process", "process %d already has an open op (line %d)", proc, prev.line)
		}
		in, err := p.input(lineNo, f, key, m["value"])
		if err != nil {
			return err
		}
		p.open[procKey] = &openOp{call: p.pos, line: lineNo, f: f, key: key, input: in}
		if _, ok := p.client[procKey]; !ok {
			p.client[procKey] = len(p.client)
		}
	case "ok", "fail", "info":
		o, ok := p.open[procKey]
		if !ok {
			return p.bad(lineNo, "type", "%s without an invoke on process %d", typ, proc)
		}
		if o.f != f {
			return p.bad(lineNo, "f", "%q completes an invoke of %q (line %d)", f, o.f, o.line)
		}
		if o.key != key {
			return p.bad(lineNo, "key", "completion key differs from the invoke's (line %d)", o.line)
		}
		delete(p.open, procKey)
		out := regOutput{kind: outOk}
		ret := p.pos
		switch typ {
		case "info":
			out.kind, ret = outUnknown, math.MaxInt64
		case "fail":
			if f != "cas" || errName != "precondition-failed" {
				return nil // definitely did not happen, and observed nothing
			}
			out.kind = outCasFail
		default:
			if f == "read" {
				v, err := canonical(m["value"])
				if err != nil {
					return p.bad(lineNo, "value", "%v", err)
				}
				out.value = v
			}
		}
		p.ops = append(p.ops, porcupine.Operation{ClientId: p.client[procKey], Input: o.input,
			Call: o.call, Output: out, Return: ret})
	default:
		return p.bad(lineNo, "type", "unknown type %q", typ)
	}
	return nil
}

func (p *historyParser) input(lineNo int, f, key string, raw json.RawMessage) (regInput, error) {
	in := regInput{key: key}
	switch f {
	case "read":
		in.op = opRead
	case "write":
		in.op = opWrite
		v, err := canonical(raw)
		if err != nil {
			return in, p.bad(lineNo, "value", "%v", err)
		}
		in.arg1 = v
	case "cas":
		if p.model == "register" {
			return in, p.bad(lineNo, "f", "cas is not an op of the register model (use cas-register)")
		}
		in.op = opCas
		var pair []json.RawMessage
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			return in, p.bad(lineNo, "value", "a cas value must be [from, to]")
		}
		from, err1 := canonical(pair[0])
		to, err2 := canonical(pair[1])
		if err1 != nil || err2 != nil {
			return in, p.bad(lineNo, "value", "bad cas operand")
		}
		in.arg1, in.arg2 = from, to
	default:
		return in, p.bad(lineNo, "f", "unknown op %q (want read, write or cas)", f)
	}
	return in, nil
}

// finish closes the history: invokes with no completion count as info.
func (p *historyParser) finish() []porcupine.Operation {
	for procKey, o := range p.open {
		p.ops = append(p.ops, porcupine.Operation{ClientId: p.client[procKey], Input: o.input,
			Call: o.call, Output: regOutput{kind: outUnknown}, Return: math.MaxInt64})
	}
	return p.ops
}

// readHistories reads one history from r, or, in batch mode, many histories
// separated by blank lines (named NAME#0, NAME#1, ...).
func readHistories(name string, r io.Reader, model string, batch bool) ([]namedHistory, error) {
	var out []namedHistory
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	var p *historyParser
	flush := func() {
		if p != nil {
			out = append(out, namedHistory{name: p.file, ops: p.finish()})
			p = nil
		}
	}
	lineNo := 0
	for sc.Scan() {
		lineNo++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			if batch {
				flush()
			}
			continue
		}
		if p == nil {
			hname := name
			if batch {
				hname = fmt.Sprintf("%s#%d", name, len(out))
			}
			p = newHistoryParser(hname, model)
			p.file = hname
		}
		if err := p.line(lineNo, text); err != nil {
			if b, ok := err.(*badInput); ok {
				b.file = name
			}
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &badInput{file: name, line: lineNo + 1, field: "line", msg: err.Error()}
	}
	if p == nil && !batch {
		p = newHistoryParser(name, model)
	}
	flush()
	return out, nil
}
