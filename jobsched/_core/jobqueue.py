"""The queue half of the scheduler's state: numbering, cost order, cancel, and retries waiting out a delay.

``JobQueue`` is a part of ``SchedulerState`` (``_core/state.py``), split out by concept: its methods read and
write the same state object (``self`` is the ``SchedulerState``), under the same lock, with no I/O. The queue
is a heap by ``(cost, index)`` for jobs any worker may run, plus one heap per set of tags (``_core/tags.py``);
a cancelled queued job stays in its heap, counted in ``n_cancelled_queued``, and is dropped when popped.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Iterator
from typing import Any

from ..errors import JobCancelled
from ..states import KillReason, WorkerState
from .instructions import CancelOutcome, Deliver, Entry
from .outcomes import Outcomes
from .slot import Worker
from .tags import TagQueues

_CLOSED = WorkerState.CLOSED


class JobQueue:
    """What happens to jobs before a worker takes them (a mixin of ``SchedulerState``)."""


    # The fields it shares with the rest of the state (set in ``SchedulerState.__init__``).
    heap: list[tuple[float, int, Entry]]
    tagged: TagQueues
    delayed: list[tuple[float, int, Entry]]
    _counter: Iterator[int]
    ready: collections.deque[Deliver]
    n_cancelled_queued: int
    n_active: int
    workers: list[Worker]
    withdrawals: list[tuple[Worker, Entry]]
    maintain_at: float
    retry_delay: float
    outcomes: Outcomes

    @property
    def n_queued(self) -> int:
        return len(self.heap) + self.tagged.n - self.n_cancelled_queued

    def is_idle(self) -> bool:
        return len(self.heap) + self.tagged.n == self.n_cancelled_queued and not self.n_active

    def add(self, entry: Entry) -> bool:
        """Queue ``entry`` (numbering it); return whether the queue was empty (the loop may need a wake-up)."""
        entry.index = index = next(self._counter)
        entry.queued = True
        if entry.needs is not None:
            return self.tagged.push(entry)
        was_empty = not self.heap
        heapq.heappush(self.heap, (entry.cost, index, entry))
        return was_empty

    def _requeue(self, entry: Entry) -> None:
        entry.queued = True
        if entry.needs is not None:
            self.tagged.push(entry)
        else:
            heapq.heappush(self.heap, (entry.cost, entry.index, entry))

    def set_cost(self, entry: Entry, cost: float) -> bool:
        """Move a queued job to ``cost`` in the queue; False if it is not queued (sent, finished, cancelled)."""
        if not entry.queued or entry.cancelled:
            return False
        heap = self.heap if entry.needs is None else self.tagged.heaps[entry.needs]
        for i, item in enumerate(heap):
            if item[2] is entry:
                heap[i] = (cost, entry.index, entry)
                heapq.heapify(heap)
                entry.cost = cost
                if entry._job is not None:
                    entry._job.cost = cost
                return True
        return False

    def add_settled(self, entry: Entry, result: Any, failed: bool) -> None:
        """Number ``entry`` and settle it without running it (its result came from the journal)."""
        entry.index = next(self._counter)
        entry.from_journal = True
        self.n_active += 1  # active until delivered, so that wait() does not see idle before its callback
        self.ready.append(Deliver(entry, result, failed))

    def cancel(self, entry: Entry, *, settle: bool) -> CancelOutcome:
        """Cancel a job, queued or running.

        A queued job is skipped when it reaches the head of the queue; with ``settle`` (``Scheduler.cancel``)
        it is also delivered as ``JobCancelled``. A job that a worker runs is settled as ``JobCancelled``
        when that worker, killed by the ``KillWorker`` that ``tick`` returns next, has exited. A job sent ahead
        to a worker, behind the one it runs, is withdrawn (``WithdrawJob``): the worker drops it unstarted
        and the job before it is left alone (see ``job_done``). A job already finished is left alone.
        """
        if entry.cancelled:
            return CancelOutcome(False, False)
        if entry.queued:
            entry.cancelled = True
            self.n_cancelled_queued += 1
            if settle:
                self.n_active += 1
                self.ready.append(Deliver(entry, self._cancelled_error(entry), True))
            else:  # its future is cancelled and nothing is delivered: count it among the outcomes here
                self.outcomes.cancelled += 1
            return CancelOutcome(True, False)
        if any(item[2] is entry for item in self.delayed):  # waiting out its retry_delay: it ends here
            self.delayed = [item for item in self.delayed if item[2] is not entry]
            heapq.heapify(self.delayed)
            entry.cancelled = True
            self.ready.append(Deliver(entry, self._cancelled_error(entry), True))  # still counted active
            return CancelOutcome(True, False)
        for w in self.workers:
            if entry in w._inflight and w.state is not _CLOSED:
                entry.cancelled = True
                if entry is not w._inflight[0]:  # not started yet: withdraw it, do not kill the running job
                    self.withdrawals.append((w, entry))
                    self.maintain_at = 0.0
                    return CancelOutcome(True, False, w.index)
                if w._kill_reason is None or not w._kill_reason.blames_job:
                    w._kill_reason = KillReason.CANCELLED
                w._deadline = 0.0  # tick() sends the signals
                self.maintain_at = 0.0
                return CancelOutcome(True, True, w.index)
        return CancelOutcome(False, False)

    def find(self, index: int) -> Entry | None:
        """Return the queued or running job ``index`` (for ``Scheduler.cancel``), or None."""
        for w in self.workers:
            for entry in w._inflight:
                if entry.index == index:
                    return entry
        for _, i, entry in [*self.tagged.items(self.heap), *self.delayed]:
            if i == index and not entry.cancelled:
                return entry
        return None

    def queued_entries(self) -> list[Entry]:
        """The jobs waiting in the queue (``close()`` cancels their futures; the jobs stay queued)."""
        return [entry for _, _, entry in self.tagged.items(self.heap) if not entry.cancelled]

    def drain_futures(self) -> list[Entry]:
        """Take every job with a future out of the queue and off the workers (a fatal error: they get it)."""
        doomed = [entry for _, _, entry in self.tagged.items(self.heap)
                  if entry.future is not None and not entry.cancelled]
        for w in self.workers:
            doomed.extend(entry for entry in w._inflight if entry.future is not None)
        doomed.extend(entry for _, _, entry in self.delayed if entry.future is not None)
        for heap in (self.heap, *self.tagged.heaps.values()):
            heap[:] = [item for item in heap if item[2].future is None and not item[2].cancelled]
            heapq.heapify(heap)
        self.tagged.recount()
        self.n_cancelled_queued = 0
        for entry in doomed:
            entry.queued = False
        return doomed

    def job_raised(self, entry: Entry, types: tuple[str, ...], error: str, now: float) -> bool:
        """Job ``entry``, just finished (``job_done``), raised an exception whose MRO is ``types``.

        ``types`` are ``module.qualname`` names. If one is in the job's ``retry_on`` and the job has attempts
        left (``max_retries`` counts deaths and retried errors alike), re-queue it at its cost, after
        ``retry_delay`` seconds, and return True: its error is not delivered. Otherwise return False.
        """
        if entry.cancelled or not entry.retry_on.intersection(types) or entry.attempts + 1 >= entry.max_retries:
            return False
        entry.raised = [*(entry.raised or ()), error]
        if self.retry_delay > 0:  # stays active meanwhile: wait() does not see the scheduler idle
            heapq.heappush(self.delayed, (now + self.retry_delay, entry.index, entry))
            self.maintain_at = min(self.maintain_at, now + self.retry_delay)
        else:
            self.n_active -= 1
            self._requeue(entry)
        return True

    def _requeue_due(self, now: float) -> float:
        """Queue the retried jobs whose delay is over; return when the next one is due."""
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            entry = heapq.heappop(delayed)[2]
            self.n_active -= 1
            self._requeue(entry)
        return delayed[0][0] if delayed else float("inf")

    def _cancelled_error(self, entry: Entry) -> JobCancelled:
        return JobCancelled("JobCancelled", "the job was cancelled", "", entry.index)
