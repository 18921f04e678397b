"""The contract between the scheduler's loop and what runs the jobs: local processes, or Dask.

A backend carries out the state's commands for its kind of worker, and reports what happens to them as
events. It keeps no policy: when to start, retry, time out, recycle, close or give up is decided by
``_core.state.SchedulerState`` for every backend alike.

::

    SchedulerState ──commands──> Engine (the loop) ──calls──> Backend ──> processes / Dask tasks
          ^                                                      │
          └────────────── events (BackendEvents) <───────────────┘

Every ``Backend`` method is called on the loop's thread, except ``attach`` and ``default_n_workers`` (the
caller's thread) and ``close`` (after the loop has ended). Every ``BackendEvents`` method must be called on
the loop's thread too; a backend that learns something on another thread (a Dask callback) hands a function
to ``events.post``, which runs it there.

Implementations: ``jobsched._local.backend.LocalBackend`` (the default) and ``jobsched.dask.DaskBackend``.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._local.transport import Frames
    from ..scheduler import Scheduler
    from .slot import Worker
    from .state import Entry


# The kinds of frame a backend reports for a job, numbered as on the local wire (``_local.wire``, which
# defines the whole protocol; a test checks that the two agree). Every backend speaks these to the loop.
RESULT, ERROR, PROGRESS = 2, 3, 5


class BackendEvents(Protocol):
    """What a backend reports to the loop (on the loop's thread; ``post`` from any thread)."""

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop's thread soon (callable from any thread)."""

    def adopt_worker(self) -> Worker | None:
        """A worker started by hand authenticated: return a new slot for it (STARTING), or None if the run ends.

        The backend then reports it ``worker_spawned`` and ``worker_ready``; when it leaves, ``worker_exited``.
        """

    def worker_spawned(self, w: Worker, pid: int | None) -> None:
        """A process (or seat) for ``w`` was started; it is not connected yet."""

    def worker_spawn_failed(self, w: Worker, message: str) -> None:
        """Nothing could be started for ``w`` (a missing program, a bad command)."""

    def worker_ready(self, w: Worker) -> None:
        """``w`` is connected and authenticated: it takes jobs."""

    def frames(self, w: Worker, frames: Frames) -> None:
        """``w`` sent these RESULT / ERROR / PROGRESS / WITHDRAWN frames, in order."""

    def connection_lost(self, w: Worker, protocol_error: str | None) -> None:
        """``w``'s connection ended (None) or broke the protocol (a message); its exit follows."""

    def worker_exited(self, w: Worker, description: str, clean: bool, crashed: bool = True) -> None:
        """``w``'s process is gone (``clean``: exit status 0); every frame it sent was reported before.

        ``crashed=False``: nothing failed, the backend let the slot go (a Dask worker its cluster retired, a
        closed client, a seat given up after a timeout), or the process died of something else than its job
        (a local worker whose zygote died): no restart is counted and its jobs are not blamed, unless the
        state's own kill reason (a timeout) blames them.
        """

    def request_tick(self) -> None:
        """Something the state's timers depend on changed (a seat freed up): run the state's tick soon."""

    def backend_failed(self, error: BaseException) -> None:
        """The backend cannot go on (its cluster client closed): the scheduler stops with ``error``.

        Queued jobs stay queued (their futures pending) for a later ``start()``, or ``close()`` cancels them.
        """

    def log(self, message: str) -> None:
        """Report something to the user (stderr)."""


class Backend(Protocol):
    """What ``Scheduler(backend=...)`` calls: a transport for jobs, and a source of worker slots."""

    # Seconds a started worker has to become ready. None: no limit, and no process to wait for (a Dask slot
    # waiting for a free thread), so a slot closed before it is ready is retired at once.
    start_timeout: float | None

    def attach(self, sched: Scheduler) -> None:
        """Bind to ``sched`` (once); raise ValueError for options the backend cannot honour."""

    def default_n_workers(self) -> int:
        """Return the worker count that ``start(n_workers=None)`` uses on a fresh scheduler."""

    def open(self, events: BackendEvents, selector: selectors.BaseSelector) -> None:
        """The loop is about to run (again): get ready to start workers (idempotent)."""

    def start_worker(self, w: Worker) -> None:
        """Start a process (or find a seat) for slot ``w``; report ``worker_spawned`` and later ``worker_ready``."""

    def send_jobs(self, w: Worker, entries: list[Entry]) -> None:
        """Hand ``entries`` (already in ``w``'s in-flight list, oldest first) to the worker behind ``w``."""

    def close_worker(self, w: Worker) -> None:
        """Ask ``w`` to exit once it has finished the jobs it holds; report ``worker_exited`` then."""

    def withdraw_job(self, w: Worker, entry: Entry) -> None:
        """Tell ``w`` to drop ``entry``, a job sent ahead that it has not started; it answers WITHDRAWN (a
        ``frames`` event for that job), or, if the job has started, nothing (the state then kills ``w``)."""

    def kill_worker(self, w: Worker, force: bool) -> None:
        """Stop ``w`` now, with the processes its job started (``force``: SIGKILL, else SIGTERM)."""

    def worker_rss(self, w: Worker) -> int | None:
        """Return ``w``'s resident memory in bytes, or None if unknown."""

    def poll(self, now: float) -> float:
        """Do timed duties (handshake deadlines, cluster refresh); return when to be called next."""

    def settle(self) -> None:
        """The loop ends for now and the workers stay (a blocking start returns, or was interrupted): finish
        starting the workers already asked for, since nothing runs until the next ``open``."""

    def shutdown(self) -> None:
        """Every worker has exited and the loop ends: release sockets and helpers (``open`` may follow)."""

    def close(self) -> None:
        """The scheduler is closed: release everything (a cluster client jobsched opened)."""
