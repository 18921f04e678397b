# distributed's public API is largely unannotated; its calls are checked at run time by the tests.
# mypy: disable-error-code="no-untyped-call"
"""Run a scheduler's jobs on a Dask cluster: ``Scheduler(backend=DaskBackend(client_or_address))``.

``DaskBackend`` implements the ``Backend`` protocol of ``_core/backend.py``, like the local processes of
``_local/backend.py``. It keeps no policy: the scheduler's state decides what to start, send, retry, time out
and close; this module finds Dask threads for its slots, runs jobs there and reports what happened::

    SchedulerState ──StartWorker──> start_worker: a free seat (address, thread) ──> worker_spawned, worker_ready
                   ──SendJobs─────> send_jobs: client.submit(run_payload, payload, workers=[address]) ──> Dask
                   ──CloseWorker──> close_worker: idle: exit now; busy: exit after its result           worker
                   ──KillWorker───> kill_worker: give the task up (Dask cannot stop a thread) ──> exit   thread
          ^                                                                                                │
          │ events on the loop's thread:                 Dask threads: done callback fetches (kind, body, pid)
          └── frames(w, [(RESULT|ERROR, index, body)]) <── events.post(_settle) <───────────────────────────┘
              worker_exited(w, why, clean, crashed)    <── events.post(_on_membership) <── "all" topic (_Hub):
              backend_failed(DaskClientClosedError)                         add-worker / remove-worker
              poll(now): read the worker list when stale, close slots whose Dask worker left, seat waiting slots

**Slots.** A slot (a ``jobsched.Worker``; ``sched.workers``) is bound to one thread of one Dask worker, its
*seat*: ``w.address`` is that Dask worker's address, ``w.pid`` its process id once a job has told it. Each job
is pinned to its slot's Dask worker (``workers=[address], allow_other_workers=False``) and a slot holds one job
at a time (``prefetch=1``), so no Dask thread has more than one jobsched job in flight: the queue stays in
jobsched and priorities mean what they mean locally (``prefetch="auto"``, the ``Executor``'s default, is 1
here). A slot that finds no free seat waits (``start_timeout = None``) until one frees up: a Dask worker
joins, or a task given up after its timeout ends. ``n_workers`` (``start``, ``scale``) is the number of slots;
jobsched never starts or stops Dask workers (use ``cluster.scale`` / ``cluster.adapt``).

**Jobs** must be remote calls (``remote_call``, ``submit``, ``Executor``): ``run_payload`` is the local
remote-call worker's job step (``run_to_frame`` of ``jobsched.worker``), so results and ``JobError`` tracebacks are the
same as on local workers, whatever the job raises (``BaseException`` included). A Dask task that fails is
therefore Dask's own failure (e.g. jobsched cannot be imported there), reported as the job's ``JobError``.
A job's progress reports come back as Dask events, and ``put`` data as one copy per Dask worker
(``_dask/pertask.py``, ``_dask/shared.py``).
Worker-file mode is refused at once: a Dask worker runs tasks, not a worker file's ``start_worker`` loop.

**Failures.** A slot whose Dask worker died (or whose task was lost) is reported exited, and the state re-queues
its job or, after ``max_retries`` deaths, fails it with ``JobError("WorkerDied", ...)``; Dask's own retries are
off. A Dask worker that its cluster retires on purpose, or a closed client, costs the job nothing
(``crashed=False``). A Dask thread cannot be stopped: a slot killed for a timeout gives its task up and the seat
takes no other job until the task ends; at the end of ``close()``'s grace period the task is cancelled.

**Resident mode** (``DaskBackend(client, resident=True)``): each slot is instead a long-running jobsched worker
that Dask places (one Dask task, holding one thread, that runs ``python -m jobsched.worker --connect`` as a
subprocess); it connects back over TLS and serves jobs with jobsched's own protocol and prefetch, at local per-job
cost. Dask places, restarts and scales the workers; a retired Dask worker's jobsched workers leave gracefully.
See ``_dask/resident.py`` for how and why.

**Parts.** ``_dask/pertask.py`` holds the job step that runs on the Dask worker (``run_payload``) and the slot
records; ``_dask/hub.py`` the shared subscription to the cluster's events; ``_dask/resident.py`` resident mode.

**Threads.** Dask calls back on its own threads; those callbacks only ``events.post`` closures, so slots and
this backend's tables change on the scheduler's loop thread alone.
"""

from __future__ import annotations

import functools
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

try:
    import distributed
    from distributed.deploy.cluster import Cluster
except ImportError as exc:  # the optional extra: fail when used, and say how to fix it
    raise ImportError(f"jobsched.dask needs dask.distributed ({exc}): pip install 'jobsched[dask]'") from exc

from ._core.slot import Worker
from ._dask.hub import hub_for as _hub_for
from ._dask.pertask import Lost as _Lost
from ._dask.pertask import Outcome as _Outcome
from ._dask.pertask import ProgressRelay, outcome, run_payload
from ._dask.pertask import Seat as _Seat
from ._dask.pertask import Slot as _Slot
from ._dask.pertask import cancel as _cancel
from ._dask.pertask import key_name as _key_name
from ._dask.resident import RETIRE_GRACE, ResidentSlots, check_share
from ._dask.shared import Shared
from ._data import handles as _handles
from ._local import wire as _wire
from ._local.backend import default_worker_command
from .errors import JobschedError

if TYPE_CHECKING:
    import selectors
    from collections.abc import Callable

    from ._core.backend import BackendEvents
    from ._core.state import Entry
    from ._data.handles import Handle
    from .scheduler import Scheduler

__all__ = ["DaskBackend", "DaskClientClosedError", "DaskWorker", "run_payload"]

TICK = 0.5  # longest pause between two polls (the client's status; events arrive on their own)
RESULT_TIMEOUT = 60.0  # seconds to fetch a finished task's result before the job counts as lost
REFRESH_TIMEOUT = 30.0  # seconds to read the cluster's worker list before trying again
CLOSE_TIMEOUT = 10.0  # seconds to close a client that jobsched created

WORKER_FILE_REFUSAL = (
    "Scheduler(backend=DaskBackend(...)): worker files are not supported on Dask (got make_worker_command="
    "{command!r}). A Dask worker runs tasks, not a worker file's start_worker loop. Queue remote calls instead: "
    "make the file's run(data) an importable function and add remote_call(run, data) jobs (or submit(run, data)); "
    "or drop backend= to run the worker file on local processes."
)

# Slots on Dask are plain ``Worker`` objects (``address`` and ``pid`` say where they run); the old name stays.
DaskWorker = Worker


class DaskClientClosedError(JobschedError, RuntimeError):
    """The Dask client closed under a running scheduler; its queued jobs stay queued."""


# ---------------------------------------------------------------------------------------- in the client process


class DaskBackend:
    """Run a ``Scheduler``'s jobs on the threads of a Dask cluster.

    ``Scheduler(backend=DaskBackend(...))`` keeps its priority queue, callbacks, futures, retries and
    ``stats()``; ``sched.workers`` lists one slot per Dask thread in use.

    Args:
        client_or_address: a ``distributed.Client`` (stays open: it is yours), a scheduler address such as
            ``"tcp://10.0.0.5:8786"``, or a cluster object (``LocalCluster``, dask-jobqueue's ``SLURMCluster``...);
            for the last two jobsched creates the client and closes it in ``Scheduler.close()`` (never the
            cluster).
        result_timeout: seconds to fetch a finished task's result before the job counts as lost.
        resident: run each slot as a resident jobsched worker that Dask places and that connects back to this
            process (over TLS, pinned to a per-run certificate): jobs then cost what they cost locally, and
            ``prefetch`` works; the default (False) runs each job as one Dask task.
        listen: resident mode: where the workers connect, ``"HOST"`` or ``"HOST:PORT"`` (default: this machine's
            address on the route to the Dask scheduler, 127.0.0.1 for a local cluster).
        retire_grace: resident mode: seconds a worker on a retiring Dask worker has to finish its job before it
            is stopped (its job is then re-queued, counting no crash).

    Raises:
        TypeError: ``client_or_address`` is none of those, or the client is asynchronous.
        OSError: no Dask scheduler answers at the address (from ``distributed.Client``).
    """

    start_timeout: float | None = None  # a slot may wait for a free Dask thread as long as it takes

    def __init__(self, client_or_address: distributed.Client | Cluster | str, *,
                 result_timeout: float = RESULT_TIMEOUT, resident: bool = False, listen: str | None = None,
                 retire_grace: float = RETIRE_GRACE) -> None:
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
        self._resident: ResidentSlots | None = None
        if resident:
            from .scheduler import _parse_listen

            self._resident = ResidentSlots(client, _parse_listen(listen), retire_grace)
            self.start_timeout = ResidentSlots.start_timeout
        elif listen is not None:
            raise ValueError(f"DaskBackend: listen={listen!r} needs resident=True (per-task jobs travel as Dask "
                             "tasks, nothing connects back)")
        self._result_timeout = result_timeout
        self._sched: Scheduler | None = None
        self._events: BackendEvents | None = None
        self._subscribed = False
        self._closed = False
        # Owned by the loop's thread.
        self._threads: dict[str, int] = {}  # Dask worker address -> threads, as of the last refresh
        self._stale = True  # the worker list must be read again before seats are handed out
        self._refresh_at = 0.0
        self._departed: dict[str, bool] = {}  # address -> whether its cluster retired it on purpose
        self._pids: dict[str, int] = {}  # address -> pid, as the jobs found it
        self._seated: dict[int, Worker] = {}  # slot index -> slot holding a seat
        self._waiting: list[Worker] = []  # slots started but without a free seat yet
        self._abandoned: dict[str, tuple[_Seat, distributed.Future[Any]]] = {}  # given up, still running
        self._failure_reported = False
        self._shared: weakref.WeakSet[Handle] = weakref.WeakSet()  # put's handles: released by close()
        self._progress = ProgressRelay(client, self._on_progress)

    @property
    def resident(self) -> bool:
        """Whether slots are resident jobsched workers (True) or one Dask task per job (False)."""
        return self._resident is not None

    @property
    def address(self) -> tuple[str, int] | None:
        """Resident mode: where the workers connect, once started."""
        return self._resident.address if self._resident is not None else None

    @property
    def client(self) -> distributed.Client:
        """The Dask client that jobs are submitted through."""
        return self._client

    def __repr__(self) -> str:
        return f"<DaskBackend {self._client.scheduler.address if self._client.scheduler else None}>"

    # ---- the Backend protocol: set-up (the caller's thread)

    def attach(self, sched: Scheduler) -> None:
        """Serve ``sched``; refuse worker files, prefetch and recycling, which cannot work on Dask."""
        if self._sched is not None:
            raise ValueError("DaskBackend: this backend already serves a Scheduler; create one DaskBackend per "
                             "Scheduler (they may share one Client)")
        if sched.make_worker_command is not default_worker_command:
            raise ValueError(WORKER_FILE_REFUSAL.format(command=sched.make_worker_command))
        if self._resident is not None:
            if sched.max_worker_memory is not None:
                raise ValueError(f"Scheduler: max_worker_memory={sched.max_worker_memory!r} is not supported with "
                                 "DaskBackend; leave it None and use Dask's own memory limits (memory_limit=)")
            self._sched = sched
            return
        if sched.prefetch == "auto":
            # What keeps a Dask thread busy is Dask's own queue: jobsched keeps one job per thread (attach runs
            # before the scheduler makes its state, which then sees 1).
            sched.prefetch = 1
        elif sched.prefetch != 1:
            raise ValueError(f"Scheduler: prefetch={sched.prefetch} is not supported with DaskBackend, which keeps "
                             "one job per Dask worker thread so that priorities hold; leave prefetch at 1 "
                             "(or \"auto\", which is 1 on Dask)")
        for option, value in (("max_jobs_per_worker", sched.max_jobs_per_worker),
                              ("max_worker_memory", sched.max_worker_memory)):
            # jobsched cannot replace a Dask worker's process (and its pid may be on another machine).
            if value is not None:
                raise ValueError(f"Scheduler: {option}={value!r} is not supported with DaskBackend, which cannot "
                                 "replace Dask worker processes; leave it None and use Dask's own memory limits "
                                 "(memory_limit=, distributed.worker.memory.*)")
        if sched.worker_env is not None:
            raise ValueError("Scheduler: worker_env is not supported with DaskBackend, whose worker processes Dask "
                             "starts; set their environment through Dask (e.g. the cluster's env= or "
                             "distributed.nanny.pre-spawn-environ)")
        self._sched = sched

    def default_n_workers(self) -> int:
        """Return the number of threads in the cluster now (at least 1: ``start`` then waits for one)."""
        try:
            n = sum(self._client.nthreads().values())
        except Exception:
            n = sum(self._threads.values())
        return max(1, n)

    def share(self, handle: Handle, obj: Any) -> None:
        """``put``: send ``obj`` once to each Dask worker (``_dask/shared.py``), or to each resident worker.

        Per task, each job that takes the handle gets its Dask worker's copy, unpickled once on arrival.
        Resident workers get the handle's pickle once each, ahead of their first job that takes it.

        Raises:
            ValueError: resident, the pickle is larger than one message (2 GiB).
        """
        if self._resident is not None:
            check_share(handle)
        else:
            shared = Shared(self._client, obj)
            _handles.hold(handle, shared)  # released with the handle, even if this scatter fails
            shared.scatter_to_all()
        self._shared.add(handle)

    # ---- the Backend protocol: the loop's thread

    def open(self, events: BackendEvents, selector: selectors.BaseSelector) -> None:
        """Keep the events sink and follow the cluster's membership (nothing goes on the selector)."""
        self._events = events
        self._failure_reported = False
        if self._resident is not None:
            self._resident.open(events, selector)
            return
        if not self._subscribed and not self._closed:
            self._subscribed = True
            _hub_for(self._client).add(self)
            self._progress.open()

    def start_worker(self, w: Worker) -> None:
        """Seat ``w`` on a free Dask thread and report it ready at once; or let it wait for one."""
        if self._resident is not None:
            self._resident.start_worker(w)
            return
        w._io = _Slot()
        w.address = None
        self._waiting.append(w)
        self._seat_waiting(time.monotonic())

    def send_jobs(self, w: Worker, entries: list[Entry]) -> None:
        """Submit the job (prefetch is 1: one entry) to the Dask worker behind ``w``, pinned there."""
        if self._resident is not None:
            self._resident.send_jobs(w, entries)
            return
        slot: _Slot = w._io
        assert slot is not None and slot.seat is not None and len(entries) == 1
        entry = entries[0]
        payload = entry.payload if isinstance(entry.payload, bytes) else b"".join(entry.payload)
        slot.key = key = f"jobsched-{_key_name(entry.data)}-{entry.index}-{uuid.uuid4().hex}"
        slot.index = entry.index
        args: tuple[Any, ...] = (payload, entry.index, entry.seed)
        try:
            if entry.handles:  # the objects its Dask worker holds: a released handle's job fails, saying so
                args = (*args, {h.token: s.future_for(slot.seat.address) for h in entry.handles
                                if (s := _handles.held(h)) is not None})
            future = self._client.submit(run_payload, *args, progress_topic=self._progress.topic, key=key,
                                         workers=[slot.seat.address],
                                         allow_other_workers=False, pure=False, retries=0)
        except Exception as exc:  # reported on the next turn of the loop, not from inside a command
            if self._client.status in ("closing", "closed"):
                self._post(self._client_gone)  # not the job's fault: it goes back to the queue
            else:
                why = _Lost(f"could not submit it to Dask ({type(exc).__name__}: {exc})")
                self._post(functools.partial(self._settle, w, slot, key, why))
            return
        slot.future = future
        future.add_done_callback(functools.partial(self._on_done, w, slot, key))

    def close_worker(self, w: Worker) -> None:
        """An idle slot exits now (a Dask thread has nothing to shut down); a busy one after its result."""
        if self._resident is not None:
            self._resident.close_worker(w)
            return
        slot: _Slot | None = w._io
        if slot is None:
            return
        if slot.key is None:
            self._post(functools.partial(self._exit, w, slot, "retired", clean=True))
        else:
            slot.closing = True

    def withdraw_job(self, w: Worker, entry: Entry) -> None:
        """Never needed: a Dask slot holds one job at a time (prefetch is 1), so no job waits behind another."""

    def kill_worker(self, w: Worker, force: bool) -> None:
        """Give ``w``'s task up and report the slot gone; the state's kill reason decides the job's fate.

        A Dask thread cannot be stopped. ``force`` (a timeout, a stop): the task runs on and its seat takes no
        other job until it ends. Otherwise (the end of ``close()``'s grace period, a cancelled job) the task is
        cancelled: Dask drops it if it has not started, and forgets its result. A resident worker is killed.
        """
        if self._resident is not None:
            self._resident.kill_worker(w, force)
            return
        slot: _Slot | None = w._io
        if slot is None:
            return
        if slot.seat is None:
            self._waiting.remove(w)  # now: a seat freeing up must not make it ready any more
            self._post(functools.partial(self._exit, w, slot, "had no Dask thread yet", crashed=False))
            return
        where = slot.seat.address
        future, slot.future, key, slot.key = slot.future, None, slot.key, None
        if future is None or key is None:
            description = f"was closed on Dask worker {where}"
        elif force:
            self._abandoned[key] = (slot.seat, future)
            description = (f"was left running it on Dask worker {where} (a Dask thread cannot be stopped; that "
                           "thread takes no other job until the task ends)")
        else:
            _cancel(future)
            description = f"was given up on Dask worker {where} (its Dask task was cancelled)"
        self._post(functools.partial(self._exit, w, slot, description, crashed=False))

    def worker_rss(self, w: Worker) -> int | None:
        return None  # never asked: max_worker_memory is refused in attach

    def poll(self, now: float) -> float:
        """Follow the cluster; return when to be called next."""
        if self._resident is not None:
            if self._client.status in ("closing", "closed"):
                self._resident_client_gone()
            return min(now + TICK, self._resident.poll(now))
        if self._client.status in ("closing", "closed"):
            self._client_gone()
            return now + TICK
        self._follow(now)
        return min(now + TICK, self._refresh_at) if self._stale else now + TICK

    def settle(self) -> None:
        pass  # a seat is asked for at once; nothing waits on this side

    def shutdown(self) -> None:
        """The loop ends with every slot exited: nothing waits for a seat any more."""
        self._waiting.clear()
        if self._resident is not None:
            self._resident.shutdown()

    def close(self) -> None:
        """Forget the cluster's events; cancel tasks still running; close the client if jobsched created it."""
        if self._closed:
            return
        self._closed = True
        for handle in list(self._shared):
            handle.release()  # its data leaves the cluster (or the resident workers) with the scheduler
        if self._resident is not None:
            self._resident.close()
        futures = [future for _, future in self._abandoned.values()]
        self._abandoned.clear()
        for w in self._seated.values():
            slot: _Slot | None = w._io
            if slot is not None and slot.future is not None:
                futures.append(slot.future)
                slot.future = slot.key = None
        self._seated.clear()
        self._waiting.clear()
        if self._subscribed:
            _hub_for(self._client).discard(self)
            self._progress.close()
        for future in futures:
            _cancel(future)
        if self._owns_client:
            try:
                self._client.close(timeout=CLOSE_TIMEOUT)
            except Exception as exc:
                self._log(f"jobsched: closing the Dask client failed: {type(exc).__name__}: {exc}")

    # ---- the loop's thread

    def _follow(self, now: float) -> None:
        """Read the worker list if stale, report slots whose Dask worker left, seat the waiting slots."""
        if self._stale and now >= self._refresh_at:
            self._refresh(now)
        for w in list(self._seated.values()):
            slot: _Slot = w._io
            assert slot.seat is not None
            address = slot.seat.address
            if address not in self._threads:
                retired = self._departed.get(address, False)
                if slot.future is not None:
                    _cancel(slot.future)  # pinned to a worker that is gone: it would wait forever
                    slot.future = slot.key = None
                self._exit(w, slot, f"lost its Dask worker {address} (it {'retired' if retired else 'died'})",
                           crashed=not retired)
        for key, (seat, future) in list(self._abandoned.items()):
            if seat.address not in self._threads:  # its worker is gone: the task will never end
                del self._abandoned[key]
                _cancel(future)
        self._seat_waiting(now)

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

    def _seat_waiting(self, now: float) -> None:
        """Give free seats to the slots waiting for one, oldest first, and report them ready."""
        if not self._waiting:
            return
        if self._stale and now >= self._refresh_at:
            self._refresh(now)
        held = {w._io.seat for w in self._seated.values()}
        held.update(seat for seat, _ in self._abandoned.values())
        free = [_Seat(a, t) for a, n in self._threads.items() for t in range(n) if _Seat(a, t) not in held]
        # First threads of every worker first: a few slots spread over machines rather than pile on one.
        free.sort(key=lambda seat: (seat.thread, seat.address))
        events = self._events
        assert events is not None
        while self._waiting and free:
            w = self._waiting.pop(0)
            slot: _Slot = w._io
            slot.seat = seat = free.pop(0)
            self._seated[w.index] = w
            w.address = seat.address
            events.worker_spawned(w, self._pids.get(seat.address))
            events.worker_ready(w)  # a Dask thread needs no start-up

    def _exit(self, w: Worker, slot: _Slot, description: str, clean: bool = False, crashed: bool = True) -> None:
        """Report that ``slot`` (an incarnation of ``w``) is gone, once; free its seat."""
        if w._io is not slot:
            return  # reported already
        w._io = None
        if self._seated.get(w.index) is w:
            del self._seated[w.index]
        if w in self._waiting:
            self._waiting.remove(w)
        assert self._events is not None
        self._events.worker_exited(w, description, clean, crashed)
        self._seat_waiting(time.monotonic())  # its seat may serve a waiting slot

    def _settle(self, w: Worker, slot: _Slot, key: str, outcome: _Outcome) -> None:
        """Report a task's outcome; outcomes of tasks given up (or of a slot gone) only free their seat."""
        if self._abandoned.pop(key, None) is not None:
            self._seat_waiting(time.monotonic())  # a task given up has ended: its seat is free again
            return
        if w._io is not slot or slot.key != key:
            return
        slot.key = slot.future = None
        assert slot.seat is not None and self._events is not None
        if isinstance(outcome, _Lost):
            self._stale = True  # the worker is probably gone: read the list again before reusing its seat
            self._refresh_at = 0.0
            self._exit(w, slot, f"lost the job on Dask worker {slot.seat.address}: {outcome.why}")
            return
        kind, body, pid = outcome
        if pid is not None:
            w.pid = self._pids[slot.seat.address] = pid  # what the slot's pid means on Dask
        self._events.frames(w, [(kind, slot.index, body)])
        if slot.closing and w._io is slot and slot.key is None:
            self._exit(w, slot, "retired", clean=True)

    def _progress_frame(self, index: int, body: bytes) -> None:
        """A job's progress report: the slot's, while that job is still in flight there."""
        for w in self._seated.values():
            slot: _Slot = w._io
            if slot.index == index and slot.key is not None and self._events is not None:
                self._events.frames(w, [(_wire.PROGRESS, index, body)])
                return

    def _on_membership(self, action: str, address: str, expected: bool) -> None:
        if action == "remove-worker":
            self._threads.pop(address, None)
            self._departed[address] = expected
        else:
            self._stale = True
            self._refresh_at = 0.0
        self._follow(time.monotonic())

    def _client_gone(self) -> None:
        """The client closed under the scheduler: its slots go (their jobs re-queued), and the scheduler stops."""
        self._threads = {}
        self._stale = False
        for w in [*self._seated.values(), *self._waiting]:
            slot: _Slot = w._io
            slot.future = slot.key = None
            self._exit(w, slot, "lost its Dask client (closed)", crashed=False)
        sched, events = self._sched, self._events
        assert sched is not None and events is not None
        if not self._failure_reported and not sched.stats()["closed"] and (sched.n_queued_jobs or sched.n_workers):
            self._failure_reported = True
            events.backend_failed(DaskClientClosedError(
                f"the Dask client {self._client.id} was closed while the scheduler ran; {sched.n_queued_jobs} jobs "
                "stay queued. Keep the Client open until Scheduler.close(), or pass an address to DaskBackend so "
                "that jobsched owns the client"))

    def _resident_client_gone(self) -> None:
        sched, events = self._sched, self._events
        assert sched is not None and events is not None
        if not self._failure_reported and not sched.stats()["closed"]:
            self._failure_reported = True
            events.backend_failed(DaskClientClosedError(
                f"the Dask client {self._client.id} was closed while the scheduler ran; its resident workers stay "
                "until their Dask workers go. Keep the Client open until Scheduler.close()"))

    # ---- other threads: post to the loop's thread

    def _post(self, fn: Callable[[], None]) -> None:
        if self._events is not None and not self._closed:
            self._events.post(fn)

    def _on_progress(self, index: int, body: bytes) -> None:
        self._post(functools.partial(self._progress_frame, index, body))

    def _on_done(self, w: Worker, slot: _Slot, key: str, future: distributed.Future[Any]) -> None:
        """Dask's callback thread: fetch the outcome, then hand it to the loop's thread."""
        self._post(functools.partial(self._settle, w, slot, key, self._outcome(future)))

    def _outcome(self, future: distributed.Future[Any]) -> _Outcome:
        return outcome(future, self._result_timeout)

    def _on_event(self, event: tuple[float, Any]) -> None:
        """The client's IO loop: a Dask worker joined or left the cluster."""
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and msg.get("action") in ("add-worker", "remove-worker"):
            self._post(functools.partial(self._on_membership, str(msg["action"]), str(msg.get("worker")),
                                         bool(msg.get("expected", False))))

    def _log(self, message: str) -> None:
        if self._events is not None:
            self._events.log(message)
