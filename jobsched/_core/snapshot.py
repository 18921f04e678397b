"""A frozen, consistent view of a scheduler: what the dashboard and ``%jobsched status`` read.

It is taken under the scheduler's lock in one go (``Scheduler.snapshot()``), so its counts and worker rows
agree with each other, and readers never touch live objects that the loop thread changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..states import WorkerState
from .slot import Progress

if TYPE_CHECKING:
    from .state import SchedulerState

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
    tags: tuple[str, ...] = ()  # its tags (``worker_tags=``), sorted
    attempt: int = 1  # which attempt of its job this is: 2 after a death or an error that retry_on retried
    n_succeeded: int = 0  # the jobs it ran to an outcome (``n_done`` counts retried attempts too, and no
    n_failed: int = 0  # job its death failed): over all the slots, these add up to the whole


@dataclass(frozen=True)
class Snapshot:
    """The counts of ``Scheduler.stats()`` and one row per worker, read together."""

    stats: dict[str, Any]
    workers: tuple[WorkerRow, ...]


def jobs_per_s(state: SchedulerState, now: float) -> float:
    """The rate over the last few seconds, from the (time, jobs done) samples the state's tick records."""
    done = state.n_done
    for t, n in state.rate_samples:
        if now - t <= 5.0:
            return (done - n) / (now - t) if now - t > 0.2 else 0.0
    return 0.0


def counts(state: SchedulerState, now: float) -> dict[str, Any]:
    """The counts of ``Scheduler.stats()`` (read under the scheduler's lock)."""
    live = [w for w in state.live_workers() if w.state is not WorkerState.CLOSED]
    return {
        "queued": state.n_queued,
        "active": state.n_active - state.n_delivering,  # a job is done once counted (a callback may still run)
        "done": state.n_done,
        "failed": state.n_failed,
        "cancelled": state.n_cancelled,
        "from_journal": state.n_from_journal,
        # The same jobs in disjoint counts that add up to "done" (what the dashboard and the magics show).
        "outcomes": state.outcomes.as_dict(),
        "mean_job_s": state.outcomes.mean_duration(),
        "workers": len(live),
        "busy": sum(1 for w in live if w.state is WorkerState.RUNNING),
        "target_workers": state.target,
        "jobs_per_s": jobs_per_s(state, now),
        "restarts": state.n_restarts,
        "paused": state.paused,
        "elapsed_s": now - state.started_at if state.started_at is not None else 0.0,
        # The last job that failed because its worker died, with the worker's last output (a fatal-error
        # stack): a crash is a failed job, not a scheduler error, but it is worth showing.
        "last_worker_died": str(state.last_worker_died) if state.last_worker_died is not None else None,
    }


def take_snapshot(state: SchedulerState, now: float, broken: BaseException | None, running: bool,
                  closed: bool) -> Snapshot:
    """Read ``state`` (under the scheduler's lock)."""
    stats = counts(state, now)
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
            tuple(list(w.output)[-OUTPUT_TAIL:]), w.exit_description, tuple(sorted(w.tags)),
            1 if entry is None else entry.attempts + 1, *state.outcomes.of_worker(w.index)))
    return Snapshot(stats, tuple(rows))
