"""How the delivered jobs ended, in disjoint counts that add up, and per worker (what the views show).

``stats()`` keeps its overlapping counts (``done`` is every delivered job, ``failed`` includes the cancelled
ones and the journal's failures). The views need counts that add up: each delivered job is counted here
exactly once, as ``succeeded``, ``failed``, ``cancelled`` or ``from_journal``, and so is a queued job
whose future was cancelled (``future.cancel()``: its future is settled at once, nothing is delivered and
``done`` does not count it), so that the counts add up to every job that left the queue::

    succeeded + failed + cancelled + from_journal == done + queued jobs cancelled by their future

A job that ran to an outcome (succeeded, or failed: it raised, timed out or its worker died) is also
counted for the worker that ran it, so that the workers' counts add up to ``succeeded + failed``. A
cancelled job and a journal hit are no worker's. The time a worker spent on each job it finished gives
the mean duration of a job, which the ETA uses for the jobs running now.

Pure data, changed under the scheduler's lock like the rest of ``SchedulerState``.
"""

from __future__ import annotations

NO_WORKER = -1  # a job that failed without running: no worker could take it


class Outcomes:
    """Disjoint counts of the delivered jobs, their split by worker, and the mean job duration."""

    __slots__ = ("succeeded", "failed", "cancelled", "from_journal", "by_worker", "busy_s", "n_timed")

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.from_journal = 0
        self.by_worker: dict[int, list[int]] = {}  # worker index -> [succeeded, failed] that it ran
        self.busy_s = 0.0  # seconds workers spent on the jobs they finished...
        self.n_timed = 0  # ...and how many those were

    def count(self, failed: bool, cancelled: bool, from_journal: bool, worker: int) -> None:
        """Count one delivered job: ``worker`` ran it (``NO_WORKER``: none did, or it is not known)."""
        if cancelled:
            self.cancelled += 1
        elif from_journal:
            self.from_journal += 1
        else:
            if failed:
                self.failed += 1
            else:
                self.succeeded += 1
            tally = self.by_worker.get(worker)
            if tally is None:
                tally = self.by_worker[worker] = [0, 0]
            tally[1 if failed else 0] += 1

    def ran(self, seconds: float) -> None:
        """A worker finished a job that took ``seconds`` (a retried attempt counts too: it took that long)."""
        if seconds >= 0:
            self.busy_s += seconds
            self.n_timed += 1

    def mean_duration(self) -> float | None:
        """The mean time a job took on its worker, or None before the first one finished."""
        return self.busy_s / self.n_timed if self.n_timed else None

    def as_dict(self) -> dict[str, int]:
        """``{"succeeded", "failed", "cancelled", "from_journal"}``: disjoint, each finished job in one of them."""
        return {"succeeded": self.succeeded, "failed": self.failed, "cancelled": self.cancelled,
                "from_journal": self.from_journal}

    def of_worker(self, index: int) -> tuple[int, int]:
        """``(succeeded, failed)``: the jobs worker ``index`` ran to an outcome."""
        tally = self.by_worker.get(index)
        return (0, 0) if tally is None else (tally[0], tally[1])


__all__ = ["NO_WORKER", "Outcomes"]
