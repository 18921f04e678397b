"""Exceptions, under one root, named for who is at fault.

``JobError`` is the result of a job that failed *remotely* (its function raised, its result could not be
pickled, its worker died too often, it ran out of time). The others say that something went wrong on the
scheduler's side: a worker that could not start, a peer that broke the protocol, a call on a closed scheduler.
"""

from __future__ import annotations

from concurrent.futures import BrokenExecutor
from typing import Any


class JobschedError(Exception):
    """Root of every exception raised by jobsched."""


class JobError(JobschedError):
    """A job failed: its function raised, its result could not be pickled, or its worker died.

    When the job raised an ``Exception`` whose class exists here too, the error the caller gets is an instance
    of a class derived from both ``JobError`` and that class (built once per class), so that
    ``except ZeroDivisionError`` and ``except JobError`` both catch it; its ``__cause__`` is a
    ``RemoteTraceback`` holding the worker's traceback. It is a plain ``JobError`` (that still names the type)
    when the class exists only in the worker, cannot be combined with ``JobError`` (a conflicting instance
    layout, a metaclass), or is not an ``Exception``: a job's ``SystemExit``, ``KeyboardInterrupt`` or
    ``GeneratorExit`` never looks like the caller's own exit or Ctrl-C (see ``jobsched._core.remote_errors``).

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

    # The job's own exception class, in a class built by combining it with JobError (see _core.remote_errors).
    _jobsched_combined: type[BaseException] | None = None

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
        job_index: int | None = None,
        attempts: int = 1,
    ) -> None:
        # BaseException's own __init__, not super(): in a combined class the next __init__ is the job's
        # exception class's, whose signature is its own.
        BaseException.__init__(self, remote_type, remote_message, remote_traceback, job_index)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.job_index = job_index
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        # A combined class is made at run time and cannot be pickled by name: rebuild it where it is unpickled.
        cls = type(self)._jobsched_combined
        if cls is not None:
            from ._core.remote_errors import rebuild_job_error

            return (rebuild_job_error, (cls.__module__, cls.__qualname__, self.remote_type, self.remote_message,
                                        self.remote_traceback, self.job_index, self.attempts))
        reduced: tuple[Any, ...] = super().__reduce__()  # type: ignore[assignment]
        return reduced

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


class RemoteTraceback(Exception):
    """The traceback of a failed job, formatted in its worker: the ``__cause__`` of the job's ``JobError``.

    The counterpart of ``concurrent.futures.process._RemoteTraceback``: printing the caller's traceback shows
    the worker's frames under "The above exception was the direct cause of the following exception".
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class WorkerStartupError(JobschedError, BrokenExecutor):
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


class SchedulerBrokenError(JobschedError, BrokenExecutor):
    """The scheduler's loop stopped on an error (its ``__cause__``): new jobs are refused until ``start()``.

    Raised by ``add_job`` and ``submit`` after a background loop ended on an error (workers that could not
    start, a callback that raised), and while any loop is stopping on one, so that no future waits for a loop
    that no longer runs.
    """


class WorkerInitializerError(JobschedError, BrokenExecutor):
    """An ``Executor``'s ``initializer`` raised in a worker: the executor is broken, as ``BrokenProcessPool`` says.

    Every pending call of that executor fails with it, and later calls are refused; its ``__cause__`` is the
    initializer's ``JobError``, with the worker's traceback.
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
