// Command porcupine_oracle checks histories with Porcupine, as a differential
// oracle for raftcheck's own checker.
//
// Usage:
//
//	porcupine_oracle [-model cas-register|register] [-timeout D] [-repeat N] FILE...
//	porcupine_oracle -batch [flags] FILE...   (each FILE: histories separated by blank lines; "-" = stdin)
//	porcupine_oracle -etcd DIR | -kv DIR      (Porcupine's test_data with its own models)
//
// It prints one line per history, "NAME<TAB>true|false|unknown<TAB>MS", where MS
// is the check time in milliseconds (the least over -repeat runs), excluding
// parsing and process start. Exit code: 0 all valid, 1 some invalid, 2 some
// unknown (and none invalid), 254 bad usage or input (SPEC section 3).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

type checkFunc func() porcupine.CheckResult

// timeCheck runs a check `repeat` times and returns its verdict and least time.
func timeCheck(check checkFunc, repeat int) (porcupine.CheckResult, float64) {
	var res porcupine.CheckResult
	best := -1.0
	for i := 0; i < repeat; i++ {
		start := time.Now()
		res = check()
		ms := float64(time.Since(start).Nanoseconds()) / 1e6
		if best < 0 || ms < best {
			best = ms
		}
	}
	return res, best
}

func verdict(res porcupine.CheckResult) string {
	switch res {
	case porcupine.Ok:
		return "true"
	case porcupine.Illegal:
		return "false"
	default:
		return "unknown"
	}
}

// exitCode combines verdicts: false beats unknown beats true.
type exitCode int

func (e *exitCode) add(res porcupine.CheckResult) {
	switch {
	case res == porcupine.Illegal:
		*e = 1
	case res == porcupine.Unknown && *e == 0:
		*e = 2
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "porcupine_oracle: "+format+"\n", args...)
	os.Exit(254)
}

func main() {
	model := flag.String("model", "cas-register", "register or cas-register")
	batch := flag.Bool("batch", false, "each FILE holds many histories separated by blank lines")
	timeout := flag.Duration("timeout", 0, "time budget per history (0 = none); over it the verdict is unknown")
	repeat := flag.Int("repeat", 1, "check each history N times and report the least time")
	etcdDir := flag.String("etcd", "", "check Porcupine's etcd_*.log files in DIR with its etcd model")
	kvDir := flag.String("kv", "", "check Porcupine's kv c*-ok/bad files in DIR with its kv model")
	flag.Parse()
	if *model != "register" && *model != "cas-register" {
		fail("-model: unknown model %q (want register or cas-register)", *model)
	}
	if *repeat < 1 {
		fail("-repeat: must be at least 1")
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var code exitCode
	report := func(name string, check checkFunc) {
		res, ms := timeCheck(check, *repeat)
		code.add(res)
		fmt.Fprintf(out, "%s\t%s\t%.3f\n", name, verdict(res), ms)
	}

	switch {
	case *etcdDir != "":
		files, _ := filepath.Glob(filepath.Join(*etcdDir, "etcd_*.log"))
		if len(files) == 0 {
			fail("-etcd: no etcd_*.log in %s", *etcdDir)
		}
		sort.Strings(files)
		for _, f := range files {
			events := parseJepsenLog(f)
			report(f, func() porcupine.CheckResult {
				return porcupine.CheckEventsTimeout(etcdModel, events, *timeout)
			})
		}
	case *kvDir != "":
		files, _ := filepath.Glob(filepath.Join(*kvDir, "c*-*.txt"))
		if len(files) == 0 {
			fail("-kv: no c*-*.txt in %s", *kvDir)
		}
		sort.Strings(files)
		for _, f := range files {
			events := parseKvLog(f)
			report(f, func() porcupine.CheckResult {
				return porcupine.CheckEventsTimeout(kvModel, events, *timeout)
			})
		}
	default:
		if flag.NArg() == 0 {
			fail("no history files given (see -h)")
		}
		for _, name := range flag.Args() {
			var r io.Reader = os.Stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					fail("%v", err)
				}
				defer f.Close()
				r = f
			}
			histories, err := readHistories(name, r, *model, *batch)
			if err != nil {
				out.Flush()
				fail("%v", err)
			}
			for _, h := range histories {
				ops := h.ops
				report(h.name, func() porcupine.CheckResult {
					return porcupine.CheckOperationsTimeout(registerModel, ops, *timeout)
				})
			}
		}
	}
	out.Flush()
	os.Exit(int(code))
}
