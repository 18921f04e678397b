"""The scheduler: a priority queue of jobs, K workers, and one thread at a time that owns them.

::

    caller threads                         the loop (one owner: a blocking start()'s thread, or "jobsched-scheduler")
    ──────────────                         ────────────────────────────────────────────────────────────────────
    add_job / submit ──pickle──> Entry ─lock─> SchedulerState (_core/state.py: queue by (cost, index), slots)
        (TypeError here, queue untouched)          │ commands
    scale / pause / cancel / close ─lock─> state   ▼
                          + wake-up byte    Engine (_core/loop.py) ──> Backend (_local/: processes, sockets;
                                                   │                        or dask.py)
    Future.result() <──────── deliver <── events ──┘      JOB ──TCP──> worker process ──RESULT──┘
    wait() / start(wait=True) <── idle    after_stop(sched, job, result)  (may add jobs)

Which file owns what: ``scheduler.py`` (this facade) checks arguments, offers the public methods and decides
which thread owns the loop; ``_core/state.py`` holds every decision; ``_core/loop.py`` turns events into
state changes and commands into I/O; ``_local/backend.py`` runs local worker processes through
``_local/transport.py`` (listener, handshake, framed connections), ``_local/processes.py`` (spawn, signals,
process groups, reaper) and ``_local/output.py`` (what workers print); ``_core/interrupt.py`` holds Ctrl-C
back to safe points; ``_local/wire.py`` is the protocol.

This file is longer than the others on purpose: ``Scheduler`` is the public API in one class, and most of
its length is the docstrings that the API reference is built from; each method is a few lines of checks that
hand over to ``_core``, where the behaviour lives.

**One owner.** Exactly one thread runs a scheduler's loop: a blocking ``start()`` runs it in its own thread
(as the manual's scheduler-start does: no thread hop per job), ``start(wait=False)`` on the background
thread "jobsched-scheduler". A second blocking ``start()`` from another thread joins a background loop, or
gets a clear error if another blocking ``start()`` owns it. Every state change happens under ``_lock``, so
``add_job``, ``submit``, ``scale``, ``cancel`` and ``close`` are safe from any thread; callbacks run on the
loop's thread, outside the lock.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._core.bars import RunBar  # tqdm itself is imported only when a bar is made
from ._core.checks import (
    check_cost,
    check_delay,
    check_max_retries,
    check_n_workers,
    check_positive_int,
    check_prefetch,
    check_retry_on,
    check_timeout,
    plural,
)
from ._core.dependencies import futures_in, submit_after
from ._core.futures import JobFuture, cancel_pending, force_cancel
from ._core.intake import enqueue, prepare
from ._core.interrupt import say_waiting
from ._core.loop import Engine
from ._core.owner import LoopOwner, can_hold_sigint
from ._core.slot import Progress, Worker
from ._core.snapshot import Snapshot, take_snapshot
from ._core.snapshot import counts as stats_of
from ._core.state import CLOSE_GRACE, Entry, SchedulerState
from ._core.tags import WorkerTags, parse_needs, tags_table, unsatisfied
from ._core.worker_env import WorkerEnv, env_table
from ._data.handles import Handle
from ._data.handles import put as put_handle
from ._keys.seeds import check_seed
from ._local import wire as _wire
from ._local.backend import LocalBackend, default_worker_command
from ._timeline.recorder import Running, Timeline, TimelineView
from .errors import SchedulerClosedError
from .job import Job
from .remote_call import RemoteCall, make_call, refuse_while_loading_script

if TYPE_CHECKING:
    from ._core.backend import Backend
    from ._journaling.resume import Resume

T = TypeVar("T")

BeforeStart = Callable[["Scheduler", Job], object]
AfterStop = Callable[["Scheduler", Job, Any], object]

_live: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for sched in list(_live):
        sched.close(timeout=2.0)


class Scheduler:
    """A job queue ordered by cost, served by worker processes.

    Args:
        make_worker_command: ``make_worker_command(worker_index) -> argv`` starting one worker process
            (see ``make_python_cmd``). Default: ``python -m jobsched.worker``, which runs remote calls.
        max_retries: the attempts a job has (default 3): a job whose worker dies this many times fails with
            ``JobError``; the errors ``retry_on`` retries count against the same budget.
        timeout: default per-job time limit in seconds (None: no limit). A job over its limit has its
            worker killed and replaced, and fails with ``JobTimeout``.
        retry_on_timeout: re-run a job that timed out, as if its worker had died (it counts against
            ``max_retries``; the last failure is still a ``JobTimeout``).
        max_jobs_per_worker: replace a worker by a fresh process after this many jobs (None: never), like
            ``max_tasks_per_child``; for code that leaks memory or state.
        max_worker_memory: replace a worker, between two jobs, once its resident memory (RSS) exceeds this
            many bytes (None: never).
        prefetch: jobs in flight per worker. 1 (the default): a job leaves the queue only when a worker is
            free, as in the manual, so a cheaper job added later (by ``after_stop`` too) is the very next
            to start. ``k``: up to ``k - 1`` jobs per worker are committed before a cheaper job added later;
            this hides the round trip for streams of tiny jobs. ``"auto"``: the scheduler measures job
            durations and keeps about the last millisecond of work (at least two round trips) in flight
            per worker, at most 256 jobs; jobs longer than about ten round trips go one at a time. It starts
            at one job per worker and deepens only from measurements; once every worker is busy and jobs
            wait, each keeps its next job at hand. A cheaper job added later waits behind the jobs already
            in flight, as with ``k``. With ``k`` or ``"auto"``, no worker gets a second job while another
            is idle or still starting. On Dask, ``"auto"`` is 1.
        echo_output: copy each line that a worker prints to this process's stderr, prefixed with
            ``[worker N]`` (in a Jupyter kernel: to the kernel's own stderr, never into a cell).
        listen: where workers connect: ``"HOST"`` (an ephemeral port) or ``"HOST:PORT"``. None (the default)
            listens on 127.0.0.1 with plain TCP and the HMAC handshake. Any explicit ``listen=``, loopback
            included, wraps every connection in TLS with a per-run self-signed certificate that workers pin,
            plus the same handshake (needs ``pip install 'jobsched[cluster]'``). Workers on other machines join
            with ``python -m jobsched.worker --connect HOST:PORT --credentials FILE`` (``write_credentials``).
        backend: run the jobs somewhere else than local worker processes, e.g.
            ``jobsched.dask.DaskBackend(client_or_address)``; ``workers`` then lists the backend's slots.
        journal: a SQLite file that records every result (see ``jobsched.journal``); a job whose key has a
            result in it is not run again: its result is delivered with ``job.from_journal`` True.
        rerun_failed: with a journal, run again the jobs that it records as failed (default); False
            delivers their journaled ``JobError`` instead.
        seed: give each job a seed derived from this int and the job's key (see ``jobsched.job_seed``):
            the worker seeds ``random``, and numpy's global state if numpy is imported there, before each
            job, so a job draws the same numbers whichever worker runs it, in whatever order, on a retry or
            a resume. None (the default): each worker keeps its own random state.
        retry_on: an exception class, or a tuple of them: a job that raises one of these (or a subclass)
            goes back to the queue at its cost, while it has attempts left (``max_retries``); per job:
            ``add_job(..., retry_on=...)``.
        retry_delay: seconds a job retried by ``retry_on`` waits before it is queued again (default 0).
        memory_limit: bytes of address space each local worker may use (``RLIMIT_AS``): a job that allocates
            past it fails with a ``JobError`` of type ``MemoryError`` and the worker runs the next job, where
            it would otherwise swap until the kernel's OOM killer ends it. None (the default): no limit.
        worker_env: environment variables of each worker slot, set before its process starts (a forked one
            too) and kept by its replacements: a callable ``index -> dict`` or a list of dicts, one per slot
            (slots beyond the list get none). E.g. ``worker_env=lambda i: {"CUDA_VISIBLE_DEVICES": str(i)}``.
        worker_tags: labels of worker slots: a mapping ``tag -> slot indices`` (``{"gpu": [0, 1]}``) or a
            callable ``index -> tags``. A job submitted with ``needs=TAG`` runs only on a slot with that tag.

    Raises:
        JournalError: the journal cannot be used (missing folder, read-only, not a journal, newer schema);
            raised before anything starts, with the file left untouched.
    """

    def __init__(self, make_worker_command: Callable[[int], list[str]] | None = None, *, max_retries: int = 3,
                 timeout: float | None = None, retry_on_timeout: bool = False,
                 max_jobs_per_worker: int | None = None, max_worker_memory: int | None = None,
                 prefetch: int | Literal["auto"] = 1, echo_output: bool = True, backend: Backend | None = None,
                 journal: str | os.PathLike[str] | None = None, rerun_failed: bool = True,
                 seed: int | None = None, retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
                 retry_delay: float = 0.0, memory_limit: int | None = None,
                 worker_env: WorkerEnv | None = None, worker_tags: WorkerTags | None = None,
                 listen: str | None = None) -> None:
        if make_worker_command is not None and not callable(make_worker_command):
            raise TypeError("Scheduler: make_worker_command must be a function worker_index -> argv, "
                            f"got {type(make_worker_command).__name__}; see make_python_cmd")
        check_max_retries("Scheduler", max_retries)
        check_prefetch("Scheduler: prefetch", prefetch)
        check_timeout("Scheduler", timeout)
        if max_jobs_per_worker is not None:
            check_positive_int("Scheduler: max_jobs_per_worker", max_jobs_per_worker)
        if max_worker_memory is not None:
            check_positive_int("Scheduler: max_worker_memory (bytes)", max_worker_memory)
        if memory_limit is not None:
            check_positive_int("Scheduler: memory_limit (bytes)", memory_limit)
        self.seed = check_seed("Scheduler", seed)
        self._retry_on = check_retry_on("Scheduler", retry_on)
        check_delay("Scheduler: retry_delay", retry_delay)
        self.memory_limit = memory_limit
        self.worker_env = worker_env
        self._worker_env_of = env_table(worker_env)
        tags_of = tags_table(worker_tags)
        self._journal: Resume | None = None
        if journal is not None:  # first: a bad journal fails before anything starts
            from ._journaling.resume import Resume

            self._journal = Resume.open(journal, rerun_failed=rerun_failed)
        self.make_worker_command = make_worker_command or default_worker_command
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_on_timeout = retry_on_timeout
        self.max_jobs_per_worker = max_jobs_per_worker
        self.max_worker_memory = max_worker_memory
        self.prefetch: int | Literal["auto"] = prefetch
        self.echo_output = echo_output
        listen_at = _parse_listen(listen)
        if listen_at is not None and backend is not None:
            raise ValueError("Scheduler: listen= applies to local and hand-started workers; a backend listens on its "
                             f"own (got backend={backend!r}): pass listen= to the backend, or drop one of the two")
        self._secret = _wire.new_secret()
        self._backend: Backend = backend or LocalBackend(self.make_worker_command, self._secret, echo_output,
                                                         memory_limit=memory_limit, listen=listen_at)
        try:
            self._backend.attach(self)  # refuses what it cannot run (worker files on Dask) before anything starts
        except BaseException:
            if self._journal is not None:
                self._journal.close()
            raise
        self._lock = threading.Lock()  # every change of the state happens under it
        self._cancel_future = self._cancel_entry  # one bound method for every future, not one object per job
        self._state = SchedulerState(prefetch=self.prefetch, max_jobs_per_worker=max_jobs_per_worker,
                                     max_worker_memory=max_worker_memory,
                                     start_timeout=self._backend.start_timeout)
        self._state.retry_delay = float(retry_delay)
        self._state.tags_of = tags_of
        # Slots that tags name: before start(), a job's needs= is checked against these.
        self._tagged_slots = 1 + max((i for ix in worker_tags.values() for i in ix), default=-1) \
            if isinstance(worker_tags, Mapping) else 0
        self._idle = threading.Condition(threading.Lock())
        self._engine = Engine(self, self._state, self._backend, self._lock, self._idle)
        if self._journal is not None:
            self._engine.journal = self._journal
            self._engine.on_result = self._journal.on_result
        self._timeline = Timeline()  # who ran what, when: sched.timeline(), the dashboard's timeline
        self._engine.timeline = self._timeline
        self._closed = False
        self._broken: BaseException | None = None  # a background loop ended on this error: refuse new jobs
        self._owner = LoopOwner(self)
        _live.add(self)

    # ------------------------------------------------------------------ adding jobs (any thread)

    def add_job(self, data: Any, cost: float = 0, key: Any = None, *, timeout: float | None = None,
                max_retries: int | None = None, retry_on_timeout: bool | None = None,
                retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
                needs: str | Iterable[str] | None = None) -> int:
        """Queue a job; it goes to the next free worker after every job of lower ``cost``.

        Args:
            data: what the worker's ``run`` / ``run_job`` receives; must pickle.
            cost: priority, lowest first; equal costs run in the order they were added.
            key: the job's journal key (a str, an int or a tuple of them); default: derived from ``data``
                when the scheduler has a journal. A job whose key has a result in the journal is not run.
            timeout: time limit in seconds for this job (default: the scheduler's).
            max_retries: worker deaths this job may cause before it fails (default: the scheduler's).
            retry_on_timeout: re-run the job if it times out (default: the scheduler's).
            retry_on: exception classes to retry this job on (default: the scheduler's; ``()``: none).
            needs: a worker tag (or a list of tags, all needed): only workers with it run the job
                (see ``worker_tags``). Among the jobs a worker may take, cost order holds.

        Returns:
            The number of jobs now waiting in the queue.

        Raises:
            TypeError: ``data`` cannot be pickled (the message says where in it), ``cost`` is not a number, or
                ``data`` is not a ``remote_call`` while the workers are the default ones, which run only remote
                calls (the queue is unchanged).
            UnkeyableError: a journal is on and ``data`` cannot be keyed stably: pass ``key=``.
            ValueError: ``cost`` or ``timeout`` is out of range, or no worker has the tags ``needs`` names.
            SchedulerClosedError: the scheduler is closed.
            SchedulerBrokenError: its background loop stopped on an error; ``start()`` runs it again.
        """
        enqueue(self, (prepare(self, data, cost=cost, timeout=timeout, max_retries=max_retries,
                               retry_on_timeout=retry_on_timeout, key=key, retry_on=retry_on,
                               needs=self._needs(needs, "add_job")),))
        return self.n_queued_jobs

    def submit(self, fn: Callable[..., T], /, *args: Any, cost: float = 0, timeout: float | None = None,
               max_retries: int | None = None, retry_on_timeout: bool | None = None, key: Any = None,
               retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
               needs: str | Iterable[str] | None = None, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a worker; return a ``concurrent.futures.Future`` of its result.

        The scheduler's workers must run remote calls (the default worker does). If ``fn`` raises, the
        future raises a ``JobError`` carrying the remote traceback. ``cost``, ``timeout``, ``max_retries``,
        ``retry_on_timeout`` and ``retry_on`` are as for ``add_job``; to pass a keyword argument of that name to ``fn``
        itself, submit a ``remote_call``: ``sched.submit(remote_call(fn, timeout=5), cost=1)``.
        ``future.cancel()`` also stops a running job (its worker is killed and replaced). ``key`` is the
        journal key, as for ``add_job`` (default: derived from ``fn``'s code and the arguments). ``needs`` sends
        the job only to workers with that tag (see ``add_job``). ``future.set_cost(c)`` moves it in the queue
        while it waits there (see ``set_cost``).

        A ``Future`` among the arguments (at any depth of lists, tuples and dicts) is a dependency: the job is
        queued once it is done, with its result in its place, and fails with its exception if it failed
        (``jobsched._core.dependencies``).
        """
        tags = self._needs(needs, "submit")
        inputs = futures_in(args, kwargs) if args or kwargs else None
        if inputs:
            return submit_after(inputs, lambda a, k: self.submit(fn, *a, cost=cost, timeout=timeout,
                                                                 max_retries=max_retries,
                                                                 retry_on_timeout=retry_on_timeout, key=key,
                                                                 retry_on=retry_on, needs=needs, **k),
                                args, kwargs)
        rc = fn if isinstance(fn, RemoteCall) and not args and not kwargs else make_call("submit", fn, args, kwargs)
        future: JobFuture[T] = JobFuture(self._cancel_future)
        enqueue(self, (prepare(self, rc, cost=cost, future=future, timeout=timeout, max_retries=max_retries,
                               retry_on_timeout=retry_on_timeout, key=key, retry_on=retry_on, needs=tags,
                               caller="submit"),))
        return future

    def put(self, obj: Any) -> Handle:
        """Send ``obj`` to the workers once; return a handle to pass in any number of jobs' arguments.

        Wherever a job's arguments hold the handle (at any depth), the job receives ``obj`` itself, as with
        Dask's ``scatter``. ``obj`` is pickled once, its large buffers into shared memory; each worker maps
        that memory read-only (a numpy array arrives read-only, backed by the shared pages: one copy on the
        machine, whatever the number of workers), unpickles the object once and keeps it for later jobs. On
        Dask (no shared memory), the data travels once per Dask worker: Dask's ``scatter(broadcast=True)``
        per task, or one message per resident worker, which unpickles it once.

        The data lives until ``handle.release()``, until the handle is garbage-collected once no queued or
        running job refers to it, or until ``close()``. With a journal, the keys of jobs that take the handle
        use its content digest, computed here once: a resumed run that puts the same data recognises
        them.

        Raises:
            TypeError: ``obj`` cannot be pickled (the message names the culprit).
            ValueError: resident Dask workers, and ``obj`` pickles to more than 2 GiB (one message).
            SchedulerClosedError: the scheduler is closed.
        """
        if self._closed:
            raise SchedulerClosedError("this scheduler is closed; create a new Scheduler to put data")
        share = getattr(self._backend, "share", None)  # a backend that delivers the data itself (Dask)
        handle = put_handle(obj, getattr(self._backend, "shm", None), self, self._journal is not None,
                            carried=share is None)
        if share is not None:
            share(handle, obj)
        return handle

    def _needs(self, needs: object, what: str) -> frozenset[str] | None:
        """Check ``needs=``: a tag that some worker has (the workers running now, or those to be started)."""
        tags = parse_needs(needs, what)
        if tags is None:
            return None
        tags_of = self._state.tags_of
        n = self._state.target or max(self._tagged_slots, self._backend.default_n_workers())
        why = unsatisfied(tags, [tags_of(i) if tags_of is not None else frozenset() for i in range(n)])
        if why is not None:
            raise ValueError(f"{what}: needs={needs!r} cannot be met: {why}. Pass a tag that a worker has, or "
                             "give workers tags with Scheduler(worker_tags=...)")
        return tags

    def set_cost(self, index: int, cost: float) -> bool:
        """Move queued job ``index`` to ``cost`` in the queue; False if it was already sent or has finished.

        Only a job still waiting in the queue can move: one that a worker has (running, or sent ahead with
        ``prefetch``) or that has finished keeps its place, and this returns False to say so.

        Raises:
            TypeError, ValueError: ``cost`` is not a finite number.
        """
        check_cost(cost, "set_cost")
        with self._lock:
            entry = self._state.find(index)
            return entry is not None and self._state.set_cost(entry, cost)

    def _set_entry_cost(self, entry: Entry, cost: float) -> bool:
        with self._lock:
            return self._state.set_cost(entry, cost)

    def _queued_futures(self) -> list[JobFuture[Any]]:
        """The futures of the jobs still queued, not yet sent to a worker (``Executor.shutdown``)."""
        with self._lock:
            return [entry.future for entry in self._state.queued_entries() if entry.future is not None]

    def _submit_many(self, calls: list[RemoteCall], caller: str) -> list[Future[Any]]:
        """Queue remote calls at cost 0, each prepared as ``submit`` does, under one lock (``Executor.map``).

        A call that cannot be prepared (it cannot be pickled, say) raises here and none of the batch is queued.
        """
        futures: list[JobFuture[Any]] = [JobFuture(self._cancel_future) for _ in calls]
        enqueue(self, [prepare(self, rc, future=future, caller=caller)
                       for rc, future in zip(calls, futures, strict=True)])
        return list(futures)

    @property
    def _runs_remote_calls_only(self) -> bool:
        """Whether the workers are the default ones, which run only remote calls."""
        return self.make_worker_command is default_worker_command

    def cancel(self, index: int) -> bool:
        """Cancel job ``index`` (as numbered by ``add_job``), queued or running; False if it already ended.

        A running job is stopped: its worker gets SIGTERM, then SIGKILL, with the processes the job started,
        and is replaced; the job is not retried. ``after_stop`` receives ``JobCancelled`` (a ``JobError``).
        """
        with self._lock:
            entry = self._state.find(index)
        return entry is not None and self._cancel_entry(entry, settle=True)

    def _cancel_entry(self, entry: Entry, settle: bool = False, queued_only: bool = False) -> bool:
        with self._lock:
            if queued_only and not entry.queued:
                return False
            outcome = self._state.cancel(entry, settle=settle or entry.future is None)
        if not outcome.cancelled:
            return False
        if self._journal is not None:  # not a result, but the journal's report shows it
            self._journal.on_cancel(entry, outcome.worker)
        if entry.future is not None:
            force_cancel(entry.future)
        self._engine.request_tick()
        return True

    def rerun_here(self, index: int, *, debug: bool = True) -> Any:
        """Run failed job ``index``'s call in this process, with its arguments, seed and working directory.

        Returns its result if it succeeds here. If it raises, the post-mortem debugger opens at the frame that
        raised (``pdb``, or IPython's ``%debug`` in a kernel; ``debug=False``: none), then the job's own
        exception is raised, with its own type. The scheduler keeps the calls of its last 1000 failed jobs;
        a journal keeps every failed job's call: ``Journal(path).rerun_here(key)``, even after a restart.

        Raises:
            KeyError: job ``index`` has not failed in this scheduler (or is too old to be kept).
            RuntimeError: its function can no longer be loaded here.
        """
        calls = self._engine.failed_calls or {}
        info = calls.get(index)
        if info is None:
            raise KeyError(f"rerun_here: job {index} has not failed in this scheduler (failed jobs kept: "
                           f"{sorted(calls)[-5:]}...); with a journal, use Journal(path).rerun_here(key)")
        from .worker.rerun import rerun_here

        return rerun_here(*info, f"job {index}", debug=debug)

    # ------------------------------------------------------------------ reading state (any thread)

    @property
    def n_queued_jobs(self) -> int:
        """Jobs waiting in the queue."""
        return self._state.n_queued

    @property
    def n_active_jobs(self) -> int:
        """Jobs taken from the queue whose result has not been delivered yet."""
        return self._state.n_active

    @property
    def n_workers(self) -> int:
        """The number of workers the scheduler keeps running."""
        return self._state.target

    @property
    def workers(self) -> list[Worker]:
        """The worker slots that exist now (index, pid, state, job, n_done, n_restarts, progress)."""
        with self._lock:
            return self._state.live_workers()

    @property
    def running(self) -> bool:
        """Whether a loop serves this scheduler now (a blocking ``start()`` or the background thread)."""
        return self._engine.owner is not None

    @property
    def paused(self) -> bool:
        """Whether dispatch is paused (``pause()``): running jobs finish, queued ones wait for ``resume()``."""
        return self._state.paused

    @property
    def address(self) -> str | None:
        """Where workers connect, as ``"HOST:PORT"``, once started (None before the first ``start()``)."""
        address = getattr(self._backend, "address", None)
        if not isinstance(address, tuple):
            return None
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def write_credentials(self, path: str | os.PathLike[str]) -> None:
        """Write what a hand-started worker needs to join this scheduler, to a file created with mode 0600.

        ``python -m jobsched.worker --connect HOST:PORT --credentials FILE`` reads it: the run's secret and,
        with ``listen=``, the certificate the worker pins. The secret never goes on a command line. Anyone who
        can read the file can run jobs' code in your workers' place: keep it private (a home directory on a
        shared file system is the usual place on a cluster).

        Raises:
            SchedulerClosedError: the scheduler is closed.
            RuntimeError: the scheduler does not listen yet (call ``start(0, wait=False)`` first), or its
                backend takes no hand-started workers.
        """
        if self._closed:
            raise SchedulerClosedError("write_credentials: the scheduler is closed; create a new Scheduler")
        credentials = getattr(self._backend, "credentials", None)
        if credentials is None:
            raise RuntimeError(f"write_credentials: {type(self._backend).__name__} takes no hand-started workers; "
                               "use the default backend (Scheduler(listen=...))")
        found = credentials()
        if found is None:
            raise RuntimeError("write_credentials: the scheduler does not listen yet; call start(0, wait=False) "
                               "first, then write the credentials")
        from ._local.tls import write_private

        write_private(path, found.to_json() + "\n")

    def stats(self) -> dict[str, Any]:
        """Return a snapshot: queued, active, done, failed, workers, jobs_per_s, and a few more.

        A job counts as done (and no longer active) as soon as its outcome is in, before its future is
        resolved, so stats read after ``future.result()`` include it; ``wait()`` still waits for its
        ``after_stop``. ``done`` counts every finished job, and ``failed``, ``cancelled`` and
        ``from_journal`` overlap with it and with each other (a cancelled job is also failed). ``outcomes``
        splits ``done`` into disjoint counts that add up to it: ``{"succeeded", "failed", "cancelled",
        "from_journal"}`` (a job that raised, timed out or whose worker died is failed; a journal hit is
        from_journal whatever it recorded; a queued job whose future was cancelled, which ``done`` leaves
        out, is cancelled there): with ``queued`` and ``active``, they add up to every job added. This is
        what the dashboard and ``%jobsched status`` show. ``mean_job_s`` is the mean time a job took on its
        worker (None before the first one), which the dashboard's ETA uses.
        """
        with self._lock:
            counts = stats_of(self._state, time.monotonic())
            error = self._state.error or self._broken
        counts.update(running=self.running, closed=self._closed,
                      error=f"{type(error).__name__}: {error}" if error is not None else None)
        return counts

    def snapshot(self) -> Snapshot:
        """Return a frozen, consistent view of the counts and every worker (what the dashboard shows)."""
        with self._lock:
            return take_snapshot(self._state, time.monotonic(), self._broken, self.running, self._closed)

    def timeline(self, window_s: float = 600.0) -> TimelineView:
        """Return the task timeline of the last ``window_s`` seconds: one lane per worker, finished jobs
        (the newest one by one, older ones summed per worker and time bucket) and the jobs running now."""
        snap = self.snapshot()
        now_ms = time.time() * 1000.0
        running = tuple(Running(r.index, r.job, r.cost, now_ms - r.job_elapsed * 1000.0)
                        for r in snap.workers if r.job is not None)
        return self._timeline.view(now_ms, window_s, running, tuple(r.index for r in snap.workers))

    def running_jobs(self) -> list[tuple[int, int | None, float | None, float, Progress | None]]:
        """List what runs now: ``(worker index, job index, cost, elapsed seconds, progress)`` per busy worker."""
        return [(r.index, r.job, r.cost, r.job_elapsed, r.progress)
                for r in self.snapshot().workers if r.job is not None]

    def dashboard(self) -> Any:
        """Return a live ipywidgets dashboard of this scheduler (needs ``jobsched[notebook]``)."""
        try:
            from .notebook.dashboard import Dashboard
        except ImportError as exc:
            raise ImportError(
                f"Scheduler.dashboard() needs ipywidgets ({exc}): pip install 'jobsched[notebook]'") from exc
        return Dashboard(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """In a notebook, ``display(sched)`` (or ``sched`` as a cell's value) shows the dashboard."""
        return self.dashboard()._repr_mimebundle_(include=include, exclude=exclude)

    def __repr__(self) -> str:
        s = self.stats()
        mode = "closed" if s["closed"] else "paused" if s["paused"] else "running" if s["running"] else "stopped"
        return (f"<Scheduler {mode}: {plural(s['workers'], 'worker')}, {s['queued']} queued, {s['active']} active, "
                f"{s['done']} done, {s['failed']} failed>")

    # ------------------------------------------------------------------ running

    def start(self, n_workers: int | None = None, before_start: BeforeStart | None = None,
              after_stop: AfterStop | None = None, close_workers: bool = True, wait: bool = True,
              progress: bool = False) -> None:
        """Run the queued jobs (and those added meanwhile) on ``n_workers`` workers.

        Args:
            n_workers: workers to run. None keeps the current count, or ``processor_count()`` if there are
                none. Extra running workers are closed.
            before_start: ``before_start(sched, job)``, called before a job is sent; may add jobs.
            after_stop: ``after_stop(sched, job, result)``, called with each result (a ``JobError`` if the
                job failed); may add jobs.
            close_workers: close the workers when every job is done (blocking mode only); False keeps
                them for the next ``start``.
            wait: block until no job is queued or active (the manual's behaviour). False returns at once
                and leaves the scheduler running in the background until ``close()``.
            progress: show a tqdm bar over the run (a widget in a notebook, text on stderr elsewhere): one
                step per delivered job; its total grows as jobs are added. It closes when the loop ends.

        Raises:
            SchedulerClosedError: the scheduler is closed.
            ValueError: no workers for the queued jobs.
            RuntimeError: called from a callback (with ``wait=True``), from a script's worker while the
                script is loaded (no ``if __name__ == "__main__":`` guard), or while another thread's
                blocking ``start()`` runs this scheduler.
            WorkerStartupError: the workers could not start.
            Exception: whatever ``before_start`` or ``after_stop`` raised (dispatch stopped, workers closed).
        """
        engine, state, me = self._engine, self._state, threading.current_thread()
        if self._closed:
            raise SchedulerClosedError("this scheduler is closed; create a new Scheduler")
        refuse_while_loading_script("Scheduler.start()")
        if wait and engine.owner is me:
            raise RuntimeError("start(wait=True) cannot be called from a callback: callbacks run on the scheduler's "
                               "loop thread, which the call would block. Add jobs with add_job instead")
        if n_workers is not None:
            check_n_workers(n_workers)
        if n_workers is None and not state.target:
            n_workers = self._backend.default_n_workers()
        target = n_workers if n_workers is not None else state.target
        if wait and target == 0 and self.n_queued_jobs:
            raise ValueError(f"start: {plural(self.n_queued_jobs, 'job')} queued but n_workers=0; "
                             "pass n_workers >= 1")
        bar = RunBar(lambda: state.n_queued + state.n_active) if progress else None
        old_bar = bar
        with self._lock:
            error = state.take_error()
            owner = engine.owner
            if error is None and owner is not None and owner is not me and not self._owner.background:
                if bar is not None:
                    bar.close()
                raise RuntimeError(f"start: this scheduler already runs in the blocking start() of thread "
                                   f"{owner.name!r}; call wait() to wait for its jobs")
            if error is None:
                self._broken = None
                engine.before_start = before_start
                engine.after_stop = after_stop if bar is None else bar.counting(after_stop)
                old_bar, self._owner.run_bar = self._owner.run_bar, bar
                state.configure(target, until_idle=wait, close_when_idle=close_workers)
                here = owner is None and wait and can_hold_sigint()
                if owner is None:
                    self._owner.take(None if here else self._owner.new_thread())
        if old_bar is not None:  # the bar of an earlier start() on the same loop, or this one if it failed
            old_bar.close()
        if error is not None:
            raise error
        engine.wake()
        if here:
            self._owner.serve_here()
        elif wait:
            self._owner.wait_blocking(None, until_stopped=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or active; return False if ``timeout`` seconds passed first.

        Raises:
            RuntimeError: called from a callback (it runs on the loop's thread, which it would block), or
                jobs are queued but nothing runs them (call ``start()``).
            SchedulerClosedError: the scheduler was closed with jobs still queued.
            Exception: an error kept from the background run (a callback that raised, workers that could
                not start); it is raised once.
        """
        if self._engine.owner is threading.current_thread():
            raise RuntimeError("wait() cannot be called from a callback (before_start, after_stop, a future's "
                               "done-callback): callbacks run on the scheduler's loop thread, which wait() would "
                               "block forever. Count results in after_stop instead")
        return self._owner.wait_blocking(timeout)

    def scale(self, n_workers: int) -> None:
        """Change the number of workers now; busy workers beyond the new count finish their job first."""
        check_n_workers(n_workers)
        self._control(lambda: self._state.set_target(n_workers))

    def pause(self) -> None:
        """Stop handing out jobs; running jobs finish."""
        self._control(lambda: setattr(self._state, "paused", True))

    def resume(self) -> None:
        """Hand out jobs again after ``pause``."""
        self._control(lambda: setattr(self._state, "paused", False))

    def _control(self, change: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise SchedulerClosedError("this scheduler is closed; create a new Scheduler")
            change()
        self._engine.request_tick()

    def close(self, timeout: float | None = CLOSE_GRACE) -> None:
        """Close every worker gracefully and stop the loop. Idempotent.

        Each worker finishes the job it runs (its result is delivered), then exits. A worker still alive
        ``timeout`` seconds later is sent SIGTERM, then SIGKILL. Queued jobs stay queued; their futures are
        cancelled. From a callback, it returns at once and the loop closes after the callback.
        """
        grace = CLOSE_GRACE if timeout is None else timeout
        engine, me = self._engine, threading.current_thread()
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on, add_job and submit are refused
            self._state.begin_close(grace)
            owner = engine.owner
            if owner is None and not self._state.all_closed():
                self._owner.take(self._owner.new_thread())
                owner = engine.owner
        engine.wake()
        if owner is me:
            return  # a callback: the loop closes the workers once it returns
        if owner is not None:
            self._owner.wait_for_loop_end()
        else:
            engine.shutdown()
            self._settle_after_close()

    def _settle_after_close(self) -> None:
        """The loop is gone: cancel the futures of jobs left in the queue, release the backend."""
        with self._lock:
            queued = self._state.queued_entries()
            for entry in queued:  # the jobs stay queued; their futures are cancelled (counted so at once)
                if entry.future is not None and not entry.future.done():
                    self._state.cancel(entry, settle=False)
        for entry in queued:
            future = entry.future
            if future is not None and not cancel_pending(future) and not future.done():
                # Its worker was terminated at the end of the grace period and the job went back to the
                # queue: a running future cannot be cancelled, so it gets the reason instead of hanging.
                future.set_exception(SchedulerClosedError(
                    f"job {entry.index} was still running when close() terminated its worker; "
                    "give close() a longer timeout to let jobs finish"))
        self._backend.close()
        if self._journal is not None:
            self._journal.close()
        _live.discard(self)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._say_close_wait(CLOSE_GRACE)
        self.close()

    def _say_close_wait(self, grace: float) -> None:
        """A Ctrl-C left the ``with`` block: say what ``close()`` waits for, if anything (one line on stderr).

        Read without the lock: a second Ctrl-C must never leave it held, and the count is only shown.
        """
        running = self._state.n_active
        if running and not self._closed and self._engine.owner is not threading.current_thread():
            say_waiting(f"up to {grace:g} s for {plural(running, 'running job')} to finish")


def _parse_listen(listen: str | None) -> tuple[str, int] | None:
    """``listen=``: ``"HOST"`` or ``"HOST:PORT"`` (``"[::1]:PORT"``) -> ``(host, port)``; port 0 is ephemeral."""
    if listen is None:
        return None
    if not isinstance(listen, str) or not listen.strip():
        raise TypeError(f"Scheduler: listen must be 'HOST' or 'HOST:PORT', for example '10.0.0.5:7000', got "
                        f"{listen!r}")
    text = listen.strip()
    if text.count(":") == 1 or text.startswith("["):
        return _wire.parse_address(text, "Scheduler: listen")
    return text, 0


def make_scheduler(make_worker_command: Callable[[int], list[str]] | None = None, **options: Any) -> Scheduler:
    """Return ``Scheduler(make_worker_command, **options)`` (the manual's name)."""
    return Scheduler(make_worker_command, **options)


__all__ = ["AfterStop", "BeforeStart", "Scheduler", "default_worker_command", "make_scheduler", "os"]
