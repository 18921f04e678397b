"""The scheduler: a priority queue of jobs, K worker processes, and one thread that owns them all.

::

    caller threads                         scheduler thread ("jobsched-scheduler")
    ──────────────                         ───────────────────────────────────────
    add_job / submit ──pickle──> heap ───> dispatch: pop lowest (cost, index) for a READY worker
        (TypeError here,         (lock)      │  before_start(sched, job)
         queue untouched)                    ▼
    scale / pause / close ──> inbox ──>  send JOB ──TCP──> worker process (python -m jobsched.worker)
                            + wakeup         ▲                  │ run_job(job)
                                             │                  ▼
    Future.result() <─────────────────── collect RESULT/ERROR <─TCP
    wait() / start(wait=True) <── idle ──  after_stop(sched, job, result)  (may add jobs)
                                          reap: a dead worker (pidfd) → restart it, re-queue its job

**Caller threads** pickle job data at once (so bad input fails in the caller and the queue is left as it
was) and push it onto the heap under a lock; a byte on the wakeup socket tells the scheduler thread.
Commands that change workers (scale, pause, close) go through the inbox and run on the scheduler thread.

**The scheduler thread** runs ``_serve``: a ``selectors`` loop over the listening socket, the wakeup socket
and, per worker, its TCP connection, its output pipe and its pidfd (which becomes readable when the process
exits, so a dead worker is noticed at once, not by polling). A job leaves the queue only when a worker has
room for it (one job by default, ``prefetch`` jobs if asked), so priorities and callbacks behave as in the
manual. Callbacks and futures' callbacks run on this thread. It is the "jobsched-scheduler" thread in the
background (``start(wait=False)``, and whenever the scheduler already runs); a blocking ``start()`` of a
stopped scheduler runs the loop in its own thread instead, as the manual's scheduler-start does, so that
no job crosses a thread (see ``_serve_here``). One loop runs at a time, in one thread.

**Workers** are separate interpreters, each with one authenticated TCP connection (see ``_wire``). A worker
that dies is replaced and its job re-queued; after ``max_retries`` deaths on one job, the job fails with a
``JobError``. Workers that die before they are ready, again and again, stop the scheduler with a
``WorkerStartupError`` quoting their output.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import heapq
import itertools
import math
import os
import selectors
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from . import _wire
from ._pickling import dumps, loads
from ._pool import Worker, describe_exit, pidfd_open, resident_memory, signal_process, spawn
from .commands import processor_count
from .errors import JobError, JobTimeout, SchedulerClosedError, WorkerStartupError
from .job import Job
from .remote_call import RemoteCall, payload_of, remote_call
from .states import WorkerState

if TYPE_CHECKING:
    from ._backend import Backend

T = TypeVar("T")

BeforeStart = Callable[["Scheduler", Job], object]
AfterStop = Callable[["Scheduler", Job, Any], object]

STARTUP_FAILURE_LIMIT = 3  # workers dying before ready, in a row, before the scheduler gives up
CLOSE_GRACE = 10.0  # seconds a closing worker has to exit before SIGTERM, then as long again before SIGKILL
MAX_RESTART_DELAY = 5.0
_TICK = 0.5  # longest sleep of the loop when nothing is due (a safety net, not the way events arrive)

# Where this jobsched lives: put first on a worker's path so that it runs the same code as its scheduler.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_live: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for sched in list(_live):
        sched.close(timeout=2.0)


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where an interrupt must not end the scheduler)."""
    return "ipykernel" in sys.modules and type(sys.stdout).__name__ == "OutStream"


def default_worker_command(worker_index: int) -> list[str]:
    """The default worker: ``python -m jobsched.worker``, which runs remote calls."""
    return [sys.executable, "-m", "jobsched.worker"]


class _Entry:
    """A job in the scheduler's hands, with what the scheduler needs to deliver its result.

    A queued job costs this object, its pickled bytes (held once, here) and the heap's (cost, index,
    entry) tuple. The ``Job`` record that callbacks and ``Worker.job`` show is made when the job is
    first dispatched: a million queued jobs do not carry a million ``Job`` objects.
    """

    __slots__ = ("index", "cost", "data", "_job", "payload", "future", "timeout", "max_retries",
                 "retry_on_timeout", "deaths", "timed_out", "sent")

    def __init__(self, index: int, cost: float, data: Any, payload: bytes, future: Future[Any] | None,
                 timeout: float | None, max_retries: int, retry_on_timeout: bool) -> None:
        self.index = index
        self.cost = cost
        self.data = data
        self._job: Job | None = None
        self.payload = payload
        self.future = future
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_on_timeout = retry_on_timeout
        self.deaths: list[str] | None = None  # "worker 2 (pid 123) killed by signal SIGKILL", ...
        self.timed_out = False
        self.sent = False  # dispatched at least once: its future is RUNNING (a re-queued job's stays so)

    @property
    def job(self) -> Job:
        """The job's ``Job`` record, made on first use."""
        job = self._job
        if job is None:
            job = self._job = Job(self.index, self.cost, self.data)
        return job


class _JobFuture(Future[T]):
    """The future of a submitted job: cancelling it while it waits in the queue is counted at once.

    (Instead of a done-callback on every future, which would cost a call per job for the rare cancel.)
    """

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self._scheduler = scheduler
        self.counted_as_cancelled = False

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._scheduler._on_cancel(self)
        return True


class Scheduler:
    """A job queue ordered by cost, served by worker processes.

    Args:
        make_worker_command: ``make_worker_command(worker_index) -> argv`` starting one worker process
            (see ``make_python_cmd``). Default: ``python -m jobsched.worker``, which runs remote calls.
        max_retries: a job whose worker dies this many times fails with ``JobError`` (default 3).
        timeout: default per-job time limit in seconds (None: no limit). A job over its limit has its
            worker killed and replaced, and fails with ``JobTimeout``.
        retry_on_timeout: re-run a job that timed out, as if its worker had died (it counts against
            ``max_retries``; the last failure is still a ``JobTimeout``).
        max_jobs_per_worker: replace a worker by a fresh process after this many jobs (None: never), like
            ``max_tasks_per_child``; for code that leaks memory or state.
        max_worker_memory: replace a worker, between two jobs, once its resident memory (RSS) exceeds this
            many bytes (None: never).
        prefetch: jobs sent ahead to each worker (default 1: a job leaves the queue only when a worker is
            free, as in the manual). More hides the round-trip for streams of tiny jobs, at the price of
            strict priority order: up to ``prefetch - 1`` jobs per worker are committed before a cheaper
            job added later.
        echo_output: copy each line that a worker prints to this process's stderr, prefixed with
            ``[worker N]`` (in a Jupyter kernel: to the kernel's own stderr, never into a cell).
        backend: run the jobs somewhere else than local worker processes, e.g.
            ``jobsched.dask.DaskBackend(client_or_address)``; ``workers`` then lists the backend's slots.
    """

    def __init__(
        self,
        make_worker_command: Callable[[int], list[str]] | None = None,
        *,
        max_retries: int = 3,
        timeout: float | None = None,
        retry_on_timeout: bool = False,
        max_jobs_per_worker: int | None = None,
        max_worker_memory: int | None = None,
        prefetch: int = 1,
        echo_output: bool = True,
        backend: Backend | None = None,
    ) -> None:
        if make_worker_command is not None and not callable(make_worker_command):
            raise TypeError(
                "Scheduler: make_worker_command must be a function worker_index -> argv, "
                f"got {type(make_worker_command).__name__}; see make_python_cmd"
            )
        _check_positive_int("Scheduler: max_retries", max_retries)
        _check_positive_int("Scheduler: prefetch", prefetch)
        _check_timeout("Scheduler", timeout)
        if max_jobs_per_worker is not None:
            _check_positive_int("Scheduler: max_jobs_per_worker", max_jobs_per_worker)
        if max_worker_memory is not None:
            _check_positive_int("Scheduler: max_worker_memory (bytes)", max_worker_memory)
        self.make_worker_command = make_worker_command or default_worker_command
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_on_timeout = retry_on_timeout
        self.max_jobs_per_worker = max_jobs_per_worker
        self.max_worker_memory = max_worker_memory
        self.prefetch = prefetch
        self.echo_output = echo_output

        self._lock = threading.Lock()  # guards the heap and the counters that callers read
        self._heap: list[tuple[float, int, _Entry]] = []
        self._counter = itertools.count()
        self._n_cancelled_queued = 0
        self._n_active = 0
        self._n_done = 0
        self._n_failed = 0
        self._n_restarts = 0
        self._started_at: float | None = None
        self._rate_samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)

        self._workers: list[Worker] = []
        self._n_target = 0
        self._hungry: collections.deque[Worker] = collections.deque()
        self._paused = False
        self._until_idle = False
        self._close_when_idle = True
        self._closing = False  # close(): every worker goes, then the loop ends
        self._closed = False
        self._error: BaseException | None = None  # raised by the next start()/wait()
        self._fatal = False  # the error is the scheduler's own (not a callback's): fail waiting futures
        self._before_start: BeforeStart | None = None
        self._after_stop: AfterStop | None = None
        self._startup_failures = 0
        self._last_startup_output = ""
        self._maintain_at = 0.0
        self._close_grace = CLOSE_GRACE

        self._inbox: collections.deque[Callable[[], None]] = collections.deque()
        self._thread: threading.Thread | None = None  # the thread running the loop (see _serve_here)
        self._loop_done = threading.Event()  # set while no loop runs
        self._loop_done.set()
        self._interrupted = False  # Ctrl-C during a blocking start() that runs the loop in its thread
        self._idle = threading.Condition(threading.Lock())
        self._secret = _wire.new_secret()
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        # ---- backend seam (jobsched.dask): slots and transport come from the backend, not from processes.
        self._backend = backend
        if backend is not None:
            backend.attach(self)  # refuses what it cannot run (worker files, prefetch) before anything starts
        _live.add(self)

    # ------------------------------------------------------------------ adding jobs (any thread)

    def add_job(self, data: Any, cost: float = 0, *, timeout: float | None = None,
                max_retries: int | None = None, retry_on_timeout: bool | None = None) -> int:
        """Queue a job; it goes to the next free worker after every job of lower ``cost``.

        Args:
            data: what the worker's ``run`` / ``run_job`` receives; must pickle.
            cost: priority, lowest first; equal costs run in the order they were added.
            timeout: time limit in seconds for this job (default: the scheduler's).
            max_retries: worker deaths this job may cause before it fails (default: the scheduler's).
            retry_on_timeout: re-run the job if it times out (default: the scheduler's).

        Returns:
            The number of jobs now waiting in the queue.

        Raises:
            TypeError: ``data`` cannot be pickled, or ``cost`` is not a number (the queue is unchanged).
        """
        self._push(data, cost, None, timeout, max_retries, retry_on_timeout)
        return self.n_queued_jobs

    def submit(self, fn: Callable[..., T], /, *args: Any, cost: float = 0, timeout: float | None = None,
               max_retries: int | None = None, retry_on_timeout: bool | None = None, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a worker; return a ``concurrent.futures.Future`` of its result.

        The scheduler's workers must run remote calls (the default worker does). If ``fn`` raises, the
        future raises a ``JobError`` carrying the remote traceback. ``cost``, ``timeout``, ``max_retries``
        and ``retry_on_timeout`` are as for ``add_job`` (and so cannot be keyword arguments of ``fn``).
        """
        rc = fn if isinstance(fn, RemoteCall) and not args and not kwargs else remote_call(fn, *args, **kwargs)
        future: Future[T] = _JobFuture(self)
        self._push(rc, cost, future, timeout, max_retries, retry_on_timeout)
        return future

    def _push(self, data: Any, cost: float, future: Future[Any] | None, timeout: float | None,
              max_retries: int | None, retry_on_timeout: bool | None = None) -> _Entry:
        _check_cost(cost)
        _check_timeout("add_job", timeout)
        if max_retries is not None:
            _check_positive_int("add_job: max_retries", max_retries)
        payload = payload_of(data) if isinstance(data, RemoteCall) else dumps(data, "add_job: data")
        if self._closed:
            raise SchedulerClosedError("this scheduler is closed; create a new Scheduler to run more jobs")
        entry = _Entry(-1, cost, data, payload, future,
                       self.timeout if timeout is None else timeout,
                       self.max_retries if max_retries is None else max_retries,
                       self.retry_on_timeout if retry_on_timeout is None else retry_on_timeout)
        # The lock is held for as few bytecodes as possible: a caller thread that loses the GIL while
        # holding it would stall the scheduler thread until the caller gets the GIL back.
        with self._lock:
            entry.index = index = next(self._counter)
            # The scheduler thread looks at a non-empty queue again whenever a worker frees up, so only
            # the job that makes the queue non-empty needs to wake it: one syscall per burst, not per job.
            was_empty = not self._heap
            heapq.heappush(self._heap, (cost, index, entry))
        if was_empty:
            self._wake()
        return entry

    def _on_cancel(self, future: _JobFuture[Any]) -> None:
        """A queued future was cancelled: it stays in the heap, skipped when popped, but is no longer queued."""
        with self._lock:
            if future.counted_as_cancelled:
                return
            future.counted_as_cancelled = True
            self._n_cancelled_queued += 1
        self._notify_if_idle()

    # ------------------------------------------------------------------ reading state (any thread)

    @property
    def n_queued_jobs(self) -> int:
        """Jobs waiting in the queue."""
        return len(self._heap) - self._n_cancelled_queued

    @property
    def n_active_jobs(self) -> int:
        """Jobs sent to a worker whose result has not come back yet."""
        return self._n_active

    @property
    def n_workers(self) -> int:
        """The number of workers the scheduler keeps running."""
        return self._n_target

    @property
    def workers(self) -> list[Worker]:
        """The worker slots that exist now (index, pid, state, job, n_done, n_restarts)."""
        return [w for w in list(self._workers) if w.index < self._n_target or w.state is not WorkerState.CLOSED]

    @property
    def running(self) -> bool:
        """Whether the scheduler thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def address(self) -> tuple[str, int] | None:
        """The (host, port) the scheduler listens on, once started."""
        return self._address

    def stats(self) -> dict[str, Any]:
        """Return a snapshot: queued, active, done, failed, workers, jobs_per_s, and a few more."""
        now = time.monotonic()
        done = self._n_done
        rate = 0.0
        for t, n in list(self._rate_samples):
            if now - t <= 5.0:
                if now - t > 0.2:
                    rate = (done - n) / (now - t)
                break
        live = [w for w in self.workers if w.state is not WorkerState.CLOSED]
        error = self._error
        return {
            "queued": self.n_queued_jobs,
            "active": self._n_active,
            "done": done,
            "failed": self._n_failed,
            "workers": len(live),
            "busy": sum(1 for w in live if w.state is WorkerState.RUNNING),
            "target_workers": self._n_target,
            "jobs_per_s": rate,
            "restarts": self._n_restarts,
            "paused": self._paused,
            "running": self.running,
            "closed": self._closed,
            "elapsed_s": now - self._started_at if self._started_at is not None else 0.0,
            "error": f"{type(error).__name__}: {error}" if error is not None else None,
        }

    def dashboard(self) -> Any:
        """Return a live ipywidgets dashboard of this scheduler (needs ``jobsched[notebook]``)."""
        try:
            from .notebook.dashboard import Dashboard
        except ImportError as exc:
            raise ImportError(
                f"Scheduler.dashboard() needs ipywidgets ({exc}): pip install 'jobsched[notebook]'"
            ) from exc
        return Dashboard(self)

    def _ipython_display_(self) -> None:
        """``display(sched)`` in a notebook shows the dashboard."""
        from IPython.display import display

        display(self.dashboard())  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        s = self.stats()
        mode = "closed" if s["closed"] else "paused" if s["paused"] else "running" if s["running"] else "stopped"
        return (f"<Scheduler {mode}: {s['workers']} workers, {s['queued']} queued, {s['active']} active, "
                f"{s['done']} done, {s['failed']} failed>")

    # ------------------------------------------------------------------ running

    def start(
        self,
        n_workers: int | None = None,
        before_start: BeforeStart | None = None,
        after_stop: AfterStop | None = None,
        close_workers: bool = True,
        wait: bool = True,
    ) -> None:
        """Run the queued jobs (and those added meanwhile) on ``n_workers`` workers.

        Args:
            n_workers: workers to run. None keeps the current count, or ``processor_count()`` if there are
                none. Extra running workers are closed.
            before_start: ``before_start(sched, job)``, called before a job is sent; may add jobs.
            after_stop: ``after_stop(sched, job, result)``, called with each result (a ``JobError`` if the
                job failed); may add jobs.
            close_workers: close the workers when every job is done (blocking mode only); False keeps
                them for the next ``start``.
            wait: block until no job is queued or active (the manual's behaviour). False returns at once
                and leaves the scheduler running in the background until ``close()``.

        Raises:
            ValueError: no workers for the queued jobs.
            WorkerStartupError: the workers could not start.
            Exception: whatever ``before_start`` or ``after_stop`` raised (dispatch stopped, workers closed).
        """
        if self._closed:
            raise SchedulerClosedError("this scheduler is closed; create a new Scheduler")
        if n_workers is not None:
            _check_n_workers(n_workers)
        if n_workers is None and not self._n_target and self._backend is not None:  # backend seam
            n_workers = self._backend.default_n_workers()  # every thread of the cluster, not our CPUs
        target = n_workers if n_workers is not None else (self._n_target or processor_count())
        if wait and target == 0 and self.n_queued_jobs:
            raise ValueError(
                f"start: {self.n_queued_jobs} jobs are queued but n_workers=0; pass n_workers >= 1"
            )
        self._raise_error()
        self._before_start, self._after_stop = before_start, after_stop

        def configure() -> None:
            self._n_target = target
            self._until_idle = wait
            self._close_when_idle = close_workers
            self._maintain_at = 0.0

        if wait and not self.running:
            configure()
            if self._serve_here():
                return
        self._run(configure)
        if wait:
            self._wait_blocking(None, until_stopped=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or active; return False if ``timeout`` seconds passed first.

        Raises:
            Exception: an error kept from the background run (a callback that raised, workers that could
                not start); it is raised once.
        """
        return self._wait_blocking(timeout)

    def scale(self, n_workers: int) -> None:
        """Change the number of workers now; busy workers beyond the new count finish their job first."""
        _check_n_workers(n_workers)

        def command() -> None:
            self._n_target = n_workers
            self._maintain_at = 0.0

        self._command(command)

    def pause(self) -> None:
        """Stop handing out jobs; running jobs finish."""
        self._paused = True

    def resume(self) -> None:
        """Hand out jobs again after ``pause``."""
        self._paused = False
        self._wake()

    def close(self, timeout: float | None = CLOSE_GRACE) -> None:
        """Close every worker gracefully and stop the scheduler thread. Idempotent.

        Each worker finishes the job it runs (its result is delivered), then exits. A worker still alive
        ``timeout`` seconds later is sent SIGTERM, then SIGKILL. Queued jobs stay queued; their futures are
        cancelled.
        """
        if self._closed:
            return
        grace = CLOSE_GRACE if timeout is None else timeout

        def command() -> None:
            self._closing = True
            self._close_grace = grace
            self._n_target = 0
            self._maintain_at = 0.0

        if not self.running and all(w.state is WorkerState.CLOSED for w in self._workers):
            command()
            self._shutdown()  # nothing to wait for: no thread, no process
        else:
            self._run(command, wait=False)
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                self._wait_for_loop_end()
        self._closed = True
        with self._lock:
            queued = [entry for _, _, entry in self._heap]
        for entry in queued:
            future = entry.future
            if future is not None and not future.cancel() and not future.done():
                # Its worker was terminated at the end of the grace period and the job went back to the
                # queue: a running future cannot be cancelled, so it gets the reason instead of hanging.
                future.set_exception(SchedulerClosedError(
                    f"job {entry.job.index} was still running when close() terminated its worker; "
                    "give close() a longer timeout to let jobs finish"))
        if self._backend is not None:  # ---- backend seam: release the cluster (and a client jobsched opened)
            self._backend.close()
        _live.discard(self)

    def _wait_for_loop_end(self) -> None:
        """Wait until the loop has stopped (not join(): it may be running in a blocked start()'s thread).

        Ctrl-C meanwhile stops waiting for the grace period: every worker is killed now (their jobs stay
        queued), then KeyboardInterrupt is raised.
        """
        ctrl_c: list[bool] = []
        killing = False
        with _sigint_held(lambda: ctrl_c.append(True)):
            while not self._loop_done.wait(0.1):
                if ctrl_c and not killing:
                    killing = True
                    self._command(self._kill_all)
        if ctrl_c:
            raise KeyboardInterrupt

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers for callers

    def _command(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the scheduler thread (directly if it is not running)."""
        if self.running and threading.current_thread() is not self._thread:
            self._inbox.append(command)
            self._wake()
        else:
            command()
            self._wake()

    def _run(self, command: Callable[[], None], wait: bool = False) -> None:
        """Apply ``command`` and make sure the scheduler thread runs."""
        if self.running:
            self._command(command)
            return
        command()
        self._open()
        self._loop_done.clear()
        self._thread = threading.Thread(target=self._serve, name="jobsched-scheduler", daemon=True)
        self._thread.start()

    def _serve_here(self) -> bool:
        """Run the loop in the calling thread until the jobs are done, as the manual's scheduler-start does.

        No thread is started and no job crosses threads: a blocking start() of one job costs about one
        round trip to a worker, not a thread start and two thread hand-offs. Ctrl-C (SIGINT) only sets a
        flag and wakes the loop, which stops between two events, never in the middle of one: then, as
        with a background thread, a Jupyter kernel keeps the jobs running in the background and a script
        closes everything.

        Returns False, having done nothing, in the main thread of a program with its own SIGINT handler:
        that handler stays in charge, and the loop runs on a thread of its own.
        """
        self._open()
        with _sigint_held(self._on_sigint) as held:
            if not held:
                return False
            self._loop_done.clear()
            self._thread = threading.current_thread()
            try:
                self._serve()
            finally:
                self._thread = None
        if self._interrupted:
            self._interrupted = False
            self._after_interrupt()
            raise KeyboardInterrupt
        self._raise_error()
        return True

    def _on_sigint(self) -> None:
        self._interrupted = True
        wake = self._wake_w
        if wake is not None:  # the loop may be blocked in select(), which a handled signal does not end
            try:
                wake.send(b"\0")
            except OSError:
                pass

    def _wake(self) -> None:
        w, loop = self._wake_w, self._thread
        if w is not None and loop is not None and threading.current_thread() is not loop:  # no loop: none to wake
            try:
                w.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # a wakeup is already pending, or the loop is gone

    def _is_idle(self) -> bool:
        return self.n_queued_jobs == 0 and self._n_active == 0

    def _notify_if_idle(self) -> None:
        if self._is_idle():
            with self._idle:
                self._idle.notify_all()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        self._fatal = False
        if error is not None:
            raise error

    def _wait_blocking(self, timeout: float | None, until_stopped: bool = False) -> bool:
        """Wait until idle (``wait``) or until the scheduler thread has stopped (``start(wait=True)``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ctrl_c: list[bool] = []  # Ctrl-C, held back to the top of the loop (see _sigint_held)
        try:
            with _sigint_held(lambda: ctrl_c.append(True)):
                while True:
                    if ctrl_c:
                        raise KeyboardInterrupt
                    running = self.running
                    if until_stopped:
                        if not running:
                            self._raise_error()
                            return True
                    else:
                        if self._error is not None:
                            self._raise_error()
                        if self._is_idle():
                            return True
                        if not running:
                            if self._closed:
                                raise SchedulerClosedError(
                                    f"the scheduler is closed with {self.n_queued_jobs} jobs queued; "
                                    "they will not run")
                            raise RuntimeError(
                                f"wait: {self.n_queued_jobs} jobs are queued but the scheduler is not running; "
                                "call start() first"
                            )
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    # Short slices: Ctrl-C / Jupyter's interrupt gets control back at once.
                    with self._idle:
                        self._idle.wait(0.1 if remaining is None else min(0.1, remaining))
        except KeyboardInterrupt:
            self._after_interrupt()
            raise

    def _after_interrupt(self) -> None:
        """Ctrl-C reached a blocking call: a Jupyter kernel keeps the jobs going, a script closes everything.

        In a kernel the loop goes on in the background (the running one, or a thread that takes over from
        a blocking start()'s own loop), and start() or wait() again picks up where this left off.
        """
        if _in_kernel():
            self._until_idle = False
            self._run(lambda: None)
        else:
            self.close(timeout=0.5)

    # ------------------------------------------------------------------ the scheduler thread

    def _open(self) -> None:
        """Create the listening socket, the selector and the wakeup pair (once)."""
        if self._selector is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((_wire.HOST, 0))
        listener.listen(1024)
        listener.setblocking(False)
        self._listener = listener
        self._address = listener.getsockname()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, self._on_accept)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._started_at = time.monotonic()
        self._pending: dict[socket.socket, _Pending] = {}

    def _serve(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while not self._interrupted:
                while self._inbox:
                    self._inbox.popleft()()
                now = time.monotonic()
                if now >= self._maintain_at:
                    self._maintain(now)
                if self._heap and self._hungry and not self._paused and not self._closing:
                    self._dispatch()
                if self._finished():
                    break
                timeout = max(0.0, min(self._maintain_at - time.monotonic(), _TICK))
                for key, mask in selector.select(timeout):
                    key.data(mask)
        except BaseException as exc:  # a bug: keep it for the caller, leave no process behind
            if self._error is None:
                self._error = exc
                self._fatal = True
            self._kill_all()
        finally:
            if self._closing or self._error is not None:
                self._shutdown()
            if self._fatal and self._error is not None:
                self._fail_queued_futures(self._error)
            with self._idle:
                self._idle.notify_all()
            self._loop_done.set()

    def _finished(self) -> bool:
        if self._closing or self._error is not None:
            return all(w.state is WorkerState.CLOSED for w in self._workers)
        if self._until_idle and self._is_idle():
            if not self._close_when_idle:  # keep the workers, once the extra ones are gone
                return all(w.state is WorkerState.CLOSED for w in self._workers[self._n_target:])
            if self._n_target:
                self._n_target = 0
                self._maintain_at = 0.0
                return False
            return all(w.state is WorkerState.CLOSED for w in self._workers)
        return False

    def _shutdown(self) -> None:
        """Release the sockets and descriptors once every worker is gone."""
        self._kill_all()
        selector = self._selector
        if selector is None:
            return
        for sock in list(self._pending):
            sock.close()
        self._pending.clear()
        for obj in (self._listener, self._wake_r, self._wake_w):
            if obj is not None:
                obj.close()
        selector.close()
        self._selector = self._listener = self._wake_r = self._wake_w = None
        if self._closing:
            self._closed = True

    def _fail_queued_futures(self, error: BaseException) -> None:
        """The scheduler cannot go on: a queued future gets the error rather than waiting forever."""
        with self._lock:
            doomed = [entry for _, _, entry in self._heap if entry.future is not None]
            self._heap[:] = [item for item in self._heap if item[2].future is None]
            heapq.heapify(self._heap)
            self._n_cancelled_queued = 0
        for entry in doomed:
            assert entry.future is not None
            if not entry.future.done():
                entry.future.set_exception(error)
        self._notify_if_idle()

    def _kill_all(self) -> None:
        """Last resort (fatal error, close timeout): SIGKILL every live worker and reap it."""
        for w in self._workers:
            if w.proc is not None and w.state is not WorkerState.CLOSED:
                w.kill_reason = "terminated"  # its jobs go back to the queue, no death counted
                signal_process(w.proc, signal.SIGKILL)
                w.proc.wait()
                self._on_exit(w)

    def _on_wake(self, mask: int) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    # ---- maintain: start, restart, retire and time out workers

    def _maintain(self, now: float) -> None:
        if self._backend is not None:  # ---- backend seam: the backend opens, retires and times out its slots
            self._sample_rate(now)
            self._maintain_at = self._backend.maintain(now)
            return
        self._sample_rate(now)
        next_at = now + _TICK
        if self._pending:
            self._expire_handshakes(now)
            next_at = min([next_at, *(p.deadline for p in self._pending.values())])
        for index in range(len(self._workers), self._n_target):
            self._workers.append(Worker(index))
        for w in self._workers:
            state = w.state
            if w.index < self._n_target and not self._closing:
                if state is WorkerState.CLOSED:
                    if now >= w.restart_at:
                        self._start_worker(w, now)
                    else:
                        next_at = min(next_at, w.restart_at)
                        continue
            elif state is not WorkerState.CLOSED and state is not WorkerState.CLOSING:
                w.retiring = True
                # Scaling down lets a busy worker finish first; close() starts its grace period now.
                if not w.inflight or self._closing:
                    self._close_worker(w, now)
            state = w.state
            if w.pidfd < 0 and w.proc is not None and state is not WorkerState.CLOSED and w.proc.poll() is not None:
                self._on_exit(w)  # no pidfd on this system: this tick is how an exit is noticed
                continue
            if state is WorkerState.STARTING or state is WorkerState.CLOSING:
                if now >= w.deadline:
                    self._overdue(w, now)
                next_at = min(next_at, w.deadline)
            elif state is WorkerState.RUNNING:
                entry = w.inflight[0]
                if entry.timeout is not None:
                    limit = w.job_started + entry.timeout
                    if now >= limit and w.kill_reason is None:
                        entry.timed_out = True
                        w.kill_reason = "timeout"
                        self._kill(w)
                    next_at = min(next_at, limit)
        self._maintain_at = next_at

    def _sample_rate(self, now: float) -> None:
        """Record (time, jobs done) every 0.25 s at most: ``stats()`` derives jobs/s from these samples."""
        if self._n_done and (not self._rate_samples or now - self._rate_samples[-1][0] >= 0.25):
            self._rate_samples.append((now, self._n_done))

    def _start_worker(self, w: Worker, now: float) -> None:
        w.generation += 1
        w.retiring = False
        w.n_jobs_this_process = 0
        w.move(WorkerState.STARTING)
        w.kill_reason = None
        w.exit_description = None
        w.started_at = now
        w.deadline = now + max(60.0, _wire.HANDSHAKE_TIMEOUT)
        assert self._address is not None
        env = dict(os.environ)
        env[_wire.ENV_ADDRESS] = f"{self._address[0]}:{self._address[1]}"
        env[_wire.ENV_WORKER] = f"{w.index}:{w.generation}"
        env[_wire.ENV_SYS_PATH] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            argv = [os.fspath(a) for a in self.make_worker_command(w.index)]
            w.proc = spawn(argv, env, self._secret)
        except Exception as exc:
            w.proc = None
            w.pid = None
            w.move(WorkerState.CLOSED)
            w.exit_description = f"could not be started: {exc}"
            self._count_startup_failure(w, f"{type(exc).__name__}: {exc}")
            return
        w.pid = w.proc.pid
        assert self._selector is not None and w.proc.stdout is not None
        w.out_fd = w.proc.stdout.fileno()
        self._selector.register(w.out_fd, selectors.EVENT_READ, lambda mask, w=w: self._on_output(w))
        w.pidfd = pidfd_open(w.pid)
        if w.pidfd >= 0:
            self._selector.register(w.pidfd, selectors.EVENT_READ, lambda mask, w=w: self._on_pidfd(w))

    def _close_worker(self, w: Worker, now: float) -> None:
        """Ask a worker to exit; it has a grace period before it is terminated."""
        w.retiring = True
        if w.state is WorkerState.READY or w.state is WorkerState.RUNNING:
            # A busy worker reads CLOSE after its job: its result still arrives, then it exits.
            w.deadline = now + self._close_grace
            self._send(w, _wire.frame(_wire.CLOSE, 0))
            w.move(WorkerState.CLOSING)
        elif w.state is WorkerState.STARTING:
            if self._error is not None:  # the scheduler is failing: no need to wait for it
                self._retire_unconnected(w)
            else:
                # Let it connect, then it gets CLOSE (and its code after start_worker runs); _overdue
                # kills it if it has not connected by the end of the grace period. min(): called every tick.
                w.deadline = min(w.deadline, now + self._close_grace)

    def _retire_unconnected(self, w: Worker) -> None:
        """Kill a worker that is being closed before it connected: an expected exit, no restart."""
        w.kill_reason = "retired"
        w.move(WorkerState.CLOSING)
        self._kill(w)

    def _overdue(self, w: Worker, now: float) -> None:
        """A worker missed its deadline: too slow to connect, or too slow to exit when closed."""
        if w.state is WorkerState.STARTING:
            if w.retiring:
                self._retire_unconnected(w)
            else:
                w.kill_reason = "did not connect in time"
                self._kill(w)
            w.deadline = now + 5.0
        elif w.proc is not None:
            escalate = w.kill_reason == "terminated"
            w.kill_reason = "killed after the close grace period" if escalate else "terminated"
            signal_process(w.proc, signal.SIGKILL if escalate else signal.SIGTERM)
            w.deadline = now + 2.0

    def _kill(self, w: Worker) -> None:
        if w.proc is not None:
            signal_process(w.proc, signal.SIGKILL)
            if w.pidfd < 0:  # no pidfd: reap here
                w.proc.wait()
                self._on_exit(w)

    # ---- accept and authenticate

    def _on_accept(self, mask: int) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            nonce = _wire.new_nonce()
            try:
                sock.send(nonce)
            except OSError:
                sock.close()
                continue
            pending = _Pending(sock, nonce, time.monotonic() + _wire.HANDSHAKE_TIMEOUT)
            self._pending[sock] = pending
            self._selector.register(sock, selectors.EVENT_READ, lambda mask, p=pending: self._on_handshake(p))
            self._maintain_at = min(self._maintain_at, pending.deadline)

    def _on_handshake(self, p: _Pending) -> None:
        assert self._selector is not None
        try:
            chunk = p.sock.recv(_wire.HELLO_BYTES - len(p.buf))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            # Silent when nothing was said: a worker killed while connecting (closed right after start).
            return self._reject(p, "closed during the handshake", log=bool(p.buf))
        p.buf += chunk
        if len(p.buf) < _wire.HELLO_BYTES:
            return None
        checked = _wire.check_hello(self._secret, p.nonce, bytes(p.buf))
        if checked is None:
            return self._reject(p, "failed authentication")
        index, generation, nonce_w = checked
        w = self._workers[index] if index < len(self._workers) else None
        if w is None or w.generation != generation or w.state is not WorkerState.STARTING or w.sock is not None:
            # A worker we retired (and are killing) before it connected is expected to knock: no log.
            retired = w is not None and w.generation == generation and w.state is WorkerState.CLOSING
            return self._reject(p, f"authenticated as worker {index}:{generation}, which is not expected",
                                log=not retired)
        del self._pending[p.sock]
        self._selector.unregister(p.sock)
        sock = p.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        w.sock = sock
        w.rbuf = bytearray()
        w.wbuf = bytearray()
        self._selector.register(sock, selectors.EVENT_READ, lambda mask, w=w: self._on_socket(w, mask))
        self._send(w, _wire.scheduler_mac(self._secret, nonce_w))
        w.ready_at = time.monotonic()
        self._startup_failures = 0
        w.move(WorkerState.READY)
        if w.retiring or w.index >= self._n_target or self._closing:
            self._close_worker(w, time.monotonic())
        else:
            self._make_hungry(w)
        return None

    def _reject(self, p: _Pending, why: str, log: bool = True) -> None:
        assert self._selector is not None
        self._pending.pop(p.sock, None)
        try:
            self._selector.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()
        if log:
            self._log(f"jobsched: refused a connection to the scheduler: {why}")

    def _expire_handshakes(self, now: float) -> None:
        for p in list(self._pending.values()):
            if now >= p.deadline:
                self._reject(p, f"no valid handshake within {_wire.HANDSHAKE_TIMEOUT:g} s")

    # ---- dispatch

    def _make_hungry(self, w: Worker) -> None:
        if not w.hungry:
            w.hungry = True
            self._hungry.append(w)

    def _dispatch(self) -> None:
        heap, hungry, prefetch, lock = self._heap, self._hungry, self.prefetch, self._lock
        backend = self._backend
        job_header = _wire.JOB_HEADER
        while hungry and heap and not self._paused and not self._closing and self._error is None:
            w = hungry[0]
            if w.retiring or (w.state is not WorkerState.READY and w.state is not WorkerState.RUNNING):
                w.hungry = False
                hungry.popleft()
                continue
            inflight = w.inflight
            frames: list[bytes] = []  # this worker's JOB frames: sent with one syscall
            while len(inflight) < prefetch and heap and not self._paused and not self._closing \
                    and self._error is None:
                with lock:
                    _, _, entry = heapq.heappop(heap)
                    self._n_active += 1
                future = entry.future
                # A cancelled future is skipped. A re-queued job's future is already RUNNING: leave it so.
                if future is not None and not entry.sent and not future.set_running_or_notify_cancel():
                    with lock:
                        self._n_active -= 1
                        self._n_cancelled_queued -= 1  # counted by _on_cancel
                    continue
                # From here its future is RUNNING, even if before_start raises and the job goes back to the
                # queue: the next dispatch must not call set_running_or_notify_cancel() again.
                entry.sent = True
                job = entry.job
                if self._before_start is not None:
                    try:
                        self._before_start(self, job)
                    except BaseException as exc:
                        with lock:
                            self._n_active -= 1
                            heapq.heappush(heap, (entry.cost, entry.index, entry))
                        self._callback_failed(exc)
                        if frames:
                            self._send(w, b"".join(frames))
                        return
                job.start_ms = time.time() * 1000.0
                if not inflight:
                    w.job_started = time.monotonic()
                    w.move(WorkerState.RUNNING)
                    if entry.timeout is not None:
                        self._maintain_at = min(self._maintain_at, w.job_started + entry.timeout)
                inflight.append(entry)
                if backend is not None:  # ---- backend seam: the backend carries the job to its worker
                    backend.send(w, entry)
                else:
                    frames.append(job_header.pack(len(entry.payload) + 8, _wire.JOB, job.index, job.cost))
                    frames.append(entry.payload)
            if frames:
                self._send(w, b"".join(frames))
            if len(inflight) >= prefetch:
                w.hungry = False
                hungry.popleft()

    def _callback_failed(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            self._n_target = 0
            self._maintain_at = 0.0
        else:
            self._log(f"jobsched: another callback error while stopping: {type(exc).__name__}: {exc}")

    # ---- socket I/O with workers

    def _send(self, w: Worker, data: bytes) -> None:
        sock = w.sock
        if sock is None:
            return
        if w.wbuf:
            w.wbuf += data
            return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the connection is broken: EOF and the pidfd will tell
        if sent < len(data):
            w.wbuf += data[sent:]
            assert self._selector is not None
            self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                  lambda mask, w=w: self._on_socket(w, mask))

    def _on_socket(self, w: Worker, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(w)
        if mask & selectors.EVENT_READ:
            self._on_readable(w)

    def _flush(self, w: Worker) -> None:
        sock = w.sock
        if sock is None:
            return
        try:
            sent = sock.send(w.wbuf)
        except BlockingIOError:
            return
        except OSError:
            w.wbuf.clear()
            sent = 0
        del w.wbuf[:sent]
        if not w.wbuf:
            assert self._selector is not None
            self._selector.modify(sock, selectors.EVENT_READ, lambda mask, w=w: self._on_socket(w, mask))

    def _on_readable(self, w: Worker) -> None:
        sock = w.sock
        if sock is None:
            return
        header = _wire.HEADER
        hsize = header.size
        buf = w.rbuf
        want = _wire.RECV_SIZE
        if len(buf) >= hsize:  # the rest of a large frame: fewer, larger reads
            want = min(max(want, hsize + header.unpack_from(buf)[0] - len(buf)), 1 << 24)
        try:
            chunk = sock.recv(want)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._on_disconnect(w)
            return
        data: bytes | bytearray = chunk
        if buf:
            buf += chunk
            data = buf
        n = len(data)
        pos = 0
        done: list[tuple[_Entry, int, bytes | bytearray]] = []
        while n - pos >= hsize:
            size, kind, index = header.unpack_from(data, pos)
            if size > _wire.MAX_FRAME or (kind != _wire.RESULT and kind != _wire.ERROR):
                self._log(f"jobsched: worker {w.index} broke the protocol (frame kind {kind}, {size} bytes)")
                buf.clear()
                self._on_disconnect(w)
                self._finish(done)
                return
            end = pos + hsize + size
            if n < end:
                break
            completed = self._complete(w, kind, index, data[pos + hsize:end])
            pos = end
            if completed is None:  # a result for a job it does not hold: the worker is being killed
                self._finish(done)
                return
            done.append(completed)
        if data is buf:
            del buf[:pos]
        elif pos < n:
            buf += chunk[pos:]
        if done:
            self._finish(done)

    def _on_disconnect(self, w: Worker) -> None:
        """The worker's connection ended: it exited (pidfd will tell), or it is broken (kill it)."""
        self._close_socket(w)
        if w.proc is not None and w.proc.poll() is None:
            if w.state is not WorkerState.CLOSING and w.kill_reason is None:
                w.kill_reason = "closed its connection"
            if w.state is WorkerState.CLOSING:
                return  # it is on its way out; the grace deadline stands
            self._kill(w)
        elif w.pidfd < 0 and w.proc is not None:
            self._on_exit(w)

    def _close_socket(self, w: Worker) -> None:
        sock = w.sock
        if sock is None:
            return
        w.sock = None
        assert self._selector is not None
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    # ---- collect results

    def _on_result(self, w: Worker, kind: int, index: int, body: bytes) -> None:
        """A RESULT or ERROR frame arrived for the oldest job that ``w`` holds: account, dispatch, deliver."""
        completed = self._complete(w, kind, index, body)
        if completed is not None:
            self._finish([completed])

    def _complete(self, w: Worker, kind: int, index: int,
                  body: bytes | bytearray) -> tuple[_Entry, int, bytes | bytearray] | None:
        """Take a finished job off ``w`` and make room for the next one; its result is decoded later."""
        inflight = w.inflight
        if not inflight or inflight[0].index != index:
            self._log(f"jobsched: worker {w.index} sent a result for job {index}, which it does not hold")
            self._close_socket(w)
            self._kill(w)
            return None
        entry = inflight.popleft()
        now = time.monotonic()
        w.job_started = now
        entry.job.stop_ms = time.time() * 1000.0
        w.n_done += 1
        w.n_jobs_this_process += 1
        if (self.max_jobs_per_worker is not None or self.max_worker_memory is not None) and self._worn_out(w):
            w.retiring = True  # a fresh process takes its slot once it holds no job
        if not inflight and w.state is WorkerState.RUNNING:
            w.move(WorkerState.READY)
            if w.retiring or w.index >= self._n_target or self._closing:
                self._close_worker(w, now)
        if w.state is WorkerState.READY or w.state is WorkerState.RUNNING:
            self._make_hungry(w)
        return entry, kind, body

    def _finish(self, done: list[tuple[_Entry, int, bytes | bytearray]]) -> None:
        """Hand out the next jobs and deliver the results of ``done`` (completed by ``_complete``)."""
        if self._after_stop is None:
            # No after_stop can queue a job that should go first: the free workers get their next jobs
            # before the results are even unpickled, so they do not wait for futures and their callbacks.
            if self._heap and self._hungry and not self._paused:
                self._dispatch()
            for entry, kind, body in done:
                self._deliver(entry, *_decode(entry, kind, body))
        else:
            # after_stop may add jobs, or raise to stop everything: it runs before the next dispatch.
            for entry, kind, body in done:
                self._deliver(entry, *_decode(entry, kind, body))
                if self._heap and self._hungry and not self._paused:
                    self._dispatch()

    def _worn_out(self, w: Worker) -> bool:
        """Whether a worker has reached its job count or memory limit (see ``max_jobs_per_worker``)."""
        if self.max_jobs_per_worker is not None and w.n_jobs_this_process >= self.max_jobs_per_worker:
            return True
        if self.max_worker_memory is not None and w.pid is not None:
            rss = resident_memory(w.pid)
            return rss is not None and rss > self.max_worker_memory
        return False

    def _deliver(self, entry: _Entry, result: Any, failed: bool) -> None:
        """Resolve the job's future, run after_stop, then count the job done.

        It stays counted as active until here, so that ``wait()`` cannot see the scheduler idle while a
        future is unresolved or an ``after_stop`` that may add jobs has yet to run.
        """
        future = entry.future
        if future is not None:
            if failed:
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._after_stop is not None:
            try:
                self._after_stop(self, entry.job, result)
            except BaseException as exc:
                self._callback_failed(exc)
        with self._lock:
            self._n_active -= 1
            self._n_done += 1
            if failed:
                self._n_failed += 1
        if not self._n_active:
            self._notify_if_idle()

    # ---- reap: a worker process exited

    def _on_pidfd(self, w: Worker) -> None:
        if w.proc is not None:
            w.proc.wait()
        self._on_exit(w)

    def _on_output(self, w: Worker) -> None:
        if not self._read_output(w) and w.out_fd < 0 and w.pidfd < 0 and w.proc is not None \
                and w.proc.poll() is not None:
            self._on_exit(w)  # no pidfd on this system: the end of its output shows the exit

    def _read_output(self, w: Worker) -> bool:
        """Read one chunk of a worker's output and emit its complete lines; False at EOF or when empty."""
        try:
            data = os.read(w.out_fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._on_output_eof(w)
            return False
        lines = (w.partial_line + data).split(b"\n")
        w.partial_line = lines.pop()
        if len(w.partial_line) > 65536:  # a line without end: show it in pieces
            lines.append(w.partial_line)
            w.partial_line = b""
        self._emit(w, lines)
        return True

    def _emit(self, w: Worker, lines: list[bytes]) -> None:
        if not lines:
            return
        text = [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
        w.output.extend(text)
        if self.echo_output:
            prefix = f"[worker {w.index}] "
            _write_stderr("".join(f"{prefix}{line}\n" for line in text))

    def _drain_output(self, w: Worker) -> None:
        """Take all the output an exited worker left in its pipe, the last unfinished line included."""
        while w.out_fd >= 0 and self._read_output(w):
            pass
        if w.partial_line:
            self._emit(w, [w.partial_line])
            w.partial_line = b""

    def _on_output_eof(self, w: Worker) -> None:
        assert self._selector is not None
        try:
            self._selector.unregister(w.out_fd)
        except (KeyError, ValueError):
            pass
        w.out_fd = -1

    def _on_exit(self, w: Worker) -> None:
        """The worker's process has exited: deliver what it sent, re-queue or fail its jobs, restart it."""
        if w.state is WorkerState.CLOSED or w.proc is None or w.reaping:
            return
        w.reaping = True  # draining the socket below may report the EOF again
        try:
            self._reap(w)
        finally:
            w.reaping = False

    def _reap(self, w: Worker) -> None:
        assert w.proc is not None
        selector = self._selector
        assert selector is not None
        # A result sent just before the exit is still in the socket: take it first.
        while w.sock is not None:
            before = len(w.rbuf)
            try:
                w.sock.setblocking(False)
                peek = w.sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, OSError):
                break
            if not peek:
                break
            self._on_readable(w)
            if w.sock is not None and len(w.rbuf) == before:
                break
        self._close_socket(w)
        self._drain_output(w)
        if w.out_fd >= 0:
            self._on_output_eof(w)
        if w.pidfd >= 0:
            try:
                selector.unregister(w.pidfd)
            except (KeyError, ValueError):
                pass
            os.close(w.pidfd)
            w.pidfd = -1
        proc = w.proc
        returncode = proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        how = describe_exit(returncode)
        w.exit_description = how if w.kill_reason is None else f"{how} ({w.kill_reason})"
        expected = w.state is WorkerState.CLOSING
        was_starting = w.state is WorkerState.STARTING
        lost = list(w.inflight)
        w.inflight.clear()
        w.hungry = False
        now = time.monotonic()
        w.move(WorkerState.CLOSED)
        if lost:
            self._settle_lost_jobs(w, lost)
        if (expected and returncode == 0) or w.kill_reason == "retired":
            w.fast_deaths = 0
            w.kill_reason = "retired"
            self._maintain_at = 0.0
            return
        if not expected:
            self._n_restarts += 1
            w.n_restarts += 1
            lived = now - w.ready_at if w.ready_at >= w.started_at else 0.0
            # Back off only from processes that die young *and* did no work (a crash loop at start-up);
            # a worker killed after finishing jobs (an OOM killer, a chaos test) comes back at once.
            crash_loop = lived < 1.0 and w.n_jobs_this_process == 0
            w.fast_deaths = w.fast_deaths + 1 if crash_loop else 0
            delay = 0.0 if w.fast_deaths <= 1 else min(0.05 * 2 ** (w.fast_deaths - 1), MAX_RESTART_DELAY)
            w.restart_at = now + delay
            if was_starting:
                self._count_startup_failure(w, "\n".join(list(w.output)[-30:]))
        self._maintain_at = 0.0

    def _settle_lost_jobs(self, w: Worker, lost: list[_Entry]) -> None:
        """Decide the fate of the jobs a dead worker held: re-queue them, or fail the one it was running."""
        running, waiting = lost[0], lost[1:]
        requeue = list(waiting)
        if self._closing or w.kill_reason in ("retired", "terminated", "killed after the close grace period"):
            requeue.insert(0, running)
        else:
            death = f"worker {w.index} (pid {w.pid}) {w.exit_description}"
            running.deaths = (running.deaths or []) + [death]
            job = running.job
            if running.timed_out and not (running.retry_on_timeout and len(running.deaths) < running.max_retries):
                error: JobError | None = JobTimeout(
                    "JobTimeout", f"the job ran longer than its timeout of {running.timeout:g} s; {death}",
                    "", job.index)
            elif len(running.deaths) >= running.max_retries:
                error = JobError("WorkerDied", f"its worker died {len(running.deaths)} times: "
                                 + "; ".join(running.deaths), "", job.index)
            else:
                error = None
                running.timed_out = False
                requeue.insert(0, running)
            if error is not None:
                job.stop_ms = time.time() * 1000.0
                self._deliver(running, error, True)  # counts it done
        with self._lock:  # back in the queue and out of the active count at once: never seen idle between
            self._n_active -= len(requeue)
            for entry in requeue:
                heapq.heappush(self._heap, (entry.cost, entry.index, entry))

    def _count_startup_failure(self, w: Worker, output: str) -> None:
        self._startup_failures += 1
        self._last_startup_output = output
        if self._startup_failures >= STARTUP_FAILURE_LIMIT and self._error is None:
            self._fatal = True
            argv = " ".join(self._describe_command(w.index))
            self._error = WorkerStartupError(
                f"{self._startup_failures} workers in a row exited before they were ready "
                f"(last: worker {w.index}, {w.exit_description}).\nWorker command: {argv}\n"
                f"Its output:\n{output.rstrip() or '(nothing)'}\n"
                "Check the worker file, its entry function and its imports."
            )
            self._n_target = 0
            self._maintain_at = 0.0

    def _describe_command(self, index: int) -> list[str]:
        try:
            return [os.fspath(a) for a in self.make_worker_command(index)]
        except Exception as exc:
            return [f"<make_worker_command failed: {exc}>"]

    def _log(self, message: str) -> None:
        _write_stderr(message + "\n")


@contextlib.contextmanager
def _sigint_held(on_sigint: Callable[[], None]) -> Iterator[bool]:
    """Hold Ctrl-C back while the main thread runs scheduler code: SIGINT calls ``on_sigint`` instead.

    Python raises KeyboardInterrupt between any two bytecodes of the main thread: inside a lock's
    acquire or release (leaving the lock held, and the scheduler thread stuck on it), or between taking a
    job off the queue and recording which worker has it. Code under this context notes the interrupt and
    raises KeyboardInterrupt itself where nothing is half done.

    Yields False, changing nothing, in the main thread of a program whose SIGINT handler is not Python's
    own (a Jupyter kernel installs Python's own while a cell runs): that handler stays in charge. Other
    threads never receive KeyboardInterrupt, and an ignored SIGINT needs no holding back: True, as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield True
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield previous is signal.SIG_IGN
        return

    def handler(signum: int, frame: object) -> None:
        on_sigint()

    signal.signal(signal.SIGINT, handler)
    try:
        yield True
    finally:
        signal.signal(signal.SIGINT, previous)


def _decode(entry: _Entry, kind: int, body: bytes | bytearray) -> tuple[Any, bool]:
    """Return ``(result, failed)`` from a RESULT or ERROR frame's body."""
    try:
        if kind == _wire.ERROR:
            remote_type, message, tb = loads(body)
            return JobError(str(remote_type), str(message), str(tb), entry.index), True
        return loads(body), False
    except Exception as exc:
        return JobError(type(exc).__name__, f"the result could not be unpickled here: {exc}", "", entry.index), True


class _Pending:
    """A connection that has not authenticated yet: only raw bytes, never unpickled."""

    __slots__ = ("sock", "nonce", "deadline", "buf")

    def __init__(self, sock: socket.socket, nonce: bytes, deadline: float) -> None:
        self.sock = sock
        self.nonce = nonce
        self.deadline = deadline
        self.buf = bytearray()


def _write_stderr(text: str) -> None:
    """Write to this process's stderr; in a Jupyter kernel, to the kernel's terminal, never into a cell."""
    stream = sys.stderr
    try:
        if type(stream).__name__ == "OutStream":
            # ipykernel forwards sys.stderr *and* fd 2 (sys.__stderr__) to whichever cell runs now;
            # OutStream.fileno() is its copy of the original fd 2, which reaches only the terminal.
            os.write(stream.fileno(), text.encode("utf-8", "replace"))
        elif stream is not None:
            stream.write(text)
            stream.flush()
    except (OSError, ValueError):
        pass


def make_scheduler(make_worker_command: Callable[[int], list[str]] | None = None, **options: Any) -> Scheduler:
    """Return ``Scheduler(make_worker_command, **options)`` (the manual's name)."""
    return Scheduler(make_worker_command, **options)


def _check_cost(cost: object) -> None:
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or (isinstance(cost, float) and math.isnan(cost)):
        raise TypeError(f"add_job: cost must be a real number (lowest runs first), got {cost!r}")


def _check_timeout(where: str, timeout: object) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"{where}: timeout must be a positive number of seconds or None, got {timeout!r}")


def _check_positive_int(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")


def _check_n_workers(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n_workers must be an integer >= 0, got {n!r}")
