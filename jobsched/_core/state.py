"""The scheduler's policy as a pure state machine: events in, commands out, no I/O.

``SchedulerState`` owns the queue (a heap by ``(cost, index)``), the job lifecycle and the worker slots, and
decides everything: which job goes to which worker and how many ahead (``prefetch``), what happens to the
jobs of a worker that died (re-queue, ``JobTimeout``, ``WorkerDied``, ``JobCancelled``), restart back-off and
the start-up failure limit, recycling, scale-down, pause, the close grace period, cancel accounting, idle
detection and stats. It has no sockets, processes, threads, locks or clocks: time comes in as ``now``
(``time.monotonic()`` seconds) and what must happen goes out as plain data::

    events (methods)                           commands (returned)
    ────────────────                           ───────────────────
    add / cancel / set_target / pause ...  ──> StartWorker(w)          spawn a process for slot w
    tick(now)                              ──> SendJobs(w, entries)    put JOB frames on w's connection
    worker_ready(w) / assign(now)          ──> CloseWorker(w)          ask w to exit after its jobs
    job_done(w, index, now)                ──> KillWorker(w, reason) signal w (TERM, then KILL)
                                           ──> WithdrawJob(w, entry)   drop a job sent ahead, unstarted
    connection_lost(w) / worker_exited(w)  ──> Deliver(entry, result)  settle a job the state decided
                                           ──> Fail(error)             the loop must stop

The shell (``scheduler.py`` with ``_core/loop.py`` and a ``Backend``) calls these methods under the scheduler's
lock, carries out the commands, and runs user callbacks and futures outside the lock. ``tests/test_state.py``
drives this class with a fake clock and starts no process.

The hot path (``job_done`` and ``assign``) uses plain method calls and short lists, no event objects: one
job costs two calls here.

The class is written in three files, one per concept, all one object under one lock: ``_core/jobqueue.py``
(``JobQueue``: numbering, cost order, cancel, delayed retries), ``_core/dispatch.py`` (``Dispatch``: which job
goes to which worker, how many ahead, ``prefetch="auto"``'s measurements) and this file (worker lifecycle,
results, deaths, close, stats). ``SchedulerState`` is ``Dispatch``'s subclass, which is ``JobQueue``'s.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from typing import Literal

from ..errors import JobError, JobTimeout, WorkerStartupError
from ..states import KillReason, WorkerState
from .dispatch import Dispatch
from .instructions import (
    CancelOutcome,
    CloseWorker,
    Command,
    Deliver,
    Entry,
    Fail,
    KillWorker,
    SendJobs,
    StartWorker,
    WithdrawJob,
)
from .outcomes import NO_WORKER, Outcomes
from .pacing import AUTO_MAX, AUTO_START, AutoDepth
from .slot import Progress, Worker
from .tags import TagQueues

STARTUP_FAILURE_LIMIT = 3  # workers dying before READY, in a row, before the scheduler gives up
CLOSE_GRACE = 10.0  # seconds a closing worker has to exit before SIGTERM
KILL_GRACE = 2.0  # seconds after SIGTERM before SIGKILL (close grace, cancel)
CANCEL_GRACE = 1.0  # seconds a cancelled job's worker has between SIGTERM and SIGKILL
# Seconds a worker has, once a withdrawn job is next in line, to report it dropped (it does so at once, right
# after the previous job's answer); no report means the job started, and its worker is killed.
WITHDRAW_GRACE = 2.0
START_TIMEOUT = 60.0  # seconds a local worker has to connect and authenticate
HANGUP_GRACE = 1.0  # seconds a worker that closed its connection has to exit by itself
MAX_RESTART_DELAY = 5.0
# Kill reasons that do not outweigh a backend's "not crashed" (crashed=False): none, or a connection that
# closed before the exit was seen, which is how any death looks from the socket (a zygote's, for one).
_NOT_OURS = frozenset({None, KillReason.CLOSED_CONNECTION})
TICK = 0.5  # longest interval between two ticks (a safety net: events arrive on their own)


_STARTING, _READY, _RUNNING = WorkerState.STARTING, WorkerState.READY, WorkerState.RUNNING
_CLOSING, _CLOSED = WorkerState.CLOSING, WorkerState.CLOSED


class SchedulerState(Dispatch):
    """The queue, the jobs and the worker slots, and every decision about them (see the module docstring).

    Args:
        prefetch: jobs in flight per worker (1: a job leaves the queue only when a worker is free), or "auto":
            as many as hide the round trip, from measured durations (see ``_measure``).
        max_retries, timeout, retry_on_timeout: defaults for jobs (see ``Scheduler``).
        max_jobs_per_worker, max_worker_memory: recycling limits (see ``Scheduler``).
        start_timeout: seconds a starting worker has to become READY (None: no limit, e.g. a Dask slot that
            waits for a free thread).
    """

    def __init__(self, *, prefetch: int | Literal["auto"] = 1, max_jobs_per_worker: int | None = None,
                 max_worker_memory: int | None = None, start_timeout: float | None = START_TIMEOUT) -> None:
        self.auto = prefetch == "auto"
        self.prefetch = AUTO_START if prefetch == "auto" else prefetch  # the depth now, with "auto"
        self._held_back = False  # assign() kept workers to one job while another was idle or starting
        self._pacing = AutoDepth()  # "auto": what it measured of job durations and round trips
        self.max_jobs_per_worker = max_jobs_per_worker
        self.max_worker_memory = max_worker_memory
        self.start_timeout = start_timeout
        self.heap: list[tuple[float, int, Entry]] = []  # the jobs any worker may run
        self.tagged = TagQueues()  # the jobs that need tags (``needs=``), one heap per set of tags
        self.tags_of: Callable[[int], frozenset[str]] | None = None  # a slot's tags (``worker_tags=``)
        self._counter = itertools.count()
        self.ready: collections.deque[Deliver] = collections.deque()  # settled without a worker (journal, cancel)
        self.n_cancelled_queued = 0  # cancelled entries still in the heap (skipped when popped)
        self.n_active = 0  # taken from the queue and not yet delivered
        self.n_delivering = 0  # of those, counted done: their future is being resolved, or after_stop runs
        self.n_done = 0
        self.n_failed = 0
        self.n_cancelled = 0
        self.n_from_journal = 0
        self.outcomes = Outcomes()  # the same jobs in disjoint counts, and per worker (the views show these)
        self.n_restarts = 0
        self.workers: list[Worker] = []
        self.hungry: collections.deque[Worker] = collections.deque()  # READY/RUNNING with room for a job
        self.target = 0
        self.paused = False
        self.until_idle = False  # a blocking start(): stop when idle
        self.close_when_idle = True
        self.closing = False
        self.close_grace = CLOSE_GRACE
        self.error: BaseException | None = None  # raised by the next start()/wait(), once
        # What this run is stopping on, until the next start(): unlike ``error``, it stays when a caller takes
        # the error, so that the loop still ends and a fatal error still fails the queued futures.
        self.stopped_on: BaseException | None = None
        self.fatal = False  # stopped_on is the scheduler's own: queued futures get it too
        self.last_worker_died: JobError | None = None  # the last job failed by its worker's deaths (dashboard)
        self.withdrawals: list[tuple[Worker, Entry]] = []  # jobs sent ahead and cancelled: tick() withdraws them
        self.startup_failures = 0
        self.maintain_at = 0.0  # when tick() is next due
        self.rate_samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        self.started_at: float | None = None
        self.retry_delay = 0.0  # seconds a job retried by retry_on waits (Scheduler(retry_delay=...))
        self.delayed: list[tuple[float, int, Entry]] = []  # (due, index, entry): retried jobs not queued yet

    # ------------------------------------------------------------------ control

    def configure(self, target: int, *, until_idle: bool, close_when_idle: bool) -> None:
        """What ``start()`` asks for: how many workers, and whether to stop (and close them) once idle."""
        self.until_idle = until_idle
        self.close_when_idle = close_when_idle
        self.stopped_on = None
        self.fatal = False
        self.set_target(target)

    def set_target(self, n: int) -> None:
        """Keep ``n`` workers (the slots exist at once, so that ``workers`` lists them before they start)."""
        self.target = n
        for index in range(len(self.workers), n):
            self.workers.append(self._slot(index))
        self.maintain_at = 0.0
        if self.tagged.n:  # jobs whose tags no remaining worker has: settled now, not left waiting forever
            orphans, n_cancelled = self.tagged.take_orphans(self.workers[:n])
            self.n_cancelled_queued -= n_cancelled
            for entry, error in orphans:
                self.n_active += 1
                self.ready.append(Deliver(entry, error, True))

    def _slot(self, index: int) -> Worker:
        w = Worker(index)
        if self.tags_of is not None:
            w.tags = self.tags_of(index)
        return w

    def begin_close(self, grace: float) -> None:
        """``close()``: every worker finishes what it holds within ``grace`` seconds, then the loop ends."""
        self.closing = True
        self.close_grace = grace
        self.target = 0
        self.maintain_at = 0.0

    def callback_failed(self, exc: BaseException) -> bool:
        """A user callback raised: stop dispatching and close the workers. False if the run already stops."""
        if self.stopped_on is not None:
            return False
        self.error = self.stopped_on = exc
        self.target = 0
        self.maintain_at = 0.0
        return True

    def fail(self, exc: BaseException) -> None:
        """The scheduler cannot go on (workers cannot start, a bug): keep the error, stop everything."""
        if self.stopped_on is None:
            self.error = self.stopped_on = exc
            self.fatal = True
        self.target = 0
        self.maintain_at = 0.0

    def take_error(self) -> BaseException | None:
        error, self.error = self.error, None
        return error

    def kill_all(self) -> list[Command]:
        """Kill every live worker now (Ctrl-C during close, a fatal error); their jobs go back to the queue."""
        cmds: list[Command] = []
        for w in self.workers:
            if w.state is not _CLOSED:
                w._kill_reason = KillReason.STOPPING
                if w.state is not _CLOSING:
                    self._unhunger(w)
                    w._move(_CLOSING)
                w._deadline = float("inf")  # no further signals: SIGKILL is the last word
                cmds.append(self._kill(w, KillReason.STOPPING, True))
        return cmds

    def live_workers(self) -> list[Worker]:
        """The slots that exist now: those below the target, and those still winding down."""
        return [w for w in self.workers if (w.index < self.target and not w._adopted) or w.state is not _CLOSED]

    def all_closed(self, start: int = 0) -> bool:
        return all(w.state is _CLOSED for w in self.workers[start:])

    def poll_finished(self) -> bool:
        """Whether the loop may end now (it may first lower the target: a blocking start closes its workers)."""
        if self.closing or self.stopped_on is not None:
            return self.all_closed()
        if self.until_idle and self.is_idle() and not self.ready:
            if not self.close_when_idle:  # keep the workers, once the extra ones are gone
                return self.all_closed(self.target)
            if self.target:
                self.set_target(0)
                return False
            return self.all_closed()
        return False

    # ------------------------------------------------------------------ worker lifecycle

    def tick(self, now: float) -> list[Command]:
        """Start, restart, retire and time out workers; send the signals whose deadline passed."""
        self._sample_rate(now)
        cmds: list[Command] = []
        if self.withdrawals:
            cmds.extend(WithdrawJob(w, entry) for w, entry in self.withdrawals
                        if entry in w._inflight and w.state is not _CLOSED)
            self.withdrawals.clear()
        next_at = now + TICK
        if self.delayed:
            next_at = min(next_at, self._requeue_due(now))
        target = 0 if self.closing else self.target
        for index in range(len(self.workers), target):
            self.workers.append(self._slot(index))
        for w in self.workers:
            state = w.state
            if w._adopted and state is _CLOSED:
                continue  # a hand-started worker's slot ends with it
            if self._wanted(w, target):
                if state is _CLOSED:
                    if now >= w._restart_at:
                        cmds.append(self._start(w, now))
                    else:
                        next_at = min(next_at, w._restart_at)
                        continue
                elif w._retiring and state is _READY:  # recycled (max_jobs_per_worker, max_worker_memory)
                    cmds.extend(self._close(w, now))
            elif state is not _CLOSED and state is not _CLOSING:
                w._retiring = True
                # Scaling down lets a busy worker finish first; close() starts its grace period now.
                if not w._inflight or self.closing:
                    cmds.extend(self._close(w, now))
            state = w.state
            if state is _STARTING or state is _CLOSING or w._kill_reason is not None:
                if now >= w._deadline:
                    cmds.extend(self._overdue(w, now))
                next_at = min(next_at, w._deadline)
            elif state is _RUNNING:
                entry = w._inflight[0]
                if entry.timeout is not None:
                    limit = w._job_started + entry.timeout
                    if now >= limit:
                        entry.timed_out = True
                        w._kill_reason = KillReason.TIMEOUT
                        w._deadline = now + KILL_GRACE
                        cmds.append(self._kill(w, KillReason.TIMEOUT, True))
                        next_at = min(next_at, w._deadline)
                    else:
                        next_at = min(next_at, limit)
        self.maintain_at = next_at
        return cmds

    def _wanted(self, w: Worker, target: int) -> bool:
        """Whether ``w`` should run: a slot below the target, or a hand-started worker while the run goes on."""
        if w._adopted:
            return not self.closing and self.stopped_on is None and not (self.until_idle and not self.target)
        return w.index < target

    def adopt(self, now: float) -> Worker | None:
        """A worker started by hand authenticated: give it a new slot of its own (None: the run is ending).

        The slot is STARTING; the backend reports it spawned and ready at once. It is not counted in the
        target (``n_workers``) and is never restarted: when its worker leaves, the slot ends.
        """
        if self.closing or self.stopped_on is not None:
            return None
        w = Worker(len(self.workers))
        w._adopted = True
        self.workers.append(w)
        self._start(w, now)
        return w

    def _start(self, w: Worker, now: float) -> StartWorker:
        w._generation += 1
        w._retiring = False
        w._n_jobs_this_process = 0
        w._move(_STARTING)
        w._kill_reason = None
        w._signalled = False
        w.exit_description = None
        w.progress = None
        w._started_at = now
        w._deadline = now + self.start_timeout if self.start_timeout is not None else float("inf")
        return StartWorker(w)

    def worker_spawned(self, w: Worker, pid: int | None) -> None:
        w.pid = pid

    def worker_spawn_failed(self, w: Worker, message: str, now: float) -> list[Command]:
        """The backend could not even start a process for ``w`` (missing program, bad command)."""
        w.pid = None
        w._move(_CLOSED)
        w.exit_description = "could not be started"
        return self._startup_failure(w, message)  # the message once, as the output

    def worker_ready(self, w: Worker, now: float) -> list[Command]:
        """``w`` connected and authenticated: it takes jobs now (or is closed, if no longer wanted)."""
        w._ready_at = now
        self.startup_failures = 0
        w._move(_READY)
        if w._retiring or not self._wanted(w, self.target) or self.closing or w._kill_reason is not None:
            return self._close(w, now)
        self._make_hungry(w)
        return []

    def _close(self, w: Worker, now: float) -> list[Command]:
        """Ask ``w`` to exit; it has the close grace period (or finishes its job, when scaling down)."""
        w._retiring = True
        if w.state is _READY or w.state is _RUNNING:
            # A busy worker reads CLOSE after its job: its result still arrives, then it exits.
            self._unhunger(w)
            w._deadline = now + self.close_grace if self.closing or not w._inflight else float("inf")
            w._move(_CLOSING)
            return [CloseWorker(w)]
        if w.state is _STARTING:
            # The scheduler is failing, or the slot has no process to wait for (no start-up deadline: a Dask
            # slot waiting for a free thread): retire it now.
            if self.stopped_on is not None or self.start_timeout is None:
                return self._retire_unconnected(w, now)
            # Let it connect, then it gets CLOSE (and its code after start_worker runs); it is killed if it
            # has not connected by the end of the grace period. min(): called on every tick.
            w._deadline = min(w._deadline, now + self.close_grace)
        return []

    @staticmethod
    def _kill(w: Worker, reason: KillReason, force: bool) -> KillWorker:
        w._signalled = True
        return KillWorker(w, reason, force)

    def _retire_unconnected(self, w: Worker, now: float) -> list[Command]:
        """Kill a worker that is being closed before it connected: an expected exit, no restart."""
        w._kill_reason = KillReason.RETIRED
        w._move(_CLOSING)
        w._deadline = now + KILL_GRACE
        return [self._kill(w, KillReason.RETIRED, True)]

    def _overdue(self, w: Worker, now: float) -> list[Command]:
        """A deadline passed: too slow to connect, to exit when closed, or to die when signalled."""
        reason = w._kill_reason
        if w.state is _STARTING and reason is None:
            if w._retiring:
                return self._retire_unconnected(w, now)
            w._kill_reason = KillReason.NO_HANDSHAKE
            w._deadline = now + KILL_GRACE
            return [self._kill(w, KillReason.NO_HANDSHAKE, True)]
        if reason is KillReason.CANCELLED and w._deadline == 0.0:  # just cancelled: SIGTERM first
            w._deadline = now + CANCEL_GRACE
            return [self._kill(w, KillReason.CANCELLED, False)]
        if reason is None and w.state is _CLOSING:  # the close grace period is over
            w._kill_reason = KillReason.TERMINATED
            w._deadline = now + KILL_GRACE
            return [self._kill(w, KillReason.TERMINATED, False)]
        if reason is KillReason.TERMINATED:
            w._kill_reason = KillReason.KILLED_AFTER_GRACE
        w._deadline = now + KILL_GRACE  # and again, until its exit is seen
        return [self._kill(w, w._kill_reason or KillReason.STOPPING, True)]

    def connection_lost(self, w: Worker, now: float, reason: KillReason = KillReason.CLOSED_CONNECTION) -> None:
        """``w``'s connection ended or broke the protocol: give it a moment to exit by itself, then kill it.

        A worker that exits on its own shows its own exit status (not "killed by SIGKILL").
        """
        if w.state is _CLOSED:
            return
        self._unhunger(w)
        if w._kill_reason is None and (w.state is not _CLOSING or reason is KillReason.PROTOCOL):
            w._kill_reason = reason
            w._deadline = now + (0.0 if reason is KillReason.PROTOCOL else HANGUP_GRACE)
            self.maintain_at = min(self.maintain_at, w._deadline)

    def worker_exited(self, w: Worker, description: str, clean: bool, now: float,
                      output_tail: str = "", crashed: bool = True) -> list[Command]:
        """``w``'s process has exited: settle the jobs it held, and plan its restart.

        Args:
            description: how it ended ("exit code 3", "killed by signal SIGKILL").
            clean: it exited with status 0.
            output_tail: the last lines it printed (shown in a ``WorkerDied`` error: a fatal-error stack).
            crashed: False when nothing failed: the backend let the slot go (a Dask worker that its cluster
                retired, a closed client, a seat given up after a timeout), or the process died of something
                else than its job (its zygote died). No restart is counted, and the jobs it held go back to the
                queue unless this state's own kill reason (a timeout, a protocol error) blames them; a
                connection that closed first does not.
        """
        if w.state is _CLOSED:
            return []
        reason = w._kill_reason
        # The reason is part of how it ended only if we signalled it: a worker that exited by itself right
        # after its connection closed was not "killed (closed its connection)".
        w.exit_description = f"{description} ({reason.value})" if reason is not None and w._signalled \
            else description
        expected = w.state is _CLOSING
        was_starting = w.state is _STARTING
        lost = list(w._inflight)
        w._inflight.clear()
        w.progress = None
        self._unhunger(w)
        w._move(_CLOSED)
        self.maintain_at = 0.0
        cmds: list[Command] = self._settle_lost(w, lost, output_tail, crashed) if lost else []
        if (expected and clean) or not crashed or reason is KillReason.RETIRED or reason is KillReason.CANCELLED:
            w._fast_deaths = 0
            return cmds
        if reason is KillReason.STOPPING:
            return cmds
        if not expected and not w._adopted:
            self.n_restarts += 1
            w.n_restarts += 1
            # Back off only from workers that die before they are READY (a crash loop at start-up): a worker
            # that a job killed comes back at once, and its job is retried at once.
            w._fast_deaths = w._fast_deaths + 1 if was_starting else 0
            delay = 0.0 if w._fast_deaths <= 1 else min(0.05 * 2 ** (w._fast_deaths - 1), MAX_RESTART_DELAY)
            w._restart_at = now + delay
            if was_starting:
                cmds.extend(self._startup_failure(w, output_tail))
        return cmds

    def _settle_lost(self, w: Worker, lost: list[Entry], output_tail: str, crashed: bool = True) -> list[Command]:
        """Decide the fate of the jobs a dead worker held: re-queue them, or fail the one it was running."""
        running, requeue = lost[0], lost[1:]
        cmds: list[Command] = []
        reason = w._kill_reason
        if reason is KillReason.CANCELLED or any(entry.cancelled for entry in lost):
            requeue = [entry for entry in lost if not entry.cancelled]
            for entry in lost:
                if entry.cancelled:
                    cmds.append(Deliver(entry, self._cancelled_error(entry), True))
        elif self.closing or (reason is not None and not reason.blames_job) or (not crashed and reason in _NOT_OURS):
            requeue.insert(0, running)
        else:
            death = f"worker {w.index} (pid {w.pid}) {w.exit_description}"
            running.deaths = deaths = [*(running.deaths or ()), death]
            error: JobError | None = None
            if running.timed_out and not (running.retry_on_timeout and running.attempts < running.max_retries):
                error = JobTimeout("JobTimeout", f"the job ran longer than its timeout of {running.timeout:g} s; "
                                   f"{death}", "", running.index, running.attempts)
            elif running.attempts >= running.max_retries:  # deaths and retried errors: one budget
                times = "once" if len(deaths) == 1 else f"{len(deaths)} times"
                tail = f"Last output of worker {w.index}:\n{output_tail}" if output_tail.strip() else ""
                error = self.last_worker_died = JobError("WorkerDied", f"its worker died {times}: "
                                                         + "; ".join(deaths), tail, running.index, len(deaths))
            else:
                running.timed_out = False
                requeue.insert(0, running)
            if error is not None:
                error.attempts = running.attempts
                cmds.append(Deliver(running, error, True))
        # Back in the queue and out of the active count at once: wait() never sees idle in between.
        self.n_active -= len(requeue)
        for entry in requeue:
            self._requeue(entry)
        return cmds

    def _startup_failure(self, w: Worker, output: str) -> list[Command]:
        self.startup_failures += 1
        if self.startup_failures < STARTUP_FAILURE_LIMIT or self.stopped_on is not None:
            return []
        error = WorkerStartupError(
            f"{self.startup_failures} workers in a row exited before they were ready "
            f"(last: worker {w.index}, {w.exit_description}).\n"
            f"Its output:\n{output.rstrip() or '(nothing)'}\n"
            "Check the worker file, its entry function and its imports."
        )
        self.fail(error)
        return [Fail(error)]

    # ------------------------------------------------------------------ results (the hot path, with Dispatch)

    def job_done(self, w: Worker, index: int, now: float, rss: int | None = None) -> Entry | None:
        """``w`` reported the result of job ``index``: take it off ``w`` and make room for the next one.

        Returns the finished entry (the shell decodes and delivers its result), or None if ``w`` does not
        hold that job: a protocol violation, after which ``w`` is dropped (see ``connection_lost``).
        ``rss`` is the worker's resident memory, given when ``max_worker_memory`` is set.
        """
        inflight = w._inflight
        if not inflight or inflight[0].index != index:
            self.connection_lost(w, now, KillReason.PROTOCOL)
            return None
        entry = inflight.popleft()
        reason = w._kill_reason
        if inflight and inflight[0].cancelled and (reason is None or (reason is KillReason.CANCELLED
                                                                      and not w._signalled)):
            # A withdrawn job is next: the worker reports it dropped at once, or it has started and is killed.
            w._kill_reason = KillReason.CANCELLED
            w._deadline = now + WITHDRAW_GRACE
            self.maintain_at = min(self.maintain_at, w._deadline)
        elif entry.cancelled and reason is KillReason.CANCELLED and not w._signalled:
            w._kill_reason = None  # it finished (or was dropped) before a signal went out: nothing left to stop
        if self.auto:
            self._time_result(w, now)
            w._pipelined = bool(inflight)
        self.outcomes.ran(now - w._job_started)
        w._job_started = now
        w.progress = None
        if rss is not None:
            w.last_rss = rss  # named in an OOM kill's description
        w.n_done += 1
        w._n_jobs_this_process += 1
        if (self.max_jobs_per_worker is not None and w._n_jobs_this_process >= self.max_jobs_per_worker) or (
                self.max_worker_memory is not None and rss is not None and rss > self.max_worker_memory):
            w._retiring = True  # a fresh process takes its slot once it holds no job
        if w._retiring or not self._wanted(w, self.target) or self.closing:
            w._retiring = True
            self._unhunger(w)
            if not inflight:
                self.maintain_at = 0.0  # the next tick() closes it
        elif w.state is _READY or w.state is _RUNNING:
            self._make_hungry(w)
        if not inflight and w.state is _RUNNING:
            w._move(_READY)
        return entry

    def finished(self, failed: bool, cancelled: bool = False, from_journal: bool = False,
                 worker: int = NO_WORKER) -> None:
        """A job's outcome is known and its future is about to be resolved: count it done (``worker`` ran it).

        Counted before the future, so that whoever sees the future resolved reads stats that include it.
        """
        self.n_delivering += 1
        self.n_done += 1
        if failed:
            self.n_failed += 1
        if cancelled:
            self.n_cancelled += 1
        if from_journal:
            self.n_from_journal += 1
        self.outcomes.count(failed, cancelled, from_journal, worker)

    def delivered(self) -> None:
        """A finished job's future is resolved and its ``after_stop`` has returned: it is no longer active.

        Until here it keeps the scheduler busy, so that ``wait()`` cannot see it idle while an ``after_stop``
        that may add jobs has yet to return.
        """
        self.n_active -= 1
        self.n_delivering -= 1

    def set_progress(self, w: Worker, index: int, progress: Progress) -> None:
        if w._inflight and w._inflight[0].index == index:
            w.progress = progress

    # ------------------------------------------------------------------ stats

    def _sample_rate(self, now: float) -> None:
        """Record (time, jobs done) every 0.25 s at most: ``stats()`` derives jobs/s from these samples."""
        if self.started_at is None:
            self.started_at = now
        if self.n_done and (not self.rate_samples or now - self.rate_samples[-1][0] >= 0.25):
            self.rate_samples.append((now, self.n_done))


__all__ = ["AUTO_MAX", "CLOSE_GRACE", "TICK", "CancelOutcome", "CloseWorker", "Command", "Deliver", "Entry", "Fail",
           "KillWorker", "SchedulerState", "SendJobs", "StartWorker", "WithdrawJob"]
