# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""Run a scheduler's jobs on a Dask cluster: ``Scheduler(backend=DaskBackend(client_or_address))``.

::

    caller threads           scheduler thread ("jobsched-scheduler")         Dask
    ──────────────           ───────────────────────────────────────         ────
    add_job / submit ──> heap ──> _dispatch: lowest (cost, index) ──> DaskBackend.send(slot, entry)
                                  for a READY slot                     client.submit(run_payload, payload,
                                                                         workers=[slot.address]) ──> worker thread
                                                                                                       │ run_payload:
    Future / after_stop <── _on_result <── inbox <── done callback ("Dask-Callback-Thread")            │ unpickle, run
                            (or _settle_lost_jobs    fetches (kind, body, pid) <───────────────────────┘ the RemoteCall
                             when the worker died)
                            maintain <── inbox <── "all" topic events: add-worker / remove-worker ("IO loop")

**Slots.** A slot is a jobsched ``Worker`` (a ``DaskWorker``) bound to one thread of one Dask worker, its
*seat*. Each job is pinned to its slot's Dask worker (``workers=[address], allow_other_workers=False``) and a
slot holds one job at a time, so no Dask worker thread ever has more than one jobsched job in flight: the
queue stays in jobsched and priorities mean what they mean locally. ``n_workers`` (``start``, ``scale``) is the
number of slots, at most the number of Dask worker threads; jobsched never starts or stops Dask workers (use
``cluster.scale`` / ``cluster.adapt``, then ``sched.scale``).

**Jobs** must be remote calls (``remote_call``, ``submit``, ``Executor``): ``run_payload`` is the local
remote-call worker's job step (unpickle, ``run_remote_call``, pickle the result, or the error triple formatted
by ``jobsched.worker``), so results and ``JobError`` tracebacks are the same as on local workers.
Worker-file mode (``make_server``, ``start_worker``) is refused at once: a Dask worker runs tasks, not a
worker file's ``start_worker`` loop.

**Failures.** When a Dask worker dies or leaves, the scheduler announces ``remove-worker``; its slots close and
the job each held goes through the scheduler's own policy (``_settle_lost_jobs``): re-queued, or after
``max_retries`` deaths a ``JobError("WorkerDied", ...)``. Dask's own retries are off (``retries=0``, and a
pinned task never reaches Dask's ``allowed-failures``). A job over its ``timeout`` fails with ``JobTimeout``; as
a Dask thread cannot be stopped, its seat takes no other job until the task ends.

**Threads.** Dask calls back on its own threads; those callbacks only post closures to the scheduler's inbox,
so slots, counters and futures change on the scheduler thread alone.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import traceback
import uuid
from typing import TYPE_CHECKING, Any

try:
    import distributed
    from distributed.deploy.cluster import Cluster
except ImportError as exc:  # the optional extra: fail when used, and say how to fix it
    raise ImportError(f"jobsched.dask needs dask.distributed ({exc}): pip install 'jobsched[dask]'") from exc

from . import _wire
from ._pickling import dumps
from ._pool import Worker
from .errors import JobschedError
from .remote_call import RemoteCall
from .scheduler import default_worker_command
from .states import WorkerState
from .worker import run_remote_call_payload, run_to_frame

if TYPE_CHECKING:
    from collections.abc import Callable

    from .scheduler import Scheduler, _Entry

__all__ = ["DaskBackend", "DaskClientClosedError", "DaskWorker", "run_payload"]

TICK = 0.5  # longest pause between two maintain calls (a safety net: events arrive through the inbox)
RESULT_TIMEOUT = 60.0  # seconds to fetch a finished task's result before the job counts as lost
REFRESH_TIMEOUT = 30.0  # seconds to read the cluster's worker list before trying again
CLOSE_TIMEOUT = 10.0  # seconds to close a client that jobsched created

_CLOSED = WorkerState.CLOSED
_READY = WorkerState.READY
_RUNNING = WorkerState.RUNNING
_CLOSING = WorkerState.CLOSING

WORKER_FILE_REFUSAL = (
    "Scheduler(backend=DaskBackend(...)): worker files are not supported on Dask (got make_worker_command="
    "{command!r}). A Dask worker runs tasks, not a worker file's start_worker loop. Queue remote calls instead: "
    "make the file's run(data) an importable function and add remote_call(run, data) jobs (or submit(run, data)); "
    "or drop backend= to run the worker file on local processes."
)


class DaskClientClosedError(JobschedError, RuntimeError):
    """The Dask client closed under a running scheduler; its queued jobs stay queued."""


class DaskWorker(Worker):
    """A worker slot bound to one thread of one Dask worker (its *seat*).

    Attributes (besides ``Worker``'s; ``pid`` is the Dask worker's process id, known after its first job):
        address: the Dask worker's address (``tcp://host:port``), or None before the slot has a seat.
        thread: which of that worker's threads the slot stands for (0 .. nthreads-1).
    """

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.address: str | None = None
        self.thread = 0
        # Owned by the scheduler thread: the Dask task of the job in flight.
        self.dask_key: str | None = None
        self.dask_future: distributed.Future[Any] | None = None
        self.close_deadline: float | None = None  # close(): when a job still running here is given up

    def __repr__(self) -> str:
        job = self.job
        doing = f" job={job.index}" if job is not None else ""
        return (f"<DaskWorker {self.index} {self.address}#{self.thread} pid={self.pid} {self.state.name}{doing} "
                f"done={self.n_done}>")


# ---------------------------------------------------------------------------------------- on the Dask worker


def run_payload(payload: bytes, index: int) -> tuple[int, bytes, int]:
    """Run one job on a Dask worker exactly as a local remote-call worker runs it.

    It never raises, so Dask sees only successful tasks and a job's failure travels as the same error triple
    (type name, message, traceback text) as from a local worker.

    Args:
        payload: the pickled ``RemoteCall`` (``Scheduler`` pickled it when the job was added).
        index: the job's index, for the message of a result that cannot be pickled.

    Returns:
        ``(RESULT, pickled result, pid)`` or ``(ERROR, pickled error triple, pid)``.
    """
    kind, body = run_to_frame(index, run_remote_call_payload, payload)
    return kind, body, os.getpid()


# ---------------------------------------------------------------------------------------- in the client process


class _Lost:
    """The outcome of a task whose result will never come (its worker died, it was cancelled)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


_Outcome = tuple[int, bytes, "int | None"] | _Lost


class DaskBackend:
    """Run a ``Scheduler``'s jobs on the threads of a Dask cluster.

    ``Scheduler(backend=DaskBackend(...))`` keeps its priority queue, callbacks, futures, retries and
    ``stats()``; slots (``sched.workers``) are ``DaskWorker`` objects, one per Dask worker thread in use.

    Args:
        client_or_address: a ``distributed.Client`` (stays open: it is yours), a scheduler address such as
            ``"tcp://10.0.0.5:8786"``, or a cluster object (``LocalCluster``, dask-jobqueue's ``SLURMCluster``...);
            for the last two jobsched creates the client and closes it in ``Scheduler.close()`` (never the
            cluster).
        result_timeout: seconds to fetch a finished task's result before the job counts as lost.

    Raises:
        TypeError: ``client_or_address`` is none of those, or the client is asynchronous.
        OSError: no Dask scheduler answers at the address (from ``distributed.Client``).
    """

    def __init__(self, client_or_address: distributed.Client | Cluster | str, *,
                 result_timeout: float = RESULT_TIMEOUT) -> None:
        if isinstance(client_or_address, distributed.Client):
            client, owned = client_or_address, False
        elif isinstance(client_or_address, (str, Cluster)):
            client, owned = distributed.Client(client_or_address, set_as_default=False), True
        else:
            raise TypeError(
                "DaskBackend: pass a distributed.Client, a scheduler address ('tcp://host:8786') or a cluster "
                f"object, got {type(client_or_address).__name__}: {client_or_address!r}"
            )
        if client.asynchronous:
            raise TypeError("DaskBackend: the Client is asynchronous; pass a synchronous distributed.Client "
                            "(created without asynchronous=True)")
        self._client = client
        self._owns_client = owned
        self._result_timeout = result_timeout
        self._sched: Scheduler | None = None
        self._closed = False
        # Owned by the scheduler thread.
        self._threads: dict[str, int] = {}  # Dask worker address -> threads, as of the last refresh
        self._stale = True  # the worker list must be read again before seats are handed out
        self._refresh_at = 0.0
        self._departed: dict[str, bool] = {}  # address -> whether the scheduler expected it to go
        self._pids: dict[str, int] = {}
        self._abandoned: dict[str, tuple[tuple[str, int], distributed.Future[Any]]] = {}  # timed out, running on

    @property
    def client(self) -> distributed.Client:
        """The Dask client that jobs are submitted through."""
        return self._client

    def __repr__(self) -> str:
        return f"<DaskBackend {self._client.scheduler.address if self._client.scheduler else None}>"

    # ---- hooks called by the scheduler (see jobsched._backend)

    def attach(self, sched: Scheduler) -> None:
        """Serve ``sched``; refuse worker files and prefetch, which cannot work on Dask."""
        if self._sched is not None:
            raise ValueError("DaskBackend: this backend already serves a Scheduler; create one DaskBackend per "
                             "Scheduler (they may share one Client)")
        if sched.make_worker_command is not default_worker_command:
            raise ValueError(WORKER_FILE_REFUSAL.format(command=sched.make_worker_command))
        if sched.prefetch != 1:
            raise ValueError(f"Scheduler: prefetch={sched.prefetch} is not supported with DaskBackend, which keeps "
                             "one job per Dask worker thread so that priorities hold; leave prefetch at 1")
        for option in ("max_jobs_per_worker", "max_worker_memory"):
            # jobsched cannot replace a Dask worker's process (and its pid may be on another machine).
            value = getattr(sched, option, None)
            if value is not None:
                raise ValueError(f"Scheduler: {option}={value!r} is not supported with DaskBackend, which cannot "
                                 "replace Dask worker processes; leave it None and use Dask's own memory limits "
                                 "(memory_limit=, distributed.worker.memory.*)")
        self._sched = sched
        _hub_for(self._client).add(self)

    def default_n_workers(self) -> int:
        """Return the number of threads in the cluster now (at least 1: ``start`` then waits for one)."""
        try:
            n = sum(self._client.nthreads().values())
        except Exception:
            n = sum(self._threads.values())
        return max(1, n)

    def maintain(self, now: float) -> float:
        """Follow the cluster: close slots whose Dask worker left, time out jobs, open and retire slots."""
        sched = self._scheduler()
        next_at = now + TICK
        if self._client.status in ("closing", "closed"):
            self._client_gone()
        elif self._stale:
            if now >= self._refresh_at:
                self._refresh(now)
            if self._stale:
                next_at = min(next_at, self._refresh_at)
        workers: list[DaskWorker] = sched._workers  # type: ignore[assignment]  # a backend's slots
        for w in workers:
            if w.state is not _CLOSED and w.address not in self._threads:
                assert w.address is not None
                expected = self._departed.get(w.address, False)
                if expected:
                    w.kill_reason = "retired"
                self._lose(w, f"lost its Dask worker {w.address} (it {'retired' if expected else 'died'})",
                           restart=not expected)
        for key, (seat, future) in list(self._abandoned.items()):
            if seat[0] not in self._threads:  # its worker is gone: the task will never end
                del self._abandoned[key]
                self._cancel(future)
        target = 0 if sched._closing else sched._n_target
        for index in range(len(workers), target):
            workers.append(DaskWorker(index))
        free = self._free_seats(workers)
        for w in workers:
            if w.index < target:
                w.retiring = False
                if w.state is _CLOSED and free:
                    self._open(w, free.pop(0), now)
            elif w.state is _READY or w.state is _CLOSING:
                self._retire(w)
            elif w.state is _RUNNING:
                w.retiring = True  # as a local worker: it finishes its job, then closes (see _settle)
                if sched._closing:  # ... within close()'s grace period
                    if w.close_deadline is None:
                        w.close_deadline = now + sched._close_grace
                    if now >= w.close_deadline:
                        self._give_up_at_close(w, sched._close_grace)
                    else:
                        next_at = min(next_at, w.close_deadline)
            if w.state is _RUNNING and w.inflight:
                entry = w.inflight[0]
                if entry.timeout is not None and not entry.timed_out:
                    limit = w.job_started + entry.timeout
                    if now >= limit:
                        self._time_out(w, entry)
                    else:
                        next_at = min(next_at, limit)
        return next_at

    def send(self, w: Worker, entry: _Entry) -> None:
        """Submit ``entry`` to the Dask worker behind slot ``w``, pinned there."""
        assert isinstance(w, DaskWorker) and w.address is not None
        job = entry.job
        key = f"jobsched-{_key_name(job.data)}-{job.index}-{uuid.uuid4().hex}"
        w.dask_key = key
        try:
            future = self._client.submit(run_payload, entry.payload, job.index, key=key, workers=[w.address],
                                         allow_other_workers=False, pure=False, retries=0)
        except Exception as exc:
            # Do not change slots inside _dispatch's loop: settle on the next turn of the loop.
            if self._client.status in ("closing", "closed"):
                self._post(self._client_gone)  # not the job's fault: it goes back to the queue
            else:
                self._post(functools.partial(self._settle, w, key,
                                             _Lost(f"could not submit it to Dask ({type(exc).__name__}: {exc})")))
            return
        w.dask_future = future
        future.add_done_callback(functools.partial(self._on_done, w, key))

    def close(self) -> None:
        """Forget the cluster's events; cancel tasks still running; close the client if jobsched created it."""
        if self._closed:
            return
        self._closed = True
        futures = [future for _, future in self._abandoned.values()]
        self._abandoned.clear()
        if self._sched is not None:
            for w in self._sched._workers:
                if isinstance(w, DaskWorker) and w.dask_future is not None:
                    futures.append(w.dask_future)
                    w.dask_future = None
                    w.dask_key = None
            _hub_for(self._client).discard(self)
        for future in futures:
            self._cancel(future)
        if self._owns_client:
            try:
                self._client.close(timeout=CLOSE_TIMEOUT)
            except Exception as exc:
                self._log(f"jobsched: closing the Dask client failed: {type(exc).__name__}: {exc}")

    # ---- the scheduler thread

    def _scheduler(self) -> Scheduler:
        sched = self._sched
        assert sched is not None, "DaskBackend used before Scheduler(backend=...) attached it"
        return sched

    def _refresh(self, now: float) -> None:
        """Read the cluster's workers and their thread counts (a blocking call, made only after a change)."""
        client = self._client
        try:
            assert client.scheduler is not None, "the Dask client has no scheduler connection"
            info = client.sync(client.scheduler.identity, n_workers=-1, callback_timeout=REFRESH_TIMEOUT)
        except Exception as exc:
            self._log(f"jobsched: could not read the Dask cluster's workers ({type(exc).__name__}: {exc}); "
                      "trying again in 1 s")
            self._refresh_at = now + 1.0
            return
        workers = info.get("workers", {})
        self._threads = {
            address: int(w.get("nthreads", 1)) for address, w in workers.items()
            if w.get("status", "running") not in ("closing", "closing_gracefully", "closed")
        }
        self._departed = {a: e for a, e in self._departed.items() if a not in self._threads}
        self._stale = False

    def _free_seats(self, workers: list[DaskWorker]) -> list[tuple[str, int]]:
        held = {(w.address, w.thread) for w in workers if w.state is not _CLOSED}
        held.update(seat for seat, _ in self._abandoned.values())
        seats = [(a, t) for a, n in self._threads.items() for t in range(n) if (a, t) not in held]
        # First threads of every worker first: a few slots spread over machines rather than pile on one.
        return sorted(seats, key=lambda seat: (seat[1], seat[0]))

    def _open(self, w: DaskWorker, seat: tuple[str, int], now: float) -> None:
        w.generation += 1
        w.move(WorkerState.STARTING)
        w.address, w.thread = seat
        w.pid = self._pids.get(seat[0])
        w.kill_reason = None
        w.exit_description = None
        w.retiring = False
        w.close_deadline = None
        w.started_at = w.ready_at = now
        w.move(_READY)  # a Dask thread needs no start-up: the slot is ready at once
        self._scheduler()._make_hungry(w)

    def _retire(self, w: DaskWorker) -> None:
        """Close an idle slot (a Dask thread has nothing to shut down)."""
        self._unhunger(w)
        if w.state is _READY:
            w.move(_CLOSING)
        w.kill_reason = "retired"
        w.exit_description = "retired"
        w.move(_CLOSED)

    def _unhunger(self, w: DaskWorker) -> None:
        # Leave no stale entry in the scheduler's queue of slots with room: a reopened slot is queued afresh.
        if w.hungry:
            w.hungry = False
            try:
                self._scheduler()._hungry.remove(w)
            except ValueError:
                pass

    def _lose(self, w: DaskWorker, description: str, *, restart: bool) -> None:
        """Close slot ``w`` without its job's result and let the scheduler decide the job's fate."""
        sched = self._scheduler()
        future, w.dask_future, w.dask_key = w.dask_future, None, None
        if future is not None:
            self._cancel(future)
        lost = list(w.inflight)
        w.inflight.clear()
        self._unhunger(w)
        w.exit_description = description
        w.move(_CLOSED)
        if lost:
            sched._settle_lost_jobs(w, lost)
        if restart:
            w.n_restarts += 1
            sched._n_restarts += 1
        sched._maintain_at = 0.0

    def _time_out(self, w: DaskWorker, entry: _Entry) -> None:
        entry.timed_out = True
        w.kill_reason = "timeout"
        if w.dask_key is not None and w.dask_future is not None and w.address is not None:
            # Keep the task: its seat is busy until it ends, and _settle frees the seat then.
            self._abandoned[w.dask_key] = ((w.address, w.thread), w.dask_future)
        w.dask_future = w.dask_key = None
        self._lose(w, f"was left running it on Dask worker {w.address} (a Dask thread cannot be stopped; that "
                      "thread takes no other job until the task ends)", restart=False)

    def _give_up_at_close(self, w: DaskWorker, grace: float) -> None:
        # As a local worker terminated at the end of the grace period: the job goes back to the queue and
        # close() fails its future. Dask cannot stop the thread; cancelling at least frees the task's result.
        w.kill_reason = "killed after the close grace period"
        self._lose(w, f"was given up by close() after its grace period of {grace:g} s (the Dask task was "
                      "cancelled)", restart=False)

    def _settle(self, w: DaskWorker, key: str, outcome: _Outcome) -> None:
        """Apply a task's outcome on the scheduler thread; outcomes of tasks the slot gave up are ignored."""
        sched = self._scheduler()
        if self._abandoned.pop(key, None) is not None:
            sched._maintain_at = 0.0  # a timed-out task has ended: its seat is free again
            return
        if w.dask_key != key or not w.inflight:
            return
        w.dask_key = None
        w.dask_future = None
        if isinstance(outcome, _Lost):
            self._stale = True  # the worker is probably gone: read the list again before reusing its seat
            self._lose(w, f"lost the job on Dask worker {w.address}: {outcome.why}", restart=True)
            return
        kind, body, pid = outcome
        if pid is not None and w.address is not None:
            w.pid = self._pids[w.address] = pid
        sched._on_result(w, kind, w.inflight[0].job.index, body)
        if w.state is _CLOSING:  # _on_result retired it (scale down, close): nothing to wait for
            self._retire(w)

    def _on_membership(self, action: str, address: str, expected: bool) -> None:
        if action == "remove-worker":
            self._threads.pop(address, None)
            self._departed[address] = expected
        self._stale = True
        self._refresh_at = 0.0
        self._scheduler()._maintain_at = 0.0

    def _client_gone(self) -> None:
        sched = self._scheduler()
        self._threads = {}
        self._stale = False
        for w in sched._workers:
            if isinstance(w, DaskWorker) and w.state is not _CLOSED:
                w.kill_reason = "retired"  # not the job's fault: re-queue it, count no death
                w.dask_future = w.dask_key = None
                self._lose(w, "lost its Dask client (closed)", restart=False)
        if not sched._closing and sched._error is None and (sched._heap or sched._n_target):
            sched._error = DaskClientClosedError(
                f"the Dask client {self._client.id} was closed while the scheduler ran; {sched.n_queued_jobs} jobs "
                "stay queued. Keep the Client open until Scheduler.close(), or pass an address to DaskBackend so "
                "that jobsched owns the client"
            )
            sched._n_target = 0

    # ---- other threads: post to the scheduler thread

    def _post(self, fn: Callable[[], None]) -> None:
        sched = self._sched
        if sched is not None and not self._closed:
            sched._inbox.append(fn)
            sched._wake()

    def _on_done(self, w: DaskWorker, key: str, future: distributed.Future[Any]) -> None:
        """Dask's callback thread: fetch the outcome, then hand it to the scheduler thread."""
        outcome: _Outcome
        status = future.status
        try:
            if status == "finished":
                kind, body, pid = future.result(timeout=self._result_timeout)
                outcome = (int(kind), bytes(body), int(pid))
            elif status == "error":
                exc = future.exception(timeout=self._result_timeout)
                if isinstance(exc, distributed.KilledWorker):
                    outcome = _Lost(f"Dask gave up on it ({exc})")
                else:  # Dask itself failed to run it (e.g. jobsched cannot be imported on the worker)
                    tb = "".join(traceback.format_exception(type(exc), exc, future.traceback()))
                    message = (f"{exc} (raised by Dask while running the job, not by the job: are jobsched and "
                               "the job's modules installed on the Dask workers?)")
                    outcome = (_wire.ERROR, dumps((type(exc).__name__, message, tb)), None)
            else:
                outcome = _Lost(f"its Dask task was {status}")
        except Exception as exc:
            outcome = _Lost(f"its result could not be fetched ({type(exc).__name__}: {exc})")
        self._post(functools.partial(self._settle, w, key, outcome))

    def _on_event(self, event: tuple[float, Any]) -> None:
        """The client's IO loop: a Dask worker joined or left the cluster."""
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and msg.get("action") in ("add-worker", "remove-worker"):
            self._post(functools.partial(self._on_membership, str(msg["action"]), str(msg.get("worker")),
                                         bool(msg.get("expected", False))))

    def _cancel(self, future: distributed.Future[Any]) -> None:
        try:
            future.cancel()
        except Exception:
            pass  # the client or the cluster is gone: nothing is left to cancel

    def _log(self, message: str) -> None:
        if self._sched is not None:
            self._sched._log(message)


def _key_name(data: object) -> str:
    """A readable prefix for the Dask key (the Dask dashboard groups tasks by it)."""
    name = data.fun_name if isinstance(data, RemoteCall) else "job"
    return re.sub(r"[^0-9A-Za-z_]+", "_", name)[:40] or "job"


# ---------------------------------------------------------------------------------------- cluster events


class _Hub:
    """One subscription to a client's "all" event topic, shared by every backend on that client.

    ``Client.subscribe_topic`` keeps one handler per topic, so two schedulers on one client (or a handler of
    the user's) would replace each other; the hub calls each of them.
    """

    def __init__(self, client: distributed.Client) -> None:
        self.client = client
        self.backends: set[DaskBackend] = set()
        self.lock = threading.Lock()
        self.previous: Callable[[Any], Any] | None = None

    def add(self, backend: DaskBackend) -> None:
        with self.lock:
            first = not self.backends
            self.backends.add(backend)
        if first:
            handlers = getattr(self.client, "_event_handlers", {})
            self.previous = handlers.get("all")
            self.client.subscribe_topic("all", self.handle)

    def discard(self, backend: DaskBackend) -> None:
        with self.lock:
            self.backends.discard(backend)
            last = not self.backends
        if last:
            with _hubs_lock:
                _hubs.pop(self.client.id, None)
            if self.client.status not in ("running", "connecting"):
                return
            try:
                if self.previous is not None:
                    self.client.subscribe_topic("all", self.previous)
                else:
                    # Unsubscribe, or the scheduler keeps sending events to this client; the client keeps
                    # the handler after unsubscribing, so drop it too (a later hub must not chain to it).
                    self.client.unsubscribe_topic("all")
                    handlers = getattr(self.client, "_event_handlers", {})
                    if handlers.get("all") == self.handle:
                        del handlers["all"]
            except Exception:
                pass

    def handle(self, event: Any) -> Any:
        with self.lock:
            backends = list(self.backends)
        for backend in backends:
            backend._on_event(event)
        return self.previous(event) if self.previous is not None else None


_hubs: dict[str, _Hub] = {}
_hubs_lock = threading.Lock()


def _hub_for(client: distributed.Client) -> _Hub:
    with _hubs_lock:
        hub = _hubs.get(client.id)
        if hub is None:
            hub = _hubs[client.id] = _Hub(client)
        return hub
