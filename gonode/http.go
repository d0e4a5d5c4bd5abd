package main

// The client API (docs/spec.md section 4): POST /op and GET /status, HTTP/JSON.
// The JSON body is authoritative; the HTTP status follows raftcheck's own node.

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"time"
)

var httpStatus = map[int]int{CodeTimeout: 504, CodeUnavailable: 503, CodeMalformed: 400,
	CodeNoKey: 409, CodePrecondition: 409, CodeNotLeader: 503}

const maxBody = 1 << 20

func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/op", s.handleOp)
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	return mux
}

// NewHTTPServer bounds what a slow or idle client can hold (spec section 4).
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: nil}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func reply(w http.ResponseWriter, r Result) {
	status := http.StatusOK
	if !r.OK {
		status = httpStatus[r.Code]
	}
	writeJSON(w, status, r)
}

func (s *Server) handleOp(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		reply(w, fail(CodeMalformed))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		reply(w, fail(CodeMalformed))
		return
	}
	c, ok := parseRequest(body)
	if !ok {
		reply(w, fail(CodeMalformed))
		return
	}
	if c.Op == "read" {
		reply(w, s.Read(c.Key))
		return
	}
	reply(w, s.Propose(c))
}

// parseRequest turns a request body into a checked Command.
func parseRequest(body []byte) (*Command, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, false
	}
	c := &Command{Key: fields["key"], Value: fields["value"], From: fields["from"], To: fields["to"]}
	if err := json.Unmarshal(fields["op"], &c.Op); err != nil {
		return nil, false
	}
	if raw, ok := fields["client"]; ok && !isNull(raw) {
		var name string
		if json.Unmarshal(raw, &name) != nil {
			if _, isNum := number(raw); !isNum {
				return nil, false
			}
			name = string(bytes.TrimSpace(raw))
		}
		c.Client = name
	}
	if raw, ok := fields["seq"]; ok && !isNull(raw) {
		n, isNum := number(raw)
		if !isNum || !n.IsInt() || !n.Num().IsInt64() {
			return nil, false
		}
		seq := n.Num().Int64()
		c.Seq = &seq
	}
	if c.Check() != nil {
		return nil, false
	}
	return c, true
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func number(raw json.RawMessage) (*big.Rat, bool) {
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&n) != nil {
		return nil, false
	}
	return new(big.Rat).SetString(string(n))
}
