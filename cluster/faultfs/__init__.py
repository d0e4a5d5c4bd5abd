"""faultfs: a node's data directory that loses, at a crash, what was not fsync'd.

A SIGKILL alone cannot show a missing fsync: the killed process's writes sit in the
kernel's page cache and the restarted process reads them back. A power cut loses
them. Jepsen gets that behaviour from LazyFS, a FUSE file system with its own page
cache; `raftcheck-faultfs` (Go, the *.go files of this package, built by scripts/setup.sh)
is ours.
It mirrors a backing directory; file data written through the mount stays in its
memory until the file is fsync'd (then it is written to the backing file and
fsync'd there); reads and sizes see the unsynced state; the `crash` command drops
every unsynced write of every file at once and says how many bytes it dropped.
Metadata (create, rename, unlink, mkdir) passes through at once. A clean shutdown
(SIGTERM) unmounts and writes the cache back.

`FaultFS` is the handle the backends use: `start()` mounts and returns once the mount
answers, `crash()` -> bytes dropped, `stop()` unmounts and waits; `unmount_all` is
their teardown. `available()` says whether this machine can mount one (None) or why
not.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from cluster.base import ClusterError
from cluster.executables import find_executable
from history.errors import BadInput

log = logging.getLogger("raftcheck.faultfs")

BINARY = "raftcheck-faultfs"
INSTALL_HINT = "bash scripts/setup.sh (it builds cluster/faultfs with Go)"
START_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_SOCKET_PATH_MAX = 100     # sun_path holds 108 bytes; longer paths go abstract
_MNT_DETACH = 2


def find_binary() -> str:
    """The faultfs binary: $RAFTCHECK_FAULTFS, else raftcheck-faultfs on PATH, else
    $(go env GOPATH)/bin/raftcheck-faultfs. Missing: BadInput saying how to build it."""
    return find_executable("RAFTCHECK_FAULTFS", BINARY, BINARY, "faultfs binary",
                           INSTALL_HINT, "faultfs")


def available() -> str | None:
    """None when this machine can mount a faultfs, else why not (one line)."""
    try:
        find_binary()
    except BadInput as e:
        return e.message
    if not os.path.exists("/dev/fuse"):
        return ("/dev/fuse is missing (no FUSE here; a container needs --device "
                "/dev/fuse --cap-add SYS_ADMIN)")
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"/dev/fuse cannot be opened: {e.strerror}"
    if os.geteuid() != 0:
        if not (shutil.which("fusermount3") or shutil.which("fusermount")):
            return "fusermount3 not found (apt-get install fuse3), and not root"
        if not _user_allow_other():
            return ("/etc/fuse.conf lacks user_allow_other (needed for allow_other "
                    "when not root)")
    return None


def _user_allow_other() -> bool:
    try:
        lines = Path("/etc/fuse.conf").read_text().splitlines()
    except OSError:
        return False
    return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in lines)


def is_mounted(path: Path | str) -> bool:
    """True if a file system is mounted exactly at `path` (from /proc/self/mountinfo)."""
    target = os.path.abspath(path)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == target:
                    return True
    except OSError:
        return False
    return False


def _unescape(field: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return field.decode("utf-8", "replace").encode("latin-1", "replace").decode(
        "unicode_escape") if b"\\" in field else field.decode("utf-8", "replace")


def detach(path: Path | str) -> None:
    """Unmount lazily (for a faultfs that died and left its mount behind)."""
    path = os.path.abspath(path)
    if not is_mounted(path):
        return
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(path.encode(), _MNT_DETACH) == 0:
            return
        err = ctypes.get_errno()
        raise ClusterError(f"cannot unmount {path}: {os.strerror(err)}")
    for tool in ("fusermount3", "fusermount"):
        if shutil.which(tool):
            r = subprocess.run([tool, "-u", "-z", path], capture_output=True, text=True,
                               timeout=20)
            if r.returncode == 0:
                return
            raise ClusterError(f"cannot unmount {path}: {r.stderr.strip()}")
    raise ClusterError(f"cannot unmount {path}: no fusermount3 and not root")


class FaultFS:
    """One faultfs process: `backing` mirrored at `mountpoint` (see module doc).

    `log_path` receives its log (default: beside the mount point, <name>.faultfs.log).
    The control socket is `<mountpoint>.ctl` when that path is short enough, else a
    socket in the abstract namespace.
    """

    def __init__(self, backing: Path | str, mountpoint: Path | str,
                 log_path: Path | str | None = None, binary: str | None = None,
                 name: str | None = None) -> None:
        self.backing = Path(backing).resolve()
        self.mountpoint = Path(mountpoint).resolve()
        self.name = name or self.mountpoint.name
        self.log_path = Path(log_path) if log_path else self.mountpoint.with_name(
            self.mountpoint.name + ".faultfs.log")
        self.binary = binary
        control = str(self.mountpoint) + ".ctl"
        if len(control.encode()) > _SOCKET_PATH_MAX:
            control = f"@raftcheck-faultfs-{os.getpid()}-{secrets.token_hex(6)}"
        self.control = control
        self.popen: subprocess.Popen | None = None
        self._log_offset = 0

    # --- life cycle -------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Mount; return once the control socket answers and the mount is in place.
        A missing binary is a BadInput; a mount that fails is a ClusterError."""
        if self.running():
            return
        binary = self.binary or find_binary()
        try:
            for folder in (self.backing, self.mountpoint, self.log_path.parent):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ClusterError(f"faultfs for {self.name}: cannot make {e.filename}: "
                               f"{e.strerror}") from None
        argv = [binary, "-backing", str(self.backing), "-mount", str(self.mountpoint),
                "-control", self.control, "-parent-pid", str(os.getpid())]
        with open(self.log_path, "ab") as logf:
            self._log_offset = logf.tell()
            try:
                # its own session: a Ctrl-C on the terminal must not unmount it under
                # the running nodes; it unmounts itself when this process exits
                self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                              stdout=logf, stderr=subprocess.STDOUT,
                                              start_new_session=True, close_fds=True)
            except OSError as e:
                raise ClusterError(f"cannot start faultfs for {self.name}: {binary}: "
                                   f"{e.strerror}") from e
        deadline = time.monotonic() + timeout_s
        while True:
            why = self.exited()
            if why:
                raise ClusterError(why)
            try:
                self.command("stats", timeout_s=1.0)
                if is_mounted(self.mountpoint):
                    break
            except ClusterError:
                pass
            if time.monotonic() > deadline:
                self._kill()
                raise ClusterError(f"faultfs for {self.name} did not mount "
                                   f"{self.mountpoint} within {timeout_s:g} s: "
                                   f"{self._last_line()} (see {self.log_path})")
            time.sleep(0.02)
        log.info("faultfs mounted %s on %s (pid %d)", self.backing, self.mountpoint,
                 self.popen.pid)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exited(self) -> str | None:
        """None while it runs (or before start), else why it is gone."""
        if self.popen is None or self.popen.poll() is None:
            return None
        return (f"faultfs for {self.name} exited with code {self.popen.returncode}: "
                f"{self._last_line()} (see {self.log_path})")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Clean shutdown: SIGTERM (it unmounts and writes its cache back), wait;
        a process that does not end is killed and its mount detached."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("faultfs for %s did not stop within %g s; killing it",
                            self.name, timeout_s)
                self._kill()
        detach(self.mountpoint)  # a no-op unless it died and left the mount behind
        if not self.control.startswith("@"):  # a killed one leaves its socket behind
            try:
                os.unlink(self.control)
            except FileNotFoundError:
                pass
        if self.popen is not None and self.popen.returncode not in (0, None):
            log.warning("%s", self.exited())

    def _kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        detach(self.mountpoint)

    # --- commands ----------------------------------------------------------------

    def crash(self) -> int:
        """Drop every unsynced write (a power cut); returns the bytes dropped."""
        return int(self.command("crash")["dropped_bytes"])

    def flush(self) -> int:
        """Write every unsynced write back and fsync it; returns the bytes written."""
        return int(self.command("flush")["flushed_bytes"])

    def stats(self) -> dict:
        """Counters: dirty_files, unsynced_bytes, cached_bytes, syncs, synced_bytes,
        crashes, dropped_bytes, flushes."""
        return self.command("stats")

    def command(self, cmd: str, timeout_s: float = COMMAND_TIMEOUT_S) -> dict:
        """Send one control command; its JSON reply. ClusterError when it cannot."""
        address = ("\0" + self.control[1:]) if self.control.startswith("@") else self.control
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(address)
                s.sendall(cmd.encode() + b"\n")
                reply = s.makefile("rb").readline()
            data = json.loads(reply)
        except (OSError, ValueError) as e:
            why = self.exited() or f"{type(e).__name__}: {e}"
            raise ClusterError(f"faultfs for {self.name}: {cmd!r} failed: {why}") from None
        if not isinstance(data, dict) or data.get("ok") is not True:
            raise ClusterError(f"faultfs for {self.name}: {cmd!r} failed: {data!r:.300}")
        return data

    def _last_line(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "(no output)"


def unmount_all(mounts: dict[str, FaultFS]) -> None:
    """A cluster's teardown of its mounts, once its nodes have stopped: a last crash
    of each (so the backing directory keeps exactly what was fsync'd), a clean
    unmount, and the empty mount points removed. Problems are logged, not raised."""
    for nid, fs in mounts.items():
        try:
            if fs.running():
                lost = fs.crash()
                if lost:
                    log.info("%s: teardown dropped %d bytes of unsynced writes", nid, lost)
            fs.stop()
        except ClusterError as e:
            log.warning("%s", e)
        for empty in (fs.mountpoint, fs.mountpoint.parent):
            try:
                empty.rmdir()
            except OSError:
                pass
