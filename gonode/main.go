// Command raftcheck-gonode is a register service on etcd's Raft library
// (go.etcd.io/raft/v3) that meets raftcheck's node contract (docs/node-contract.md):
//
//	raftcheck-gonode --config FILE --id ID [--data-dir DIR]
//
// A bad command line or cluster file is one line on stderr and exit 254.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/raft/v3"
)

const exitBadConfig = 254

func badConfig(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "raftcheck-gonode: "+format+"\n", a...)
	os.Exit(exitBadConfig)
}

func main() {
	fs := flag.NewFlagSet("raftcheck-gonode", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config := fs.String("config", "", "the cluster file (YAML)")
	id := fs.String("id", "", "this node's id in the cluster file")
	dataDir := fs.String("data-dir", "", "the data directory (default: the file's data_dir)")
	listenHost := fs.String("listen-host", "", "bind the client and peer ports on this host, as in a container (default: the file's addresses)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		badConfig("%v (usage: raftcheck-gonode --config FILE --id ID [--data-dir DIR] [--listen-host HOST])", err)
	}
	if *config == "" || *id == "" || fs.NArg() > 0 {
		badConfig("usage: raftcheck-gonode --config FILE --id ID [--data-dir DIR] [--listen-host HOST]")
	}
	cfg, err := LoadConfig(*config, *id, *dataDir)
	if err != nil {
		badConfig("bad config: %v", err)
	}
	if *listenHost != "" {
		// the node contract's container convention: the ports of the cluster file on
		// every interface of the container (its name is what the file says)
		for _, addr := range []*string{&cfg.Client, &cfg.Peer} {
			_, port, err := net.SplitHostPort(*addr)
			if err != nil {
				badConfig("bad config: %v", err)
			}
			*addr = net.JoinHostPort(*listenHost, port)
		}
	}
	lg := NewLogger(cfg.ID, "gonode")
	raft.SetLogger(raftLogger{NewLogger(cfg.ID, "raft")})
	log.SetOutput(io.Discard) // net/http's own complaints (bad clients) are not ours to log
	if cfg.Direct {
		lg.Warningf("no peers table in %s: dialling peers at their own addresses", *config)
	}
	if cfg.Insecure {
		lg.Warningf("insecure_peers: true in %s: peer frames are not authenticated", *config)
	}

	wal, rec, err := OpenWAL(cfg.DataDir)
	if err != nil {
		lg.Fatalf("opening the WAL in %s: %v", cfg.DataDir, err)
	}
	if rec.CutBytes > 0 {
		lg.Warningf("cut a torn record (%d bytes) off the end of the WAL", rec.CutBytes)
	}
	tr := NewTransport(cfg, lg)
	if err := tr.Listen(); err != nil {
		lg.Fatalf("listening for peers on %s: %v", cfg.Peer, err)
	}
	cl, err := net.Listen("tcp", cfg.Client)
	if err != nil {
		lg.Fatalf("listening for clients on %s: %v", cfg.Client, err)
	}
	s := NewServer(cfg, lg, wal, rec, tr)
	tr.Start(s.Stepper())
	go s.Run()
	hs := NewHTTPServer(s.Handler())
	go func() {
		if err := hs.Serve(cl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Fatalf("client server: %v", err)
		}
	}()
	lg.Infof("serving clients on %s, peers on %s", cfg.Client, cfg.Peer)

	// SIGTERM/SIGINT: stop within a few seconds, exit 0. (SIGKILL needs nothing:
	// every acknowledged write was fsynced before it was acknowledged.)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	got := <-sig
	lg.Infof("got %v: stopping", got)
	go func() {
		time.Sleep(3 * time.Second)
		lg.Warningf("stopping took too long: exiting anyway")
		os.Exit(0)
	}()
	hs.Close()
	tr.Stop()
	s.Stop()
	lg.Infof("stopped")
	os.Exit(0)
}
