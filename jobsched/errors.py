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
    """

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


class WorkerStartupError(JobschedError, RuntimeError):
    """Workers kept dying before they were ready (bad worker file, missing entry, import error)."""


class ProtocolError(JobschedError, ConnectionError):
    """A peer broke the wire protocol (bad handshake, oversized or malformed frame)."""


class InvalidStateError(JobschedError, RuntimeError):
    """A worker was asked to make a state transition that its lifecycle does not allow."""


class SchedulerClosedError(JobschedError, RuntimeError):
    """The scheduler was closed and runs no more jobs until it is started again."""


class CallbackError(JobschedError, RuntimeError):
    """A user callback (before_start, after_stop, process_result) raised; the original is the __cause__."""
