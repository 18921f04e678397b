"""The default backend: each worker slot is a local Python process with one authenticated TCP connection.

Per slot, on the loop's selector: the process's pidfd (readable when it exits, so a death is noticed at
once, never by polling), its output pipe (``_local.output``) and, once it has authenticated, its ``Connection``
(``_local.transport``). The listener and the handshake live in ``_local.transport.Listener``; spawning, signals and
process groups in ``_local.processes``; forking workers from a zygote in ``_local.zygote``.

**Workers started by hand** (``python -m jobsched.worker --connect``) have no process here: once one has
authenticated as ``ADOPT`` (``_local.wire``), the state gives it a slot of its own (``adopt_worker``), and its
connection is all the backend holds (``_Remote``): its end is the worker's exit, CLOSE asks it to leave, and
a kill closes the connection (the worker exits when it next reads or writes it).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._core.slot import Worker
from .._data import shm as _shm
from ..states import WorkerState
from . import tree as _tree
from . import wire as _wire
from .memory import describe_oom, oom_kills
from .output import OutputLines
from .processes import (
    Reaper,
    WorkerProcess,
    describe_exit,
    pidfd_open,
    resident_memory,
    signal_group,
    signal_tree,
)
from .transport import Connection, Listener
from .zygote import DIED_WITH_ZYGOTE, ForkedProcess, Starter

if TYPE_CHECKING:
    from .._core.backend import BackendEvents
    from .._core.state import Entry
    from ..scheduler import Scheduler
    from .tls import Credentials, ServerIdentity

# Where this jobsched lives (the folder that holds the package, not the package itself, whose modules would
# shadow top-level ones: jobsched/joblib.py is not joblib): put first on a worker's path so that it runs the
# same code as its scheduler.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_worker_command(worker_index: int) -> list[str]:
    """The default worker: ``python -m jobsched.worker``, which runs remote calls."""
    return [sys.executable, "-m", "jobsched.worker"]


def send_job_frames(conn: Connection, entries: list[Entry]) -> None:
    """Put JOB (or JOB_INT, JOB_SEED, JOB_INT_SEED) frames for ``entries`` on ``conn``, in one send."""
    pack, pack_int, job, job_int = _wire.JOB_HEADER.pack, _wire.JOB_INT_HEADER.pack, _wire.JOB, _wire.JOB_INT
    buffers: list[bytes | bytearray | memoryview] = []
    for entry in entries:
        payload, cost = entry.payload, entry.cost
        if entry.seed is not None:
            header = _seeded_header(entry)
        elif cost.__class__ is float:
            header = pack(len(payload) + 8, job, entry.index, cost)
        else:  # an int keeps its type in the worker (JOB_INT), unless it does not fit in int64
            try:
                header = pack_int(len(payload) + 8, job_int, entry.index, cost)
            except struct.error:
                header = pack(len(payload) + 8, job, entry.index, cost)
        buffers.append(header)
        buffers.append(payload)
    conn.send(buffers)


class _Process:
    """What the backend holds for one running worker process."""

    __slots__ = ("proc", "tag", "pidfd", "out_fd", "lines", "conn", "exited", "signalled", "closing", "oom_kills")

    def __init__(self, proc: WorkerProcess, tag: str, lines: OutputLines) -> None:
        self.proc = proc
        self.tag = tag  # its JOBSCHED_TREE value, which the processes its jobs start inherit
        self.pidfd = -1
        self.out_fd = -1
        self.lines = lines
        self.conn: Connection | None = None
        self.exited = False
        self.signalled = False  # we sent it a signal: its SIGKILL is no OOM kill
        self.closing = False  # we told it to close: it kills what its jobs left running (``_local.tree``)
        self.oom_kills = oom_kills()  # the cgroup's OOM-kill counter when it started


class _Remote:
    """What the backend holds for a worker started by hand: only its connection."""

    __slots__ = ("conn", "exited")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.exited = False


class LocalBackend:
    """Run workers as local processes started by ``make_worker_command(worker_index) -> argv``.

    Args:
        listen: ``(host, port)`` to listen on behind TLS (``Scheduler(listen=...)``); None: 127.0.0.1, plain.
    """

    start_timeout: float | None = 60.0

    def __init__(self, make_worker_command: Callable[[int], list[str]], secret: bytes, echo_output: bool,
                 memory_limit: int | None = None, listen: tuple[str, int] | None = None) -> None:
        self._command = make_worker_command
        self._memory_limit = memory_limit  # each worker's RLIMIT_AS, set by the worker itself
        self._secret = secret
        self._echo = echo_output
        self._listen = listen
        self._identity: ServerIdentity | None = None
        if listen is not None:
            from .tls import ServerIdentity

            self._identity = ServerIdentity(listen[0])
        self._events: BackendEvents | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: Listener | None = None
        self._reaper: Reaper | None = None
        self._starter = Starter()  # forks workers from a zygote, or spawns them
        self._waiting: list[Worker] = []  # to be forked once the booting zygote is ready
        self._zygote_watch = -1  # our copy of the booting zygote's socket, on the selector while they wait
        self._workers: dict[int, Worker] = {}  # slot index -> slot, for the handshake
        self._tree_tag = f"{os.getpid()}-{os.urandom(6).hex()}"  # this backend's JOBSCHED_TREE values start so
        self._reaper_lock = threading.Lock()  # the first segment may be written from any caller's thread
        self.shm = _shm.Area(self._start_reaper)  # the segments of large job data and results
        if listen is not None:  # a worker on another machine cannot map this one's /dev/shm: data goes in band
            self.shm.enabled = False
        self.worker_env: Callable[[int], dict[str, str]] | None = None  # Scheduler(worker_env=): a slot's variables

    @property
    def address(self) -> tuple[str, int] | None:
        return self._listener.address if self._listener is not None else None

    def credentials(self) -> Credentials | None:
        """What a hand-started worker needs to join (None until the scheduler listens)."""
        from .tls import Credentials

        address = self.address
        if address is None:
            return None
        host = address[0] if ":" not in address[0] else f"[{address[0]}]"
        return Credentials(f"{host}:{address[1]}", self._secret,
                           self._identity.certificate if self._identity is not None else None)

    def attach(self, sched: Scheduler) -> None:
        self.worker_env = sched._worker_env_of

    def default_n_workers(self) -> int:
        from ..commands import processor_count

        return processor_count()

    def open(self, events: BackendEvents, selector: selectors.BaseSelector) -> None:
        self._events = events
        if self._selector is selector and self._listener is not None:
            return
        self._selector = selector
        if self._listener is not None:
            self._listener.close()
        host, port = self._listen or (_wire.HOST, 0)
        self._listener = Listener(selector, self._secret, self._on_hello, events.log, time.monotonic, host, port,
                                  self._identity.context if self._identity is not None else None)
        if self._listen is not None:  # a later run listens where this one does: written credentials stay true
            self._listen = self._listener.address

    def describe_command(self, index: int) -> str:
        try:
            return " ".join(os.fspath(a) for a in self._command(index))
        except Exception as exc:
            return f"<make_worker_command failed: {exc}>"

    # ---- commands

    def start_worker(self, w: Worker) -> None:
        events, selector, listener = self._events, self._selector, self._listener
        assert events is not None and selector is not None and listener is not None
        self._new_reaper()
        assert self._reaper is not None
        host, port = listener.address
        env = dict(os.environ)
        env[_wire.ENV_ADDRESS] = f"{host}:{port}"
        env[_wire.ENV_WORKER] = f"{w.index}:{w.generation}"
        if self._identity is not None:
            env[_wire.ENV_CERTIFICATE] = self._identity.certificate
        if self.shm.enabled:
            env[_shm.ENV_PREFIX] = self.shm.prefix
        env[_wire.ENV_SYS_PATH] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        env["PYTHONUNBUFFERED"] = "1"
        tag = env[_tree.ENV_TAG] = f"{self._tree_tag}.{w.index}.{w.generation}"
        if self._memory_limit is not None:
            env[_wire.ENV_MEMORY_LIMIT] = str(self._memory_limit)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        base_env = None
        try:
            if self.worker_env is not None:  # the slot's own variables, on top (its replacements get them too)
                base_env = dict(env)
                env.update(self.worker_env(w.index))
            argv = [os.fspath(a) for a in self._command(w.index)]
        except Exception as exc:  # the command itself failed (make_python_cmd's checks): its message says it all
            w._io = None
            events.worker_spawn_failed(w, f"make_worker_command({w.index}) raised {type(exc).__name__}: {exc}")
            return
        try:
            proc = self._starter.start(argv, env, self._secret, self._reaper, events.log, base_env)
        except Exception as exc:
            w._io = None
            events.worker_spawn_failed(w, f"{type(exc).__name__}: {exc} (worker command: "
                                          f"{self.describe_command(w.index)})")
            return
        if proc is None:  # forked once the booting zygote is ready: never wait for it here, on the loop
            events.worker_spawned(w, None)  # no process yet (a replacement's pid was its dead predecessor's)
            self._wait_for_zygote(w)
            return
        p = _Process(proc, tag, OutputLines(w, self._echo))
        w._io = p
        self._workers[w.index] = w
        self._reaper.watch(proc.pid)
        assert proc.stdout is not None
        p.out_fd = proc.stdout.fileno()
        selector.register(p.out_fd, selectors.EVENT_READ, lambda mask: self._on_output(w, p))
        p.pidfd = pidfd_open(proc.pid)
        if p.pidfd >= 0:
            selector.register(p.pidfd, selectors.EVENT_READ, lambda mask: self._on_exit(w, p))
        events.worker_spawned(w, proc.pid)

    def send_jobs(self, w: Worker, entries: list[Entry]) -> None:
        p: _Process | None = w._io
        if p is None or p.conn is None:
            return
        send_job_frames(p.conn, entries)

    def close_worker(self, w: Worker) -> None:
        p: _Process | None = w._io
        if p is not None and p.conn is not None:
            p.conn.send([_wire.frame(_wire.CLOSE, 0)])
            if isinstance(p, _Process):
                p.closing = True
        self._forget_waiting(w)

    def _new_reaper(self) -> Reaper:
        with self._reaper_lock:
            if self._reaper is None:
                self._reaper = Reaper(self.shm.prefix if self.shm.enabled else None, self._tree_tag)
            return self._reaper

    def _start_reaper(self) -> None:
        """Before a job's data goes into shared memory: have the reaper running, which removes the segments
        if this process is killed, even before any worker started."""
        self._new_reaper().start()

    def withdraw_job(self, w: Worker, entry: Entry) -> None:
        p: _Process | None = w._io
        if p is not None and p.conn is not None:
            p.conn.send([_wire.frame(_wire.WITHDRAW, entry.index)])

    def kill_worker(self, w: Worker, force: bool) -> None:
        p: _Process | None = w._io
        self._forget_waiting(w)
        if p is None or p.exited:
            return
        if isinstance(p, _Remote):  # no process of ours to signal: hang up
            self._remote_gone(w, p, None)
            return
        p.signalled = True
        signal_tree(p.proc, signal.SIGKILL if force else signal.SIGTERM)
        if p.pidfd < 0 and force:  # no pidfd on this system: reap here
            p.proc.wait()
            self._on_exit(w, p)

    def worker_rss(self, w: Worker) -> int | None:
        return resident_memory(w.pid) if w.pid is not None and not isinstance(w._io, _Remote) else None

    def poll(self, now: float) -> float:
        next_at = self._listener.expire(now) if self._listener is not None else float("inf")
        if self._waiting:
            self._on_zygote()  # a zygote that never says it is ready is given up at its deadline
        for w in list(self._workers.values()):  # no pidfd on this system: a timer is how an exit is noticed
            p: _Process | None = w._io
            if isinstance(p, _Process) and p.pidfd < 0 and not p.exited:
                if p.proc.poll() is not None:
                    self._on_exit(w, p)
                else:
                    next_at = min(next_at, now + 0.1)
        return next_at

    def settle(self) -> None:
        if self._waiting:  # a worker asked for must have its process when the loop stops (and its pid)
            self._on_zygote(wait=True)

    def shutdown(self) -> None:
        self._waiting.clear()
        self._end_zygote_watch()
        for w in list(self._workers.values()):
            p: _Process | None = w._io
            if isinstance(p, _Remote) and not p.exited:
                self._remote_gone(w, p, None)
            elif p is not None and not p.exited:
                signal_tree(p.proc, signal.SIGKILL)
                p.proc.wait()
                self._on_exit(w, p)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._starter.close(self._reaper)
        with self._reaper_lock:
            reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.close()
        self._selector = None

    def close(self) -> None:
        self.shm.close()

    # ---- the zygote's boot

    def _wait_for_zygote(self, w: Worker) -> None:
        zygote = self._starter.booting
        assert zygote is not None and self._selector is not None
        if self._zygote_watch < 0:
            # A copy of its socket: the zygote may close its own end (it died) while this one is registered.
            self._zygote_watch = os.dup(zygote.fileno())
            self._selector.register(self._zygote_watch, selectors.EVENT_READ, lambda mask: self._on_zygote())
        self._waiting.append(w)

    def _on_zygote(self, wait: bool = False) -> None:
        """The booting zygote said something (ready, or it died), or ``poll``: start the workers that waited.

        ``wait``: until the zygote is ready (or given up), the loop ending (``settle``).
        """
        assert self._events is not None
        if not self._starter.settle(self._reaper, self._events.log, wait):
            return
        self._end_zygote_watch()
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            self.start_worker(w)  # forked now, or spawned if the zygote failed

    def _forget_waiting(self, w: Worker) -> None:
        """A worker stopped while it waited for the zygote: it never had a process, and has none to wait for."""
        if w in self._waiting:
            self._waiting.remove(w)
            if not self._waiting:
                self._end_zygote_watch()
            assert self._events is not None
            self._events.worker_exited(w, "stopped before it started (it waited for the zygote)", False,
                                       crashed=False)

    def _end_zygote_watch(self) -> None:
        if self._zygote_watch >= 0:
            self._unwatch(self._zygote_watch)
            os.close(self._zygote_watch)
            self._zygote_watch = -1

    def _unwatch(self, fd: int) -> None:
        """Take ``fd`` off the loop's selector, if it is there (it may have gone with the selector)."""
        if self._selector is not None:
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass

    # ---- events

    def _on_hello(self, index: int, generation: int) -> tuple[Callable[[socket.socket], None] | None, bool]:
        """A connection proved the secret as worker ``index:generation``: take it if that one is expected."""
        if index == _wire.ADOPT:
            return self._adopt, False
        w = self._workers.get(index)
        p: _Process | None = w._io if w is not None else None
        if w is None or p is None or w.generation != generation or w.state is not WorkerState.STARTING \
                or p.conn is not None:
            # A worker we retired (and are killing) before it connected is expected to knock: no log.
            retired = w is not None and w.generation == generation and w.state is WorkerState.CLOSING
            return None, not retired
        assert self._selector is not None and self._events is not None
        events, selector = self._events, self._selector

        def accept(sock: socket.socket) -> None:
            p.conn = Connection(sock, selector, lambda frames: events.frames(w, frames),
                                lambda error: events.connection_lost(w, error))
            events.worker_ready(w)

        return accept, False

    def _adopt(self, sock: socket.socket) -> None:
        """A worker started by hand authenticated: give it a slot of its own (or hang up: the run is ending)."""
        assert self._selector is not None and self._events is not None
        events, selector = self._events, self._selector
        w = events.adopt_worker()
        if w is None:
            sock.close()
            return
        p = _Remote()
        w._io = p
        self._workers[w.index] = w
        p.conn = Connection(sock, selector, lambda frames: events.frames(w, frames),
                            lambda error: self._remote_gone(w, p, error))
        events.worker_spawned(w, None)
        events.worker_ready(w)

    def _remote_gone(self, w: Worker, p: _Remote, error: str | None) -> None:
        """A hand-started worker's connection ended (or we hung up): that is its exit."""
        if p.exited:
            return
        p.exited = True
        assert self._events is not None
        conn = p.conn
        if conn is not None and not conn.closed:
            conn.close()
        if self._workers.get(w.index) is w:
            del self._workers[w.index]
        if w._io is p:
            w._io = None
        leaving = w.state is WorkerState.CLOSING
        if error is not None:
            self._events.connection_lost(w, error)
        self._events.worker_exited(w, "disconnected" if error is None else f"broke the protocol ({error})",
                                   leaving and error is None, crashed=not leaving)

    @staticmethod
    def _read_output(p: _Process) -> bytes | None:
        """One chunk of the worker's output; b"" at its end (or a broken pipe), None if nothing is there now."""
        try:
            return os.read(p.out_fd, 65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _on_output(self, w: Worker, p: _Process) -> None:
        data = self._read_output(p)
        if data is None:
            return
        if data:
            p.lines.feed(data)
            return
        self._end_output(p)
        if p.pidfd < 0 and p.proc.poll() is not None:
            self._on_exit(w, p)  # no pidfd on this system: the end of its output shows the exit

    def _end_output(self, p: _Process) -> None:
        if p.out_fd < 0:
            return
        assert self._selector is not None
        self._unwatch(p.out_fd)
        p.out_fd = -1
        p.lines.end()

    def _on_exit(self, w: Worker, p: _Process) -> None:
        """The process has exited: report what it sent and printed first, then its exit."""
        if p.exited:
            return
        p.exited = True
        returncode = p.proc.wait()
        if p.conn is not None:
            p.conn.drain()  # a result sent just before the exit is still in the socket
            p.conn.close()
        while p.out_fd >= 0:  # all it printed, the last unfinished line included
            data = self._read_output(p)
            if not data:
                break
            p.lines.feed(data)
        self._end_output(p)
        if p.pidfd >= 0:
            self._unwatch(p.pidfd)
            os.close(p.pidfd)
            p.pidfd = -1
        # The job's own processes go with it: the group outlives its leader while any member lives.
        signal_group(p.proc, signal.SIGKILL)
        if not p.signalled and not p.closing:  # killed from outside, or crashed: it could not kill its strays
            _tree.kill_tagged(p.tag)
        if self._reaper is not None:
            self._reaper.forget(p.proc.pid)
        for pipe in (p.proc.stdin, p.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.shm.sweep_worker(w.index, w.generation)  # a result it was writing when it died
        if self._workers.get(w.index) is w and w._io is p:
            w._io = None
        assert self._events is not None
        if isinstance(p.proc, ForkedProcess) and p.proc.died_with_zygote:
            # Not its job's doing: the scheduler replaces it and runs its jobs again, with no retry counted.
            self._events.worker_exited(w, DIED_WITH_ZYGOTE, False, crashed=False)
        else:
            oom = describe_oom(returncode, p.signalled, p.oom_kills, oom_kills() if p.oom_kills is not None else None,
                               w.last_rss)
            self._events.worker_exited(w, oom or describe_exit(returncode), returncode == 0)



def _seeded_header(entry: Entry) -> bytes:
    """The header of a JOB_SEED or JOB_INT_SEED frame: a job of a scheduler with a ``seed``."""
    size = len(entry.payload) + _wire.COST.size + _wire.SEED.size
    cost = entry.cost
    if cost.__class__ is not float:
        try:
            return _wire.JOB_INT_SEED_HEADER.pack(size, _wire.JOB_INT_SEED, entry.index, cost, entry.seed)
        except struct.error:
            pass
    return _wire.JOB_SEED_HEADER.pack(size, _wire.JOB_SEED, entry.index, cost, entry.seed)


__all__ = ["PACKAGE_ROOT", "LocalBackend", "default_worker_command"]
