"""Text and small actions shared by the magics and the dashboard (imports neither IPython nor ipywidgets)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..scheduler import Scheduler


def status_line(stats: dict[str, Any]) -> str:
    """Return the one-line summary printed by ``%jobsched status`` and shown by the dashboard.

    Example: ``jobsched: 2 workers, 0 queued, 0 active, 10 done, 0 failed``.
    """
    return (f"jobsched: {stats['workers']} workers, {stats['queued']} queued, {stats['active']} active, "
            f"{stats['done']} done, {stats['failed']} failed")


def mode(stats: dict[str, Any]) -> str:
    """Return one word for the scheduler's state: ``closed``, ``paused``, ``running`` or ``stopped``."""
    if stats["closed"]:
        return "closed"
    if stats["paused"]:
        return "paused"
    return "running" if stats["running"] else "stopped"


def format_duration(seconds: float) -> str:
    """Format seconds as ``0.4 s``, ``12 s``, ``3:05`` or ``1:02:03``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def scale_to(sched: Scheduler, n_workers: int, timeout: float = 2.0) -> None:
    """Run ``n_workers`` workers: scale a running scheduler, start a stopped one in the background.

    ``Scheduler.scale`` on a scheduler that is not running only records the count for its next
    ``start``; from a notebook, "scale to 3" means "have 3 workers now", so a stopped scheduler starts.
    A running scheduler applies the new count on its own thread: wait (briefly) until it has, so that
    ``sched.n_workers`` is up to date when this returns and two quick clicks on "Scale +" add two workers.
    """
    if sched.running or n_workers == 0:
        sched.scale(n_workers)
    else:
        sched.start(n_workers, wait=False)
    deadline = time.monotonic() + timeout
    while sched.n_workers != n_workers and sched.running and time.monotonic() < deadline:
        time.sleep(0.005)
