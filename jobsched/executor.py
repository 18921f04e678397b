"""``Executor``: the ``concurrent.futures`` interface over a private background scheduler.

At interpreter exit, an executor that was not shut down (or was shut down with ``wait=False``) finishes its
pending work first, as ``concurrent.futures`` promises: ``_wait_at_exit`` runs among ``threading``'s exit
hooks, before the ``atexit`` hook that closes every ``Scheduler`` within a short grace period.
"""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import itertools
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._core.bars import job_bar  # tqdm itself is imported only when a bar is made
from ._core.checks import check_positive_int
from ._core.dependencies import futures_in, submit_after
from ._core.interrupt import say_waiting
from .commands import processor_count
from .errors import WorkerInitializerError
from .remote_call import RemoteCall, make_call, remote_call
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ._core.backend import Backend
    from ._data.handles import Handle

T = TypeVar("T")


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose workers are jobsched worker processes.

    It takes ``ProcessPoolExecutor``'s arguments. Functions defined in a notebook cell, lambdas and closures
    work (they travel by value). A failed call's future raises the call's own exception type, which is also a
    ``JobError`` carrying the remote traceback (see ``JobError``). A ``Future`` among a call's arguments is a
    dependency: the call runs once it is done, with its result in its place.

    Args:
        max_workers: worker processes (default ``processor_count()``; with ``backend``: every thread the
            backend's cluster has when the first call is submitted).
        mp_context: not supported (jobsched starts its workers itself, never as forks of this process);
            anything but None is a ``ValueError``.
        initializer: called as ``initializer(*initargs)`` once in each worker, before its first call. If it
            raises, the executor is broken: that call and every later one fail with ``WorkerInitializerError``
            (a ``concurrent.futures.BrokenExecutor``) carrying the initializer's traceback, and ``submit``
            raises it.
        initargs: the initializer's arguments.
        max_tasks_per_child: replace a worker by a fresh process after this many calls (None: never).
        backend: run the calls elsewhere, e.g. ``jobsched.dask.DaskBackend(client_or_address)``.
        **options: passed to ``Scheduler`` (timeout, max_retries, prefetch, journal, rerun_failed, seed,
            retry_on, memory_limit, ...).
            ``prefetch`` defaults to ``"auto"`` here: an executor has no costs and no callbacks to order by,
            so it keeps as many calls in flight per worker as hide the round trip.

    Raises:
        TypeError: an argument that neither ``Executor`` nor ``Scheduler`` takes.
        ValueError: a bad ``max_workers`` or ``max_tasks_per_child``, or an ``mp_context``.
    """

    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (), *,
                 max_tasks_per_child: int | None = None, backend: Backend | None = None, **options: Any) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                        or max_workers < 1):
            raise ValueError(f"Executor: max_workers must be greater than 0 (an integer, or None for "
                             f"processor_count()), got {max_workers!r}")
        if mp_context is not None:
            raise ValueError(f"Executor: mp_context is not supported (got {mp_context!r}): jobsched starts its "
                             "workers itself, as fresh interpreters, never as forks of this process; drop it")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"Executor: initializer must be callable, got {type(initializer).__name__}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"Executor: initargs must be a tuple, got {type(initargs).__name__}")
        if max_tasks_per_child is not None:
            check_positive_int("Executor: max_tasks_per_child", max_tasks_per_child)
            if options.setdefault("max_jobs_per_worker", max_tasks_per_child) != max_tasks_per_child:
                raise TypeError("Executor: give max_tasks_per_child or max_jobs_per_worker, not both")
        unknown = sorted(set(options) - _SCHEDULER_OPTIONS)
        if unknown:
            raise TypeError(f"Executor() got an unexpected keyword argument {unknown[0]!r}; it takes "
                            "max_workers, mp_context, initializer, initargs, max_tasks_per_child, backend and "
                            f"the Scheduler options: {', '.join(sorted(_SCHEDULER_OPTIONS))}")
        self._max_workers = max_workers or processor_count()
        self._n_start = max_workers if backend is not None else self._max_workers  # None: the backend's count
        options.setdefault("prefetch", "auto")
        # What every call of this executor runs first, once per worker (see jobsched.worker.initializer).
        self._init: tuple[str, RemoteCall] | None = None
        if initializer is not None:
            self._init = (uuid.uuid4().hex, remote_call(initializer, *initargs))
        self._broken: BaseException | None = None
        self._scheduler = Scheduler(backend=backend, **options)
        self._lock = threading.Lock()
        self._started = False
        self._shutdown = False
        self._finished = threading.Event()
        _live.add(self)

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler behind this executor (for ``stats()``, ``dashboard()``, ``scale()``)."""
        return self._scheduler

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` on a worker; return its future.

        Every keyword argument goes to ``fn``, as ``concurrent.futures`` promises, even one named
        ``timeout`` or ``cost``: per-job options are the executor's (``Executor(timeout=...)``). A ``Future``
        in the arguments (at any depth of lists, tuples and dicts) makes the call wait for it and receive
        its result; if it failed, so does this call, with its exception.

        Raises:
            RuntimeError: the executor was shut down.
            WorkerInitializerError: the executor is broken: its initializer raised in a worker.
            TypeError: ``fn`` or an argument cannot be pickled (the message names it).
        """
        inputs = futures_in(args, kwargs)
        self._ensure_started()
        if inputs:
            return submit_after(inputs, lambda a, k: self._track(self._scheduler.submit(self._call(fn, a, k))),
                                args, kwargs)
        return self._track(self._scheduler.submit(self._call(fn, args, kwargs)))

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> RemoteCall:
        call = make_call("Executor.submit", fn, args, kwargs)
        if self._init is None:
            return call
        from .worker.initializer import run_initialized

        return remote_call(run_initialized, self._init[0], self._init[1], call)

    def _track(self, future: Future[T]) -> Future[T]:
        if self._init is not None:  # an initializer that fails breaks the executor
            future.add_done_callback(self._check_broken)
        return future

    def _check_broken(self, future: Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, WorkerInitializerError) and self._broken is None:
            self._broken = error
            import logging  # only when broken: as ThreadPoolExecutor, on concurrent.futures' own logger

            logging.getLogger("concurrent.futures").critical("Exception in initializer:\n%s",
                                                             getattr(error, "remote_traceback", error))

    def put(self, obj: Any) -> Handle:
        """Send ``obj`` to the workers once; pass the handle in any call's arguments (see ``Scheduler.put``)."""
        return self._scheduler.put(obj)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._broken is not None:
                raise WorkerInitializerError(f"Executor: this executor is broken: {self._broken}") from self._broken
            if self._shutdown:
                raise RuntimeError("Executor: cannot schedule new futures after shutdown")
            if not self._scheduler.running:
                # First call, or the loop stopped on an error: start (again). A kept error is raised here,
                # once, naming what stopped it; the next call starts afresh.
                self._scheduler.start(self._n_start, wait=False)
                self._started = True

    def _submit_batch(self, fn: Callable[..., T], batch: list[tuple[Any, ...]]) -> list[Future[T]]:
        """Submit ``fn(*args)`` for each ``args`` of ``batch``: one lock and one wake-up for the batch."""
        if not batch:
            return []
        if self._init is not None or any(futures_in(args, {}) for args in batch):
            return [self.submit(fn, *args) for args in batch]
        calls = [make_call("Executor.map", fn, args, {}) for args in batch]
        self._ensure_started()
        futures: list[Future[T]] = self._scheduler._submit_many(calls, "Executor.map")
        return futures

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None, progress: bool = False) -> Iterator[T]:
        """Like the builtin ``map``, in parallel: results in input order, streamed.

        Unlike ``concurrent.futures``, the inputs are read (and pickled) only ``buffersize`` items ahead
        of the results consumed, so a map over a long or endless iterable uses bounded memory.

        Args:
            timeout: seconds from this call after which ``__next__`` raises ``TimeoutError``.
            chunksize: accepted for compatibility (an integer >= 1, as ``ProcessPoolExecutor`` checks); every
                item is one job.
            buffersize: items in flight (default ``max(64, 8 * max_workers)``).
            progress: show a tqdm bar (a widget in a notebook).

        Raises:
            ValueError: ``chunksize`` or ``buffersize`` is below 1.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"Executor.map: chunksize must be an integer >= 1, got {chunksize!r}")
        if buffersize is None:
            buffersize = max(64, 8 * self._max_workers)
        if buffersize < 1:
            raise ValueError(f"map: buffersize must be >= 1, got {buffersize!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        inputs = zip(*iterables, strict=False)
        total = _length_hint(iterables)
        window: collections.deque[Future[T]] = collections.deque()
        window.extend(self._submit_batch(fn, list(itertools.islice(inputs, buffersize))))
        return self._results(fn, inputs, window, deadline, total if progress else -1, buffersize)

    def _results(self, fn: Callable[..., T], inputs: Iterator[tuple[Any, ...]], window: collections.deque[Future[T]],
                 deadline: float | None, total: int | None, buffersize: int) -> Iterator[T]:
        bar = None
        if total != -1:
            bar = job_bar(total, desc="map")
        # The window is refilled a quarter at a time: one lock and one wake-up per batch, not per item.
        refill_at = buffersize - max(1, buffersize // 4)
        more = True
        try:
            while window:
                if more and len(window) <= refill_at + 1:
                    batch = list(itertools.islice(inputs, buffersize - len(window) + 1))
                    more = bool(batch)
                    window.extend(self._submit_batch(fn, batch))
                # No local names the future or its result: once yielded, the result is the caller's alone
                # (as concurrent.futures' map: a result kept alive here would hold its memory until the next).
                yield _next_result(window, deadline, bar)
        finally:
            for future in window:  # as concurrent.futures does: calls not yet started are dropped
                _cancel_queued(future)
            if bar is not None:
                bar.close()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; optionally cancel queued calls; close the workers when the rest is done.

        With ``wait=False`` it returns at once, and the calls already submitted still run (the interpreter
        waits for them at exit), unless ``cancel_futures`` cancels those not yet started.
        """
        with self._lock:
            self._shutdown = True
        if cancel_futures:  # the concurrent.futures meaning: only calls that have not started
            for future in self._scheduler._queued_futures():  # the scheduler's queue: no set of futures here
                _cancel_queued(future)
        if wait:
            self._finish()
        else:
            threading.Thread(target=self._finish, name="jobsched-executor-shutdown", daemon=True).start()

    def _finish(self) -> None:
        try:
            if self._started:
                try:
                    self._scheduler.wait()
                except Exception:  # the loop stopped on an error: every pending future already has it
                    pass
                finally:
                    self._scheduler.close()
            else:
                self._scheduler.close()
        finally:
            self._finished.set()
            _live.discard(self)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> Literal[False]:
        """Shut down, waiting for the calls submitted; after a Ctrl-C, first say what is waited for."""
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            state = self._scheduler._state  # read without the lock: a second Ctrl-C must never leave it held
            if self._started and state.n_queued + state.n_active:
                say_waiting(f"for the calls pending in {self!r} ({state.n_queued} queued, {state.n_active} "
                            "running) to finish, as concurrent.futures does")
        self.shutdown(wait=True)
        return False

    def _wait_at_exit(self) -> None:
        """Finish what is pending (at interpreter exit); a second Ctrl-C stops the calls now.

        It watches the state itself rather than calling ``Scheduler.wait``, whose Ctrl-C in a script closes
        everything at once: here the first Ctrl-C only says what the exit waits for.
        """
        sched, state = self._scheduler, self._scheduler._state
        told = False
        while not self._finished.is_set():
            try:
                # Read without the scheduler's lock: a Ctrl-C must never leave it held.
                if not self._started or not sched.running or (state.is_idle() and not state.ready):
                    with self._lock:
                        self._shutdown = True
                    self._finish()
                    return
                time.sleep(0.05)
            except KeyboardInterrupt:
                if told:
                    sys.stderr.write("jobsched: stopping the pending calls now\n")
                    sched.close(timeout=0)
                    return
                told = True
                say_waiting(f"for the calls pending in {self!r} ({state.n_queued} queued, {state.n_active} "
                            "running) to finish, as concurrent.futures does at interpreter exit")

    def __repr__(self) -> str:
        return f"<jobsched.Executor max_workers={self._max_workers}>"


_SCHEDULER_OPTIONS = frozenset(inspect.signature(Scheduler).parameters) - {"backend"}
_live: weakref.WeakSet[Executor] = weakref.WeakSet()


def _wait_at_exit() -> None:
    for executor in list(_live):
        executor._wait_at_exit()


# Among threading's exit hooks, as concurrent.futures' own: they run before atexit's, which close every
# Scheduler (within a short grace period) and would cut the pending calls short.
threading._register_atexit(_wait_at_exit)  # type: ignore[attr-defined]


def _next_result(window: collections.deque[Future[T]], deadline: float | None, bar: Any) -> T:
    """Take the oldest future of ``window`` and return its result (``Executor.map``)."""
    future = window.popleft()
    try:
        result = future.result() if deadline is None else future.result(max(0.0, deadline - time.monotonic()))
    except BaseException:
        _cancel_queued(future)
        raise
    if bar is not None:
        bar.update(1)
    return result


def _cancel_queued(future: Future[Any]) -> bool:
    cancel = getattr(future, "cancel_queued", None)
    return bool(cancel()) if cancel is not None else future.cancel()


def _length_hint(iterables: tuple[Iterable[Any], ...]) -> int | None:
    lengths = []
    for it in iterables:
        try:
            lengths.append(len(it))  # type: ignore[arg-type]
        except TypeError:
            return None
    return min(lengths) if lengths else None
