# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""The per-task mode's parts (``DaskBackend(client)``): the job step that runs on a Dask worker, and the
client side's records of a slot's seat and task. ``jobsched.dask`` drives them (see its docstring).
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

import distributed

from ..remote_call import RemoteCall
from ..worker import run_remote_call_payload, run_to_frame

# ---------------------------------------------------------------------------------------- on the Dask worker


def run_payload(payload: bytes, index: int, seed: int | None = None,
                shared: dict[str, Any] | None = None) -> tuple[int, bytes, int]:
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

    Returns:
        ``(RESULT, pickled result, pid)`` or ``(ERROR, pickled error triple, pid)``.
    """
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


# ---------------------------------------------------------------------------------------- in the client process


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
