package main

// Logging in raftcheck's format (docs/node-contract.md section 4): one line per
// record on stderr, `TIME LEVEL ID logger: message`. ERROR and CRITICAL mean a
// failure to raftcheck's node-health check, so ordinary network trouble is WARNING.

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

type Logger struct {
	id   string
	name string
}

var logMu sync.Mutex // one line at a time, whatever the logger

func NewLogger(id, name string) *Logger { return &Logger{id: id, name: name} }

func (l *Logger) log(level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	msg = strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", " | ")
	line := fmt.Sprintf("%s %s %s %s: %s\n", time.Now().Format("2006-01-02T15:04:05.000"),
		level, l.id, l.name, msg)
	logMu.Lock()
	os.Stderr.WriteString(line)
	logMu.Unlock()
}

func (l *Logger) Infof(f string, a ...any)    { l.log("INFO", f, a...) }
func (l *Logger) Warningf(f string, a ...any) { l.log("WARNING", f, a...) }
func (l *Logger) Errorf(f string, a ...any)   { l.log("ERROR", f, a...) }

// Fatalf logs at CRITICAL and exits 255 (a node that cannot go on safely stops).
func (l *Logger) Fatalf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	l.log("CRITICAL", "%s", msg)
	NewEvents(l.id).Emit("fatal", map[string]any{"error": msg})
	os.Exit(255)
}

// raftLogger adapts Logger to etcd raft's raft.Logger; Debug is dropped.
type raftLogger struct{ l *Logger }

func (r raftLogger) Debug(v ...any)                   {}
func (r raftLogger) Debugf(format string, v ...any)   {}
func (r raftLogger) Info(v ...any)                    { r.l.log("INFO", "%s", fmt.Sprint(v...)) }
func (r raftLogger) Infof(format string, v ...any)    { r.l.log("INFO", format, v...) }
func (r raftLogger) Warning(v ...any)                 { r.l.log("WARNING", "%s", fmt.Sprint(v...)) }
func (r raftLogger) Warningf(format string, v ...any) { r.l.log("WARNING", format, v...) }
func (r raftLogger) Error(v ...any)                   { r.l.log("ERROR", "%s", fmt.Sprint(v...)) }
func (r raftLogger) Errorf(format string, v ...any)   { r.l.log("ERROR", format, v...) }
func (r raftLogger) Fatal(v ...any)                   { r.l.Fatalf("%s", fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(format string, v ...any)   { r.l.Fatalf(format, v...) }
func (r raftLogger) Panic(v ...any) {
	r.l.log("CRITICAL", "%s", fmt.Sprint(v...))
	panic(fmt.Sprint(v...))
}
func (r raftLogger) Panicf(format string, v ...any) {
	r.l.log("CRITICAL", format, v...)
	panic(fmt.Sprintf(format, v...))
}

// Events writes raftcheck's event lines (docs/spec.md section 5, "What a node logs"):
// logger raftcheck.node.events, INFO, `raft-event ` and one JSON object whose first
// key is "event". They are the evidence of the raft-invariants checker (election
// safety, one vote per term, terms never decrease), so each is written in the order
// of the node's actions: `persisted` before the `vote` it covers, `leader` before the
// first AppendEntries of its term.
type Events struct{ l *Logger }

func NewEvents(id string) *Events { return &Events{NewLogger(id, "raftcheck.node.events")} }

// Emit writes one event line: {"event": kind, fields...} (fields in sorted order).
func (e *Events) Emit(kind string, fields map[string]any) {
	head, _ := json.Marshal(kind)
	line := `{"event":` + string(head)
	if len(fields) > 0 {
		rest, err := json.Marshal(fields)
		if err != nil {
			e.l.Warningf("event %s not written: %v", kind, err)
			return
		}
		line += "," + string(rest[1:])
	} else {
		line += "}"
	}
	e.l.log("INFO", "raft-event %s", line)
}

// nameOrNull is a node name for an event's JSON: null when there is none.
func nameOrNull(name string) any {
	if name == "" {
		return nil
	}
	return name
}
