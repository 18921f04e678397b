"""The future of a submitted job: ``cancel()`` reaches the scheduler, and also stops a running job.

``concurrent.futures.Future.cancel()`` refuses a running future. A jobsched job can be stopped while it runs
(its worker is killed), so ``JobFuture.cancel()`` asks the scheduler, and ``force_cancel`` moves a RUNNING
future to CANCELLED. That needs the stdlib's private ``_core.state``, ``_condition`` and ``_waiters``: the same
three steps ``Future.cancel`` and ``set_running_or_notify_cancel`` take, so ``wait()`` and ``as_completed()``
see the cancel as they see any other.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING, RUNNING
from typing import TYPE_CHECKING, Any, TypeVar

from .checks import check_cost

if TYPE_CHECKING:
    from .state import Entry

T = TypeVar("T")


class _Condition(threading.Condition):
    """``threading.Condition(threading.Lock())``, made in a fifth of the time.

    ``Condition.__init__`` probes its lock for three RLock methods inside try/except, and a plain Lock has
    none of them: three exceptions, 1.4 µs, per future. Without them the Condition's own versions of those
    methods serve, as they do after the failed probes. tests/test_executor.py checks the attributes match.
    """

    def __init__(self) -> None:  # no super().__init__(): that is the probing
        lock = threading.Lock()
        self._lock = lock
        self.acquire = lock.acquire  # type: ignore[method-assign]  # as Condition.__init__ does
        self.release = lock.release  # type: ignore[method-assign]
        # Condition's own _is_owned for a lock without one is "acquire(False) fails", i.e. lock.locked(), in
        # Python; notify() and wait() call it once each per job, on the way from result to caller.
        self._is_owned = lock.locked  # type: ignore[method-assign]
        self._waiters: deque[Any] = deque()


class JobFuture(Future[T]):
    """A ``Future`` whose ``cancel()`` also stops a job that is already running."""

    def __init__(self, cancel_entry: Callable[..., bool]) -> None:
        # Future.__init__, with a Condition over a plain Lock instead of an RLock: nothing in Future (nor here)
        # takes the condition twice, and an RLock's Condition is 9 objects for the garbage collector, this 4.
        # One future per job: with 100,000 jobs queued, the collector's passes were half of submit()'s time.
        # tests/test_futures.py checks that these are all the attributes Future.__init__ sets.
        self._condition = _Condition()
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[T]], object]] = []
        self._cancel_entry = cancel_entry
        self.entry: Entry | None = None

    def cancel(self) -> bool:
        """Cancel the job, queued or running; False if it has already finished (its result is kept)."""
        entry = self.entry
        if entry is None or self.cancelled():
            return super().cancel()
        return self._cancel_entry(entry)

    def set_cost(self, cost: float) -> bool:
        """Move the job to ``cost`` in its scheduler's queue; False if it was already sent or has finished.

        See ``Scheduler.set_cost``.

        Raises:
            TypeError, ValueError: ``cost`` is not a finite number.
        """
        check_cost(cost, "set_cost")
        entry = self.entry
        if entry is None or self.done():
            return False
        owner: Any = getattr(self._cancel_entry, "__self__", None)  # the scheduler (its bound _cancel_entry)
        return owner is not None and bool(owner._set_entry_cost(entry, cost))

    def cancel_queued(self) -> bool:
        """Cancel the job only if it has not started (``concurrent.futures``' meaning of ``cancel``)."""
        entry = self.entry
        if entry is None or self.cancelled():
            return super().cancel()
        return self._cancel_entry(entry, queued_only=True)


def cancel_pending(future: Future[Any]) -> bool:
    """Cancel a pending ``future`` and tell its waiters now; False if it runs or has finished.

    ``Future.cancel`` alone leaves it CANCELLED, which ``concurrent.futures.wait`` and ``as_completed`` count
    as done only once an executor calls ``set_running_or_notify_cancel``: a queued job that is cancelled
    never gets there, so this takes that step at once.
    """
    if not Future.cancel(future):
        return False
    state: Any = future
    with state._condition:
        if state._state == CANCELLED:
            state._state = CANCELLED_AND_NOTIFIED
            for waiter in state._waiters:
                waiter.add_cancelled(future)
    return True


def mark_running(future: Future[Any]) -> None:
    """Move a pending ``future`` to RUNNING; leave one that was cancelled meanwhile as it is."""
    state: Any = future
    with state._condition:
        if state._state == PENDING:
            state._state = RUNNING


def force_cancel(future: Future[Any]) -> None:
    """Move ``future`` to CANCELLED, whether it is pending or running, and tell its waiters and callbacks."""
    if cancel_pending(future):
        return
    state: Any = future
    with state._condition:
        if state._state not in (PENDING, RUNNING):
            return  # finished meanwhile: its result stands
        state._state = CANCELLED_AND_NOTIFIED
        for waiter in state._waiters:
            waiter.add_cancelled(future)
        state._condition.notify_all()
    state._invoke_callbacks()
