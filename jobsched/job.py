"""The ``Job`` record of the manual: what the server queues and what a worker receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, eq=False)
class Job:
    """One unit of work.

    Attributes:
        index: position of the job in the order of ``add_job`` calls on its scheduler (0, 1, 2, ...).
        cost: priority; the queue hands out the lowest cost first (FIFO among equal costs).
        data: what the worker receives (any picklable value; a ``RemoteCall`` for remote calls).
        start_ms: wall-clock time in milliseconds (``time.time() * 1000``) when the job was sent to a worker.
        stop_ms: wall-clock time in milliseconds when its result was received.
    """

    index: int
    cost: float
    data: Any
    start_ms: float = 0.0
    stop_ms: float = 0.0

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds between sending the job and receiving its result (0 until it is done)."""
        return max(0.0, self.stop_ms - self.start_ms) if self.stop_ms else 0.0
