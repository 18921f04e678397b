"""``Worker``: one worker slot as users and the dashboard see it, owned by the scheduler's state.

A slot has an index (``0 .. n_workers-1``, passed to ``make_worker_command``) and runs one process at a
time; when that process exits, a new one takes the slot. The scheduler's state (``_core.state.SchedulerState``)
is the only writer of a slot, under the scheduler's lock; other threads read the public attributes, which
are plain values (a read never sees half an update of one attribute). For a consistent view of several
slots at once, use ``Scheduler.snapshot()``.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from ..states import KillReason, WorkerState, check_transition

if TYPE_CHECKING:
    from ..job import Job
    from .state import Entry

OUTPUT_LINES = 200  # lines of output kept per worker for the dashboard and error messages


class Progress(NamedTuple):
    """The last progress a running job reported (``jobsched.progress`` or a tqdm bar inside it).

    ``Worker.progress`` holds it while the job runs, e.g. ``Progress(done=12, total=50, note='steps')``.

    Attributes:
        done: how much of the job is done, in the job's own unit (steps, items, bytes).
        total: how much there is in all, or None when the job does not know.
        note: a short text the job gave with its report ("" if none).
    """

    done: float
    total: float | None
    note: str


class Worker:
    """A worker slot as the scheduler sees it.

    Attributes:
        index: the slot number, ``0 .. n_workers-1``; passed to ``make_worker_command``.
        pid: process id of the current process (None until the loop has started it, and for a few tens of
            milliseconds while a worker beyond one per core waits to be forked by its scheduler's zygote,
            the small interpreter that forks workers); on Dask, the Dask worker's.
        address: where the worker runs: None for a local process, the Dask worker's address on Dask.
        state: a ``WorkerState``.
        n_done: jobs this slot has finished (over all its processes).
        n_restarts: how many times the slot's process was replaced after an unexpected exit.
        output: the last lines the worker printed (stdout and stderr).
        exit_description: how the last process ended ("exit code 0", "killed by signal SIGKILL"), or None.
        progress: the running job's last ``Progress(done, total, note)``, or None.
        tags: the slot's tags (``Scheduler(worker_tags=...)``): jobs with ``needs=`` go only to slots that have
            them.
    """

    __slots__ = (
        "index", "pid", "address", "state", "n_done", "n_restarts", "output", "exit_description", "progress", "tags",
        "last_rss",
        # Policy bookkeeping, owned by the scheduler's state.
        "_generation", "_inflight", "_job_started", "_n_jobs_this_process", "_retiring", "_ready_at",
        "_started_at", "_restart_at", "_deadline", "_fast_deaths", "_kill_reason", "_signalled", "_hungry",
        "_pipelined", "_span", "_adopted",
        # What the backend keeps for this slot (a process and its socket, a Dask task): opaque here.
        "_io",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid: int | None = None
        self.address: str | None = None
        self.state = WorkerState.CLOSED
        self.n_done = 0
        self.n_restarts = 0
        self.last_rss: int | None = None  # resident memory in bytes after its last job, when measured
        self.output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES)
        self.exit_description: str | None = None
        self.progress: Progress | None = None
        self.tags: frozenset[str] = frozenset()
        self._generation = 0
        self._inflight: collections.deque[Entry] = collections.deque()  # sent, oldest first = running
        self._job_started = 0.0  # monotonic time when _inflight[0] began to run
        self._n_jobs_this_process = 0
        self._retiring = False  # close it as soon as it holds no job
        self._ready_at = 0.0
        self._started_at = 0.0
        self._restart_at = 0.0
        self._deadline = 0.0  # handshake, close-grace or kill deadline, by state
        self._fast_deaths = 0  # deaths in a row before READY: the restart back-off
        self._kill_reason: KillReason | None = None
        self._signalled = False  # the scheduler sent its process a signal
        self._hungry = False  # in the state's queue of workers with room for a job
        self._pipelined = False  # _inflight[0] was sent before the previous result came (prefetch="auto")
        self._span: tuple[float, float, int, bool] | None = None  # prefetch="auto": the last results' timing
        self._adopted = False  # a worker started by hand took this slot: not counted in n_workers, never restarted
        self._io: Any = None

    @property
    def generation(self) -> int:
        """How many processes this slot has started (the handshake names it, so a stale process is refused)."""
        return self._generation

    @property
    def job(self) -> Job | None:
        """The job the worker is running, or None."""
        inflight = self._inflight
        return inflight[0].job if inflight else None

    @property
    def job_elapsed(self) -> float:
        """Seconds the current job has run (0 if idle)."""
        return time.monotonic() - self._job_started if self._inflight else 0.0

    def _move(self, new: WorkerState) -> None:
        """Change state, checking the lifecycle's transition table (the one place ``state`` changes)."""
        check_transition(self.index, self.state, new)
        self.state = new

    def __repr__(self) -> str:
        job = self.job
        doing = f" job={job.index}" if job is not None else ""
        where = f" {self.address}" if self.address else ""
        return f"<Worker {self.index}{where} pid={self.pid} {self.state.name}{doing} done={self.n_done}>"


def tail(worker: Worker, n: int = 30) -> str:
    """The last ``n`` lines a worker printed, as one text."""
    return "\n".join(list(worker.output)[-n:])
