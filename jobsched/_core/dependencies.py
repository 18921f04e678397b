"""A ``Future`` among a job's arguments is a dependency: the job is queued once its inputs are done.

``submit(f, a_future, [b_future], x=c_future)`` returns its own future at once. When every future found in the
arguments (at any depth of lists, tuples and dict values) is done, each is replaced by its result and the call
is submitted then, at its cost: among the jobs ready to run, cost order holds. If an input failed or was
cancelled, the job does not run and its future gets that input's exception (``CancelledError`` for a
cancelled one). Cancelling the job's future before it is queued drops it; afterwards it cancels the job.

The futures may be jobsched's or any other ``concurrent.futures.Future``. Nothing here touches the
scheduler: the caller hands in the function that submits the call once it is ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar

from .futures import cancel_pending, force_cancel

T = TypeVar("T")

Submit = Callable[[tuple[Any, ...], dict[str, Any]], "Future[Any]"]


def futures_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Future[Any]]:
    """Return the futures found in ``args`` and ``kwargs``, at any depth of lists, tuples and dict values."""
    found: list[Future[Any]] = []
    for value in args:  # this runs for every submit: a plain argument costs one set lookup
        if value.__class__ not in _PLAIN:
            _collect(value, found, 1)
    for value in kwargs.values():
        if value.__class__ not in _PLAIN:
            _collect(value, found, 1)
    return found


_PLAIN = frozenset({int, float, str, bytes, bool, complex, type(None)})  # never a future, nor holds one


def _collect(value: Any, found: list[Future[Any]], depth: int) -> None:
    cls = value.__class__
    if isinstance(value, Future):
        found.append(value)
    elif depth < 100 and (cls is list or cls is tuple):
        for item in value:
            _collect(item, found, depth + 1)
    elif depth < 100 and cls is dict:
        for item in value.values():
            _collect(item, found, depth + 1)


def _substitute(value: Any) -> Any:
    cls = value.__class__
    if isinstance(value, Future):
        return value.result()
    if cls is list:
        return [_substitute(item) for item in value]
    if cls is tuple:
        return tuple(_substitute(item) for item in value)
    if cls is dict:
        return {key: _substitute(item) for key, item in value.items()}
    return value


class DependentFuture(Future[T]):
    """The future of a job that waits for its inputs; ``cancel()`` reaches the job once it is queued."""

    def __init__(self) -> None:
        super().__init__()
        self.inner: Future[T] | None = None

    def cancel(self) -> bool:
        """Cancel the job: before it is queued, it never will be; once it is, as its own future's ``cancel``."""
        inner = self.inner
        if inner is None:
            return cancel_pending(self)
        return inner.cancel()

    def cancel_queued(self) -> bool:
        """Cancel the job only if it has not started (``concurrent.futures``' meaning of ``cancel``)."""
        inner = self.inner
        if inner is None:
            return cancel_pending(self)
        cancel = getattr(inner, "cancel_queued", None)
        return bool(cancel()) if cancel is not None else inner.cancel()


def submit_after(inputs: list[Future[Any]], submit: Submit, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> DependentFuture[Any]:
    """Return the future of a call that ``submit(args, kwargs)`` queues once every one of ``inputs`` is done."""
    outer: DependentFuture[Any] = DependentFuture()
    lock = threading.Lock()
    waiting = [len(inputs)]

    def input_done(_: Future[Any]) -> None:
        with lock:
            waiting[0] -= 1
            if waiting[0]:
                return
        _ready(outer, inputs, submit, args, kwargs)

    for future in inputs:  # one callback per occurrence: a future given twice is counted twice
        future.add_done_callback(input_done)
    return outer


def _ready(outer: DependentFuture[Any], inputs: list[Future[Any]], submit: Submit, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    if outer.done():
        return  # cancelled while it waited
    for future in inputs:
        error: BaseException | None = CancelledError() if future.cancelled() else future.exception()
        if error is not None:
            _settle(outer, error=error)
            return
    try:
        inner = submit(_substitute(args), _substitute(kwargs))
    except BaseException as exc:  # the executor was shut down meanwhile, a result that cannot be pickled
        _settle(outer, error=exc)
        return
    outer.inner = inner
    if outer.cancelled():  # cancelled between the check above and now
        inner.cancel()
    inner.add_done_callback(lambda done: _copy(done, outer))


def _copy(inner: Future[Any], outer: DependentFuture[Any]) -> None:
    if inner.cancelled():
        force_cancel(outer)
    elif inner.exception() is not None:
        _settle(outer, error=inner.exception())
    else:
        _settle(outer, result=inner.result())


def _settle(outer: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(result)
    except Exception:  # InvalidStateError: it was cancelled meanwhile
        pass
