package main

// The register and cas-register models of SPEC section 2, as Porcupine models.
//
// A state is the register's value as canonical JSON ("null" = never written).
// An operation whose outcome is unknown (info, or no completion) returns at
// infinity with an output that every state accepts, as Porcupine's own etcd
// model does; a write or a cas whose `from` matches still changes the state
// wherever it is linearized.
//
// Why this gives the verdict of our checker, where an uncertain op is optional
// (linearized after its invoke, or not at all, as in Knossos):
//   - optional => here: append the uncertain ops left out to the end of the
//     order. They return at infinity, so real-time order still holds, and their
//     output accepts any state.
//   - here => optional: leave out every uncertain read and every uncertain cas
//     whose `from` did not match where it was placed (neither changed the
//     state); what remains is legal in our model (a write always is, a cas that
//     matched is).
// Both directions need an uncertain op's output to accept every state; that is
// the case here. (Porcupine's kv test model is different: a pending get must
// return "", but the kv corpus has no pending ops.) tests/test_differential.py
// checks the claim by brute force under both treatments.

import (
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

const (
	opRead uint8 = iota
	opWrite
	opCas
)

const (
	outOk      uint8 = iota // completed ok
	outCasFail              // cas failed with precondition-failed: saw a value != from
	outUnknown              // info or pending: any outcome
)

// regInput is one call: the key partitions the history (P-compositionality).
type regInput struct {
	op   uint8
	key  string // canonical JSON of the key; "" when the history has no key
	arg1 string // write: the value; cas: from
	arg2 string // cas: to
}

// regOutput is one return.
type regOutput struct {
	kind  uint8
	value string // read: the value read (canonical JSON)
}

const initialValue = "null"

func registerStep(state, input, output interface{}) (bool, interface{}) {
	st := state.(string)
	in := input.(regInput)
	out := output.(regOutput)
	switch in.op {
	case opRead:
		return out.kind == outUnknown || out.value == st, st
	case opWrite:
		return true, in.arg1
	default: // cas
		matches := st == in.arg1
		switch out.kind {
		case outOk:
			return matches, in.arg2
		case outCasFail:
			return !matches, st
		default:
			if matches {
				return true, in.arg2
			}
			return true, st
		}
	}
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(regInput).key
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// registerModel serves both "register" and "cas-register": the reader refuses
// cas ops under "register", so the step function is shared.
var registerModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() interface{} { return initialValue },
	Step:      registerStep,
	Equal:     func(a, b interface{}) bool { return a.(string) == b.(string) },
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
}
