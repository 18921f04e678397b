"""Exceptions, under one root, named for who is at fault.

``JobError`` is the result of a job that failed *remotely* (its function raised, its result could not be
pickled, its worker died too often, it ran out of time). The others say that something went wrong on the
scheduler's side: a worker that could not start, a peer that broke the protocol, a call on a closed scheduler.
"""

from __future__ import annotations


class JobschedError(Exception):
    """Root of every exception raised by jobsched."""


class JobError(JobschedError):
    """A job failed: its function raised, its result could not be pickled, or its worker died.

    Attributes:
        remote_type: name of the exception type raised in the worker (e.g. ``"ZeroDivisionError"``),
            or ``"WorkerDied"`` / ``"JobTimeout"`` when the worker did not return.
        remote_message: ``str()`` of the remote exception.
        remote_traceback: the formatted traceback, as text, from the worker ("" if there is none).
        job_index: index of the failed job, when known.
        attempts: how many times the job was started before it failed for good: its worker's deaths and
            the errors ``retry_on`` retried, plus the last attempt (1 when it was not retried).
    """

    attempts: int = 1

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
        job_index: int | None = None,
    ) -> None:
        super().__init__(remote_type, remote_message, remote_traceback, job_index)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.job_index = job_index

    def __str__(self) -> str:
        where = f"job {self.job_index}" if self.job_index is not None else "job"
        text = f"{where} failed: {self.remote_type}: {self.remote_message}"
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobError) and self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)


class JobTimeout(JobError, TimeoutError):
    """A job ran longer than its timeout; its worker was killed and replaced."""


class JobCancelled(JobError):
    """A job was cancelled (``Scheduler.cancel``, or ``future.cancel()`` while it ran): its worker was killed."""


class WorkerStartupError(JobschedError, RuntimeError):
    """Workers kept dying before they were ready (bad worker file, missing entry, import error)."""


class ProtocolError(JobschedError, ConnectionError):
    """A peer broke the wire protocol: an oversized or malformed frame, or a frame it may not send.

    Raised by ``_local.wire.FrameDecoder``; the scheduler then drops that worker's connection (its job counts a
    death), and a worker whose scheduler breaks the protocol exits.
    """


class InvalidStateError(JobschedError, RuntimeError):
    """A worker was asked to make a state transition that its lifecycle does not allow."""


class SchedulerClosedError(JobschedError, RuntimeError):
    """The scheduler was closed (``close()``): it takes no more jobs; create a new ``Scheduler``."""


class SchedulerBrokenError(JobschedError, RuntimeError):
    """The scheduler's loop stopped on an error (its ``__cause__``): new jobs are refused until ``start()``.

    Raised by ``add_job`` and ``submit`` after a background loop ended on an error (workers that could not
    start, a callback that raised), and while any loop is stopping on one, so that no future waits for a loop
    that no longer runs.
    """


class UnkeyableError(JobschedError, TypeError):
    """A job's content cannot be turned into a stable journal key; pass ``key=`` to name the job yourself.

    Attributes:
        path: where the value sits in the job, outermost first (e.g. ``["argument 1", "['cfg']"]``).
        reason: what is wrong with it.
    """

    def __init__(self, reason: str, path: list[str] | None = None) -> None:
        self.reason = reason
        self.path: list[str] = path if path is not None else []
        super().__init__(reason)

    def __str__(self) -> str:
        where = " -> ".join(self.path)
        return f"{where}: {self.reason}" if where else self.reason


class JournalError(JobschedError, ValueError):
    """The journal file cannot be used (wrong path, read-only, not a journal, too new) or stays locked."""
