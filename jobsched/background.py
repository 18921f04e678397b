"""The process-wide scheduler that the ``%jobsched`` magics drive."""

from __future__ import annotations

import threading

from .scheduler import Scheduler

_lock = threading.Lock()
_default: Scheduler | None = None


def default_scheduler() -> Scheduler:
    """Return the process-wide remote-call scheduler (a new one if the last was closed)."""
    global _default
    with _lock:
        if _default is None or _default.stats()["closed"]:
            _default = Scheduler()
        return _default
