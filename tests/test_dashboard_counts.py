"""The dashboard's counts, bar, ETA and worker table: disjoint counts that add up, in the user's words.

Real workers; the assertions read the widgets' state (what the browser would get).
"""

from __future__ import annotations

import re
from pathlib import Path

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import Scheduler
from jobsched._core.snapshot import WorkerRow

pytest.importorskip("ipywidgets")

from jobsched.notebook.dashboard import Dashboard, eta_text


def counts(dash: Dashboard) -> dict[str, str]:
    return {name: widget.value for name, widget in dash.counts.items()}


def bar_parts(dash: Dashboard) -> dict[str, tuple[int, float]]:
    """The overall bar's parts: ``{part: (count, percent of the width)}``."""
    return {part: (int(n), float(width)) for part, n, width in re.findall(
        r'data-part="(\w+)" data-count="(\d+)" title="[^"]*" style="width:([\d.]+)%', dash.progress.value)}


def table_rows(dash: Dashboard) -> dict[str, str]:
    """The worker table's ``done`` cell per row: ``{"0": "12 (1 failed)", ..., "other": ..., "journal": ...}``."""
    found = {}
    for css, worker, cells in re.findall(r'<tr class="jobsched-(worker|workers-other|workers-journal)"'
                                         r'(?: data-worker="(\d+)")?[^>]*>(.*?)</tr>', dash.worker_table.value):
        done = re.search(r'<td data-col="done">(.*?)</td>', cells)
        assert done is not None, cells
        found[worker if css == "worker" else css.removeprefix("workers-")] = done.group(1)
    return found


def ran(cell: str) -> int:
    """``"12 (1 failed)"`` -> 12."""
    return int(cell.split()[0])


def run_mix(sched: Scheduler, n_ok: int, n_raise: int, n_cancel: int) -> None:
    """Run ``n_ok`` jobs that succeed, ``n_raise`` that raise, and cancel ``n_cancel`` queued ones."""
    sched.pause()
    futures = [sched.submit(helpers.add, i) for i in range(n_ok)]
    futures += [sched.submit(helpers.raise_value_error, "expected") for _ in range(n_raise)]
    doomed = [sched.submit(helpers.add, -1) for _ in range(n_cancel)]
    assert all(f.cancel() for f in doomed)
    sched.resume()
    assert sched.wait(timeout=TIMEOUT)
    assert sum(f.exception(timeout=TIMEOUT) is None for f in futures) == n_ok


def test_counts_are_disjoint_and_add_up(sched: Scheduler, dash: Dashboard) -> None:
    """25 succeeded, 4 raised, 1 cancelled: shown as exactly that, not "30 done, 5 failed, 1 cancelled"."""
    sched.start(2, wait=False)
    run_mix(sched, 25, 4, 1)
    stats = sched.stats()
    assert stats["outcomes"] == {"succeeded": 25, "failed": 4, "cancelled": 1, "from_journal": 0}
    assert sum(stats["outcomes"].values()) + stats["queued"] + stats["active"] == 30, "every job added, once"
    final = {"queued": "0", "active": "0", "succeeded": "25", "failed": "4", "cancelled": "1", "from_journal": "0"}
    eventually(lambda: counts(dash) == final, "the final counts on the dashboard")
    assert dash.status.value == "jobsched: 2 workers, 0 queued, 0 active, 25 succeeded, 4 failed, 1 cancelled"
    assert "done" not in dash.status.value


def test_per_worker_totals_sum_to_the_whole_with_journal_hits_apart(tmp_path: Path) -> None:
    """Each worker's "done" counts what it ran; workers scaled away and journal hits have rows of their own."""
    journal = tmp_path / "runs.sqlite"
    with Scheduler(journal=journal) as first:
        first.start(2, wait=False)
        assert [first.submit(helpers.add, i).result(timeout=TIMEOUT) for i in range(6)] == list(range(1, 7))
    sched = Scheduler(journal=journal)
    dash = sched.dashboard()
    try:
        sched.start(3, wait=False)
        futures = [sched.submit(helpers.add, i) for i in range(20)]  # 6 of them are in the journal
        futures += [sched.submit(helpers.raise_value_error, f"expected {i}") for i in range(3)]
        assert sched.wait(timeout=TIMEOUT)
        sched.scale(1)  # workers 1 and 2 leave: what they ran stays counted, in the "other workers" row
        eventually(lambda: len(sched.snapshot().workers) == 1, "two workers gone")
        assert sum(f.exception(timeout=TIMEOUT) is None for f in futures) == 20
        assert sched.stats()["outcomes"] == {"succeeded": 14, "failed": 3, "cancelled": 0, "from_journal": 6}
        dash.refresh()
        rows = table_rows(dash)
        assert set(rows) <= {"0", "other", "journal"} and rows["journal"] == "6", rows
        assert sum(ran(cell) for name, cell in rows.items() if name != "journal") == 14 + 3, rows
        failed_cells = [int(m) for cell in rows.values() for m in re.findall(r"\((\d+) failed\)", cell)]
        assert sum(failed_cells) == 3, rows
        assert counts(dash)["from_journal"] == "6" and counts(dash)["succeeded"] == "14"
    finally:
        dash.close()
        sched.close(timeout=5.0)


def test_the_overall_bar_shows_failures_as_a_part(sched: Scheduler, dash: Dashboard) -> None:
    """One failure makes a red part of its size, not a red bar; cancelled jobs are a grey part."""
    sched.start(1, wait=False)
    run_mix(sched, 6, 1, 1)
    dash.refresh()
    parts = bar_parts(dash)
    assert {part: n for part, (n, _) in parts.items()} == {"succeeded": 6, "failed": 1, "cancelled": 1}
    assert parts["succeeded"][1] == 75.0 and parts["failed"][1] == 12.5 and parts["cancelled"][1] == 12.5
    assert re.search(r'data-part="failed"[^>]*background:#d62728', dash.progress.value)
    assert re.search(r'data-part="succeeded"[^>]*background:#4c9a2a', dash.progress.value)
    assert re.search(r'data-part="cancelled"[^>]*background:#8c8c8c', dash.progress.value)
    # Queued jobs are the bar's empty rest.
    sched.pause()
    for i in range(8):
        sched.submit(helpers.add, i)
    dash.refresh()
    assert sum(width for _, width in bar_parts(dash).values()) == pytest.approx(50.0, abs=0.05)


def test_the_eta_counts_what_running_jobs_have_left(sched: Scheduler, dash: Dashboard, tmp_path: Path) -> None:
    """Jobs that ran for part of the mean duration have the rest left; past it, the ETA says it cannot tell."""
    sched.start(2, wait=False)
    assert [f.result(timeout=TIMEOUT) for f in [sched.submit(helpers.sleep_then, 2.0, i) for i in range(2)]] == [0, 1]
    mean = sched.stats()["mean_job_s"]
    assert 1.9 <= mean <= 4.0, mean
    gate = tmp_path / "gate"
    held = [sched.submit(helpers.wait_for_file, str(gate), i) for i in range(2)]
    eventually(lambda: sum(r.job is not None for r in sched.snapshot().workers) == 2, "both jobs running")
    dash.refresh()
    shown = re.search(r"ETA ([\d.]+) s$", dash.rate.value)
    assert shown is not None, dash.rate.value  # jobs/s over the last seconds is 0 here: a rate alone says "?"
    assert 0 < float(shown.group(1)) <= mean + 0.05, (dash.rate.value, mean)
    eventually(lambda: min(r.job_elapsed for r in sched.snapshot().workers) > mean + 0.2, "past the mean",
               timeout=max(TIMEOUT, 3 * mean))
    dash.refresh()
    assert re.search(r"ETA \? \(2 jobs running longer than the mean [\d.]+ s\)$", dash.rate.value), dash.rate.value
    gate.touch()
    assert [f.result(timeout=TIMEOUT) for f in held] == [0, 1]
    eventually(lambda: dash.rate.value.endswith("ETA —"), "nothing left")


def test_the_eta_spreads_queued_jobs_over_the_workers() -> None:
    """Two workers, a 10 s mean, jobs 8 s and 2 s in, two queued: (2 + 8 + 2 * 10) / 2 = 15 s."""
    stats = {"queued": 2, "active": 2, "paused": False, "target_workers": 2, "mean_job_s": 10.0}
    rows = tuple(WorkerRow(i, 100 + i, None, "running", i, 0.0, elapsed, None, 0, 0, (), None)
                 for i, elapsed in enumerate((8.0, 2.0)))
    assert eta_text(stats, rows) == "ETA 15 s"
    assert eta_text({**stats, "queued": 0}, rows) == "ETA 8.0 s"  # the longest left, however many workers
    assert eta_text({**stats, "mean_job_s": None}, rows) == "ETA ?"  # nothing finished yet
    assert eta_text({**stats, "queued": 0, "active": 0}, ()) == "ETA —"


def test_a_job_without_a_total_shows_how_long_it_has_run(sched: Scheduler, dash: Dashboard, tmp_path: Path) -> None:
    """No report (or no total): a pulsing "running 1.2 s", never a bar that looks like a fraction."""
    sched.start(1, wait=False)
    gate = tmp_path / "gate"
    future = sched.submit(helpers.wait_for_file, str(gate), "ok")
    eventually(lambda: sched.snapshot().workers[0].job is not None, "the job running")

    def elapsed_shown() -> float | None:
        dash.refresh()
        m = re.search(r'<td data-col="progress"><span class="jobsched-worker-activity" data-worker="0">'
                      r"running ([\d.]+) s</span></td>", dash.worker_table.value)
        return None if m is None else float(m.group(1))

    first = elapsed_shown()
    assert first is not None, dash.worker_table.value
    assert "<progress" not in dash.worker_table.value
    assert "@keyframes jobsched-pulse" in dash.worker_table.value  # the mark moves: the job is alive
    eventually(lambda: (elapsed_shown() or 0.0) >= first + 1.0, "the time shown to grow")
    gate.touch()
    assert future.result(timeout=TIMEOUT) == "ok"


def test_no_internal_words_in_the_dashboard(sched: Scheduler, dash: Dashboard) -> None:
    """The timeline's legend names what the user sees (jobs, in the counts' words), not drawing internals."""
    sched.start(1, wait=False)
    run_mix(sched, 5, 1, 0)
    eventually(lambda: "6 jobs shown" in dash.timeline.value, "the timeline's legend")
    legend = re.findall(r'font-size="10">([a-z ]+)</text>', dash.timeline.value)
    assert {"succeeded", "failed", "timeout", "cancelled", "from journal", "running"} <= set(legend), legend
    shown = " ".join(str(w.value) for w in dash._descendants() if isinstance(getattr(w, "value", None), str))
    for word in ("shape", "slot", "inflight", "entry", "payload", " done,"):
        assert word not in shown, word
