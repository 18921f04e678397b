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


class KillReason(enum.Enum):
    """Why the scheduler ended a worker's process: decides what happens to the jobs it held.

    ``blames_job`` reasons count a death against the running job (it is retried, or fails after
    ``max_retries``); the others put its jobs back in the queue untouched, except ``CANCELLED``, whose
    cancelled job fails with ``JobCancelled``.
    """

    TIMEOUT = "timeout"
    CLOSED_CONNECTION = "closed its connection"
    PROTOCOL = "broke the protocol"
    NO_HANDSHAKE = "did not connect in time"
    CANCELLED = "its job was cancelled"
    RETIRED = "retired"  # scaled down or closed before it connected: an expected exit
    TERMINATED = "terminated at the end of the close grace period"
    KILLED_AFTER_GRACE = "killed after the close grace period"
    STOPPING = "killed because the scheduler stopped"  # Ctrl-C during close(), a fatal error

    __hash__ = object.__hash__

    @property
    def blames_job(self) -> bool:
        """Whether the death counts against the job the worker was running."""
        return self in _BLAMES_JOB


_BLAMES_JOB = frozenset({KillReason.TIMEOUT, KillReason.CLOSED_CONNECTION, KillReason.PROTOCOL,
                         KillReason.NO_HANDSHAKE})


def check_transition(index: int, old: WorkerState, new: WorkerState) -> None:
    """Raise InvalidStateError unless ``old -> new`` is allowed."""
    if new not in _NEXT[old]:
        raise InvalidStateError(f"worker {index}: {old.name} -> {new.name} is not a valid transition")
