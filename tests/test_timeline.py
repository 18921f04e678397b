"""The task timeline: the core recorder, its SVG drawing, the dashboard's live timeline and
throughput plot during a real run, and the journal's report of a finished run.

The recorder and the drawing are tested as pure functions with synthetic spans (no process); the rest runs
real workers: jobs that succeed, one that raises, one that times out and one that is cancelled while it runs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import helpers
import pytest
from waiting import eventually

from jobsched import JobError, Scheduler
from jobsched._core.instructions import Entry
from jobsched._timeline.recorder import (
    CANCELLED,
    DONE,
    FAILED,
    JOURNAL,
    NOT_RUN,
    OUTCOMES,
    TIMEOUT,
    Span,
    Timeline,
)
from jobsched._timeline.svg import MAX_SHAPES, render_histogram, render_rate, render_timeline
from jobsched.errors import JobTimeout
from jobsched.journal import Journal, main

TIMEOUT_S = 60.0
BAR = re.compile(r'<rect class="jobsched-bar" data-outcome="(\w+)" data-job="(\d+)" data-worker="(-?\d+)"')


def entry(index: int, start: float = 1_000.0, stop: float = 1_500.0, cost: float = 2.0) -> Entry:
    e = Entry(cost, None, b"", None, None, 3, False)
    e.index = index
    e.job.start_ms, e.job.stop_ms = start, stop
    return e


# ---- the recorder, with fake times


def test_record_classifies_each_outcome() -> None:
    t = Timeline()
    t.record(0, entry(0), 42, False)
    t.record(1, entry(1), JobError("ValueError", "no", "", 1), True)
    t.record(1, entry(2), JobTimeout("JobTimeout", "late", "", 2), True)
    cancelled = entry(3)
    cancelled.cancelled = True
    t.record(2, cancelled, None, True)
    journaled = entry(4)
    journaled.from_journal = True
    t.record(NOT_RUN, journaled, 1, False)
    view = t.view(now_ms=2_000.0, window_s=10.0)
    assert [(s.worker, s.job, s.outcome) for s in view.spans] == [
        (0, 0, DONE), (1, 1, FAILED), (1, 2, TIMEOUT), (2, 3, CANCELLED), (NOT_RUN, 4, JOURNAL)]
    assert view.spans[0] == Span(0, 0, 2.0, 1_000.0, 1_500.0, DONE)
    assert view.workers == (NOT_RUN, 0, 1, 2)


def test_a_job_settled_by_the_state_ends_when_it_is_recorded() -> None:
    t = Timeline()
    e = entry(7, start=time.time() * 1000.0 - 500.0, stop=0.0)  # killed for its timeout: no result came
    t.record(3, e, JobTimeout("JobTimeout", "late", "", 7), True)
    (span,) = t.view(window_s=10.0).spans
    assert span.stop_ms - span.start_ms == pytest.approx(500.0, abs=250.0)


def test_old_spans_are_summed_into_buckets_and_what_is_kept_stays_bounded() -> None:
    t = Timeline(recent=100, bucket_ms=1_000.0, keep_s=60.0)
    for i in range(10_000):  # 10 workers, a job every 10 ms each, 100 s in all
        start = i * 10.0
        t.add(Span(i % 10, i, 1.0, start, start + 8.0, FAILED if i % 100 == 0 else DONE))
        if i % 1_000 == 999:
            t.view(now_ms=start, window_s=1_000.0)  # a reader folds as it goes
    view = t.view(now_ms=100_000.0, window_s=1_000.0)
    assert len(view.spans) == 100 and view.spans[-1].job == 9_999
    assert len(t.recent) == 100
    # buckets older than keep_s (60 s before the newest span) are forgotten
    assert all(b.start_ms >= 100_000.0 - 62_000.0 for b in view.buckets)
    assert len(view.buckets) <= 10 * 62
    jobs_in_buckets = sum(sum(b.counts) for b in view.buckets)
    assert 5_000 < jobs_in_buckets < 10_000
    assert all(b.busy_ms == pytest.approx(8.0 * sum(b.counts)) for b in view.buckets)
    assert view.dropped == 0


def test_pending_is_bounded_when_nobody_reads() -> None:
    t = Timeline(pending=1_000)
    for i in range(5_000):
        t.record(0, entry(i), None, False)
    assert len(t.pending) == 1_000
    assert t.view(now_ms=2_000.0).dropped == 4_000


def test_recording_costs_well_under_a_microsecond_per_job() -> None:
    t = Timeline()
    e = entry(1)
    n = 100_000
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            t.record(1, e, None, False)
        best = min(best, (time.perf_counter() - t0) / n)
        t.view(now_ms=2_000.0)
    assert best < 1e-6, f"{best * 1e6:.2f} µs per job"


# ---- the drawing


def synthetic(n: int = 100_000, workers: int = 120) -> Timeline:
    t = Timeline()
    now = 1_700_000_000_000.0
    for i in range(n):
        start = now - 600_000.0 + i * 6.0
        t.add(Span(i % workers, i, float(i % 7), start, start + 300.0 + (i % 13) * 50.0, i % len(OUTCOMES)))
        if i % 10_000 == 9_999:
            t.view(now_ms=start)
    return t


def test_the_svg_draws_at_most_max_shapes_for_100000_jobs_on_120_workers() -> None:
    t = synthetic()
    view = t.view(now_ms=1_700_000_000_000.0, window_s=600.0)
    assert len(view.workers) == 120
    svg = render_timeline(view)
    shapes = svg.count('<rect class="jobsched-')
    assert 1_000 < shapes <= MAX_SHAPES
    bars = BAR.findall(svg)
    assert {outcome for outcome, _, _ in bars} == set(OUTCOMES)
    assert {m for m in re.findall(r'class="jobsched-bucket" data-outcome="(\w+)"', svg)}
    jobs_in_buckets = sum(int(n) for n in re.findall(r'data-jobs="(\d+)"', svg))
    assert jobs_in_buckets + len(bars) == 100_000  # nothing lost: old jobs are summed, not dropped
    assert "<title>job 99999 · cost 4 · " in svg
    assert svg.count("<svg") == 1 and svg.endswith("</svg>")


def test_running_jobs_are_open_bars_and_tooltips_give_index_cost_and_duration() -> None:
    from jobsched._timeline.recorder import Running

    t = Timeline()
    t.record(0, entry(12, 1_000.0, 1_410.0, cost=3), "ok", False)
    svg = render_timeline(t.view(now_ms=5_000.0, window_s=5.0, running=(Running(1, 13, 1.5, 4_000.0),)))
    assert "<title>job 12 · cost 3 · 0.410 s · w0 · done</title>" in svg
    assert 'class="jobsched-running" data-job="13" data-worker="1"' in svg
    assert "running for 1.00 s" in svg


def test_the_small_plots() -> None:
    rate = render_rate([(0.0, 0, 10), (1.0, 5, 6), (2.0, 15, 0)])
    assert "jobsched-rate-line" in rate and "jobsched-queue-line" in rate and "jobs/s 10.0" in rate
    assert "no data yet" in render_rate([])
    hist = render_histogram([10.0, 20.0, 20.0, 3_000.0])
    assert hist.count("jobsched-histogram-bin") >= 3


# ---- a real run: sched.timeline(), the dashboard, the journal's report


def run_with_every_outcome(sched: Scheduler) -> None:
    """Jobs that succeed, one that raises, one that times out, one cancelled while it runs."""
    sched.start(3, wait=False)
    ok = [sched.submit(helpers.sleep_then, 0.05, i) for i in range(12)]
    bad = sched.submit(helpers.raise_value_error, "boom")
    late = sched.submit(helpers.sleep_then, 30.0, timeout=0.5)
    doomed = sched.submit(helpers.sleep_then, 30.0)
    index = doomed.entry.index  # type: ignore[attr-defined]
    eventually(lambda: any(job == index for _, job, *_ in sched.running_jobs()),
               "the job to cancel is running", TIMEOUT_S)
    assert sched.cancel(index)
    assert [f.result(timeout=TIMEOUT_S) for f in ok] == list(range(12))
    for f in (bad, late):
        with pytest.raises(JobError):
            f.result(timeout=TIMEOUT_S)
    assert sched.wait(timeout=TIMEOUT_S)


def test_sched_timeline_records_a_real_run(sched: Scheduler) -> None:
    run_with_every_outcome(sched)
    view = sched.timeline(60.0)
    by_outcome = {OUTCOMES[s.outcome] for s in view.spans}
    assert by_outcome == {"done", "failed", "timeout", "cancelled"}
    assert len(view.spans) == 15
    assert all(s.worker in (0, 1, 2) for s in view.spans), view.spans
    assert all(s.stop_ms >= s.start_ms > 0 for s in view.spans)
    timed_out = next(s for s in view.spans if s.outcome == TIMEOUT)
    assert timed_out.stop_ms - timed_out.start_ms >= 450.0


def test_the_dashboard_shows_the_timeline_and_the_throughput_live_and_after(sched: Scheduler) -> None:
    pytest.importorskip("ipywidgets")
    from jobsched.notebook.live_timeline import TIMELINE_INTERVAL

    board = sched.dashboard()
    try:
        sched.start(2, wait=False)
        slow = sched.submit(helpers.sleep_then, 30.0)
        eventually(lambda: 'class="jobsched-running"' in board.timeline.value, "a running job's open bar",
                   TIMEOUT_S + TIMELINE_INTERVAL)
        assert sched.cancel(slow.entry.index)
        run_with_every_outcome(sched)
        board.refresh()
        outcomes = {m[0] for m in BAR.findall(board.timeline.value)}
        assert outcomes == {"done", "failed", "timeout", "cancelled"}, board.timeline.value[:500]
        assert "jobsched-rate-line" in board.throughput.value
        sched.close(timeout=5.0)
        eventually(lambda: not board.updating, "the dashboard's final update", TIMEOUT_S)
        assert len(BAR.findall(board.timeline.value)) == 16
    finally:
        board.close()


def test_the_journal_report_of_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "runs.sqlite"
    with Scheduler(journal=path) as sched:
        run_with_every_outcome(sched)
    report = Journal(path).plot()
    assert report.counts["done"] == 12 and report.counts["failed"] >= 1 and report.counts["timeout"] == 1
    assert "jobsched-bar" in report._repr_html_()
    out = tmp_path / "report.html"
    assert main([str(path), "--html", str(out)]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    bars = BAR.findall(page)
    assert {o for o, _, _ in bars} >= {"done", "failed", "timeout"}
    assert page.count("jobsched-histogram-bin") >= 1 and "jobsched-failures-svg" in page
    # self-contained: no script, no link, nothing fetched (the SVG namespace is a name, not a fetch)
    assert not re.search(r"<script|<link|src=|href=|url\(|https://", page)
    assert set(re.findall(r"http://[^\"']+", page)) == {"http://www.w3.org/2000/svg"}


def test_the_journal_report_shows_cancelled_jobs_which_are_not_results(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    from jobsched.journal import SCHEMA_VERSION

    path = tmp_path / "runs.sqlite"
    with Scheduler(journal=path) as sched:
        sched.start(1, wait=False)
        before = time.time() * 1000.0
        running = sched.submit(helpers.sleep_then, 30.0, key="running")
        queued = sched.submit(helpers.sleep_then, 0.01, key="queued")
        index = running.entry.index  # type: ignore[attr-defined]
        eventually(lambda: any(job == index for _, job, *_ in sched.running_jobs()), "the job to cancel runs",
                   TIMEOUT_S)
        assert queued.cancel(), "a queued job's future.cancel()"
        assert sched.cancel(index), "a running job"
        assert sched.submit(helpers.sleep_then, 0.01, 7, key="ok").result(timeout=TIMEOUT_S) == 7
        assert sched.wait(timeout=TIMEOUT_S)
        after = time.time() * 1000.0
    journal = Journal(path)
    assert [r.key for r in journal] == ["ok"], "a cancel is not a result"
    cancels = {c.key: c for c in journal.cancelled()}
    assert set(cancels) == {"running", "queued"}
    ran, waited = cancels["running"], cancels["queued"]
    assert (ran.index, ran.worker, waited.index, waited.worker, waited.start_ms) == (0, 0, 1, None, None)
    assert ran.start_ms is not None and before <= ran.start_ms <= ran.stop_ms <= after
    assert before <= waited.stop_ms <= after and ran.run == waited.run == journal.runs()[0].run
    with sqlite3.connect(path) as conn:  # an additive table: the schema version (and older readers) unchanged
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    report = journal.plot()
    assert (report.counts["done"], report.counts["cancelled"]) == (1, 2)
    bars = {(outcome, int(job), int(worker)) for outcome, job, worker in BAR.findall(report.html())}
    assert ("cancelled", 0, 0) in bars and ("done", 2, 0) in bars
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 records: 1 done, 0 failed" in out and "and 2 job(s) cancelled" in out
    # The next run runs the cancelled jobs: the journal had no result for them.
    with Scheduler(journal=path) as sched:
        sched.start(1, wait=False)
        futures = [sched.submit(helpers.sleep_then, 0.01, k, key=k) for k in ("running", "queued", "ok")]
        assert [f.result(timeout=TIMEOUT_S) for f in futures] == ["running", "queued", 7]
        assert sched.stats()["from_journal"] == 1
    assert journal.forget("queued") == 1 and [c.key for c in journal.cancelled()] == ["running"]
    assert journal.clear() == 2 and journal.cancelled() == [] and journal.plot().counts["cancelled"] == 0
