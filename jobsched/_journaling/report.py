"""The report of a finished or interrupted run, from its journal: ``Journal(path).plot()`` and
``python -m jobsched.journal PATH --html report.html``.

::

    journal file ── records (worker, index, cost, status, error type, start_ms, stop_ms), cancellations
        ──> Timeline (same fold as the live one)
        ──> render_timeline  +  render_histogram (durations)  +  render_failures (over time)
        ──> RunReport: _repr_html_ in a notebook, .html() a single self-contained page

The page holds inline SVG and CSS only: no script, no external URL, so it can be mailed or archived as is.
No IPython import: a notebook finds ``_repr_html_`` by itself.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from .._timeline.recorder import BUCKET_MS, CANCELLED, DONE, FAILED, KEEP_S, NOT_RUN, OUTCOMES, TIMEOUT, Span, Timeline
from .._timeline.svg import render_failures, render_histogram, render_timeline

if TYPE_CHECKING:
    from ..journal import Journal

_ERROR_OUTCOMES = {"JobTimeout": TIMEOUT, "JobCancelled": CANCELLED}


def spans_of(journal: Journal) -> list[Span]:
    """Read the journal's records and cancels as spans, in order of their start (records without times are left
    out)."""
    rows = journal._query("SELECT worker, idx, cost, status, error_type, start_ms, stop_ms FROM records "
                          "WHERE start_ms IS NOT NULL AND stop_ms IS NOT NULL ORDER BY start_ms")
    spans = []
    for worker, idx, cost, status, etype, start, stop in rows:
        outcome = DONE if status == "done" else _ERROR_OUTCOMES.get(etype or "", FAILED)
        if stop < start:  # a failure the scheduler decided, in a journal of an older jobsched: no stop time
            stop = start
        spans.append(Span(NOT_RUN if worker is None else int(worker), int(idx if idx is not None else -1),
                          float(cost or 0), float(start), float(stop), outcome))
    for c in journal.cancelled():  # not records (a cancel is not a result): a table of their own
        start = c.stop_ms if c.start_ms is None else min(c.start_ms, c.stop_ms)  # queued: a mark at the cancel
        spans.append(Span(NOT_RUN if c.worker is None else int(c.worker), int(c.index if c.index is not None else -1),
                          float(c.cost or 0), float(start), float(c.stop_ms), CANCELLED))
    spans.sort(key=lambda s: s.start_ms)
    return spans


class RunReport:
    """A run's timeline, its job durations and its failures over time, as SVG; shown by a notebook.

    Attributes:
        timeline_svg: the task timeline (the dashboard's drawing of the same data).
        histogram_svg: how many jobs took how long.
        failures_svg: failed, timed-out and cancelled jobs over time.
        counts: jobs by outcome.
    """

    def __init__(self, title: str, timeline_svg: str, histogram_svg: str, failures_svg: str,
                 counts: dict[str, int]) -> None:
        self.title = title
        self.timeline_svg = timeline_svg
        self.histogram_svg = histogram_svg
        self.failures_svg = failures_svg
        self.counts = counts

    def _repr_html_(self) -> str:
        summary = " · ".join(f"{n} {name}" for name, n in self.counts.items() if n) or "no job recorded"
        return (f'<div class="jobsched-report"><div><b>{html.escape(self.title)}</b>: {summary}</div>'
                f'<div class="jobsched-report-timeline">{self.timeline_svg}</div>'
                f'<div style="display:flex;gap:12px">{self.histogram_svg}{self.failures_svg}</div></div>')

    def html(self) -> str:
        """Return a whole, self-contained HTML page (inline SVG and CSS; no script, no external URL)."""
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title>"
                "<style>body{font-family:sans-serif;margin:1em}</style></head><body>"
                f"{self._repr_html_()}</body></html>\n")

    def save(self, path: str) -> None:
        """Write ``html()`` to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html())

    def __repr__(self) -> str:
        return f"<RunReport {self.title}: {self.counts}>"


def report(journal: Journal, width: int = 900) -> RunReport:
    """Make the report of ``journal``: the whole of its recorded time."""
    spans = spans_of(journal)
    first = min((s.start_ms for s in spans), default=0.0)
    last = max((s.stop_ms for s in spans), default=0.0)
    # Buckets of a 200th of the run at least: a long run's report stays a few thousand shapes and small.
    timeline = Timeline(pending=max(1, len(spans)), bucket_ms=max(BUCKET_MS, (last - first) / 200.0),
                        keep_s=max(KEEP_S, (last - first) / 1000.0 + 60.0))
    for span in spans:
        timeline.add(span)
    view = timeline.whole()
    counts = {name: 0 for name in OUTCOMES}
    for s in spans:
        counts[OUTCOMES[s.outcome]] += 1
    start, end = (first, last) if spans else (view.start_ms, view.end_ms)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(start / 1000.0)) if spans else ""
    title = f"{journal.path} {when}".strip()
    return RunReport(title, render_timeline(view, width=width),
                     render_histogram([s.stop_ms - s.start_ms for s in spans if s.outcome == DONE]),
                     render_failures(spans, start, end), counts)


__all__ = ["RunReport", "report", "spans_of"]
