"""Child processes of a local cluster: how they are started, signalled and read.

Every child (a node, the toxiproxy server) runs in its own process group (so a
signal reaches all of it, and a Ctrl-C on the terminal does not) and gets
PR_SET_PDEATHSIG(SIGKILL), so that the kernel kills it when the runner dies, even by
SIGKILL. PDEATHSIG fires when the *thread* that forked the child exits, so every
child of a cluster is forked by one `Spawner` thread that lives as long as the
cluster. `Child` is one child and its log; `signal_group`, `wait_state`, `tail` and
`last_line` are the small operations the backend needs on them.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import subprocess
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

_PR_SET_PDEATHSIG = 1


class Spawner:
    """One long-lived thread that forks every child of a cluster (see module doc)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # handed to the caller
                    fut.set_exception(e)

    def call(self, fn: Callable[[], Any]) -> Any:
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def stop(self) -> None:
        self._jobs.put(None)


def child_setup(parent_pid: int, libc: Any) -> Callable[[], None]:
    """preexec_fn: die with the spawning thread (PR_SET_PDEATHSIG)."""
    def setup() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the runner died before prctl took effect
            os._exit(1)
    return setup


@dataclass
class Child:
    """One child process (a node or the toxiproxy server) and its state."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    paused: bool = False
    expected_exit: bool = False  # kill() or teardown stopped this incarnation
    exit_noted: bool = False     # its unexpected exit is already recorded
    log_offset: int = 0  # where this incarnation's output starts in the log
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def signal_group(popen: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the child's process group (it leads its own session)."""
    try:
        os.killpg(popen.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        if e.errno != errno.EPERM:
            raise


def wait_state(pid: int, stopped: bool, timeout_s: float = 2.0) -> None:
    """Wait until the kernel shows the process stopped (or running again): signals
    are delivered asynchronously, and a pause must be in force when pause() returns."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return  # gone, or no /proc: nothing to wait for
        if (state in (b"T", b"t")) == stopped:
            return
        time.sleep(0.005)


def tail(path: Path, limit: int = 4000, since: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(since, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"
