# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""Resident workers on a Dask cluster: ``DaskBackend(client, resident=True)``.

Each slot is one long-running jobsched worker that Dask places, which connects back to the scheduler and
serves jobs over jobsched's own protocol (``_local.wire``) with prefetch, so that a job costs what it costs
locally, not a Dask task::

    SchedulerState ──StartWorker──> start_worker: client.submit(run_resident, ...)  ──> a Dask worker thread
                                                                                         │ Popen
                                                                                         ▼
    Listener (TLS, pinned) <──── connect, HMAC handshake as slot index:generation ─── python -m jobsched.worker
    Connection ──JOB frames──> worker ──RESULT / ERROR / PROGRESS / RETIRE──> frames ──> the state   --connect

**A subprocess, not a seceded task.** The Dask task that holds a slot starts ``python -m jobsched.worker
--connect`` as a child process and waits for it, holding its Dask thread (it does not secede). Why:

* a job runs in a process of its own, as locally: it can hold the GIL for minutes, call ``os._exit``, change
  the working directory or ``os.environ`` (restored after each job), segfault, without starving or breaking
  the Dask worker's event loop (its heartbeats would stop under a GIL-holding job in a seceded thread, and
  the Dask scheduler would declare the worker dead);
* jobsched can stop a job (a timeout, a cancel) by killing that process group; a thread cannot be stopped;
* holding the thread keeps Dask's accounting true: one busy thread per jobsched worker, so other Dask work
  on the cluster is not placed on top of it.

**Secrets.** The task's arguments carry the run's credentials (the secret and the certificate to pin) to the
Dask worker: they travel on Dask's own connections, which carry code to run anyway; secure those with Dask's
TLS (``security=``) where the network is not trusted. The worker reads them from its stdin, never its command
line, and connects to the scheduler over TLS that it pins to the run's certificate.

**Data sent once** (``put``). A resident worker cannot map this machine's shared memory: the handle's pickle
goes to each worker once, in a DATA frame ahead of its first job that takes the handle (the connection
remembers which it sent); the first such job unpickles it and the worker keeps the object. Once the handle is
released, the worker's next jobs come after an empty DATA frame that makes it drop the object.

**Retirement.** The task watches its Dask worker's status; when it leaves ``running`` (``retire_workers``,
dask-jobqueue's ``--lifetime``, ``cluster.scale`` down), it writes ``retire`` to the worker's stdin. The worker
sends RETIRE, finishes the job it runs and exits; the scheduler re-queues the jobs it had sent ahead, counts
no crash, and starts the slot again: Dask places the new task on a worker that stays. After ``retire_grace``
seconds the task kills the worker (its job goes back to the queue, still counting no crash). A Dask worker
lost abruptly takes the worker with it (its stdin closes): that counts a death, as a crash does locally.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import distributed

from .._data import handles as _handles
from .._local import wire as _wire
from .._local.backend import send_job_frames
from .._local.tls import Credentials, ServerIdentity
from .._local.transport import Connection, Listener
from ..states import WorkerState

if TYPE_CHECKING:
    import selectors

    from .._core.backend import BackendEvents
    from .._core.slot import Worker
    from .._core.state import Entry
    from .._data.handles import Handle

RETIRE_GRACE = 30.0  # seconds a retiring worker has to finish its job before it is killed
WATCH_INTERVAL = 0.2  # how often the task on the Dask worker looks at the worker's status

# ---------------------------------------------------------------------------------------- on the Dask worker

_running: dict[str, subprocess.Popen[bytes]] = {}  # token -> the jobsched worker this Dask worker runs
_running_lock = threading.Lock()


def run_resident(address: str, credentials: str, ident: str, token: str, grace: float, topic: str) -> int:
    """The Dask task of a resident slot: run a jobsched worker process until it exits; return its status.

    Args:
        address: the scheduler's ``HOST:PORT``.
        credentials: the credential file's one line (``_local.tls.Credentials``), written to the worker's stdin.
        ident: ``index:generation`` of the slot (the worker names it in the handshake).
        token: the slot's name here, for ``signal_resident``.
        grace: seconds a retiring worker has before it is killed.
        topic: the Dask event topic on which the scheduler learns the worker's pid.
    """
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[_wire.ENV_WORKER] = ident
    # The Dask worker's import path: a job finds the modules it would find as a per-task job.
    env[_wire.ENV_SYS_PATH] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "jobsched.worker", "--connect", address, "--credentials", "-"],
                            stdin=subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stdin is not None
    with _running_lock:
        _running[token] = proc
    try:
        proc.stdin.write(credentials.encode() + b"\n")
        proc.stdin.flush()
        try:
            worker = distributed.get_worker()
            worker.log_event(topic, {"token": token, "pid": proc.pid})
        except ValueError:
            worker = None
        while True:
            try:
                return proc.wait(timeout=WATCH_INTERVAL)
            except subprocess.TimeoutExpired:
                pass
            status = getattr(getattr(worker, "status", None), "name", "running")
            if status not in ("running", "paused", "init"):
                return _retire(proc, grace)
    except BaseException:
        _signal_group(proc, signal.SIGKILL)
        raise
    finally:
        with _running_lock:
            _running.pop(token, None)
        try:
            proc.stdin.close()
        except OSError:
            pass
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _retire(proc: subprocess.Popen[bytes], grace: float) -> int:
    """The Dask worker is leaving: ask the jobsched worker to finish its job and go; kill it after ``grace``."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"retire\n")
        proc.stdin.flush()
        return proc.wait(timeout=grace)
    except (OSError, subprocess.TimeoutExpired):
        _signal_group(proc, signal.SIGKILL)
        return proc.wait()


def signal_resident(token: str, signum: int) -> bool:
    """Run on every Dask worker (``client.run``): signal the jobsched worker named ``token``, if it is here."""
    with _running_lock:
        proc = _running.get(token)
    if proc is None:
        return False
    _signal_group(proc, signum)
    return True


async def signal_resident_async(token: str, signum: int) -> bool:
    """``signal_resident`` for ``client.run(..., wait=False)``, which takes only coroutine functions."""
    return signal_resident(token, signum)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)  # its own session: the job's own processes go too
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------- in the client process


class _Seat:
    """What the backend holds for one incarnation of a resident slot (``Worker._io``)."""

    __slots__ = ("token", "future", "conn", "retired", "gone", "sent")

    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: dict[str, weakref.ref[Handle]] = {}  # the handles whose data this worker has (DATA)
        self.future: distributed.Future[Any] | None = None
        self.conn: Connection | None = None
        self.retired = False  # it said RETIRE: its exit counts no crash
        self.gone = False  # its exit was reported


def check_share(handle: Handle) -> None:
    """``put`` in resident mode: the data must fit in one frame."""
    if handle.nbytes + _wire.TOKEN_BYTES > _wire.MAX_FRAME:
        handle.release()
        raise ValueError(f"put: the object pickles to {handle.nbytes} bytes; resident workers on Dask receive it "
                         f"in one message of at most {_wire.MAX_FRAME} bytes. Split it into several put() calls, "
                         "or use DaskBackend(client) per task, where Dask scatters it")


def _send_data(conn: Connection, sent: dict[str, weakref.ref[Handle]], handles: tuple[Handle, ...]) -> None:
    """Send the data of ``handles`` that this worker has not received yet, once (DATA frames)."""
    for handle in handles:
        if handle.token in sent:
            continue
        pickled = _handles.held(handle)
        if pickled is None:
            continue  # released: the job fails on the worker, saying so
        sent[handle.token] = weakref.ref(handle)
        token = handle.token.encode("ascii")
        conn.send([_wire.HEADER.pack(len(token) + len(pickled), _wire.DATA, 0), token, pickled])


def _forget_released(conn: Connection, sent: dict[str, weakref.ref[Handle]]) -> None:
    """Tell the worker to drop the objects of handles released since (an empty DATA frame each)."""
    for token, ref in list(sent.items()):
        handle = ref()
        if handle is None or handle.released:
            del sent[token]
            conn.send([_wire.frame(_wire.DATA, 0, token.encode("ascii"))])


def default_host(client: distributed.Client) -> str:
    """The address of this machine that the Dask scheduler's machine reaches (loopback for a local cluster)."""
    address = str(client.scheduler.address or "") if client.scheduler is not None else ""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host in ("", "localhost") or host.startswith("127.") or host == "::1" or host.startswith("inproc"):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))  # a UDP "connect" sends nothing: it only picks the route's source address
        return str(probe.getsockname()[0])


class ResidentSlots:
    """The resident half of ``DaskBackend``: slots served by jobsched workers that Dask placed."""

    start_timeout: float | None = None  # a slot waits for Dask to place its worker as long as it takes

    def __init__(self, client: distributed.Client, listen: tuple[str, int] | None, retire_grace: float) -> None:
        self._client = client
        self._listen = listen or (default_host(client), 0)
        self._grace = retire_grace
        self._secret = _wire.new_secret()
        self._identity = ServerIdentity(self._listen[0])
        self._events: BackendEvents | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: Listener | None = None
        self._workers: dict[int, Worker] = {}
        self._topic = f"jobsched-resident-{uuid.uuid4().hex}"  # where the tasks tell their workers' pids
        self._subscribed = False

    @property
    def address(self) -> tuple[str, int] | None:
        return self._listener.address if self._listener is not None else None

    def open(self, events: BackendEvents, selector: selectors.BaseSelector) -> None:
        self._events = events
        if not self._subscribed:
            self._subscribed = True
            self._client.subscribe_topic(self._topic, self._on_pid_event)
        if self._selector is selector and self._listener is not None:
            return
        self._selector = selector
        self._listener = Listener(selector, self._secret, self._on_hello, events.log, time.monotonic,
                                  self._listen[0], self._listen[1], self._identity.context)
        self._listen = self._listener.address  # a later run listens where this one does

    def start_worker(self, w: Worker) -> None:
        assert self._events is not None and self._listener is not None
        seat = _Seat(f"{w.index}-{w.generation}-{uuid.uuid4().hex}")
        w._io = seat
        w.address = None
        self._workers[w.index] = w
        host, port = self._listener.address
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        credentials = Credentials(address, self._secret, self._identity.certificate).to_json()
        try:
            seat.future = self._client.submit(run_resident, address, credentials, f"{w.index}:{w.generation}",
                                              seat.token, self._grace, self._topic,
                                              key=f"jobsched-resident-{seat.token}", pure=False, retries=0)
        except Exception as exc:
            w._io = None
            self._events.worker_spawn_failed(w, f"could not submit the resident worker's Dask task "
                                                f"({type(exc).__name__}: {exc})")
            return
        seat.future.add_done_callback(functools.partial(self._on_task_done, w, seat))
        self._events.worker_spawned(w, None)

    def send_jobs(self, w: Worker, entries: list[Entry]) -> None:
        seat: _Seat | None = w._io
        if seat is not None and seat.conn is not None:
            if seat.sent:
                _forget_released(seat.conn, seat.sent)
            for entry in entries:
                if entry.handles:
                    _send_data(seat.conn, seat.sent, entry.handles)
            send_job_frames(seat.conn, entries)

    def close_worker(self, w: Worker) -> None:
        seat: _Seat | None = w._io
        if seat is not None and seat.conn is not None:
            seat.conn.send([_wire.frame(_wire.CLOSE, 0)])

    def kill_worker(self, w: Worker, force: bool) -> None:
        seat: _Seat | None = w._io
        if seat is None or seat.gone:
            return
        try:  # the process may be on any Dask worker: the one that runs it acts
            self._client.run(signal_resident_async, seat.token, signal.SIGKILL if force else signal.SIGTERM, wait=False)
        except Exception:
            pass  # the cluster is gone, and the worker with it
        if seat.future is not None:
            seat.future.cancel()
        self._gone(w, seat, "killed", crashed=True)

    def poll(self, now: float) -> float:
        return self._listener.expire(now) if self._listener is not None else float("inf")

    def shutdown(self) -> None:
        for w in list(self._workers.values()):
            seat: _Seat | None = w._io
            if seat is not None:
                self.kill_worker(w, True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._selector = None

    def close(self) -> None:
        if self._subscribed and self._client.status == "running":
            try:
                self._client.unsubscribe_topic(self._topic)
            except Exception:
                pass
        for w in list(self._workers.values()):
            seat: _Seat | None = w._io
            if seat is not None and seat.future is not None:
                seat.future.cancel()
        self._workers.clear()

    # ---- the loop's thread

    def _on_hello(self, index: int, generation: int) -> tuple[Any, bool]:
        w = self._workers.get(index)
        seat: _Seat | None = w._io if w is not None else None
        if w is None or seat is None or w.generation != generation or w.state is not WorkerState.STARTING \
                or seat.conn is not None:
            return None, index != _wire.ADOPT and w is not None and w.generation == generation
        assert self._selector is not None and self._events is not None
        events, selector = self._events, self._selector

        def accept(sock: socket.socket) -> None:
            seat.conn = Connection(sock, selector, lambda frames: self._on_frames(w, seat, frames),
                                   lambda error: self._on_lost(w, seat, error), _wire.RESIDENT_ACCEPTS)
            w.address = sock.getpeername()[0]
            events.worker_ready(w)

        return accept, False

    def _on_frames(self, w: Worker, seat: _Seat, frames: list[Any]) -> None:
        assert self._events is not None
        for kind, _, _ in frames:
            if kind == _wire.RETIRE:
                seat.retired = True
                if seat.conn is not None:
                    seat.conn.send([_wire.frame(_wire.CLOSE, 0)])  # an idle worker leaves at once
                frames = [f for f in frames if f[0] != _wire.RETIRE]
                break
        if frames:
            self._events.frames(w, frames)

    def _on_lost(self, w: Worker, seat: _Seat, error: str | None) -> None:
        assert self._events is not None
        if error is not None:
            self._events.connection_lost(w, error)
        if seat.retired:
            self._gone(w, seat, "retired with its Dask worker", crashed=False, clean=True)
        elif w.state is WorkerState.CLOSING and error is None:
            self._gone(w, seat, "exit code 0", crashed=False, clean=True)
        else:
            self._gone(w, seat, "lost its connection" if error is None else f"broke the protocol ({error})")

    def _on_pid_event(self, event: Any) -> None:
        """The client's IO loop: a task started its worker process; tell the slot its pid."""
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and self._events is not None:
            self._events.post(functools.partial(self._set_pid, str(msg.get("token")), int(msg.get("pid", 0))))

    def _set_pid(self, token: str, pid: int) -> None:
        for w in self._workers.values():
            seat: _Seat | None = w._io
            if seat is not None and seat.token == token and self._events is not None:
                self._events.worker_spawned(w, pid)

    def _on_task_done(self, w: Worker, seat: _Seat, future: distributed.Future[Any]) -> None:
        """Dask's thread: the slot's task ended (its worker exited, or never started)."""
        if self._events is not None:
            self._events.post(functools.partial(self._task_ended, w, seat, str(future.status)))

    def _task_ended(self, w: Worker, seat: _Seat, status: str) -> None:
        if seat.conn is None and not seat.gone:  # it never connected: say why, as a start-up failure
            self._gone(w, seat, f"its Dask task ended before the worker connected ({status})")

    def _gone(self, w: Worker, seat: _Seat, description: str, crashed: bool = True, clean: bool = False) -> None:
        """Report the exit of ``seat`` (an incarnation of ``w``), once."""
        if seat.gone:
            return
        seat.gone = True
        if seat.conn is not None:
            seat.conn.drain()
            seat.conn.close()
        if self._workers.get(w.index) is w and w._io is seat:
            del self._workers[w.index]
            w._io = None
        assert self._events is not None
        self._events.worker_exited(w, description, clean, crashed)
