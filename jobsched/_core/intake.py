"""The one way a job enters a scheduler: checked, keyed, pickled in the caller's thread, then queued.

Every entry point - ``add_job``, ``submit``, ``Executor.submit``, ``Executor.map``'s batches, a journal hit
and the Dask backend - goes through ``prepare`` then ``enqueue``, so no path can skip a step::

    prepare (caller's thread, no lock)                      enqueue (under the scheduler's lock)
    checks -> journal key -> journal lookup ──hit──────────> numbered, settled by the loop, never run
                                            └─miss─> pickle -> large buffers into shared memory -> queued

Bad input fails in ``prepare``, before anything is queued: the queue is left as it was. The pickled bytes
(large buffers through shared memory, ``_data.shm``) are made once, outside the scheduler's lock, which
``enqueue`` holds only to refuse a closed or broken scheduler and to number and queue a batch of entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._data import handles as _handles
from .._data import shm as _shm
from .._keys.derive import derive_key, normalize_key
from .._keys.seeds import job_seed
from ..errors import SchedulerBrokenError, SchedulerClosedError
from ..remote_call import NOT_A_REMOTE_CALL, RemoteCall, payload_of
from .checks import check_cost, check_max_retries, check_retry_on, check_timeout
from .futures import JobFuture
from .state import Entry

if TYPE_CHECKING:
    from ..scheduler import Scheduler

# A prepared job: its entry, and its journaled (result, failed) when the journal already has it.
Prepared = tuple[Entry, "tuple[Any, bool] | None"]


def prepare(sched: Scheduler, data: Any, *, cost: float = 0, future: JobFuture[Any] | None = None,
            timeout: float | None = None, max_retries: int | None = None, retry_on_timeout: bool | None = None,
            key: Any = None, retry_on: Any = None, needs: frozenset[str] | None = None,
            caller: str = "add_job") -> Prepared:
    """Check, key, pickle and store one job's data; nothing is queued yet (``enqueue`` does that).

    Raises here, in the caller's thread, for anything wrong with the job, naming ``caller`` (the call the user
    made): the queue is unchanged. ``needs`` is already checked (``_core.tags.parse_needs``).
    """
    if cost.__class__ is not int or cost:  # cost 0, the default, is known to be good
        check_cost(cost, caller)
    retry_names = sched._retry_on if retry_on is None else check_retry_on(caller, retry_on)
    if timeout is not None:
        check_timeout(caller, timeout)
    if max_retries is not None:
        check_max_retries(caller, max_retries)
    if sched._runs_remote_calls_only and not isinstance(data, RemoteCall):
        # It would fail in the worker: say so now.
        raise TypeError(f"{caller}: data is a {type(data).__name__}, but the default worker runs remote calls: "
                        f"{NOT_A_REMOTE_CALL}")
    journal = sched._journal
    if journal is not None:
        key = journal.key_of(data, key)  # UnkeyableError here: the queue is unchanged
        settled = journal.lookup(key)  # no scheduler lock: a hit may read the file
        if settled is not None:
            entry = Entry(cost, data, None, future, None, 0, False, key)
            if future is not None:
                future.entry = entry
            return entry, settled
    elif key is not None:
        key = normalize_key(key)  # the same TypeError for a bad key, journal or not
    seed = None
    if sched.seed is not None:  # from the job's key, or its content: never from when or where it runs
        seed = job_seed(sched.seed, key if key is not None else derive_key(data))
    handles: tuple[Any, ...] = ()
    if isinstance(data, RemoteCall):
        payload = payload_of(data)
        handles = data._handles
    elif _handles.live:
        with _handles.collecting() as seen:
            payload = _shm.dumps(_shm.wrap(data), f"{caller}: data")
        handles = tuple(dict.fromkeys(seen))
    else:
        payload = _shm.dumps(_shm.wrap(data), f"{caller}: data")
    if handles:
        _handles.check(handles, sched, caller)
    if isinstance(payload, _shm.OutOfBand):  # large buffers: copied into shared memory now (_data.shm)
        shm = getattr(sched._backend, "shm", None)
        payload = shm.store(payload) if shm is not None else payload.inline()
    entry = Entry(cost, data, payload, future, sched.timeout if timeout is None else timeout,
                  sched.max_retries if max_retries is None else max_retries,
                  sched.retry_on_timeout if retry_on_timeout is None else retry_on_timeout, key, needs)
    entry.handles = handles
    entry.seed = seed
    entry.retry_on = retry_names
    if future is not None:
        future.entry = entry
    return entry, None


def enqueue(sched: Scheduler, jobs: Sequence[Prepared]) -> None:
    """Queue prepared jobs, in order, under one lock and with at most one wake-up of the loop.

    Raises ``SchedulerClosedError`` or ``SchedulerBrokenError`` (none of ``jobs`` is queued) when no loop
    would run them.
    """
    # The lock is held for as few bytecodes as possible: a caller thread that loses the GIL while holding
    # it would stall the loop until the caller gets the GIL back.
    with sched._lock:
        _refuse_if_stopped(sched)
        state = sched._state
        was_empty = False
        for entry, settled in jobs:
            if settled is None:
                was_empty = state.add(entry) or was_empty
            else:  # from the journal: numbered like any job, delivered by the loop, never run
                was_empty = was_empty or not state.ready
                result, failed = settled
                state.add_settled(entry, result, failed)
                if failed:
                    result.job_index = entry.index  # the journaled JobError, now for this run's job
    # The loop looks at a non-empty queue again whenever a worker frees up, so only the job that makes the
    # queue non-empty needs to wake it: one syscall per burst, not per job.
    if was_empty:
        sched._engine.wake()


def _refuse_if_stopped(sched: Scheduler) -> None:
    """Raise if no loop would run a new job: the scheduler is closed, or stopped (or stopping) on an error.

    Called under the scheduler's lock, so that a job is either refused or queued before close() or the
    failing loop settles the queue.
    """
    if sched._closed:
        raise SchedulerClosedError("this scheduler is closed; create a new Scheduler to run more jobs")
    error = sched._broken or sched._state.stopped_on
    if error is not None:
        raise SchedulerBrokenError(f"the scheduler stopped on {type(error).__name__}: {error}; call "
                                   "start() to run it again") from error
