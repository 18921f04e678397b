"""What the pure scheduler state works on and answers with: job entries and commands, as plain data.

``Entry`` is a job in the scheduler's hands. The commands are what ``SchedulerState`` asks its shell to do;
the shell (``_core.loop.Engine``) matches on their type and carries them out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..job import Job
from ..states import KillReason
from .slot import Worker


class Entry:
    """A job in the scheduler's hands: its pickled data and what is needed to settle it.

    A queued job costs this object, its pickled bytes (held once, here) and the heap's (cost, index, entry)
    tuple. The ``Job`` record that callbacks and ``Worker.job`` show is made on first use: a million queued
    jobs do not carry a million ``Job`` objects.
    """

    __slots__ = ("index", "cost", "data", "payload", "future", "timeout", "max_retries", "retry_on_timeout",
                 "key", "deaths", "timed_out", "sent", "queued", "cancelled", "from_journal", "needs", "handles",
                 "_job", "seed", "retry_on", "raised")

    def __init__(self, cost: float, data: Any, payload: Any, future: Any, timeout: float | None,
                 max_retries: int, retry_on_timeout: bool, key: str | None = None,
                 needs: frozenset[str] | None = None) -> None:
        self.index = -1  # set by SchedulerState.add
        self.cost = cost
        self.data = data
        self.payload = payload  # bytes, or a list of buffers: what the backend puts on the wire
        self.future = future  # a concurrent.futures.Future, opaque here
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_on_timeout = retry_on_timeout
        self.key = key  # the journal key, when a journal is on
        self.deaths: list[str] | None = None  # "worker 2 (pid 123) killed by signal SIGKILL", ...
        self.timed_out = False
        self.sent = False  # dispatched at least once: its future is RUNNING (a re-queued job's stays so)
        self.queued = False  # in the heap now
        self.cancelled = False
        self.from_journal = False
        self.needs = needs  # the worker tags it needs (``needs=``), or None: any worker
        self.handles: tuple[Any, ...] = ()  # the ``put`` handles in its data (what a Dask task must be given)
        self._job: Job | None = None
        self.seed: int | None = None  # the job's seed (Scheduler(seed=...)), sent with it
        # Exception types to retry the job on, as "module.qualname" (see SchedulerState.job_raised), and the
        # errors it raised and was retried for: with ``deaths``, its attempts so far.
        self.retry_on: frozenset[str] = frozenset()
        self.raised: list[str] | None = None

    @property
    def job(self) -> Job:
        """The job's ``Job`` record, made on first use."""
        job = self._job
        if job is None:
            job = self._job = Job(self.index, self.cost, self.data)
            job.from_journal = self.from_journal
        return job

    @property
    def attempts(self) -> int:
        """How many times the job ended without a result: its worker's deaths and the errors it was retried for."""
        return len(self.deaths or ()) + len(self.raised or ())


# ---- commands: what the shell must do. Plain records; the shell matches on their type.

class StartWorker(NamedTuple):
    worker: Worker


class SendJobs(NamedTuple):
    worker: Worker
    entries: list[Entry]


class CloseWorker(NamedTuple):
    worker: Worker


class KillWorker(NamedTuple):
    worker: Worker
    reason: KillReason
    force: bool  # SIGKILL now; else SIGTERM, and SIGKILL later if it does not exit


class WithdrawJob(NamedTuple):
    worker: Worker
    entry: Entry  # sent ahead to ``worker`` and cancelled: the worker drops it if it has not started it


class Deliver(NamedTuple):
    entry: Entry
    result: Any
    failed: bool


class Fail(NamedTuple):
    error: BaseException


Command = StartWorker | SendJobs | CloseWorker | KillWorker | WithdrawJob | Deliver | Fail


class CancelOutcome(NamedTuple):
    cancelled: bool  # the job will not deliver a result
    was_running: bool  # its worker is being killed
    worker: int | None = None  # the slot of the worker that held it (was_running)
