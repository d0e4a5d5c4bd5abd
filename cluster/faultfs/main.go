// Command raftcheck-faultfs mirrors a directory through a FUSE file system whose
// file data stays in memory until it is fsync'd, so that a simulated power cut
// loses exactly the writes that were not fsync'd (what LazyFS does for Jepsen).
//
//	raftcheck-faultfs -backing DIR -mount DIR -control SOCKET [-parent-pid PID]
//
// The control socket is a unix socket (a path, or "@name" in the abstract
// namespace). One command per line, one JSON object per reply line:
//
//	crash   drop every unsynced write of every file at once (a power cut):
//	        {"ok":true,"dropped_bytes":N,"files":F}
//	flush   write every file's unsynced data back and fsync it (a checkpoint):
//	        {"ok":true,"flushed_bytes":N,"files":F}
//	stats   {"ok":true,"dirty_files":..,"unsynced_bytes":..,"cached_bytes":..,
//	         "syncs":..,"synced_bytes":..,"crashes":..,"dropped_bytes":..,"flushes":..}
//
// LazyFS's "lazyfs::clear-cache" and "lazyfs::cache-checkpoint" are accepted too.
// SIGTERM, SIGINT, SIGHUP and the exit of the parent process (-parent-pid) are a
// clean shutdown: unmount, write the cache back, exit 0. As root the mount is made
// with mount(2) directly, otherwise with fusermount3; allow_other is on so that
// other users (a container's) can use it, and files are created owned by the caller.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	backing := flag.String("backing", "", "the directory to mirror (where synced data lives)")
	mount := flag.String("mount", "", "the mount point")
	control := flag.String("control", "", "the control socket: a path, or @name (abstract)")
	parentPid := flag.Int("parent-pid", 0, "unmount and exit when this parent process exits")
	allowOther := flag.Bool("allow-other", true, "let other users use the mount")
	debug := flag.Bool("debug", false, "log every FUSE request")
	flag.Parse()
	if *backing == "" || *mount == "" || *control == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: raftcheck-faultfs -backing DIR -mount DIR -control SOCKET [-parent-pid PID]")
		os.Exit(254)
	}
	log.SetFlags(log.Ldate | log.Ltime | log.Lmicroseconds)
	log.SetPrefix(fmt.Sprintf("faultfs[%s] ", filepath.Base(*mount)))
	if err := run(*backing, *mount, *control, *parentPid, *allowOther, *debug); err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}

// daemon is one mounted faultfs and its control socket.
type daemon struct {
	cache    *pageCache
	server   *fuse.Server
	mount    string
	listener net.Listener
	stopOnce sync.Once
	done     chan error
}

func run(backing, mount, control string, parentPid int, allowOther, debug bool) error {
	for _, dir := range []string{backing, mount} {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
	}
	abs, err := filepath.Abs(backing)
	if err != nil {
		return err
	}
	cache := newPageCache()
	root, err := newRoot(abs, cache)
	if err != nil {
		return fmt.Errorf("backing directory %s: %w", abs, err)
	}
	zero := time.Duration(0)
	opts := &fs.Options{
		// No attribute or entry caching in the kernel: sizes change at a crash.
		AttrTimeout:  &zero,
		EntryTimeout: &zero,
		MountOptions: fuse.MountOptions{
			AllowOther:           allowOther,
			FsName:               abs,
			Name:                 "faultfs",
			DirectMount:          os.Geteuid() == 0,
			Debug:                debug,
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		},
	}
	server, err := fs.Mount(mount, root, opts)
	if err != nil {
		return fmt.Errorf("mounting %s on %s: %w", abs, mount, err)
	}
	d := &daemon{cache: cache, server: server, mount: mount, done: make(chan error, 1)}
	if !strings.HasPrefix(control, "@") {
		os.Remove(control)
	}
	d.listener, err = net.Listen("unix", control)
	if err != nil {
		d.shutdown("the control socket failed")
		return fmt.Errorf("control socket %s: %w", control, err)
	}
	go d.serveControl()
	go func() { // unmounted from outside (fusermount -u, umount)
		server.Wait()
		d.shutdown("unmounted from outside")
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		sig := <-signals
		d.shutdown("signal " + sig.String())
	}()
	if parentPid > 0 {
		go d.watchParent(parentPid)
	}
	log.Printf("mounted %s on %s; control %s", abs, mount, control)
	err = <-d.done
	if !strings.HasPrefix(control, "@") {
		os.Remove(control)
	}
	return err
}

// watchParent shuts down once the parent process is gone (it was reparented).
func (d *daemon) watchParent(pid int) {
	for range time.Tick(200 * time.Millisecond) {
		if os.Getppid() != pid {
			d.shutdown(fmt.Sprintf("parent process %d exited", pid))
			return
		}
	}
}

// shutdown unmounts, then writes the cache back (a clean shutdown writes the page
// cache to disk). A mount still in use after a few tries is detached lazily, after
// the write-back: writes that arrive later are lost.
func (d *daemon) shutdown(why string) {
	d.stopOnce.Do(func() {
		log.Printf("stopping: %s", why)
		if d.listener != nil {
			d.listener.Close()
		}
		unmounted := d.server.Unmount() == nil
		if !unmounted {
			log.Printf("%s is busy; writing the cache back, then detaching it", d.mount)
		}
		flushed, files, errno := d.cache.flush()
		log.Printf("wrote back %d unsynced bytes of %d files", flushed, files)
		if !unmounted {
			if err := detach(d.mount); err != nil {
				log.Printf("detaching %s: %v", d.mount, err)
			}
		}
		var err error
		if errno != 0 {
			err = fmt.Errorf("writing the cache back: %v", errno)
		}
		d.done <- err
	})
}

// detach unmounts lazily (MNT_DETACH), with fusermount3 when not root.
func detach(mount string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(mount, syscall.MNT_DETACH)
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if path, err := exec.LookPath(bin); err == nil {
			return exec.Command(path, "-u", "-z", mount).Run()
		}
	}
	return errors.New("neither fusermount3 nor fusermount found")
}

func (d *daemon) serveControl() {
	for {
		conn, err := d.listener.Accept()
		if err != nil {
			return // closed at shutdown
		}
		go d.converse(conn)
	}
}

func (d *daemon) converse(conn net.Conn) {
	defer conn.Close()
	lines := bufio.NewScanner(conn)
	out := json.NewEncoder(conn)
	for lines.Scan() {
		cmd := strings.TrimSpace(lines.Text())
		if cmd == "" {
			continue
		}
		if err := out.Encode(d.command(cmd)); err != nil {
			return
		}
	}
}

// command runs one control command and returns its reply.
func (d *daemon) command(cmd string) map[string]any {
	switch strings.ToLower(cmd) {
	case "crash", "lazyfs::clear-cache":
		dropped, files, inodes := d.cache.crash()
		for _, inode := range inodes {
			inode.NotifyContent(0, 0) // the kernel's cached pages and size go too
		}
		log.Printf("crash: dropped %d unsynced bytes of %d files", dropped, files)
		return map[string]any{"ok": true, "dropped_bytes": dropped, "files": files}
	case "flush", "lazyfs::cache-checkpoint":
		flushed, files, errno := d.cache.flush()
		if errno != 0 {
			return map[string]any{"ok": false, "error": errno.Error(),
				"flushed_bytes": flushed, "files": files}
		}
		return map[string]any{"ok": true, "flushed_bytes": flushed, "files": files}
	case "stats":
		s := d.cache.snapshot()
		raw, _ := json.Marshal(s)
		reply := map[string]any{}
		json.Unmarshal(raw, &reply)
		reply["ok"] = true
		return reply
	default:
		return map[string]any{"ok": false,
			"error": fmt.Sprintf("unknown command %q (crash, flush, stats)", cmd)}
	}
}
