"""Worker processes: spawn, watch (pidfd), signal (the whole process group), reap; memory (RSS).

Each worker runs in a session and process group of its own, so that Ctrl-C in a terminal or Jupyter's
interrupt (sent to our process group) does not reach it, and so that one signal to the group stops the
worker *and the processes its job started*; those that left the group (``setsid``) are found through the
worker's subtree and killed too (``_local.tree``, ``signal_tree``). A ``Reaper`` (a tiny ``sh`` process per
scheduler) kills those groups if this process dies without closing them, even by SIGKILL: the workers
themselves die with their scheduler through ``PR_SET_PDEATHSIG`` (a forked worker with its zygote, which dies
with the scheduler: ``_local.zygote``), but a job's own children would not.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, Any, Protocol, TypeVar

from . import tree as _tree

T = TypeVar("T")


class WorkerProcess(Protocol):
    """What the backend uses of a worker's process: a ``subprocess.Popen``, or a ``_local.zygote.ForkedProcess``."""

    @property
    def pid(self) -> int: ...
    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...


def describe_exit(returncode: int | None) -> str:
    """Say how a process ended: ``exit code 3`` or ``killed by signal SIGKILL``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class _Spawner:
    """One thread, alive as long as this process, from which every worker process is started.

    A worker asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), and "parent" means
    the *thread* that started it. Scheduler threads come and go (a blocking ``start`` ends its thread and
    may keep the workers), so none of them may be that parent: this thread is, and it only ends with the
    process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget_thread)

    def _forget_thread(self) -> None:
        self._thread = None  # a forked child has no copy of the thread: start its own
        self._requests = queue.SimpleQueue()

    def call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="jobsched-spawner", daemon=True)
                thread.start()  # recorded only once it runs: a failed start is tried again by the next call
                self._thread = thread
        done: Future[T] = Future()
        self._requests.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        requests = self._requests
        while True:
            fn, done = requests.get()
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)


_spawner = _Spawner()


def on_spawner_thread(fn: Callable[[], T]) -> T:
    """Call ``fn`` on the spawner thread: a process it starts may tie its PR_SET_PDEATHSIG to this process's life."""
    return _spawner.call(fn)


def spawn(argv: list[str], env: dict[str, str], secret: bytes) -> subprocess.Popen[bytes]:
    """Start a worker process (from the spawner thread) in its own session; hand it the secret on stdin."""
    return _spawner.call(lambda: _popen(argv, env, secret))


def _popen(argv: list[str], env: dict[str, str], secret: bytes) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        close_fds=True,
        # Its own session: Ctrl-C in a terminal or Jupyter's interrupt (sent to our process group)
        # must not kill a worker in the middle of a job.
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(secret.hex().encode() + b"\n")
    proc.stdin.flush()
    os.set_blocking(proc.stdout.fileno(), False)
    return proc


def pidfd_open(pid: int) -> int:
    """Return a pollable descriptor that becomes readable when ``pid`` exits, or -1 if unsupported."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_memory(pid: int) -> int | None:
    """Return the resident set size of ``pid`` in bytes (Linux), or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def signal_group(proc: WorkerProcess, sig: int) -> None:
    """Send ``sig`` to the worker's process group: the worker and every process its job started.

    The worker leads its own group (``start_new_session``), so the group id is its pid; that id cannot be
    reused while any member of the group lives, and the worker itself is not reaped before this is called.
    """
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            proc.send_signal(sig)
        except (ProcessLookupError, OSError):
            pass


def signal_tree(proc: WorkerProcess, sig: int) -> None:
    """Send ``sig`` to the worker's process group, and SIGKILL its descendants that left the group.

    For a worker not yet reaped (its pid still names it). The descendants that called ``setsid`` are found
    through the worker's subtree, which it keeps whole by being a child subreaper (``_local.tree``); the
    group is frozen while they are looked for, then signalled, then let go (a SIGTERM is delivered then).
    """
    _tree.kill_strays(proc.pid, freeze_group=True)
    signal_group(proc, sig)
    if sig != signal.SIGKILL:
        signal_group(proc, signal.SIGCONT)


# Reads "+PGID" (a worker's group), "~PGID" (a zygote's) and "-PGID" (forget it) lines. When its stdin closes
# (our process exited, or close()), it asks each zygote listed to end (SIGTERM: a zygote kills its whole tree,
# the processes its workers' jobs started outside their groups included, then exits), SIGKILLs every group still
# listed, removes the segments under $1, the scheduler's shared-memory prefix (``_data.shm``), and SIGKILLs
# every process whose environment says it was started under one of the scheduler's workers (JOBSCHED_TREE=$2.*,
# ``_local.tree``): those its jobs started outside their groups. A zygote still there two seconds later is
# SIGKILLed.
# Plain sh: it starts in about a millisecond and holds no GIL that a job could take.
# `kill -KILL -PGID` without `--`: dash, Debian's /bin/sh, rejects `kill -KILL -- -PGID` and kills nothing.
_REAPER_SCRIPT = """
groups=" "
zygotes=" "
while IFS= read -r line; do
  case "$line" in
    +*) groups="$groups${line#+} " ;;
    ~*) zygotes="$zygotes${line#~} " ;;
    -*) g=${line#-}
        kept=" "; for x in $groups; do [ "$x" = "$g" ] || kept="$kept$x "; done; groups=$kept
        kept=" "; for x in $zygotes; do [ "$x" = "$g" ] || kept="$kept$x "; done; zygotes=$kept ;;
  esac
done
for z in $zygotes; do kill -TERM "-$z" 2>/dev/null; done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
[ -n "$1" ] && rm -f -- /dev/shm/"$1"*
if [ -n "$2" ]; then
  for round in 1 2 3 4 5; do
    pids=$(grep -lsz "^JOBSCHED_TREE=$2[.]" /proc/[0-9]*/environ | cut -d/ -f3)
    [ -z "$pids" ] && break
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
fi
if [ "$zygotes" != " " ]; then
  sleep 2
  for z in $zygotes; do kill -KILL "-$z" 2>/dev/null; done
fi
"""


class Reaper:
    """Kills the process groups of this scheduler's workers if the scheduler's process dies first."""

    def __init__(self, shm_prefix: str | None = None, tree_tag: str | None = None) -> None:
        self._shm_prefix = shm_prefix
        self._tree_tag = tree_tag
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False

    def _start(self) -> None:
        """Start the reaper's shell, at the first group to watch: after the first worker's spawn, so that its
        interpreter starts ~1.5 ms sooner (a worker dies with us by itself anyway: PR_SET_PDEATHSIG)."""
        self._started = True
        try:
            argv = ["/bin/sh", "-c", _REAPER_SCRIPT, "jobsched-reaper", self._shm_prefix or "", self._tree_tag or ""]
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          close_fds=True, start_new_session=True)
        except OSError:  # no /bin/sh: workers still die with us (PR_SET_PDEATHSIG); their children may not
            self._proc = None

    def _say(self, line: str) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.write(line.encode() + b"\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                pass

    def start(self) -> None:
        """Start the reaper's shell now, if it is not running (before the first shared-memory segment)."""
        if not self._started:
            self._start()

    def watch(self, pgid: int, zygote: bool = False) -> None:
        """Kill group ``pgid`` if we die; a ``zygote``'s gets SIGTERM first, so that it can kill its tree."""
        if not self._started:
            self._start()
        self._say(f"~{pgid}" if zygote else f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._say(f"-{pgid}")

    def close(self) -> None:
        """Stop the reaper (it kills any group still listed, normally none) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(5.0)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
