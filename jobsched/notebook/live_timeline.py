"""The dashboard's live task timeline and throughput plot: SVG text for two ``ipywidgets.HTML`` widgets.

::

    "jobsched-dashboard" thread, every TIMELINE_INTERVAL:
        snapshot (running jobs, workers) + sched._timeline.view(...)  ──render_timeline──> <svg> ──> HTML widget
        (time, done, queued) samples, one per interval               ──render_rate──────> <svg> ──> HTML widget

Why SVG text rather than a plotting widget (bqplot, plotly's FigureWidget): the shapes are few (at most
``MAX_SHAPES``) and plain; drawing them as text takes about 15 ms for 3,000 shapes in the dashboard's own
thread, needs no extra dependency or JavaScript extension, and each bar is an element with a class and a
tooltip, which tests read in the widget state and in the browser's DOM. The scheduler's loop only appends a
tuple per job (``jobsched._timeline.recorder``). This module imports no ipywidgets: only the core's plain-data
timeline and its pure-Python SVG drawing.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from .._timeline.recorder import Running, TimelineView
from .._timeline.svg import render_rate, render_timeline

if TYPE_CHECKING:
    from .._core.snapshot import Snapshot

TIMELINE_INTERVAL = 1.0  # seconds between two redraws of the timeline and the throughput plot
WINDOW_S = 600.0  # the timeline shows at most the last ten minutes...
MIN_WINDOW_S = 5.0  # ...and at least five seconds (a shorter run fills the width)
SAMPLES = 600  # throughput samples kept: ten minutes at one per TIMELINE_INTERVAL
LIVE_MAX_SHAPES = 2_000  # fewer than the report's: the SVG goes to the browser every second
LIVE_MAX_BARS = 800


def timeline_view(sched: Any, snap: Snapshot, window_s: float = WINDOW_S) -> TimelineView | None:
    """Return the timeline of ``sched`` with the running jobs of ``snap``; None if it records none."""
    recorder = getattr(sched, "_timeline", None)
    if recorder is None:
        return None
    now_ms = time.time() * 1000.0
    running = tuple(Running(r.index, r.job, r.cost, now_ms - r.job_elapsed * 1000.0)
                    for r in snap.workers if r.job is not None)
    view: TimelineView = recorder.view(now_ms, window_s, running, tuple(r.index for r in snap.workers),
                                       min_window_s=MIN_WINDOW_S)
    return view


class LiveTimeline:
    """The timeline and throughput SVGs of one scheduler, redrawn at most every ``TIMELINE_INTERVAL``."""

    def __init__(self, sched: Any) -> None:
        self.sched = sched
        self.samples: collections.deque[tuple[float, int, int]] = collections.deque(maxlen=SAMPLES)
        self.due = 0.0
        self.timeline_svg = ""
        self.rate_svg = render_rate(())
        self.n_redraws = 0
        self.n_shapes = 0

    def update(self, snap: Snapshot, force: bool = False) -> bool:
        """Redraw if due (or ``force``); return whether the SVGs changed."""
        now = time.monotonic()
        if not force and now < self.due:
            return False
        self.due = now + TIMELINE_INTERVAL
        stats = snap.stats
        if not self.samples or now - self.samples[-1][0] >= TIMELINE_INTERVAL * 0.5:
            self.samples.append((now, int(stats["done"]), int(stats["queued"])))
        view = timeline_view(self.sched, snap)
        if view is not None:
            self.timeline_svg = render_timeline(view, max_shapes=LIVE_MAX_SHAPES, max_bars=LIVE_MAX_BARS)
            self.n_shapes = self.timeline_svg.count('<rect class="jobsched-')
        self.rate_svg = render_rate(tuple(self.samples))
        self.n_redraws += 1
        return True


__all__ = ["LIVE_MAX_SHAPES", "TIMELINE_INTERVAL", "WINDOW_S", "LiveTimeline", "timeline_view"]
