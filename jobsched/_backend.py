"""The contract between the scheduler loop and a backend that runs jobs somewhere else than local processes.

A backend (``jobsched.dask.DaskBackend``) replaces only the *transport*: which worker slots exist and how a job
reaches one. The scheduler keeps everything else: the priority queue, ``before_start`` / ``after_stop``,
futures, retries (``_settle_lost_jobs``), counters and ``stats()``. Every hook below is called on the scheduler
thread (``attach`` and ``default_n_workers`` on the caller's thread, ``close`` after the loop has ended); a
backend that learns something on another thread (a completion callback, a cluster event) posts a closure to
``sched._inbox`` and calls ``sched._wake()``, so that scheduler state still changes on one thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._pool import Worker
    from .scheduler import Scheduler, _Entry


class Backend(Protocol):
    """What ``Scheduler(backend=...)`` calls."""

    def attach(self, sched: Scheduler) -> None:
        """Bind to ``sched`` (once); raise ValueError for options the backend cannot honour."""

    def default_n_workers(self) -> int:
        """Return the worker count that ``start(n_workers=None)`` uses on a fresh scheduler."""

    def maintain(self, now: float) -> float:
        """Open, retire and time out worker slots in ``sched._workers``; return when to be called next."""

    def send(self, w: Worker, entry: _Entry) -> None:
        """Hand ``entry`` (already in ``w.inflight``) to the worker behind slot ``w``."""

    def close(self) -> None:
        """Release what the backend holds (called by ``Scheduler.close`` after its thread has ended)."""
