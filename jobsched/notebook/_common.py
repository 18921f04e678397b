"""Text and small actions shared by the magics and the dashboard (imports neither IPython nor ipywidgets).

Both read a scheduler through ``Scheduler.snapshot()`` only: a frozen record of its counts and worker rows,
taken under its lock, so that what they show is consistent and never a live object the loop is changing.
"""

from __future__ import annotations

import fractions
import math
import time
from typing import TYPE_CHECKING, Any

from .._core.checks import plural

if TYPE_CHECKING:
    from .._core.snapshot import Snapshot, WorkerRow
    from ..scheduler import Scheduler

STOP_TIMEOUT = 10.0  # seconds ``%jobsched stop`` and the Stop button wait for running jobs to finish


def outcome_text(stats: dict[str, Any]) -> str:
    """Return how the finished jobs ended, in disjoint counts: ``25 succeeded, 4 failed, 1 cancelled``.

    Each finished job is in exactly one count (``stats()["outcomes"]``): a cancelled job is not also failed,
    and a result taken from the journal is in neither; those two are added when there are any
    (``, 8 from journal``).
    """
    o = stats["outcomes"]
    text = f"{o['succeeded']} succeeded, {o['failed']} failed"
    if o["cancelled"]:
        text += f", {o['cancelled']} cancelled"
    if o["from_journal"]:
        text += f", {o['from_journal']} from journal"
    return text


def status_line(stats: dict[str, Any]) -> str:
    """Return the one-line summary printed by ``%jobsched status`` and shown by the dashboard.

    Example: ``jobsched: 2 workers, 0 queued, 0 active, 10 succeeded, 0 failed``, then the cancelled jobs
    and those whose result came from the journal when there are any (see ``outcome_text``).
    """
    return (f"jobsched: {plural(stats['workers'], 'worker')}, {stats['queued']} queued, {stats['active']} active, "
            f"{outcome_text(stats)}")


def mode(stats: dict[str, Any]) -> str:
    """Return one word for the scheduler's state: ``closed``, ``stopped``, ``stopping``, ``paused`` or ``running``.

    ``stopped``: no loop runs, or it runs with no worker and none asked for (``%jobsched stop``);
    ``stopping``: no worker is asked for, and some still finish their job.
    """
    if stats["closed"]:
        return "closed"
    if not stats["running"] or (stats["target_workers"] == 0 and stats["workers"] == 0):
        return "stopped"
    if stats["target_workers"] == 0:
        return "stopping"
    return "paused" if stats["paused"] else "running"


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


def _number(x: object) -> str:
    """Format a reported number: ``12``, ``0.333``, ``1.2e+20``, ``~1e400`` (beyond a float), ``nan``; never raise."""
    try:
        f = float(x)  # type: ignore[arg-type]
    except OverflowError:  # an int too big for a float: its order of magnitude
        try:
            n = int(x)  # type: ignore[call-overload]
            return f"{'-' if n < 0 else ''}~1e{int(abs(n).bit_length() * 0.30103)}"
        except (TypeError, ValueError, ArithmeticError):
            return "?"
    except (TypeError, ValueError):
        return "?"
    if math.isfinite(f) and f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.3g}"


def progress_fraction(done: object, total: object) -> float | None:
    """Return ``done / total`` within [0, 1], or None if the total is unknown or the values make no ratio.

    Exact for ints of any size (``progress(10**400, 10**401)`` is 0.1); never raises.
    """
    if total is None:
        return None
    try:
        if isinstance(done, int) and isinstance(total, int):
            ratio = float(fractions.Fraction(done, total)) if total else math.nan
        else:
            ratio = float(done) / float(total)  # type: ignore[arg-type]
    except (ArithmeticError, TypeError, ValueError):  # a total of 0, a ratio beyond a float, a non-number
        return None
    if not math.isfinite(ratio) or ratio < 0:
        return None
    return min(ratio, 1.0)


def format_progress(row: WorkerRow) -> str:
    """Return a busy worker's last report as text: ``40/100 (40%) loading``, ``12 loading``, or ``""``.

    Any reported values are shown, never raised on: numbers beyond a float, ``nan``, a total of 0.
    """
    p = row.progress
    if p is None:
        return ""
    text = _number(p.done)
    if p.total is not None:
        text += f"/{_number(p.total)}"
        fraction = progress_fraction(p.done, p.total)
        if fraction is not None:
            text += f" ({100 * fraction:.0f}%)"
    return f"{text} {p.note}" if p.note else text


def busy_lines(snap: Snapshot) -> list[str]:
    """One line per busy worker for ``%jobsched status``: ``  worker 0: job 7, 3.2 s, 40/100 (40%) loading``."""
    lines = []
    for row in snap.workers:
        if row.job is None:
            continue
        where = f" ({row.address})" if row.address else ""
        progress = format_progress(row)
        lines.append(f"  worker {row.index}{where}: job {row.job}, {format_duration(row.job_elapsed)}"
                     + (f", {progress}" if progress else ""))
    return lines


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


def stop_workers(sched: Scheduler, timeout: float = STOP_TIMEOUT) -> Snapshot:
    """Close the workers and keep the scheduler: its queue, counts and identity stay for the next start.

    ``%jobsched stop`` and the dashboard's Stop button do this rather than ``close()``, so that a
    ``sched = jobsched.default_scheduler()`` kept from an earlier cell goes on working after
    ``%jobsched start``. Each worker finishes the job it runs, then exits; queued jobs wait.

    Returns:
        A snapshot taken when every worker has exited, or when ``timeout`` seconds have passed; its
        ``workers`` are then those still finishing a job (they exit when it ends).
    """
    if sched.stats()["closed"]:
        return sched.snapshot()
    if sched.running:
        sched.scale(0)
    elif sched.snapshot().workers:  # kept by a blocking start(close_workers=False): a loop must close them
        sched.start(0, wait=False)
    deadline = time.monotonic() + timeout
    while True:
        snap = sched.snapshot()
        if not snap.workers or time.monotonic() >= deadline:
            return snap
        time.sleep(0.02)
