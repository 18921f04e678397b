"""Worker handles: one slot per worker index, one process at a time in it (restarted in place).

The scheduler thread owns every ``Worker``: its process, its socket and its buffers. Other threads
only read the public attributes (``index``, ``pid``, ``state``, ``job``, ``n_done``, ``n_restarts``).
``move`` is the one place where ``state`` changes.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from .states import WorkerState, check_transition

if TYPE_CHECKING:
    from .job import Job

T = TypeVar("T")

OUTPUT_LINES = 200  # lines of output kept per worker for the dashboard and error messages


class Worker:
    """A worker as the scheduler sees it.

    Attributes:
        index: the slot number, ``0 .. n_workers-1``; passed to ``make_worker_command``.
        pid: process id of the current process (None before the first start).
        state: a ``WorkerState``.
        n_done: jobs this slot has finished (over all its processes).
        n_restarts: how many times the slot's process was replaced after an unexpected exit.
        output: the last lines the worker printed (stdout and stderr).
        exit_description: how the last process ended ("exit code 0", "killed by signal SIGKILL"), or None.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid: int | None = None
        self.state = WorkerState.CLOSED
        self.n_done = 0
        self.n_restarts = 0
        self.n_jobs_this_process = 0
        self.output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES)
        self.exit_description: str | None = None
        # Owned by the scheduler thread.
        self.generation = 0
        self.inflight: collections.deque[Any] = collections.deque()  # entries sent, oldest = running
        self.job_started = 0.0  # monotonic time when inflight[0] began to run
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.pidfd = -1
        self.out_fd = -1
        self.partial_line = b""
        self.retiring = False  # close it as soon as it holds no job
        self.ready_at = 0.0
        self.started_at = 0.0
        self.restart_at = 0.0
        self.deadline = 0.0  # handshake, close-grace or kill deadline, by state
        self.fast_deaths = 0
        self.kill_reason: str | None = None
        self.hungry = False  # in the scheduler's queue of workers with room for a job
        self.reaping = False  # inside the scheduler's exit handling (guards against re-entry)

    @property
    def job(self) -> Job | None:
        """The job the worker is running, or None."""
        inflight = self.inflight
        return inflight[0].job if inflight else None

    @property
    def job_elapsed(self) -> float:
        """Seconds the current job has run (0 if idle)."""
        return time.monotonic() - self.job_started if self.inflight else 0.0

    def move(self, new: WorkerState) -> None:
        """Change state, checking the lifecycle's transition table."""
        check_transition(self.index, self.state, new)
        self.state = new

    def __repr__(self) -> str:
        job = self.job
        doing = f" job={job.index}" if job is not None else ""
        return f"<Worker {self.index} pid={self.pid} {self.state.name}{doing} done={self.n_done}>"


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
                self._thread = threading.Thread(target=self._serve, name="jobsched-spawner", daemon=True)
                self._thread.start()
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


def signal_process(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except (ProcessLookupError, OSError):
        pass
