package main

import (
	"encoding/json"
	"testing"
)

func apply(t *testing.T, sm *StateMachine, body string) Result {
	t.Helper()
	c, ok := parseRequest([]byte(body))
	if !ok {
		t.Fatalf("refused %s", body)
	}
	data, _ := json.Marshal(c)
	_, r := sm.Apply(data)
	return r
}

func asJSON(r Result) string { b, _ := json.Marshal(r); return string(b) }

func TestRegisterOps(t *testing.T) {
	sm := NewStateMachine()
	if got := asJSON(sm.Read(json.RawMessage(`"x"`))); got != `{"ok":true,"value":null}` {
		t.Fatal(got)
	}
	if got := asJSON(apply(t, sm, `{"op":"cas","key":"x","from":1,"to":2}`)); got != `{"ok":false,"code":20,"error":"key-does-not-exist","definite":true}` {
		t.Fatal(got)
	}
	apply(t, sm, `{"op":"write","key":"x","value":true}`)
	// JSON equality: true is not 1.
	if r := apply(t, sm, `{"op":"cas","key":"x","from":1,"to":2}`); r.Code != CodePrecondition {
		t.Fatal(asJSON(r))
	}
	apply(t, sm, `{"op":"write","key":"x","value":[1, {"a": null}]}`)
	if r := apply(t, sm, `{"op":"cas","key":"x","from":[1.0,{"a":null}],"to":"y"}`); !r.OK {
		t.Fatal(asJSON(r))
	}
	if got := asJSON(sm.Read(json.RawMessage(`"x"`))); got != `{"ok":true,"value":"y"}` {
		t.Fatal(got)
	}
	// The integer key 1 and the string key "1" differ; 1 and 1.0 do not.
	apply(t, sm, `{"op":"write","key":1,"value":"int"}`)
	if got := asJSON(sm.Read(json.RawMessage(`1.0`))); got != `{"ok":true,"value":"int"}` {
		t.Fatal(got)
	}
	if got := asJSON(sm.Read(json.RawMessage(`"1"`))); got != `{"ok":true,"value":null}` {
		t.Fatal(got)
	}
}

func TestExactlyOnce(t *testing.T) {
	sm := NewStateMachine()
	apply(t, sm, `{"op":"write","key":"k","value":0}`)
	cas := `{"op":"cas","key":"k","from":0,"to":1,"client":"c1","seq":5}`
	if r := apply(t, sm, cas); !r.OK {
		t.Fatal(asJSON(r))
	}
	// The retry is not applied again (it would fail: k is 1 now) and gets the stored result.
	if r := apply(t, sm, cas); !r.OK {
		t.Fatal(asJSON(r))
	}
	apply(t, sm, `{"op":"write","key":"k","value":7,"client":"c1","seq":6}`)
	if got := asJSON(apply(t, sm, `{"op":"write","key":"k","value":9,"client":"c1","seq":5}`)); got != `{"ok":false,"code":0,"error":"timeout","definite":false}` {
		t.Fatal(got)
	}
	if got := asJSON(sm.Read(json.RawMessage(`"k"`))); got != `{"ok":true,"value":7}` {
		t.Fatal(got)
	}
}

func TestMalformedRequests(t *testing.T) {
	deep := `{"op":"write","key":"k","value":`
	for i := 0; i < 33; i++ {
		deep += "["
	}
	for i := 0; i < 33; i++ {
		deep += "]"
	}
	deep += "}"
	for _, body := range []string{``, `[]`, `{"op":"read"}`, `{"op":"write","key":"k"}`,
		`{"op":"cas","key":"k","from":1}`, `{"op":"nope","key":"k"}`, `{"op":"read","key":1.5}`,
		`{"op":"read","key":[1]}`, `{"op":"write","key":"k","value":NaN}`, deep,
		`{"op":"write","key":"k","value":1,"client":"c","seq":1.5}`} {
		if _, ok := parseRequest([]byte(body)); ok {
			t.Errorf("accepted %s", body)
		}
	}
	// A committed entry that is not a valid command is applied as nothing.
	if _, r := NewStateMachine().Apply([]byte(`{"op":"write"}`)); r.Code != CodeMalformed {
		t.Fatal(asJSON(r))
	}
}
