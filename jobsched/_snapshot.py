"""A frozen, consistent view of a scheduler: what the dashboard and ``%jobsched status`` read.

It is taken under the scheduler's lock in one go (``Scheduler.snapshot()``), so its counts and worker rows
agree with each other, and readers never touch live objects that the loop thread changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._slot import Progress
from .states import WorkerState

if TYPE_CHECKING:
    from ._state import SchedulerState

OUTPUT_TAIL = 15  # lines of output kept per worker row


@dataclass(frozen=True)
class WorkerRow:
    """One worker as the dashboard shows it."""

    index: int
    pid: int | None
    address: str | None
    state: str  # a WorkerState value: "starting", "ready", "running", "closing", "closed"
    job: int | None  # index of the job it runs, if any
    cost: float | None
    job_elapsed: float
    progress: Progress | None
    n_done: int
    n_restarts: int
    output: tuple[str, ...]  # its last OUTPUT_TAIL lines
    exit_description: str | None


@dataclass(frozen=True)
class Snapshot:
    """The counts of ``Scheduler.stats()`` and one row per worker, read together."""

    stats: dict[str, Any]
    workers: tuple[WorkerRow, ...]


def take_snapshot(state: SchedulerState, now: float, broken: BaseException | None, running: bool,
                  closed: bool) -> Snapshot:
    """Read ``state`` (under the scheduler's lock)."""
    stats = state.counts(now)
    error = state.error or broken
    stats.update(running=running, closed=closed,
                 error=f"{type(error).__name__}: {error}" if error is not None else None)
    rows = []
    for w in state.live_workers():
        inflight = w._inflight
        entry = inflight[0] if inflight and w.state is not WorkerState.STARTING else None
        rows.append(WorkerRow(
            w.index, w.pid, w.address, w.state.value,
            None if entry is None else entry.index, None if entry is None else entry.cost,
            now - w._job_started if entry is not None else 0.0, w.progress, w.n_done, w.n_restarts,
            tuple(list(w.output)[-OUTPUT_TAIL:]), w.exit_description))
    return Snapshot(stats, tuple(rows))
