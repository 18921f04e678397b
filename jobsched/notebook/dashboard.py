"""The live dashboard: an ipywidgets view over ``Scheduler.stats()`` and ``Scheduler.workers``.

::

    scheduler thread ──(counters, Worker objects; no hook, no lock taken)──┐
                                                                           │ read-only snapshot
    "jobsched-dashboard" thread, one per scheduler, every UPDATE_INTERVAL: ─┤ (stats() + workers)
                                                                           ▼
                                         render the same snapshot into every Dashboard of that scheduler
                                         (widget values change in place; ipywidgets syncs them from
                                         this thread, so they move while the kernel is idle)

The dashboard holds no scheduling logic: it reads, and its buttons call ``pause``, ``resume``,
``scale`` and ``close``. It never slows dispatch: the scheduler does not know it exists, and a snapshot
takes no lock the scheduler thread waits for. Updates are throttled to one per ``UPDATE_INTERVAL``
seconds whatever the job rate, and all dashboards of one scheduler show one snapshot, so they agree.
The thread ends when its last dashboard is closed, or after the final update once the scheduler is
closed.

DOM contract (a browser test relies on it; keep it stable): the root box has the CSS class
``jobsched-dashboard``; the count widgets (``ipywidgets.HTML``) have the classes ``jobsched-queued``,
``jobsched-active``, ``jobsched-done``, ``jobsched-failed`` and their value is the bare integer (their
captions are separate ``Label`` widgets before them); ``jobsched-status`` is the one-line summary of
``%jobsched status``; ``jobsched-state`` says running / paused / stopped / closed; ``jobsched-progress``
is the ``IntProgress`` bar (value = done, max = done + queued + active); ``jobsched-rate`` shows jobs/s
and ETA; ``jobsched-workers`` is an ``HTML`` whose value is a ``<table>`` with one
``<tr class="jobsched-worker">`` per worker; ``jobsched-log`` holds the workers' recent output;
``jobsched-error`` the scheduler's error (hidden when there is none); the buttons are ``Pause``,
``Resume``, ``Scale −``, ``Scale +`` and ``Stop`` with the classes ``jobsched-pause``,
``jobsched-resume``, ``jobsched-scale-down``, ``jobsched-scale-up`` and ``jobsched-stop``.
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from ..scheduler import Scheduler
from ._common import format_duration, mode, scale_to, status_line

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
COUNTS = ("queued", "active", "done", "failed")
_CELL_STYLE = "padding: 0.1em 0.9em; text-align: left"


@dataclass(frozen=True)
class WorkerRow:
    """What the dashboard shows of one worker."""

    index: int
    pid: int | None
    state: str
    job: int | None  # index of the job it runs, if any
    job_elapsed: float
    n_done: int
    n_restarts: int
    output: tuple[str, ...]  # its last LOG_LINES lines


@dataclass(frozen=True)
class Snapshot:
    """One read of a scheduler: ``stats()`` and its workers, taken together."""

    stats: dict[str, Any]
    workers: tuple[WorkerRow, ...]


def take_snapshot(sched: Scheduler) -> Snapshot:
    """Read ``sched`` without taking any lock that its scheduler thread needs."""
    stats = sched.stats()
    rows = []
    for w in sched.workers:
        rows.append(_worker_row(w))
    return Snapshot(stats, tuple(rows))


def _worker_row(w: Any) -> WorkerRow:
    # The scheduler thread changes a worker while we read it: retry the rare read that sees a deque
    # shrink or change under it, rather than lock the scheduler.
    for _ in range(5):
        try:
            job = w.job
            output = list(w.output)[-LOG_LINES:]
            return WorkerRow(w.index, w.pid, w.state.value, None if job is None else job.index,
                             w.job_elapsed if job is not None else 0.0, w.n_done, w.n_restarts, tuple(output))
        except (IndexError, RuntimeError):
            continue
    return WorkerRow(w.index, w.pid, w.state.value, None, 0.0, w.n_done, w.n_restarts, ())


def render_workers(rows: tuple[WorkerRow, ...]) -> str:
    """Return the HTML ``<table>`` of the workers: one ``<tr class="jobsched-worker">`` each."""
    head = "".join(f"<th>{h}</th>" for h in ("worker", "pid", "state", "job", "running for", "done", "restarts"))
    body = []
    for r in rows:
        job = "" if r.job is None else str(r.job)
        elapsed = "" if r.job is None else format_duration(r.job_elapsed)
        cells = (str(r.index), "" if r.pid is None else str(r.pid), r.state, job, elapsed, str(r.n_done),
                 str(r.n_restarts))
        body.append(f'<tr class="jobsched-worker" data-worker="{r.index}" data-state="{r.state}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    # JupyterLab's CSS leaves table cells touching, so the headers would run together.
    return (f'<style>.jobsched-worker-table th, .jobsched-worker-table td {{{_CELL_STYLE}}}</style>'
            f'<table class="jobsched-worker-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def render_log(rows: tuple[WorkerRow, ...]) -> str:
    """Return the workers' recent output as HTML, one block per worker that printed something."""
    blocks = []
    for r in rows:
        if not r.output:
            continue
        lines = "\n".join(html.escape(line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + " …")
                          for line in r.output)
        blocks.append(f'<div class="jobsched-log-worker" data-worker="{r.index}"><b>worker {r.index}</b>'
                      f'<pre style="margin:0 0 4px 0">{lines}</pre></div>')
    return "".join(blocks) or "<i>no output yet</i>"


def render_rate(stats: dict[str, Any]) -> str:
    """Return ``"12.3 jobs/s · ETA 0:42"`` (ETA left out while the rate is unknown)."""
    rate = float(stats["jobs_per_s"])
    remaining = stats["queued"] + stats["active"]
    if remaining == 0:
        eta = "ETA —"
    elif rate > 0 and not stats["paused"]:
        eta = f"ETA {format_duration(remaining / rate)}"
    else:
        eta = "ETA ?"
    return f"{rate:.1f} jobs/s · {eta}"


class _Poller:
    """The one "jobsched-dashboard" thread of a scheduler: it renders one snapshot into all its dashboards."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.views: list[Dashboard] = []  # changed under _registry_lock
        self.render_lock = threading.Lock()  # one render at a time: thread ticks and forced refreshes
        self.thread: threading.Thread | None = None  # changed under _registry_lock
        self.wake = threading.Event()  # set when the last view goes, so the thread ends without delay

    def refresh(self) -> Snapshot:
        snap = take_snapshot(self.sched)
        with self.render_lock:
            for view in list(self.views):
                view._render(snap)
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
                snap = self.refresh()
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


_registry_lock = threading.Lock()
_pollers: dict[Scheduler, _Poller] = {}  # the live pollers; an entry goes when its thread ends


def _attach(view: Dashboard) -> _Poller:
    sched = view.scheduler
    with _registry_lock:
        poller = _pollers.get(sched)
        if poller is None:
            poller = _Poller(sched)
        poller.views.append(view)
        if poller.thread is None and not sched.stats()["closed"]:
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
        counts: the count widgets by name (``"queued"``, ``"active"``, ``"done"``, ``"failed"``); each
            ``value`` is the bare integer as a string.
        status: the one-line summary (as printed by ``%jobsched status``).
        state: ``running``, ``paused``, ``stopped`` or ``closed``.
        progress: an ``IntProgress``: value = done, max = done + queued + active.
        rate: jobs per second and the estimated time left.
        worker_table: an ``HTML`` widget holding the workers' ``<table>``.
        output_log: the last lines each worker printed (at most ``LOG_LINES`` per worker).
        error: the scheduler's error, or the error of the last button action; hidden when empty.
        buttons: the buttons by description (``"Pause"``, ``"Resume"``, ``"Scale −"``, ``"Scale +"``,
            ``"Stop"``).
        n_updates: how many times this dashboard was rendered (tests bound it).
    """

    def __init__(self, sched: Scheduler) -> None:
        self._closed = True  # until it is built: a half-built widget's __del__ -> close() must be a no-op
        if not isinstance(sched, Scheduler):
            raise TypeError(f"Dashboard: expected a jobsched.Scheduler, got {type(sched).__name__}")
        self.scheduler = sched
        self.n_updates = 0
        self._action_error: str | None = None

        def labelled(name: str) -> tuple[widgets.Label, widgets.HTML]:
            count = widgets.HTML("0")
            count.add_class(f"jobsched-{name}")
            return widgets.Label(f"{name}:"), count

        pairs = {name: labelled(name) for name in COUNTS}
        self.counts: dict[str, widgets.HTML] = {name: pair[1] for name, pair in pairs.items()}
        self.state = widgets.HTML("")
        self.state.add_class("jobsched-state")
        self.status = widgets.HTML("")
        self.status.add_class("jobsched-status")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="50%"))
        self.progress.add_class("jobsched-progress")
        self.rate = widgets.HTML("")
        self.rate.add_class("jobsched-rate")
        self.worker_table = widgets.HTML("")
        self.worker_table.add_class("jobsched-workers")
        self.output_log = widgets.HTML("", layout=widgets.Layout(max_height="16em", overflow="auto"))
        self.output_log.add_class("jobsched-log")
        self.error = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.error.add_class("jobsched-error")
        self.buttons: dict[str, widgets.Button] = {}
        actions: dict[str, Callable[[], None]] = {
            "Pause": sched.pause,
            "Resume": sched.resume,
            "Scale −": lambda: scale_to(sched, max(0, sched.n_workers - 1)),
            "Scale +": lambda: scale_to(sched, sched.n_workers + 1),
            "Stop": self._stop_scheduler,
        }
        for description, css in BUTTONS:
            button = widgets.Button(description=description, layout=widgets.Layout(width="auto"))
            button.add_class(css)
            button.on_click(self._on_click(actions[description]))
            self.buttons[description] = button

        children = [
            widgets.HBox([self.state, self.status]),
            widgets.HBox([w for pair in pairs.values() for w in pair]),
            widgets.HBox([self.progress, self.rate]),
            self.worker_table,
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
        total = stats["done"] + stats["queued"] + stats["active"]
        error = stats["error"] or self._action_error
        state = mode(stats)
        closed = stats["closed"]
        for name, widget in self.counts.items():
            widget.value = str(stats[name])
        self.state.value = f"<b>{state}</b>"
        self.status.value = html.escape(status_line(stats))
        with self.progress.hold_sync():
            self.progress.max = max(total, 1)  # max first: ipywidgets clamps value to max
            self.progress.value = stats["done"]
            self.progress.bar_style = ("danger" if error else "warning" if stats["paused"]
                                       else "success" if total and stats["done"] == total else "")
        self.rate.value = html.escape(render_rate(stats))
        self.worker_table.value = render_workers(snap.workers)
        self.output_log.value = render_log(snap.workers)
        self.error.value = f"<pre>{html.escape(error)}</pre>" if error else ""
        self.error.layout.display = None if error else "none"
        buttons = self.buttons
        buttons["Pause"].disabled = closed or stats["paused"]
        buttons["Resume"].disabled = closed or not stats["paused"]
        buttons["Scale −"].disabled = closed or stats["target_workers"] == 0
        buttons["Scale +"].disabled = closed
        buttons["Stop"].disabled = closed
        self.n_updates += 1

    # ------------------------------------------------------------------ buttons

    def _on_click(self, action: Callable[[], None]) -> Callable[[widgets.Button], None]:
        def handler(button: widgets.Button) -> None:
            # A handler's exception would vanish into the kernel's log: show it on the dashboard.
            try:
                action()
            except Exception as exc:
                self._action_error = f"{button.description}: {type(exc).__name__}: {exc}"
            else:
                self._action_error = None
            if not self._closed:
                self.refresh()

        return handler

    def _stop_scheduler(self) -> None:
        # close() waits for running jobs to finish: do it off the kernel's thread so the UI stays live.
        def stop() -> None:
            try:
                self.scheduler.close()
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

