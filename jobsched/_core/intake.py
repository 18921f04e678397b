"""How a job enters a scheduler: checked, keyed (journal), pickled in the caller's thread, then queued.

Everything here runs in the caller's thread (``add_job``, ``submit``, ``Executor.map``): bad input fails here
and the queue is left as it was; the pickled bytes (large buffers through shared memory, ``_data.shm``) are made
once, outside the scheduler's lock, which is held only to number and queue the entry.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .._data import handles as _handles
from .._data import shm as _shm
from .._keys.derive import normalize_key
from .._local.backend import default_worker_command
from ..errors import SchedulerBrokenError, SchedulerClosedError
from ..remote_call import NOT_A_REMOTE_CALL, RemoteCall, payload_of
from .checks import check_cost, check_positive_int, check_timeout
from .futures import JobFuture
from .state import Entry

if TYPE_CHECKING:
    from ..scheduler import Scheduler


def push(sched: Scheduler, data: Any, cost: float, future: JobFuture[Any] | None, timeout: float | None,
         max_retries: int | None, retry_on_timeout: bool | None, key: Any = None,
         needs: frozenset[str] | None = None) -> Entry:
    check_cost(cost)
    check_timeout("add_job", timeout)
    if max_retries is not None:
        check_positive_int("add_job: max_retries", max_retries)
    if not isinstance(data, RemoteCall) and sched.make_worker_command is default_worker_command:
        # It would fail in the worker: say so now.
        raise TypeError(f"add_job: data is a {type(data).__name__}, but the default worker runs remote calls: "
                        f"{NOT_A_REMOTE_CALL}")
    journal = sched._journal
    if journal is not None:
        key = journal.key_of(data, key)  # UnkeyableError here: the queue is unchanged
        settled = journal.lookup(key)  # no scheduler lock: a hit may read the file
        if settled is not None:
            return _push_settled(sched, data, cost, future, key, *settled)
    elif key is not None:
        key = normalize_key(key)  # the same TypeError for a bad key, journal or not
    handles: tuple[Any, ...] = ()
    if isinstance(data, RemoteCall):
        payload = payload_of(data)
        handles = data._handles
    elif _handles.live:
        with _handles.collecting() as seen:
            payload = _shm.dumps(_shm.wrap(data), "add_job: data")
        handles = tuple(dict.fromkeys(seen))
    else:
        payload = _shm.dumps(_shm.wrap(data), "add_job: data")
    if handles:
        _handles.check(handles, sched, "submit" if future is not None else "add_job")
    if isinstance(payload, _shm.OutOfBand):  # large buffers: copied into shared memory now (_shm)
        shm = getattr(sched._backend, "shm", None)
        payload = shm.store(payload) if shm is not None else payload.inline()
    entry = Entry(cost, data, payload, future, sched.timeout if timeout is None else timeout,
                  sched.max_retries if max_retries is None else max_retries,
                  sched.retry_on_timeout if retry_on_timeout is None else retry_on_timeout, key, needs)
    entry.handles = handles
    if future is not None:
        future.entry = entry
    # The lock is held for as few bytecodes as possible: a caller thread that loses the GIL while holding
    # it would stall the loop until the caller gets the GIL back.
    with sched._lock:
        _refuse_if_stopped(sched)
        was_empty = sched._state.add(entry)
    # The loop looks at a non-empty queue again whenever a worker frees up, so only the job that makes the
    # queue non-empty needs to wake it: one syscall per burst, not per job.
    if was_empty:
        sched._engine.wake()
    return entry

def submit_many(sched: Scheduler, calls: list[RemoteCall]) -> list[Future[Any]]:
    """Queue remote calls at cost 0 under one lock and with one wake-up (``Executor.map``'s batches).

    Each call is pickled first, in this thread, as ``submit`` does: a call that cannot be pickled raises
    here and none of the batch is queued. With a journal, each call goes through ``submit``'s path.
    """
    if sched._journal is not None:
        return [sched.submit(rc) for rc in calls]
    timeout, max_retries, retry = sched.timeout, sched.max_retries, sched.retry_on_timeout
    cancel = sched._cancel_future
    futures: list[Future[Any]] = []
    entries: list[Entry] = []
    for rc in calls:
        future: JobFuture[Any] = JobFuture(cancel)
        entry = Entry(0, rc, payload_of(rc), future, timeout, max_retries, retry, None)
        future.entry = entry
        futures.append(future)
        entries.append(entry)
    with sched._lock:
        _refuse_if_stopped(sched)
        add = sched._state.add
        was_empty = False
        for entry in entries:
            was_empty = add(entry) or was_empty
    if was_empty:
        sched._engine.wake()
    return futures

def _push_settled(sched: Scheduler, data: Any, cost: float, future: JobFuture[Any] | None, key: str, result: Any,
                  failed: bool) -> Entry:
    """Settle a job from the journal: numbered like any job, delivered by the loop, never run."""
    entry = Entry(cost, data, None, future, None, 0, False, key)
    if future is not None:
        future.entry = entry
    with sched._lock:
        if sched._closed:
            raise SchedulerClosedError("this scheduler is closed; create a new Scheduler to run more jobs")
        was_empty = not sched._state.ready
        sched._state.add_settled(entry, result, failed)
        if failed:
            result.job_index = entry.index  # the journaled JobError, now for this run's job
    if was_empty:
        sched._engine.wake()
    return entry


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
