"""The live dashboard: an ipywidgets view over ``Scheduler.snapshot()``.

::

    scheduler (any loop thread) ── snapshot(): counts + one frozen WorkerRow per worker, under its lock ──┐
                                                                                                        │
    "jobsched-dashboard" thread, one per scheduler, every UPDATE_INTERVAL: sched.snapshot() ◄────────────┘
                                        │ render the same snapshot into every Dashboard of that scheduler
                                        ▼ (widget values change in place; ipywidgets syncs them from this
                                          thread, so they move while the kernel is idle)

The dashboard holds no scheduling logic and never reads a live object of the scheduler: it reads
snapshots, and its buttons call ``pause``, ``resume``, ``scale`` and ``cancel``; "Stop" closes the workers
but keeps the scheduler (``_common.stop_workers``), so "Scale +" or ``%jobsched start`` runs it again. The
scheduler does not know the dashboard exists; a snapshot holds the scheduler's lock only while it copies a
few numbers. Updates are throttled to one per ``UPDATE_INTERVAL`` seconds whatever the job rate, and all
dashboards of one scheduler show one snapshot, so they agree. The thread ends when its last dashboard is
closed, or after the final update once the scheduler is closed.

This module imports no other jobsched module than ``_common`` and ``timeline`` (which draws from the core's
plain-data timeline modules) at import time: it recognises a scheduler by
its ``snapshot`` method, so the core and the notebook layer cannot form an import cycle.

DOM contract (a browser test relies on it; keep it stable): the root box has the CSS class
``jobsched-dashboard``; the count widgets (``ipywidgets.HTML``) have the classes ``jobsched-queued``,
``jobsched-active``, ``jobsched-succeeded``, ``jobsched-failed``, ``jobsched-cancelled`` and
``jobsched-from-journal`` and their value is the bare integer (their captions are separate ``Label``
widgets before them; the last two, with their captions, are hidden while they are 0); the last four are
``stats()["outcomes"]``: each finished job is in exactly one of them;
``jobsched-status`` is the one-line summary of ``%jobsched status``; ``jobsched-state`` says running /
paused / stopping / stopped / closed; ``jobsched-progress`` is an ``HTML`` holding the overall bar, a
``<div class="jobsched-progress-bar">`` with a ``<div class="jobsched-progress-part" data-part="P"
data-count="N">`` per part (``from_journal``, ``succeeded``, ``failed``, ``cancelled``, ``active``; a
part of 0 is left out) whose width is its share of all the jobs (the rest is queued); ``jobsched-rate``
shows jobs/s and ETA (which counts what the running jobs have left of the mean job duration);
``jobsched-workers`` is an
``HTML`` whose value is a ``<table>`` with one ``<tr class="jobsched-worker" data-worker="I"
data-state="S">`` per worker, whose ``<td>`` cells carry ``data-col`` = ``worker``, ``pid``, ``address``
(only when some worker has one: on Dask), ``tags`` (only when some worker has tags), ``state``, ``job``,
``elapsed``, ``progress``, ``done``, ``restarts``; a busy worker's ``job`` cell holds the job's index and,
from its second attempt on (a retry after a death or a ``retry_on`` error), ``<span class="jobsched-attempt"
data-attempt="N">(attempt N)</span>``; ``done`` counts the jobs that worker ran to an outcome
(``12``, or ``12 (1 failed)``), and ``<tfoot>`` rows ``tr.jobsched-workers-other`` (jobs of workers no
longer shown) and ``tr.jobsched-workers-journal`` (results from the journal, which no worker ran) make
the column add up to the counts; a busy worker's ``progress`` cell holds a ``<progress
class="jobsched-worker-progress" data-worker="I" value=".." max="..">`` element and its report as text
(``40/100 (40%) note``) when the job reported a total, else a pulsing ``<span
class="jobsched-worker-activity" data-worker="I">running 12 s</span>`` and its report, if any;
``jobsched-log`` holds the workers' recent output; ``jobsched-error`` the scheduler's error, else the last
job whose worker died (its ``WorkerDied`` error with the worker's last output: a fatal-error stack), hidden
when there is neither; the buttons are ``Pause``,
``Resume``, ``Scale −``, ``Scale +`` and ``Stop`` with the classes ``jobsched-pause``,
``jobsched-resume``, ``jobsched-scale-down``, ``jobsched-scale-up`` and ``jobsched-stop``; the box
``jobsched-cancel-buttons`` holds one ``Button`` per worker with the classes ``jobsched-cancel`` and
``jobsched-cancel-worker-I``, described ``Cancel job J (worker I)`` while worker I runs job J, and
disabled while it is idle; ``jobsched-timeline`` is an ``HTML`` holding the task timeline's ``<svg
class="jobsched-timeline-svg">`` (one ``rect.jobsched-bar`` per recent job, ``data-outcome`` = ``done``,
``failed``, ``timeout``, ``cancelled`` or ``journal``; see ``jobsched._timeline.svg``), and
``jobsched-throughput``, beside the counts, the ``<svg class="jobsched-throughput-svg">`` of jobs/s and queue
length over time; both are redrawn at most every ``timeline.TIMELINE_INTERVAL`` seconds.
"""

from __future__ import annotations

import functools
import html
import math
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from .._timeline.svg import COLOURS
from ._common import (
    format_duration,
    format_progress,
    mode,
    outcome_text,
    progress_fraction,
    scale_to,
    status_line,
    stop_workers,
)
from .live_timeline import LiveTimeline

if TYPE_CHECKING:
    from .._core.snapshot import Snapshot, WorkerRow
    from ..scheduler import Scheduler

UPDATE_INTERVAL = 0.25  # seconds between two automatic updates: at most 4 per second
LOG_LINES = 15  # lines of output shown per worker
LOG_LINE_CHARS = 300  # longer lines are cut: a worker printing a huge line must not flood the browser

BUTTONS = (  # (description, CSS class)
    ("Pause", "jobsched-pause"),
    ("Resume", "jobsched-resume"),
    ("Scale −", "jobsched-scale-down"),
    ("Scale +", "jobsched-scale-up"),
    ("Stop", "jobsched-stop"),
)
# The counts shown: queued and active, then how the finished jobs ended, in disjoint counts that add up
# (``stats()["outcomes"]``): a cancelled job is not also failed, a journal hit is neither.
COUNTS = ("queued", "active", "succeeded", "failed", "cancelled", "from_journal")
OPTIONAL_COUNTS = ("cancelled", "from_journal")  # shown only when not 0
_CELL_STYLE = "padding: 0.1em 0.9em; text-align: left"
# The overall bar's parts, in order, with their colours (those of the timeline's legend); the rest is queued.
BAR_PARTS = (("from_journal", COLOURS["journal"]), ("succeeded", COLOURS["done"]), ("failed", COLOURS["failed"]),
             ("cancelled", COLOURS["cancelled"]), ("active", COLOURS["running"]))
_BAR_STYLE = "display:flex;width:100%;height:14px;background:#e8e8e8;border-radius:3px;overflow:hidden"
# A busy worker whose job gave no total: a pulsing dot and the time it has run, not a bar with no meaning.
_ACTIVITY_STYLE = ("@keyframes jobsched-pulse{0%,100%{opacity:1}50%{opacity:.25}}"
                   ".jobsched-worker-activity::before{content:'\\25CF  ';color:#3182bd;"
                   "animation:jobsched-pulse 1.2s ease-in-out infinite}")


def render_workers(rows: tuple[WorkerRow, ...], outcomes: dict[str, int] | None = None) -> str:
    """Return the HTML ``<table>`` of the workers: one ``<tr class="jobsched-worker">`` each.

    A worker's ``done`` cell counts the jobs it ran to an outcome (``12``, or ``12 (1 failed)``). With
    ``outcomes`` (``stats()["outcomes"]``), rows below the workers make the column add up to the whole: a
    ``jobsched-workers-other`` row for jobs of workers no longer shown (or that no worker could run), and a
    ``jobsched-workers-journal`` row for the results taken from the journal, which no worker ran.
    """
    with_address = any(r.address for r in rows)
    with_tags = any(r.tags for r in rows)
    columns = [("worker", "worker"), ("pid", "pid")] + ([("address", "address")] if with_address else []) + (
        [("tags", "tags")] if with_tags else []) + [
        ("state", "state"), ("job", "job"), ("elapsed", "running for"), ("progress", "progress"),
        ("done", "done"), ("restarts", "restarts")]
    head = "".join(f"<th>{title}</th>" for _, title in columns)
    body = []
    for r in rows:
        busy = r.job is not None
        cells = {
            "worker": str(r.index),
            "pid": "" if r.pid is None else str(r.pid),
            "address": html.escape(r.address or ""),
            "tags": html.escape(", ".join(r.tags)),
            "state": html.escape(r.state),
            "job": render_job(r) if busy else "",
            "elapsed": format_duration(r.job_elapsed) if busy else "",
            "progress": render_worker_progress(r) if busy else "",
            "done": ran_text(r.n_succeeded, r.n_failed),
            "restarts": str(r.n_restarts),
        }
        body.append(f'<tr class="jobsched-worker" data-worker="{r.index}" data-state="{html.escape(r.state)}">'
                    + "".join(f'<td data-col="{col}">{cells[col]}</td>' for col, _ in columns) + "</tr>")
    foot = [] if outcomes is None else _apart_rows(rows, outcomes, [col for col, _ in columns])
    # JupyterLab's CSS leaves table cells touching, so the headers would run together.
    return (f'<style>.jobsched-worker-table th, .jobsched-worker-table td {{{_CELL_STYLE}}}{_ACTIVITY_STYLE}</style>'
            f'<table class="jobsched-worker-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody>{'<tfoot>' + ''.join(foot) + '</tfoot>' if foot else ''}</table>")


def ran_text(succeeded: int, failed: int) -> str:
    """``12``, or ``12 (1 failed)``: the jobs a worker ran to an outcome."""
    return f"{succeeded + failed} ({failed} failed)" if failed else str(succeeded)


def _apart_rows(rows: tuple[WorkerRow, ...], outcomes: dict[str, int], columns: list[str]) -> list[str]:
    """The rows that make the ``done`` column add up: other workers' jobs, and the journal's results."""
    succeeded = outcomes["succeeded"] - sum(r.n_succeeded for r in rows)
    failed = outcomes["failed"] - sum(r.n_failed for r in rows)
    found = []
    if succeeded or failed:
        found.append(("other", "other workers", "workers no longer running (and jobs no worker could run)",
                      ran_text(succeeded, failed)))
    if outcomes["from_journal"]:
        found.append(("journal", "journal", "results taken from the journal: no worker ran them",
                      str(outcomes["from_journal"])))
    out = []
    for css, name, title, done in found:
        cells = {"worker": f'<i title="{title}">{name}</i>', "done": done}
        out.append(f'<tr class="jobsched-workers-{css}">'
                   + "".join(f'<td data-col="{col}">{cells.get(col, "")}</td>' for col in columns) + "</tr>")
    return out


def render_job(r: WorkerRow) -> str:
    """Return a busy worker's job cell: its index, and which attempt this is when it is not the first (the job
    was retried after its worker died, or after an error named in ``retry_on``)."""
    if r.attempt <= 1:
        return str(r.job)
    return f'{r.job} <span class="jobsched-attempt" data-attempt="{r.attempt}">(attempt {r.attempt})</span>'


def render_worker_progress(r: WorkerRow) -> str:
    """Return a busy worker's progress: a ``<progress>`` bar and its report when the job gave a total, else an
    activity mark that says how long it has run (``running 12 s``) and its report, if any. Odd values (beyond a
    float, ``nan``) are shown as text."""
    p = r.progress
    fraction = None if p is None else progress_fraction(p.done, p.total)
    text = html.escape(format_progress(r))
    if fraction is None:
        return (f'<span class="jobsched-worker-activity" data-worker="{r.index}">running '
                f'{format_duration(r.job_elapsed)}</span> {text}').rstrip()
    assert p is not None
    try:
        done, total = float(p.done), float(p.total)  # type: ignore[arg-type]
    except (ArithmeticError, TypeError, ValueError):  # ints beyond a float: the fraction of 1
        done, total = fraction, 1.0
    if not (math.isfinite(done) and math.isfinite(total) and total > 0):
        done, total = fraction, 1.0
    value = min(max(done, 0.0), total)
    return (f'<progress class="jobsched-worker-progress" data-worker="{r.index}" value="{value:g}" max="{total:g}">'
            f'</progress> {text}').rstrip()


def render_log(rows: tuple[WorkerRow, ...]) -> str:
    """Return the workers' recent output as HTML, one block per worker that printed something."""
    blocks = []
    for r in rows:
        if not r.output:
            continue
        lines = "\n".join(html.escape(line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + " …")
                          for line in r.output[-LOG_LINES:])
        blocks.append(f'<div class="jobsched-log-worker" data-worker="{r.index}"><b>worker {r.index}</b>'
                      f'<pre style="margin:0 0 4px 0">{lines}</pre></div>')
    return "".join(blocks) or "<i>no output yet</i>"


def render_rate(stats: dict[str, Any], rows: tuple[WorkerRow, ...] = ()) -> str:
    """Return ``"12.3 jobs/s · ETA 0:42"`` (``ETA ?`` while it cannot be told; see ``eta_text``)."""
    return f"{float(stats['jobs_per_s']):.1f} jobs/s · {eta_text(stats, rows)}"


def eta_text(stats: dict[str, Any], rows: tuple[WorkerRow, ...]) -> str:
    """Return the time left: ``ETA 0:42``, ``ETA —`` when nothing is left, ``ETA ?`` when it cannot be told.

    The jobs running now count for what they have left of the mean job duration (a job that has run 8 s of
    a 10 s mean has 2 s left), the jobs queued or sent ahead for a whole mean each, spread over the workers.
    A job that has run longer than the mean has an unknown time left: the text says so
    (``ETA ? (1 job running longer than the mean 2.0 s)``) rather than counting it as nearly done.
    """
    remaining = stats["queued"] + stats["active"]
    if remaining == 0:
        return "ETA —"
    mean = stats.get("mean_job_s")
    if stats["paused"] or not stats["target_workers"] or mean is None:
        return "ETA ?"
    elapsed = [r.job_elapsed for r in rows if r.job is not None]
    over = sum(1 for e in elapsed if e >= mean)
    if over:
        return f"ETA ? ({over} job{'' if over == 1 else 's'} running longer than the mean {format_duration(mean)})"
    left = [mean - e for e in elapsed]
    waiting = max(0, stats["queued"] + stats["active"] - len(elapsed))  # queued, or sent ahead and not started
    workers = max(1, stats["target_workers"])
    eta = max(max(left, default=0.0), (waiting * mean + sum(left)) / workers)
    return f"ETA {format_duration(eta)}"


def render_bar(stats: dict[str, Any]) -> str:
    """Return the overall progress bar: one part per outcome, in proportion, and the rest (queued) empty.

    ``<div class="jobsched-progress-bar">`` holds a ``<div class="jobsched-progress-part" data-part="P"
    data-count="N">`` per part that is not 0, P being ``from_journal``, ``succeeded``, ``failed``,
    ``cancelled`` or ``active`` (running or sent to a worker): a failure is a red part, not a red bar.
    """
    outcomes = stats["outcomes"]
    counts = {**outcomes, "active": stats["active"]}
    total = sum(outcomes.values()) + stats["queued"] + stats["active"]
    parts = []
    for name, colour in BAR_PARTS:
        n = counts[name]
        if n:
            parts.append(f'<div class="jobsched-progress-part" data-part="{name}" data-count="{n}" '
                         f'title="{n} {name.replace("_", " ")}" '
                         f'style="width:{100.0 * n / total:.2f}%;background:{colour}"></div>')
    title = html.escape(f"{outcome_text(stats)}, {stats['active']} active, {stats['queued']} queued")
    return f'<div class="jobsched-progress-bar" title="{title}" style="{_BAR_STYLE}">{"".join(parts)}</div>'


class _Poller:
    """The one "jobsched-dashboard" thread of a scheduler: it renders one snapshot into all its dashboards."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.views: list[Dashboard] = []  # changed under _registry_lock
        self.render_lock = threading.Lock()  # one render at a time: thread ticks and forced refreshes
        self.thread: threading.Thread | None = None  # changed under _registry_lock
        self.wake = threading.Event()  # set when the last view goes, so the thread ends without delay
        self.timeline = LiveTimeline(sched)

    def refresh(self, force: bool = True) -> Snapshot:
        snap: Snapshot = self.sched.snapshot()
        with self.render_lock:
            stats = snap.stats
            redrawn = self.timeline.update(snap, force or (stats["closed"] and not stats["running"]))
            for view in list(self.views):
                view._render(snap)
                if redrawn:
                    view._render_timeline(self.timeline)
        return snap

    def run(self) -> None:
        reported = False
        while True:
            self.wake.wait(UPDATE_INTERVAL)
            # Decide to go on or to end under the registry lock, so that a dashboard attached meanwhile
            # either finds this thread still serving it or starts a new one: never neither.
            with _registry_lock:
                self.wake.clear()
                if not self.views:
                    self._retire()
                    return
            try:
                snap = self.refresh(force=False)
            except Exception as exc:  # keep the dashboard alive; say it once, where a kernel log shows it
                if not reported and sys.__stderr__ is not None:
                    reported = True
                    print(f"jobsched dashboard: update failed: {type(exc).__name__}: {exc}", file=sys.__stderr__)
                continue
            if snap.stats["closed"] and not snap.stats["running"]:
                with _registry_lock:  # the final state is on screen; nothing will change any more
                    self._retire()
                return

    def _retire(self) -> None:
        """Forget this poller (called under ``_registry_lock``): a later dashboard gets a new one."""
        if _pollers.get(self.sched) is self:
            del _pollers[self.sched]
        self.thread = None


_EMPTY: dict[str, Any] = {"outcomes": {"succeeded": 0, "failed": 0, "cancelled": 0, "from_journal": 0},
                          "queued": 0, "active": 0}  # what the bar shows before the first update
_registry_lock = threading.Lock()
_pollers: dict[Scheduler, _Poller] = {}  # the live pollers; an entry goes when its thread ends


def _attach(view: Dashboard) -> _Poller:
    sched = view.scheduler
    with _registry_lock:
        poller = _pollers.get(sched)
        if poller is None:
            poller = _Poller(sched)
        poller.views.append(view)
        if poller.thread is None and not sched.snapshot().stats["closed"]:
            _pollers[sched] = poller
            poller.thread = threading.Thread(target=poller.run, name="jobsched-dashboard", daemon=True)
            poller.thread.start()
    return poller


def _detach(view: Dashboard, poller: _Poller) -> None:
    with _registry_lock:
        if view in poller.views:
            poller.views.remove(view)
        if not poller.views:
            poller.wake.set()


class Dashboard(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type hints
    """A live widget showing a scheduler: counts, progress, rate, workers, their output, and controls.

    ``sched.dashboard()`` and ``display(sched)`` create one. It updates itself at most every
    ``UPDATE_INTERVAL`` seconds from a background thread (so it moves while the kernel is idle) and stops
    when it is closed (``close()``) or when the scheduler is closed and its last state is shown.

    Args:
        sched: the scheduler to show.

    Attributes:
        scheduler: the scheduler shown.
        counts: the count widgets by name (``"queued"``, ``"active"``, ``"succeeded"``, ``"failed"``,
            ``"cancelled"``, ``"from_journal"``); each ``value`` is the bare integer as a string (the last two
            are hidden while 0). The last four are disjoint: each finished job is in exactly one.
        status: the one-line summary (as printed by ``%jobsched status``).
        state: ``running``, ``paused``, ``stopping``, ``stopped`` or ``closed``.
        progress: an ``HTML`` widget holding the overall bar: a part per outcome (green succeeded, red failed,
            grey cancelled, blue from the journal, light blue active) in proportion to all the jobs.
        rate: jobs per second and the estimated time left (running jobs count for what they have left of
            the mean job duration).
        worker_table: an ``HTML`` widget holding the workers' ``<table>``, with a progress bar per busy worker
            (or, when its job gave no total, how long it has run) and the jobs each ran, adding up to the counts.
        cancel_buttons: a "Cancel job J" button per worker index (disabled while that worker is idle).
        timeline: an ``HTML`` widget holding the task timeline (SVG): a lane per worker, a bar per recent job
            coloured by outcome, older jobs summed per time bucket, running jobs as open bars.
        throughput: an ``HTML`` widget holding a small plot of jobs/s and queue length over time.
        output_log: the last lines each worker printed (at most ``LOG_LINES`` per worker).
        error: the scheduler's error, or the error of the last button action, else the last job whose worker
            died (its ``WorkerDied`` with the worker's last output); hidden when empty.
        buttons: the buttons by description (``"Pause"``, ``"Resume"``, ``"Scale −"``, ``"Scale +"``,
            ``"Stop"``). Stop closes the workers and keeps the scheduler, as ``%jobsched stop`` does.
        n_updates: how many times this dashboard was rendered (tests bound it).
    """

    def __init__(self, sched: Scheduler) -> None:
        self._closed = True  # until it is built: a half-built widget's __del__ -> close() must be a no-op
        if not callable(getattr(sched, "snapshot", None)):  # duck typing: no import of the core here
            raise TypeError(f"Dashboard: expected a jobsched.Scheduler, got {type(sched).__name__}")
        self.scheduler = sched
        self.n_updates = 0
        self._action_error: str | None = None
        self._notice: str | None = None  # what the last click did not do, and why (not an error)

        def labelled(name: str) -> tuple[widgets.Label, widgets.HTML]:
            count = widgets.HTML("0")
            count.add_class(f"jobsched-{name.replace('_', '-')}")
            return widgets.Label(f"{name.replace('_', ' ')}:"), count

        pairs = {name: labelled(name) for name in COUNTS}
        self.counts: dict[str, widgets.HTML] = {name: pair[1] for name, pair in pairs.items()}
        self._optional = {name: pairs[name] for name in OPTIONAL_COUNTS}
        for label, count in self._optional.values():
            label.layout.display = count.layout.display = "none"
        self.state = widgets.HTML("")
        self.state.add_class("jobsched-state")
        self.status = widgets.HTML("")
        self.status.add_class("jobsched-status")
        self.progress = widgets.HTML(render_bar(_EMPTY), layout=widgets.Layout(width="50%"))
        self.progress.add_class("jobsched-progress")
        self.rate = widgets.HTML("")
        self.rate.add_class("jobsched-rate")
        self.worker_table = widgets.HTML("")
        self.worker_table.add_class("jobsched-workers")
        self.cancel_box = widgets.HBox([])
        self.cancel_box.add_class("jobsched-cancel-buttons")
        self.cancel_buttons: dict[int, widgets.Button] = {}  # by worker index, made when a worker first shows
        self._cancel_targets: dict[int, int | None] = {}  # worker index -> the job its button cancels
        self.output_log = widgets.HTML("", layout=widgets.Layout(max_height="16em", overflow="auto"))
        self.output_log.add_class("jobsched-log")
        self.timeline = widgets.HTML("")
        self.timeline.add_class("jobsched-timeline")
        self.throughput = widgets.HTML("")
        self.throughput.add_class("jobsched-throughput")
        self.error = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.error.add_class("jobsched-error")
        self.buttons: dict[str, widgets.Button] = {}
        actions: dict[str, Callable[[], None]] = {
            "Pause": sched.pause,
            "Resume": sched.resume,
            "Scale −": lambda: scale_to(sched, max(0, sched.n_workers - 1)),
            "Scale +": lambda: scale_to(sched, sched.n_workers + 1),
            "Stop": self._stop_workers,
        }
        for description, css in BUTTONS:
            button = widgets.Button(description=description, layout=widgets.Layout(width="auto"))
            button.add_class(css)
            button.on_click(self._on_click(actions[description]))
            self.buttons[description] = button

        children = [
            widgets.HBox([self.state, self.status]),
            widgets.HBox([widgets.HBox([w for pair in pairs.values() for w in pair]), self.throughput]),
            widgets.HBox([self.progress, self.rate]),
            self.timeline,
            self.worker_table,
            self.cancel_box,
            widgets.HTML("<b>worker output</b>"),
            self.output_log,
            self.error,
            widgets.HBox(list(self.buttons.values())),
        ]
        super().__init__(children)
        self.add_class("jobsched-dashboard")
        self._closed = False
        self._poller = _attach(self)
        self.refresh()

    # ------------------------------------------------------------------ updating

    def refresh(self) -> None:
        """Update now, from a fresh snapshot (every dashboard of this scheduler shows it)."""
        if self._closed:
            raise ValueError("Dashboard.refresh: this dashboard is closed; create a new one with sched.dashboard()")
        self._poller.refresh()

    def _render(self, snap: Snapshot) -> None:
        """Put ``snap`` into the widgets; unchanged values send nothing to the browser."""
        if self._closed:
            return
        stats = snap.stats
        error = stats["error"] or self._action_error
        state = mode(stats)
        closed = stats["closed"]
        shown = {**stats["outcomes"], "queued": stats["queued"], "active": stats["active"]}
        for name, widget in self.counts.items():
            widget.value = str(shown[name])
        for name, (label, count) in self._optional.items():
            label.layout.display = count.layout.display = None if shown[name] else "none"
        self.state.value = f"<b>{state}</b>"
        notice = self._notice
        self.status.value = html.escape(status_line(stats) + (f" · {notice}" if notice else ""))
        self.progress.value = render_bar(stats)
        self.rate.value = html.escape(render_rate(stats, snap.workers))
        self.worker_table.value = render_workers(snap.workers, stats["outcomes"])
        self._render_cancel_buttons(snap.workers, closed)
        self.output_log.value = render_log(snap.workers)
        problem = error or stats.get("last_worker_died")  # the scheduler's own error first, else the last crash
        self.error.value = f"<pre>{html.escape(problem)}</pre>" if problem else ""
        self.error.layout.display = None if problem else "none"
        buttons = self.buttons
        buttons["Pause"].disabled = closed or stats["paused"]
        buttons["Resume"].disabled = closed or not stats["paused"]
        buttons["Scale −"].disabled = closed or stats["target_workers"] == 0
        buttons["Scale +"].disabled = closed
        buttons["Stop"].disabled = closed or state == "stopped"
        self.n_updates += 1

    def _render_timeline(self, timeline: LiveTimeline) -> None:
        if self._closed:
            return
        self.timeline.value = timeline.timeline_svg
        self.throughput.value = timeline.rate_svg

    def _render_cancel_buttons(self, rows: tuple[WorkerRow, ...], closed: bool) -> None:
        """One button per worker shown, naming the job it would cancel; disabled while the worker is idle."""
        shown = []
        for r in rows:
            button = self.cancel_buttons.get(r.index)
            if button is None:
                button = widgets.Button(layout=widgets.Layout(width="auto"))
                button.add_class("jobsched-cancel")
                button.add_class(f"jobsched-cancel-worker-{r.index}")
                button.on_click(self._on_click(functools.partial(self._cancel, r.index)))
                self.cancel_buttons[r.index] = button
            # The button cancels the job it names, not whatever the worker runs when it is clicked.
            self._cancel_targets[r.index] = r.job
            button.description = (f"Cancel job {r.job} (worker {r.index})" if r.job is not None
                                   else f"worker {r.index} idle")
            button.disabled = closed or r.job is None
            shown.append(button)
        if tuple(shown) != tuple(self.cancel_box.children):
            self.cancel_box.children = tuple(shown)

    # ------------------------------------------------------------------ buttons

    def _cancel(self, worker: int) -> str | None:
        """Cancel the job the button names; return a notice if it finished before the cancel got there."""
        job = self._cancel_targets.get(worker)
        if job is None:
            return None
        if not self.scheduler.cancel(job):  # a short job ends between a refresh and the click: not an error
            return f"job {job} finished before it could be cancelled"
        return None

    def _on_click(self, action: Callable[[], str | None]) -> Callable[[widgets.Button], None]:
        def handler(button: widgets.Button) -> None:
            # A handler's exception would vanish into the kernel's log: show it on the dashboard.
            try:
                self._notice = action()
            except Exception as exc:
                self._action_error = f"{button.description}: {type(exc).__name__}: {exc}"
                self._notice = None
            else:
                self._action_error = None
            if not self._closed:
                self.refresh()

        return handler

    def _stop_workers(self) -> None:
        # Stopping waits for running jobs to finish: do it off the kernel's thread so the UI stays live.
        def stop() -> None:
            try:
                stop_workers(self.scheduler)
            finally:
                if not self._closed:
                    self.refresh()

        threading.Thread(target=stop, name="jobsched-dashboard-stop", daemon=True).start()

    # ------------------------------------------------------------------ lifetime

    @property
    def updating(self) -> bool:
        """Whether the background thread still updates this dashboard."""
        poller = self._poller
        return not self._closed and poller.thread is not None and poller.thread.is_alive()

    def close(self) -> None:
        """Stop updating and close the widgets (the scheduler keeps running)."""
        if self._closed:
            return
        self._closed = True
        _detach(self, self._poller)
        for child in self._descendants():
            child.close()
        super().close()

    def _descendants(self) -> list[widgets.Widget]:
        found: list[widgets.Widget] = []
        stack = list(self.children)
        while stack:
            w = stack.pop()
            found.append(w)
            stack.extend(getattr(w, "children", ()))
        return found

    def __repr__(self) -> str:
        return f"<Dashboard of {self.scheduler!r}>"

