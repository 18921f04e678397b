"""``Executor``: the ``concurrent.futures`` interface over a private background scheduler."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from ._core.bars import job_bar  # tqdm itself is imported only when a bar is made
from .commands import processor_count
from .remote_call import remote_call
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ._core.backend import Backend
    from ._data.handles import Handle

T = TypeVar("T")


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose workers are jobsched worker processes.

    Functions defined in a notebook cell, lambdas and closures work (they travel by value). A failed call's
    future raises ``JobError`` with the remote traceback.

    Args:
        max_workers: worker processes (default ``processor_count()``; with ``backend``: every thread the
            backend's cluster has when the first call is submitted).
        backend: run the calls elsewhere, e.g. ``jobsched.dask.DaskBackend(client_or_address)``.
        **options: passed to ``Scheduler`` (timeout, max_retries, prefetch, journal, rerun_failed, ...).
            ``prefetch`` defaults to ``"auto"`` here: an executor has no costs and no callbacks to order by,
            so it keeps as many calls in flight per worker as hide the round trip.
    """

    def __init__(self, max_workers: int | None = None, *, backend: Backend | None = None, **options: Any) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                        or max_workers < 1):
            raise ValueError(f"Executor: max_workers must be an integer >= 1 or None, got {max_workers!r}")
        self._max_workers = max_workers or processor_count()
        self._n_start = max_workers if backend is not None else self._max_workers  # None: the backend's count
        options.setdefault("prefetch", "auto")
        self._scheduler = Scheduler(backend=backend, **options)
        self._lock = threading.Lock()
        self._started = False
        self._shutdown = False

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler behind this executor (for ``stats()``, ``dashboard()``, ``scale()``)."""
        return self._scheduler

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` on a worker; return its future.

        Every keyword argument goes to ``fn``, as ``concurrent.futures`` promises, even one named
        ``timeout`` or ``cost``: per-job options are the executor's (``Executor(timeout=...)``).
        """
        call = remote_call(fn, *args, **kwargs)
        self._ensure_started()
        return self._scheduler.submit(call)

    def put(self, obj: Any) -> Handle:
        """Send ``obj`` to the workers once; pass the handle in any call's arguments (see ``Scheduler.put``)."""
        return self._scheduler.put(obj)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not self._scheduler.running:
                # First call, or the loop stopped on an error: start (again). A kept error is raised here,
                # once, naming what stopped it; the next call starts afresh.
                self._started = True
                self._scheduler.start(self._n_start, wait=False)

    def _submit_batch(self, fn: Callable[..., T], batch: list[tuple[Any, ...]]) -> list[Future[T]]:
        """Submit ``fn(*args)`` for each ``args`` of ``batch``: one lock and one wake-up for the batch."""
        if not batch:
            return []
        calls = [remote_call(fn, *args) for args in batch]
        self._ensure_started()
        futures: list[Future[T]] = self._scheduler._submit_many(calls)
        return futures

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None, progress: bool = False) -> Iterator[T]:
        """Like the builtin ``map``, in parallel: results in input order, streamed.

        Unlike ``concurrent.futures``, the inputs are read (and pickled) only ``buffersize`` items ahead
        of the results consumed, so a map over a long or endless iterable uses bounded memory.

        Args:
            timeout: seconds from this call after which ``__next__`` raises ``TimeoutError``.
            chunksize: accepted for compatibility; every item is one job.
            buffersize: items in flight (default ``max(64, 8 * max_workers)``).
            progress: show a tqdm bar (a widget in a notebook).
        """
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
                future = window.popleft()
                remaining = None if deadline is None else deadline - time.monotonic()
                result = future.result(remaining) if remaining is None or remaining > 0 else future.result(0)
                if more and len(window) <= refill_at:
                    batch = list(itertools.islice(inputs, buffersize - len(window)))
                    more = bool(batch)
                    window.extend(self._submit_batch(fn, batch))
                if bar is not None:
                    bar.update(1)
                yield result
        finally:
            for future in window:  # as concurrent.futures does: calls not yet started are dropped
                _cancel_queued(future)
            if bar is not None:
                bar.close()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; optionally cancel queued calls; close the workers when the rest is done."""
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
        if self._started:
            try:
                self._scheduler.wait()
            finally:
                self._scheduler.close()
        else:
            self._scheduler.close()


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
