"""The dispatch half of the scheduler's state: which queued job goes to which worker, and how many ahead.

``Dispatch`` is a part of ``SchedulerState`` (``_core/state.py``), split out by concept: its methods read and
write the same state object (``self`` is the ``SchedulerState``), under the same lock, with no I/O. It is the
hot path: ``assign`` runs once per batch of results, with plain loops over the heap and the hungry workers.
``prefetch="auto"`` measures job durations and round trips here and lets ``_core.pacing.AutoDepth`` choose the
depth.
"""

from __future__ import annotations

import collections
import heapq

from ..states import WorkerState
from .instructions import Entry, SendJobs
from .jobqueue import JobQueue
from .pacing import AutoDepth
from .slot import Worker
from .tags import assign_tagged

_STARTING, _READY, _RUNNING = WorkerState.STARTING, WorkerState.READY, WorkerState.RUNNING


class Dispatch(JobQueue):
    """Handing queued jobs to workers with room, and timing them for ``prefetch="auto"`` (a mixin)."""


    # The fields it shares with the rest of the state (set in ``SchedulerState.__init__``).
    hungry: collections.deque[Worker]
    prefetch: int
    auto: bool
    _held_back: bool
    _pacing: AutoDepth
    target: int
    paused: bool
    closing: bool
    stopped_on: BaseException | None

    def _make_hungry(self, w: Worker) -> None:
        if not w._hungry:
            w._hungry = True
            self.hungry.append(w)

    def _unhunger(self, w: Worker) -> None:
        if w._hungry:
            w._hungry = False
            try:
                self.hungry.remove(w)
            except ValueError:
                pass

    def can_dispatch(self) -> bool:
        return bool((self.heap or self.tagged.n) and self.hungry) and not self.paused and not self.closing \
            and self.stopped_on is None

    def assign(self, now: float, limit: int | None = None) -> list[SendJobs]:
        """Hand queued jobs to workers with room, lowest ``(cost, index)`` first, up to ``prefetch`` each.

        A job leaves the queue only here. ``limit`` caps the number of jobs (1 when ``before_start`` must run
        before each job is sent). Cancelled jobs are dropped on the way. Jobs that need tags go through
        ``_core.tags.assign_tagged``, which leaves this loop as it is when there are none.
        """
        if self.tagged.n:
            return assign_tagged(self, now, limit)
        heap, prefetch = self.heap, self.prefetch
        out: list[SendJobs] = []
        n = 0
        if (prefetch > 1 or self.auto) and heap:
            # A job beyond a worker's first goes out only once no worker is idle or starting: every idle
            # worker gets one first, and a worker still starting will want one too (a fresh pool of long
            # calls runs fully parallel). Then "auto" keeps at least the next job on each worker.
            out, n = self._assign_first_jobs(now, limit)
            if self._someone_waits():
                prefetch = 1
                self._held_back = True
            else:
                if self.auto:
                    prefetch = max(prefetch, 2)
                if self._held_back:  # the workers held to one job may take more now
                    self._held_back = False
                    self._rehunger(prefetch)
            if out:
                return self._merge(out, self._assign_more(now, limit, prefetch, n))
        return self._assign_more(now, limit, prefetch, n)

    @staticmethod
    def _merge(first: list[SendJobs], more: list[SendJobs]) -> list[SendJobs]:
        """One ``SendJobs`` per worker: its first job and the ones sent ahead go out together."""
        by_worker = {s.worker.index: s for s in first}
        for s in more:
            head = by_worker.get(s.worker.index)
            if head is None:
                first.append(s)
            else:
                head.entries.extend(s.entries)
        return first

    def _assign_more(self, now: float, limit: int | None, prefetch: int, n: int) -> list[SendJobs]:
        """Fill workers with room up to ``prefetch`` jobs each (``assign``'s main pass)."""
        heap, hungry = self.heap, self.hungry
        out: list[SendJobs] = []
        while hungry and heap and not self.paused and not self.closing and self.stopped_on is None:
            w = hungry[0]
            if w._retiring or (w.state is not _READY and w.state is not _RUNNING):
                w._hungry = False
                hungry.popleft()
                continue
            inflight = w._inflight
            batch: list[Entry] = []
            while len(inflight) < prefetch and (limit is None or n < limit):
                entry = self._pop_queued()
                if entry is None:
                    break
                self.hand(w, entry, now)
                batch.append(entry)
                n += 1
            if batch:
                out.append(SendJobs(w, batch))
            if len(inflight) >= prefetch:
                w._hungry = False
                hungry.popleft()
            if limit is not None and n >= limit:
                break
        return out

    def hand(self, w: Worker, entry: Entry, now: float) -> None:
        """Give ``entry``, just taken from a queue, to ``w``: it is active, and ``w`` runs it if it held none."""
        self.n_active += 1
        if not w._inflight:
            w._job_started = now
            w._pipelined = False
            w._move(_RUNNING)
            if entry.timeout is not None:
                self.maintain_at = min(self.maintain_at, now + entry.timeout)
        w._inflight.append(entry)

    def _assign_first_jobs(self, now: float, limit: int | None) -> tuple[list[SendJobs], int]:
        """Give one job to each hungry worker that holds none (``assign`` with a depth above 1)."""
        heap = self.heap
        out: list[SendJobs] = []
        n = 0
        for w in self.hungry:
            if not heap or (limit is not None and n >= limit) or self.paused or self.closing \
                    or self.stopped_on is not None:
                break
            if w._inflight or w._retiring or w.state is not _READY:
                continue
            entry = self._pop_queued()
            if entry is None:
                break
            self.hand(w, entry, now)
            out.append(SendJobs(w, [entry]))
            n += 1
        return out, n

    def _pop_queued(self) -> Entry | None:
        """Take the cheapest job from the queue, dropping cancelled ones on the way; None when it is empty."""
        heap = self.heap
        while heap:
            _, _, entry = heapq.heappop(heap)
            entry.queued = False
            if not entry.cancelled:
                return entry
            self.n_cancelled_queued -= 1
        return None

    def _rehunger(self, depth: int) -> None:
        for w in self.workers:
            if (w.state is _READY or w.state is _RUNNING) and not w._retiring and w.index < self.target \
                    and len(w._inflight) < depth:
                self._make_hungry(w)

    def _someone_waits(self) -> bool:
        """Whether a wanted worker is starting, or idle (holds no job) and free to take one."""
        target = self.target
        for w in self.workers:
            if w.index < target and (w.state is _STARTING or (w.state is _READY and not w._inflight
                                                               and not w._retiring)):
                return True
        return False

    def _time_result(self, w: Worker, now: float) -> None:
        """Time the job ``w`` just finished (prefetch="auto").

        Results that arrive at the same instant (a worker sends several in one go) share the time since the
        previous ones: a span is measured once its last result is in, when the next result comes.
        """
        span = w._span
        if span is not None and span[0] == now and w._pipelined:
            w._span = (now, span[1], span[2] + 1, span[3])
            return
        if span is not None:
            self._measure(span[1], span[2], span[3])
        w._span = (now, now - w._job_started, 1, w._pipelined)

    def _measure(self, seconds: float, n: int, pipelined: bool) -> None:
        """Learn from ``n`` results that took ``seconds`` (see ``_core.pacing.AutoDepth``)."""
        self.prefetch = self._pacing.measure(seconds, n, pipelined, self.prefetch)

    @property
    def job_seconds(self) -> float | None:
        """``prefetch="auto"``: the moving average of a job's duration in a worker."""
        return self._pacing.job_seconds

    @property
    def round_trip(self) -> float | None:
        """``prefetch="auto"``: the moving average of send -> result, minus the job."""
        return self._pacing.round_trip

    def unassign(self, w: Worker, entry: Entry) -> None:
        """Put back a job that ``assign`` gave ``w`` but that was not sent (``before_start`` raised)."""
        w._inflight.remove(entry)
        if not w._inflight and w.state is _RUNNING:
            w._move(_READY)
        self._make_hungry(w)
        self.n_active -= 1
        self._requeue(entry)
