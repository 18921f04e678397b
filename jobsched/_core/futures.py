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
    """``threading.Condition(threading.RLock())`` in two objects for the garbage collector, not seven.

    ``Condition.__init__`` binds five of its lock's methods onto the instance: five more objects per future,
    which with 20,000 futures alive made the collector's passes a tenth of the scheduler's time per job. Here
    they are methods of the class, which pass the call on. The lock is reentrant because
    ``concurrent.futures.wait()`` holds every future's condition and then calls ``f.exception()``, which takes
    it again.
    """

    def __init__(self) -> None:  # no super().__init__(): that is the binding
        self._lock = threading.RLock()
        self._waiters: deque[Any] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:  # type: ignore[override]
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:  # type: ignore[override]
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, saved: Any) -> None:
        self._lock._acquire_restore(saved)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined, no-any-return]


class JobFuture(Future[T]):
    """A ``Future`` whose ``cancel()`` also stops a job that is already running."""

    def __init__(self, cancel_entry: Callable[..., bool]) -> None:
        # Future.__init__'s attributes, with a lighter condition over the same RLock (``_Condition``).
        # tests/test_executor.py checks that these are all the attributes Future.__init__ sets.
        self._condition = _Condition()
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[T]], object]] = []
        self._cancel_entry = cancel_entry
        self.entry: Entry | None = None
        self.rerun: tuple[bytes, int | None, str] | None = None  # a failed job's call, seed and cwd (rerun_here)

    def rerun_here(self, *, debug: bool = True) -> Any:
        """Run this failed job's call in this process, with its arguments and seed; return its result.

        If it raises, the post-mortem debugger opens at the frame that raised; then the job's exception is
        raised, with its own type. See ``Scheduler.rerun_here``.

        Raises:
            RuntimeError: the job has not failed (it is pending, running, cancelled or done).
        """
        if self.rerun is None:
            raise RuntimeError("rerun_here(): this future's job has not failed (it is pending, running, done or "
                               "cancelled, or its data went through shared memory); call it on a failed job's future")
        from ..worker.rerun import rerun_here

        return rerun_here(*self.rerun, "this future's job", debug=debug)

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
