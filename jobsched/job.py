"""The ``Job`` record of the manual: what the server queues and what a worker receives."""

from __future__ import annotations

from typing import Any


class Job:
    """One unit of work.

    Attributes:
        index: position of the job in the order of ``add_job`` calls on its scheduler (0, 1, 2, ...).
        cost: priority; the queue hands out the lowest cost first (FIFO among equal costs). A worker sees
            the cost that was given: an ``int`` stays an ``int`` (one beyond 64 bits arrives as a ``float``).
        data: what the worker receives (any picklable value; a ``RemoteCall`` for remote calls).
        start_ms: wall-clock time in milliseconds (``time.time() * 1000``) when the job was sent to a worker.
        stop_ms: wall-clock time in milliseconds when its result was received, or when the scheduler settled
            it without one (it timed out, its worker died too often, it was cancelled while it ran); 0 if it
            never ran.
        from_journal: True when the result was taken from the scheduler's journal instead of running the job.
    """

    # A plain class rather than a dataclass: every worker imports this module, and ``dataclasses`` alone
    # (with inspect, ast, dis) would add a tenth of a worker's start-up imports.
    __slots__ = ("index", "cost", "data", "start_ms", "stop_ms", "from_journal")

    def __init__(self, index: int, cost: float, data: Any, start_ms: float = 0.0, stop_ms: float = 0.0) -> None:
        self.index = index
        self.cost = cost
        self.data = data
        self.start_ms = start_ms
        self.stop_ms = stop_ms
        self.from_journal = False

    def __repr__(self) -> str:
        return (f"Job(index={self.index!r}, cost={self.cost!r}, data={self.data!r}, "
                f"start_ms={self.start_ms!r}, stop_ms={self.stop_ms!r})")

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds between sending the job and receiving its result (0 until it is done)."""
        return max(0.0, self.stop_ms - self.start_ms) if self.stop_ms else 0.0
