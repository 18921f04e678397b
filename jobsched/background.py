"""The process-wide scheduler that the ``%jobsched`` magics drive: ``jobsched.default_scheduler()``.

One scheduler object per process, kept across ``%jobsched stop`` / ``%jobsched start``, so that a
``sched = jobsched.default_scheduler()`` kept from an earlier cell stays the one the magics drive. It is
replaced only when it was closed (``sched.close()``), or on request (``replace_default_scheduler``, e.g.
``%jobsched start --dask``). Every read and change happens under one lock; nothing else touches it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .scheduler import Scheduler

_lock = threading.RLock()  # re-entrant: a factory may call default_scheduler()
_default: Scheduler | None = None


def default_scheduler() -> Scheduler:
    """Return the process-wide remote-call scheduler (a new one if there is none or the last was closed)."""
    global _default
    with _lock:
        if _default is None or _default.stats()["closed"]:
            _default = Scheduler()
        return _default


def current_default_scheduler() -> Scheduler | None:
    """Return the default scheduler if one exists and is not closed, without creating one."""
    with _lock:
        if _default is None or _default.stats()["closed"]:
            return None
        return _default


def replace_default_scheduler(factory: Callable[[Scheduler | None], Scheduler]) -> Scheduler:
    """Make ``factory(current)`` the default scheduler, atomically, and return it.

    ``current`` is the open default scheduler, or None. The factory may return ``current`` itself (nothing
    changes), or a new scheduler; it is called under the lock, so two threads never both replace it. It is
    the factory's job to close ``current`` if it should not run on (the default scheduler is never closed
    behind its owner's back here).

    Raises:
        TypeError: the factory did not return a ``Scheduler``.
    """
    global _default
    with _lock:
        current = _default if _default is not None and not _default.stats()["closed"] else None
        new = factory(current)
        if not isinstance(new, Scheduler):
            raise TypeError(f"replace_default_scheduler: the factory must return a Scheduler, "
                            f"got {type(new).__name__}")
        _default = new
        return new


def set_default_scheduler(sched: Scheduler) -> Scheduler | None:
    """Make ``sched`` the default scheduler; return the previous one (open or None), which is left as it is."""
    previous: list[Scheduler | None] = []

    def factory(current: Scheduler | None) -> Scheduler:
        previous.append(current)
        return sched

    replace_default_scheduler(factory)
    return previous[0]
