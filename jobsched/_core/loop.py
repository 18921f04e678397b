"""The thin event loop: selector -> events -> state -> commands, on the one thread that owns a scheduler.

::

    backend (fds on the selector, or Dask callbacks via post()) ──events──> Engine ──under the lock──> state
    other threads: add_job / submit / scale / close ──(lock, wake-up byte)──> Engine
    Engine <──commands── state:  StartWorker / SendJobs / CloseWorker / KillWorker / WithdrawJob ──> backend
                                 Deliver ──> future.set_result / after_stop   (outside the lock)

A job's data travels: ``add_job`` pickles it (caller's thread) into an ``Entry`` on the state's heap ->
``SchedulerState.assign`` gives it to a worker -> ``before_start`` -> the backend puts a JOB frame on that
worker's connection -> the worker answers RESULT or ERROR -> ``frames`` -> ``SchedulerState.job_done`` ->
the next job is sent *before* this result is unpickled -> ``deliver``: the future, then ``after_stop``.

The state is only ever changed under ``Scheduler._lock``; callbacks and futures run outside it, so a callback
may add jobs. Nothing a job sends can end the loop: a result that cannot be unpickled (even one whose
unpickling raises ``SystemExit``) becomes that job's ``JobError``; an exception of the loop's own ends it,
kills the workers and is raised by the next ``start()``/``wait()``.
"""

from __future__ import annotations

import collections
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import TYPE_CHECKING, Any

from .._data import shm as _shm
from .._data.pickling import loads
from .._data.shm import load_result, release
from ..errors import JobError
from ..states import KillReason
from .backend import ERROR, PROGRESS, RESULT
from .futures import force_cancel, mark_running
from .remote_errors import job_error
from .slot import Progress, Worker, tail
from .state import TICK, CloseWorker, Command, Deliver, Entry, KillWorker, SendJobs, StartWorker, WithdrawJob
from .stderr import write_stderr

if TYPE_CHECKING:
    from .._journaling.resume import Resume
    from .._local.transport import Frames
    from .._timeline.recorder import Timeline
    from ..scheduler import AfterStop, BeforeStart, Scheduler
    from .backend import Backend
    from .state import SchedulerState

_RESULT, _ERROR, _PROGRESS = RESULT, ERROR, PROGRESS


class Engine:
    """Runs a scheduler's loop; implements ``BackendEvents`` for its backend."""

    def __init__(self, sched: Scheduler, state: SchedulerState, backend: Backend, lock: threading.Lock,
                 idle: threading.Condition) -> None:
        self.sched = sched
        self.state = state
        self.backend = backend
        self.lock = lock
        self.idle = idle
        self.before_start: BeforeStart | None = None
        self.after_stop: AfterStop | None = None
        # The journal's recorder: (worker or None, entry, RESULT / ERROR / None, frame body, decoded result).
        self.on_result: Callable[[Worker | None, Entry, int | None, Any, Any], None] | None = None
        self.journal: Resume | None = None  # flushed on this loop's thread, when due and when the loop ends
        self.timeline: Timeline | None = None  # the task timeline's recorder (_timeline/recorder.py): a tuple per job
        self.inbox: collections.deque[Callable[[], None]] = collections.deque()
        # The last failed jobs' calls, seeds and working directories, by index (Scheduler.rerun_here).
        self.failed_calls: dict[int, tuple[bytes, int | None, str]] | None = {}
        self.owner: threading.Thread | None = None  # the thread running serve() now
        self.interrupted = False  # Ctrl-C during a blocking start() that runs the loop in its thread
        self.selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._poll_at = 0.0

    # ------------------------------------------------------------------ set-up and tear-down

    def open(self) -> None:
        """Create the selector and the wake-up pair, and open the backend (once per run of loops)."""
        if self.selector is None:
            self.selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self.selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self.backend.open(self, self.selector)

    def shutdown(self) -> None:
        """Every worker is gone: release the backend's sockets, the wake-up pair and the selector."""
        self.backend.shutdown()
        if self.selector is not None:
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self.selector.close()
        self.selector = self._wake_r = self._wake_w = None

    def wake(self) -> None:
        """Interrupt the loop's select() from another thread (or a signal handler)."""
        w, owner = self._wake_w, self.owner
        if w is not None and owner is not None and threading.current_thread() is not owner:
            try:
                w.send(b"\0")
            except OSError:
                pass  # a wake-up is already pending, or the loop is gone

    def interrupt(self) -> None:
        """SIGINT while a blocking start() runs the loop in the main thread: stop between two events."""
        self.interrupted = True
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"\0")
            except OSError:
                pass

    def _on_wake(self, mask: int) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # ------------------------------------------------------------------ the loop

    def serve(self) -> None:
        """Run until the state says the loop may end (idle in a blocking start, closed, or failed)."""
        state, lock, backend, inbox, journal = self.state, self.lock, self.backend, self.inbox, self.journal
        selector = self.selector
        assert selector is not None
        monotonic = time.monotonic
        try:
            while not self.interrupted:
                while inbox:
                    inbox.popleft()()
                now = monotonic()
                if now >= state.maintain_at:
                    with lock:
                        cmds = state.tick(now)
                    self.execute(cmds)
                if now >= self._poll_at:  # at least every TICK: a new connection's handshake deadline, ...
                    self._poll_at = min(backend.poll(now), now + TICK)
                if state.ready:
                    self._deliver_ready()
                if state.can_dispatch():
                    self.dispatch(monotonic())
                if state.closing or state.stopped_on is not None or (state.until_idle and state.is_idle()):
                    with lock:  # the loop may end (an unlocked first look: no lock per turn of a busy loop)
                        if state.poll_finished():
                            break
                timeout = min(state.maintain_at, self._poll_at) - monotonic()
                if journal is not None:  # results wait at most the journal's flush interval
                    flush_in = journal.flush_when_due(now)
                    if flush_in is not None:
                        timeout = min(timeout, flush_in)
                for key, mask in selector.select(max(0.0, min(timeout, 0.5))):
                    key.data(mask)
        except BaseException as exc:  # a bug of ours: keep it for the caller, leave no process behind
            with lock:
                state.fail(exc)
                cmds = state.kill_all()
            _guarded(self.log, self.execute, cmds)
            _guarded(self.log, backend.shutdown)
        finally:
            if journal is not None:
                self._flush_journal(journal)
            if state.closing or state.stopped_on is not None:
                _guarded(self.log, self.shutdown)
            else:
                _guarded(self.log, backend.settle)
            if state.fatal and state.stopped_on is not None:
                self._fail_pending_futures(state.stopped_on)
            with self.idle:
                self.idle.notify_all()

    def _flush_journal(self, journal: Resume) -> None:
        """The loop ends: write what it recorded (an error is kept for start()/wait(), as a loop error is)."""
        try:
            journal.flush()
        except Exception as exc:
            with self.lock:
                self.state.fail(exc)

    def execute(self, cmds: list[Command], worker: int = -1) -> None:
        backend = self.backend
        for cmd in cmds:
            kind = type(cmd)
            if kind is SendJobs:
                self._send(cmd.worker, cmd.entries)  # type: ignore[union-attr]
            elif kind is Deliver:  # a job the state settled: died too often, timed out, cancelled while running
                entry = cmd.entry  # type: ignore[union-attr]
                job = entry._job
                if job is not None and job.start_ms and not job.stop_ms:  # it ran: it stops now, no result came
                    job.stop_ms = time.time() * 1000.0
                if self.on_result is not None:
                    self.on_result(self.state.workers[worker] if worker >= 0 else None, entry, None, None,
                                   cmd.result)  # type: ignore[union-attr]
                self.deliver(entry, cmd.result, cmd.failed, worker)  # type: ignore[union-attr]
            elif kind is StartWorker:
                backend.start_worker(cmd.worker)  # type: ignore[union-attr]
            elif kind is CloseWorker:
                backend.close_worker(cmd.worker)  # type: ignore[union-attr]
            elif kind is KillWorker:
                backend.kill_worker(cmd.worker, cmd.force)  # type: ignore[union-attr]
            elif kind is WithdrawJob:
                backend.withdraw_job(cmd.worker, cmd.entry)  # type: ignore[union-attr]
            # Fail: the state keeps the error and lowers the target; the loop ends when the workers are gone.

    def dispatch(self, now: float) -> None:
        """Send queued jobs to the workers with room (one at a time while ``before_start`` must see each)."""
        state, lock = self.state, self.lock
        before = self.before_start
        if before is None:
            with lock:
                sends = state.assign(now)
            for worker, entries in sends:
                self._send(worker, entries)
            return
        while True:
            with lock:
                sends = state.assign(now, limit=1)
            if not sends:
                return
            worker, entries = sends[0]
            entry = entries[0]
            try:
                before(self.sched, entry.job)
            except BaseException as exc:
                with lock:
                    state.unassign(worker, entry)
                    first = state.callback_failed(exc)
                if not first:
                    self.log(f"jobsched: another callback error while stopping: {type(exc).__name__}: {exc}")
                return
            self._send(worker, entries)

    def _send(self, worker: Worker, entries: list[Entry]) -> None:
        wall = time.time() * 1000.0
        for entry in entries:
            entry.job.start_ms = wall
            if not entry.sent:  # a re-queued job's future is RUNNING already
                entry.sent = True
                future = entry.future
                if future is not None:  # assign() drops cancelled jobs, but a cancel() may come in since
                    mark_running(future)
        self.backend.send_jobs(worker, entries)

    # ------------------------------------------------------------------ results

    def deliver(self, entry: Entry, result: Any, failed: bool, worker: int = -1) -> None:
        """Count the job done, resolve its future, run after_stop, then let it leave the active jobs.

        It is counted done first, so that whoever sees its future resolved reads stats that include it, and
        it stays active until the end, so that ``wait()`` cannot see the scheduler idle while a future is
        unresolved or an ``after_stop`` that may add jobs has yet to run. ``worker`` is the index of the
        worker that ran it (-1: none, or not known here), for the timeline.
        """
        timeline = self.timeline
        if timeline is not None:
            timeline.record(worker, entry, result, failed)
        release(entry.payload)  # its data's shared-memory segments, if any: never sent again
        with self.lock:
            self.state.finished(failed, cancelled=entry.cancelled, from_journal=entry.from_journal, worker=worker)
        future = entry.future
        if future is not None:
            # The future and its entry point at each other: a cycle that only the garbage collector would
            # free (a collector pass every few dozen jobs), holding the job's data until then.
            future.entry = None
            if failed and not entry.cancelled:
                future.rerun = rerun_info(entry)
            if entry.cancelled:
                force_cancel(future)  # cancel() said True: cancelled, even if it has not got there itself yet
            else:
                try:  # no done() first: set_result checks the state under the future's lock anyway
                    if failed:
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                except InvalidStateError:
                    pass  # cancelled meanwhile (a running job's future.cancel()), or settled: the first stands
        if failed and not entry.cancelled and self.failed_calls is not None:
            info = rerun_info(entry)
            if info is not None:
                self.failed_calls[entry.index] = info
                if len(self.failed_calls) > FAILED_CALLS_KEPT:
                    del self.failed_calls[next(iter(self.failed_calls))]
        after_stop = self.after_stop
        if after_stop is not None:
            try:
                after_stop(self.sched, entry.job, result)
            except BaseException as exc:
                with self.lock:
                    first = self.state.callback_failed(exc)
                if not first:
                    self.log(f"jobsched: another callback error while stopping: {type(exc).__name__}: {exc}")
        with self.lock:
            self.state.delivered()
            idle = self.state.is_idle()
        if idle:
            with self.idle:
                self.idle.notify_all()

    def _deliver_ready(self) -> None:
        ready = self.state.ready
        while ready:
            with self.lock:
                if not ready:
                    return
                entry, result, failed = ready.popleft()
            if entry.from_journal:
                entry.job.from_journal = True
            self.deliver(entry, result, failed)

    def _fail_pending_futures(self, error: BaseException) -> None:
        """The scheduler cannot go on: every future not yet settled gets the error rather than waiting forever."""
        with self.lock:
            doomed = self.state.drain_futures()
        for entry in doomed:
            future = entry.future
            if future is not None and not future.done():
                try:
                    future.set_exception(error)
                except InvalidStateError:
                    pass

    # ------------------------------------------------------------------ BackendEvents

    def post(self, fn: Callable[[], None]) -> None:
        self.inbox.append(fn)
        self.wake()

    def adopt_worker(self) -> Worker | None:
        with self.lock:
            return self.state.adopt(time.monotonic())

    def worker_spawned(self, w: Worker, pid: int | None) -> None:
        with self.lock:
            self.state.worker_spawned(w, pid)

    def worker_spawn_failed(self, w: Worker, message: str) -> None:
        with self.lock:
            cmds = self.state.worker_spawn_failed(w, message, time.monotonic())
        self.execute(cmds, w.index)

    def worker_ready(self, w: Worker) -> None:
        with self.lock:
            cmds = self.state.worker_ready(w, time.monotonic())
        self.execute(cmds)

    def frames(self, w: Worker, frames: Frames) -> None:
        """Results (and progress) from ``w``: account for them, send the next jobs, then deliver."""
        state, lock = self.state, self.lock
        now = time.monotonic()
        rss = self.backend.worker_rss(w) if state.max_worker_memory is not None else None
        done: list[tuple[Entry, int, Any]] = []
        with lock:
            for kind, index, body in frames:
                if kind == _PROGRESS:
                    progress = _decode_progress(body)
                    if progress is not None:
                        state.set_progress(w, index, progress)
                    continue
                entry = state.job_done(w, index, now, rss)
                if entry is None:
                    self.log(f"jobsched: worker {w.index} sent a result for job {index}, which it does not hold")
                    if kind == _RESULT:
                        _shm.discard(body)
                    break
                done.append((entry, kind, body))
        if not done:
            return
        wall = time.time() * 1000.0
        for entry, _, _ in done:
            entry.job.stop_ms = wall
        if self.after_stop is None:
            # No after_stop can queue a job that should go first: the free workers get their next jobs
            # before the results are even unpickled, so they do not wait for futures and their callbacks.
            if state.can_dispatch():
                self.dispatch(now)
            for entry, kind, body in done:
                result, failed = self._outcome(w, entry, kind, body)
                if failed is not None:
                    self.deliver(entry, result, failed, w.index)
        else:
            # after_stop may add jobs, or raise to stop everything: it runs before the next dispatch.
            for entry, kind, body in done:
                result, failed = self._outcome(w, entry, kind, body)
                if failed is not None:
                    self.deliver(entry, result, failed, w.index)
                if state.can_dispatch():
                    self.dispatch(time.monotonic())

    def _outcome(self, w: Worker, entry: Entry, kind: int, body: Any) -> tuple[Any, bool | None]:
        """Decode a finished job's result (and journal it); a job cancelled meanwhile is ``JobCancelled``.

        ``failed`` is None when the job raised an error of its ``retry_on`` and went back to the queue.
        """
        if entry.cancelled:
            # cancel() said True while this result was on its way: the cancel stands, the result is dropped.
            if kind == _RESULT:
                _shm.discard(body)  # its segments, unread
            return self.state._cancelled_error(entry), True
        result, failed = decode(entry, kind, body)
        if failed:
            if entry.retry_on and kind == _ERROR:
                with self.lock:
                    retried = self.state.job_raised(entry, _error_types(body), result.remote_type, time.monotonic())
                if retried:
                    self.wake()  # the loop looks at the queue again (a delayed retry: at its tick)
                    return None, None
            result.attempts = entry.attempts + 1
        if self.on_result is not None:  # a result that cannot be unpickled here is journaled as the failure it is
            self.on_result(w, entry, _ERROR if failed else kind, body, result)
        return result, failed

    def connection_lost(self, w: Worker, protocol_error: str | None) -> None:
        if protocol_error is not None:
            self.log(f"jobsched: worker {w.index} broke the protocol ({protocol_error}); it is replaced")
        with self.lock:
            self.state.connection_lost(w, time.monotonic(),
                                       KillReason.PROTOCOL if protocol_error else KillReason.CLOSED_CONNECTION)

    def worker_exited(self, w: Worker, description: str, clean: bool, crashed: bool = True) -> None:
        with self.lock:
            cmds = self.state.worker_exited(w, description, clean, time.monotonic(), tail(w), crashed)
        self.execute(cmds, w.index)

    def request_tick(self) -> None:
        self.state.maintain_at = 0.0
        self.wake()

    def backend_failed(self, error: BaseException) -> None:
        # Not fatal to the jobs: dispatch stops and the error is raised, as for a callback that raised; queued
        # jobs (and their futures) stay queued for a later start() or close().
        with self.lock:
            self.state.callback_failed(error)

    def log(self, message: str) -> None:
        write_stderr(message + "\n")


FAILED_CALLS_KEPT = 1000  # failed jobs whose call Scheduler.rerun_here can run (the journal keeps them all)


def rerun_info(entry: Entry) -> tuple[bytes, int | None, str] | None:
    """What ``rerun_here`` needs of a failed job: its call as sent, its seed, the working directory."""
    payload = entry.payload
    if not isinstance(payload, (bytes, bytearray)) or _shm.is_oob(payload):
        return None  # data in shared memory: released with the job
    return bytes(payload), entry.seed, os.getcwd()


def _guarded(log: Callable[[str], None], fn: Callable[..., Any], *args: Any) -> None:
    """Run a step of the loop's emergency stop; report a failure and go on to the next step."""
    try:
        fn(*args)
    except BaseException as exc:
        log(f"jobsched: while stopping after an internal error: {type(exc).__name__}: {exc}")


def decode(entry: Entry, kind: int, body: Any) -> tuple[Any, bool]:
    """Return ``(result, failed)`` from a RESULT or ERROR frame's body.

    Nothing in the body can escape: a result whose unpickling raises anything, ``SystemExit`` and
    ``KeyboardInterrupt`` included, becomes this job's ``JobError``, of that error's class too where
    ``remote_errors.job_error`` can combine it (an ``UnpicklingError`` stays one).
    """
    try:
        if kind == _ERROR:
            fields = loads(body)  # (type, message, traceback[, module, qualname, type names]): see _local.wire
            module, qualname = (fields[3], fields[4]) if len(fields) >= 5 else (None, None)
            return job_error(str(fields[0]), str(fields[1]), str(fields[2]), entry.index, entry.attempts + 1,
                             module if type(module) is str else None, qualname if type(qualname) is str else None
                             ), True
        return load_result(body, entry.payload), False  # large buffers mapped from shared memory (_shm)
    except BaseException as exc:
        try:
            why = f"{type(exc).__name__}: {exc}"
        except BaseException:
            why = type(exc).__name__
        message = f"the result could not be unpickled here ({why})"
        try:  # the error's own class, as for a job's error (it is a class of this process)
            cls = type(exc)
            return job_error(cls.__name__, message, "", entry.index, entry.attempts + 1, cls.__module__,
                             cls.__qualname__), True
        except BaseException:
            return JobError(type(exc).__name__, message, "", entry.index), True


def _error_types(body: Any) -> tuple[str, ...]:
    """The ``module.qualname`` of each class in the MRO of the exception an ERROR frame reports (see ``_wire``)."""
    try:
        error = loads(body)
        types = error[5] if len(error) > 5 else ()
        return tuple(t for t in types if isinstance(t, str))
    except BaseException:
        return ()


def _decode_progress(body: Any) -> Progress | None:
    try:
        done, total, note = loads(body)
        return Progress(done, total, str(note))
    except BaseException:
        return None
