"""The task timeline's recorder: which worker ran which job, when, and how it ended.

::

    loop thread:  Engine.deliver(entry, ...) ──record()──> pending (a bounded deque: one tuple per job, no lock)
    any reader:   Timeline.view(now_ms, window_s) ──under the timeline's own lock──> fold pending:
                      the newest RECENT spans stay one by one  ──> TimelineView.spans
                      older ones are summed per worker and BUCKET_MS of time ──> TimelineView.buckets

The loop thread only appends a tuple (``deque.append`` is atomic), so recording costs it a fraction of a
microsecond per job and never waits for a reader; the folding is done by whoever reads (the dashboard's
thread), never under the scheduler's lock. ``pending`` is bounded (``PENDING``): when nobody reads for a long
time, the oldest spans are dropped rather than kept, so a scheduler that is never looked at holds at most a
few megabytes. What is kept is bounded too: RECENT spans, and buckets no older than ``KEEP_S`` seconds.

Times are wall-clock milliseconds (``Job.start_ms`` / ``stop_ms``), as in the journal, so that the live view
and the journal's report of a run draw the same picture. This module imports no plotting library;
``_timeline.svg`` draws a ``TimelineView``.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import JobTimeout

if TYPE_CHECKING:
    from .._core.instructions import Entry

# Outcomes, as small ints on the hot path; OUTCOMES names them (the SVG's data-outcome).
DONE, FAILED, TIMEOUT, CANCELLED, JOURNAL = 0, 1, 2, 3, 4
OUTCOMES = ("done", "failed", "timeout", "cancelled", "journal")
NOT_RUN = -1  # the "worker" of a job that never ran: taken from the journal, or cancelled while queued

PENDING = 20_000  # spans waiting to be folded; older ones are dropped if nobody reads
RECENT = 1_500  # the newest spans kept one by one (drawn as bars)
BUCKET_MS = 10_000.0  # older spans are summed per worker per this much time
KEEP_S = 3_600.0  # buckets older than this are forgotten


class Span(NamedTuple):
    """One finished job: ``worker`` (``NOT_RUN`` if it never ran), ``job`` (its index), ``cost``, ``start_ms``,
    ``stop_ms`` (wall clock) and ``outcome`` (an index into ``OUTCOMES``)."""

    worker: int
    job: int
    cost: float
    start_ms: float
    stop_ms: float
    outcome: int

    @property
    def outcome_name(self) -> str:
        """``"done"``, ``"failed"``, ``"timeout"``, ``"cancelled"`` or ``"journal"``."""
        return OUTCOMES[self.outcome]


class Bucket(NamedTuple):
    """Older jobs of one worker summed over ``[start_ms, start_ms + width_ms)``: a count per outcome
    (indexed as ``OUTCOMES``) and the busy time in ms."""

    worker: int
    start_ms: float
    width_ms: float
    counts: tuple[int, ...]
    busy_ms: float


class Running(NamedTuple):
    """A job running now (drawn as an open bar): ``worker, job`` (its index), ``cost, start_ms``."""

    worker: int
    job: int
    cost: float | None
    start_ms: float


class TimelineView(NamedTuple):
    """Plain data to draw: the window ``[start_ms, end_ms]``, the workers (lanes), recent spans one by one,
    older ones as buckets, and the running jobs. ``dropped`` counts spans that were never folded."""

    start_ms: float
    end_ms: float
    workers: tuple[int, ...]
    spans: tuple[Span, ...]
    buckets: tuple[Bucket, ...]
    running: tuple[Running, ...]
    dropped: int


def outcome_of(entry: Entry, result: Any, failed: bool) -> int:
    """Classify a delivered job."""
    if entry.cancelled:
        return CANCELLED
    if entry.from_journal:
        return JOURNAL
    if not failed:
        return DONE
    return TIMEOUT if type(result) is JobTimeout else FAILED


class Timeline:
    """The recorder: ``record`` on the loop thread, ``view`` from any thread.

    Args:
        recent: how many of the newest spans are kept one by one.
        pending: how many spans may wait for a reader before the oldest are dropped.
        bucket_ms: the width of the buckets older spans are summed into.
        keep_s: buckets older than this many seconds (before the newest span) are forgotten.
    """

    def __init__(self, recent: int = RECENT, pending: int = PENDING, bucket_ms: float = BUCKET_MS,
                 keep_s: float = KEEP_S) -> None:
        self.pending: collections.deque[tuple[int, int, float, float, float, int]] = collections.deque(
            maxlen=pending)
        self.recent: collections.deque[Span] = collections.deque()
        self.recent_max = recent
        self.bucket_ms = bucket_ms
        self.keep_ms = keep_s * 1000.0
        self._buckets: dict[tuple[int, int], list[float]] = {}  # (worker, bucket number) -> counts + [busy]
        self._lock = threading.Lock()  # readers only: the loop thread never takes it
        self.n_recorded = 0  # folded so far
        self.n_dropped = 0
        self.n_appended = 0

    # ------------------------------------------------------------------ the loop thread

    def record(self, worker: int, entry: Entry, result: Any, failed: bool) -> None:
        """Note that ``entry`` ended on ``worker`` (``NOT_RUN`` if it never ran); called by ``Engine.deliver``."""
        job = entry._job
        if entry.cancelled:
            outcome = CANCELLED
        elif entry.from_journal:
            outcome = JOURNAL
        elif not failed:
            outcome = DONE
        else:
            outcome = TIMEOUT if type(result) is JobTimeout else FAILED
        if job is not None and job.stop_ms:
            self.pending.append((worker, entry.index, entry.cost, job.start_ms, job.stop_ms, outcome))
        else:  # settled by the state (timeout, death, cancel) or never ran: it ends now
            now = time.time() * 1000.0
            start = job.start_ms if job is not None and job.start_ms else now
            self.pending.append((worker, entry.index, entry.cost, start, now, outcome))
        self.n_appended += 1

    def add(self, span: Span) -> None:
        """Add a finished span from elsewhere (the journal's report)."""
        self.pending.append(tuple(span))  # type: ignore[arg-type]
        self.n_appended += 1

    # ------------------------------------------------------------------ readers

    def _fold(self) -> None:
        pending, recent = self.pending, self.recent
        appended = self.n_appended  # read first: whatever was appended before is now folded or dropped
        popleft = pending.popleft
        n = 0
        while pending:
            recent.append(Span(*popleft()))
            n += 1
        self.n_recorded += n
        self.n_dropped = max(self.n_dropped, appended - self.n_recorded)
        overflow = len(recent) - self.recent_max
        if overflow > 0:
            buckets, width = self._buckets, self.bucket_ms
            old = recent.popleft
            for _ in range(overflow):
                s = old()
                key = (s.worker, int(s.start_ms // width))
                b = buckets.get(key)
                if b is None:
                    b = buckets[key] = [0.0] * (len(OUTCOMES) + 1)
                b[s.outcome] += 1
                b[-1] += max(0.0, s.stop_ms - s.start_ms)
            if recent:
                horizon = int((recent[-1].stop_ms - self.keep_ms) // width)
                for key in [k for k in buckets if k[1] < horizon]:
                    del buckets[key]

    def view(self, now_ms: float | None = None, window_s: float = 600.0,
             running: tuple[Running, ...] = (), workers: tuple[int, ...] = (),
             min_window_s: float | None = None) -> TimelineView:
        """Fold what was recorded and return what falls in the last ``window_s`` seconds before ``now_ms``.

        Args:
            now_ms: the right edge (wall-clock ms); default: now.
            window_s: how far back to show.
            running: the jobs running now (open bars), from a snapshot.
            workers: lanes to show even if they ran nothing (the snapshot's workers).
            min_window_s: if given, the window shrinks to the data (but not below this): a run of a few
                seconds fills the width instead of being a sliver at the right of ten empty minutes.
        """
        end = time.time() * 1000.0 if now_ms is None else now_ms
        start = end - window_s * 1000.0
        with self._lock:
            self._fold()
            spans = tuple(s for s in self.recent if s.stop_ms >= start)
            width = self.bucket_ms
            buckets = tuple(Bucket(w, n * width, width, tuple(int(c) for c in b[:-1]), b[-1])
                            for (w, n), b in self._buckets.items() if (n + 1) * width >= start)
            dropped = self.n_dropped
        if min_window_s is not None:
            first = min([s.start_ms for s in spans] + [b.start_ms for b in buckets] + [r.start_ms for r in running],
                        default=end)
            start = max(start, min(first - 0.02 * (end - first), end - min_window_s * 1000.0))
        lanes = set(workers)
        lanes.update(s.worker for s in spans)
        lanes.update(b.worker for b in buckets)
        lanes.update(r.worker for r in running)
        return TimelineView(start, end, tuple(sorted(lanes)), spans, buckets, running, dropped)

    def whole(self, running: tuple[Running, ...] = ()) -> TimelineView:
        """Fold and return everything kept, whatever its age (a finished run's report)."""
        with self._lock:
            self._fold()
            first = [s.start_ms for s in self.recent] + [n * self.bucket_ms for _, n in self._buckets]
            last = [s.stop_ms for s in self.recent] + [(n + 1) * self.bucket_ms for _, n in self._buckets]
        if not first:
            now = time.time() * 1000.0
            return self.view(now, 60.0, running)
        end = max(last)
        return self.view(end, max(1.0, (end - min(first)) / 1000.0) * 1.02, running)


__all__ = ["BUCKET_MS", "CANCELLED", "DONE", "FAILED", "JOURNAL", "KEEP_S", "NOT_RUN", "OUTCOMES", "PENDING", "RECENT",
           "TIMEOUT", "Bucket", "Running", "Span", "Timeline", "TimelineView", "outcome_of"]
