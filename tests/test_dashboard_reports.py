"""The dashboard and ``%jobsched status`` under odd reports and lost races: they show, never raise.

Real workers; the assertions read the widgets' state (what the browser would get).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from waiting import TIMEOUT, eventually

from jobsched import Scheduler
from jobsched.notebook import _common

pytest.importorskip("ipywidgets")

from jobsched.notebook.dashboard import Dashboard


def report_then_wait() -> Any:
    """A job that reports ``jobsched.progress(done, total)`` and waits for a file (shipped by value)."""

    def run(gate: str, done: Any, total: Any) -> str:
        import os
        import time

        import jobsched

        jobsched.progress(done, total, "odd")
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "ok"

    return run


def progress_cell(dash: Dashboard, worker: int) -> str:
    row = re.search(rf'<tr class="jobsched-worker" data-worker="{worker}"[^>]*>(.*?)</tr>', dash.worker_table.value)
    cell = None if row is None else re.search(r'<td data-col="progress">(.*?)</td>', row.group(1))
    return "" if cell is None else cell.group(1)


@pytest.mark.parametrize(("done", "total", "shown"), [
    (10**400, 10, "~1e400/10 odd"),
    (10**400, 10**401, "~1e400/~1e401 (10%) odd"),
    (float("nan"), 10, "nan/10 odd"),
    (5, 0, "5/0 odd"),
    (float("inf"), None, "inf odd"),
], ids=["huge-int", "huge-ratio", "nan", "total-0", "inf"])
def test_progress_values_beyond_a_float_are_shown_and_never_raise(sched: Scheduler, dash: Dashboard, tmp_path: Path,
                                                                  done: Any, total: Any, shown: str) -> None:
    """A report of ``10**400``, ``nan`` or a total of 0 reaches the table and ``%jobsched status`` as text."""
    sched.start(1, wait=False)
    gate = tmp_path / "gate"
    future = sched.submit(report_then_wait(), str(gate), done, total)
    eventually(lambda: sched.workers[0].progress is not None, "the report")
    dash.refresh()  # raised OverflowError for numbers beyond a float
    eventually(lambda: shown in progress_cell(dash, 0), f"{shown!r} on the dashboard")
    assert dash.error.layout.display == "none", dash.error.value
    lines = _common.busy_lines(sched.snapshot())
    assert len(lines) == 1 and lines[0].endswith(shown), lines
    gate.touch()
    assert future.result(timeout=TIMEOUT) == "ok"


def test_a_cancel_click_that_loses_the_race_says_the_job_finished_first(sched: Scheduler, dash: Dashboard,
                                                                       tmp_path: Path) -> None:
    """Clicking Cancel for a job that ended since the last refresh: a notice, no error, no LookupError."""
    sched.start(1, wait=False)
    gate = tmp_path / "gate"
    future = sched.submit(report_then_wait(), str(gate), 1, 2)
    eventually(lambda: dash.cancel_buttons.get(0) is not None and not dash.cancel_buttons[0].disabled,
               "the button of the busy worker")
    with dash._poller.render_lock:  # hold the dashboard still: the button keeps naming job 0
        gate.touch()
        assert future.result(timeout=TIMEOUT) == "ok"
        eventually(lambda: sched.stats()["done"] == 1, "the job delivered")
    dash.cancel_buttons[0].click()
    assert "job 0 finished before it could be cancelled" in dash.status.value
    assert dash.error.layout.display == "none", dash.error.value
    assert "LookupError" not in dash.status.value + dash.error.value
    assert sched.stats()["cancelled"] == 0
