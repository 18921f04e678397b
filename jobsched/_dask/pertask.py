# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""The per-task mode's parts (``DaskBackend(client)``): the job step that runs on a Dask worker, and the
client side's records of a slot's seat and task. ``jobsched.dask`` drives them (see its docstring).

**Progress.** A job's ``jobsched.progress`` reports (rate-limited as on local workers, ``worker.progress``) go
from the Dask worker as events on a topic of the backend's own (``Worker.log_event``); ``ProgressRelay``
hands them to the scheduler's loop as PROGRESS frames of the slot that runs the job. The reporter is the
process's: a Dask worker with more than one thread reports no progress (its jobs could not be told apart).
tqdm bars in per-task jobs are not followed (jobsched does not patch tqdm in a Dask worker it shares).
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import distributed

from .._data.pickling import dumps
from .._local import wire as _wire
from ..remote_call import RemoteCall
from ..worker import run_remote_call_payload, run_to_frame

# ---------------------------------------------------------------------------------------- on the Dask worker


def run_payload(payload: bytes, index: int, seed: int | None = None, shared: dict[str, Any] | None = None,
                progress_topic: str | None = None) -> tuple[int, bytes, int]:
    """Run one job on a Dask worker exactly as a local remote-call worker runs it.

    It never raises: whatever the job raises (``KeyboardInterrupt`` and other ``BaseException`` included) or a
    result that cannot be pickled travels as the same ERROR frame body as from a local worker.

    Args:
        payload: the pickled ``RemoteCall`` (``Scheduler`` pickled it when the job was added).
        index: the job's index, for the message of a result that cannot be pickled.
        seed: the job's seed (``Scheduler(seed=...)``): ``random``, numpy's global state if imported, and
            ``job_seed()`` get it, as in a local worker. These are the process's: exact with one thread per Dask
            worker; with more, draw from ``job_rng()`` or ``random.Random(job_seed())`` instead.
        shared: the objects of the ``put`` handles the job takes, by token: Dask gives this task the objects of
            the futures that ``DaskBackend.share`` scattered, held once by the Dask worker.
        progress_topic: the Dask event topic where the job's progress reports go (``ProgressRelay``).

    Returns:
        ``(RESULT, pickled result, pid)`` or ``(ERROR, pickled error triple, pid)``.
    """
    if progress_topic is not None:
        with _reporting(progress_topic, index):
            return run_payload(payload, index, seed, shared)
    if shared:
        from .._data import handles

        with handles.lent(shared):
            return run_payload(payload, index, seed)
    if seed is None:
        kind, body = run_to_frame(index, run_remote_call_payload, payload)
        return kind, body, os.getpid()
    from ..worker import seeding

    seeding.apply(seed)
    try:
        kind, body = run_to_frame(index, run_remote_call_payload, payload)
    finally:
        seeding.apply(None)
    return kind, body, os.getpid()


_reporter: Any = None  # this Dask worker process's progress reporter (``worker.progress.Reporter``)
_topic: str | None = None  # where the running job's reports go


def _send_progress(kind: int, index: int, body: bytes) -> None:
    topic = _topic
    if topic is not None:
        distributed.get_worker().log_event(topic, {"index": index, "body": body})


@contextlib.contextmanager
def _reporting(topic: str, index: int) -> Iterator[None]:
    """Route the job's progress reports to ``topic``, on a Dask worker with one thread."""
    global _reporter, _topic
    try:
        worker = distributed.get_worker()
    except ValueError:  # not on a Dask worker
        worker = None
    if worker is None or worker.state.nthreads != 1:
        yield
        return
    if _reporter is None:
        from ..worker import progress

        _reporter = progress.attach(_send_progress, _wire.PROGRESS)
    reporter = _reporter
    with reporter.lock:
        _topic, reporter.job, reporter.pending = topic, index, None
    try:
        yield
    finally:
        with reporter.lock:  # no report of this job after its result
            _topic = reporter.job = reporter.pending = None


# ---------------------------------------------------------------------------------------- in the client process


class ProgressRelay:
    """The client's end of the jobs' progress events: ``deliver(index, body)`` on Dask's IO thread."""

    def __init__(self, client: distributed.Client, deliver: Callable[[int, bytes], None]) -> None:
        self.client = client
        self.topic = f"jobsched-progress-{os.urandom(8).hex()}"
        self._deliver = deliver
        self._subscribed = False

    def open(self) -> None:
        if not self._subscribed:
            self._subscribed = True
            self.client.subscribe_topic(self.topic, self._on_event)

    def close(self) -> None:
        if self._subscribed and self.client.status == "running":
            self._subscribed = False
            with contextlib.suppress(Exception):  # the client is going: nothing more will come
                self.client.unsubscribe_topic(self.topic)

    def _on_event(self, event: Any) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and isinstance(msg.get("body"), bytes):
            self._deliver(int(msg.get("index", -1)), msg["body"])


class Seat(NamedTuple):
    address: str  # the Dask worker
    thread: int  # which of its threads (0 .. nthreads-1)


class Slot:
    """What the backend holds for one incarnation of a slot (``Worker._io``): its seat and its task."""

    __slots__ = ("seat", "key", "index", "future", "closing")

    def __init__(self) -> None:
        self.seat: Seat | None = None  # None while waiting for a free thread
        self.key: str | None = None  # the Dask key of the job in flight
        self.index = -1  # that job's index
        self.future: distributed.Future[Any] | None = None
        self.closing = False  # close_worker came while busy: exit after the result


class Lost(NamedTuple):
    why: str  # the task's result will never come (its worker died, it was cancelled)


Outcome = tuple[int, bytes, "int | None"] | Lost


def cancel(future: distributed.Future[Any]) -> None:
    try:
        future.cancel()
    except Exception:
        pass  # the client or the cluster is gone: nothing is left to cancel


def key_name(data: object) -> str:
    """A readable prefix for the Dask key (the Dask dashboard groups tasks by it)."""
    name = data.fun_name if isinstance(data, RemoteCall) else "job"
    return re.sub(r"[^0-9A-Za-z_]+", "_", name)[:40] or "job"


def outcome(future: distributed.Future[Any], timeout: float) -> Outcome:
    """What a finished task of ``run_payload`` brought: its frame (with the pid), or why none will come."""
    status = future.status
    try:
        if status == "finished":
            kind, body, pid = future.result(timeout=timeout)
            return int(kind), bytes(body), int(pid)
        if status != "error":
            return Lost(f"its Dask task was {status}")
        error = future.exception(timeout=timeout)
        if error is None or isinstance(error, distributed.KilledWorker):
            return Lost(f"Dask gave up on it ({error})")
        tb = "".join(traceback.format_exception(type(error), error, future.traceback()))
    except Exception as exc:
        return Lost(f"its result could not be fetched ({type(exc).__name__}: {exc})")
    # run_payload never raises: Dask itself failed to run the task (e.g. to unpickle run_payload there).
    hint = (": are jobsched and the job's modules installed on the Dask workers?"
            if isinstance(error, (ImportError, AttributeError)) else "")
    message = f"{error} (raised by Dask while running the job's task, not by the job{hint})"
    return _wire.ERROR, dumps((type(error).__name__, message, tb)), None
