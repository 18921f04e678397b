"""The worker lifecycle of the manual, as an enum with one table of allowed transitions.

::

    STARTING ──> READY <──> RUNNING
        │          │           │
        └────> CLOSING <───────┘      (close requested; a busy worker finishes its job first)
        │          │           │
        └──────> CLOSED <──────┘      (the process exited, expectedly or not)
                   │
                   └──> STARTING      (restart of the same slot)
"""

from __future__ import annotations

import enum

from .errors import InvalidStateError


class WorkerState(enum.Enum):
    """Where a worker is in its lifecycle."""

    STARTING = "starting"  # process spawned, not yet authenticated
    READY = "ready"  # connected and idle, waiting for a job
    RUNNING = "running"  # has a job
    CLOSING = "closing"  # asked to exit; finishes what it holds first
    CLOSED = "closed"  # the process has exited

    # Members are singletons compared by identity: hash them by identity too, in C. Enum's own __hash__ is
    # Python code, and the scheduler checks a transition (a set lookup) twice per job.
    __hash__ = object.__hash__


_NEXT: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset({WorkerState.READY, WorkerState.CLOSING, WorkerState.CLOSED}),
    WorkerState.READY: frozenset({WorkerState.RUNNING, WorkerState.CLOSING, WorkerState.CLOSED}),
    WorkerState.RUNNING: frozenset({WorkerState.READY, WorkerState.CLOSING, WorkerState.CLOSED}),
    WorkerState.CLOSING: frozenset({WorkerState.CLOSED}),
    WorkerState.CLOSED: frozenset({WorkerState.STARTING}),
}


def check_transition(index: int, old: WorkerState, new: WorkerState) -> None:
    """Raise InvalidStateError unless ``old -> new`` is allowed."""
    if new not in _NEXT[old]:
        raise InvalidStateError(f"worker {index}: {old.name} -> {new.name} is not a valid transition")
