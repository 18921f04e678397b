"""tqdm bars inside jobs: seen as ``worker.progress`` and in the dashboard's per-worker bar.

A real worker runs a job that iterates a tqdm bar slowly, then holds until the test lets it finish.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import progress_jobs
import pytest
from waiting import TIMEOUT, eventually

from jobsched import Scheduler

pytest.importorskip("tqdm")


def test_a_tqdm_bar_in_a_job_shows_as_worker_progress(sched: Scheduler, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    sched.start(1, wait=False)
    future = sched.submit(progress_jobs.tqdm_then_wait, str(gate), 30, "rows")
    seen: list[tuple[float, float | None, str]] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while not seen or seen[-1] != (30, 30, "rows"):
            assert time.monotonic() < deadline, (seen, sched.workers)
            p = sched.workers[0].progress
            if p is not None and (not seen or tuple(p) != seen[-1]):
                seen.append((p.done, p.total, p.note))
            time.sleep(0.02)
    finally:
        gate.touch()
    assert future.result(timeout=TIMEOUT) == 30
    assert all(total == 30 and note == "rows" for _, total, note in seen), seen
    dones = [done for done, _, _ in seen]
    assert dones == sorted(dones) and len(dones) >= 2, f"the bar was seen moving: {seen}"
    assert sched.workers[0].progress is None, "no progress once the job is done"


def test_a_tqdm_bar_in_a_job_shows_in_the_dashboards_worker_progress_widget(sched: Scheduler, tmp_path: Path) -> None:
    pytest.importorskip("ipywidgets")
    gate = tmp_path / "gate"
    sched.start(1, wait=False)
    dash = sched.dashboard()
    try:
        future = sched.submit(progress_jobs.tqdm_then_wait, str(gate), 20, "chunks", 0.02)
        bar = re.compile(r'<progress class="jobsched-worker-progress" data-worker="0" value="(\d+)" max="20">'
                         r"</progress> (\d+)/20 \((\d+)%\) chunks")
        eventually(lambda: bar.search(dash.worker_table.value) is not None, "a determinate bar on the dashboard")
        eventually(lambda: '<progress class="jobsched-worker-progress" data-worker="0" value="20" max="20">'
                   "</progress> 20/20 (100%) chunks" in dash.worker_table.value, "the finished bar on the dashboard")
        gate.touch()
        assert future.result(timeout=TIMEOUT) == 20
        eventually(lambda: "jobsched-worker-progress" not in dash.worker_table.value, "no bar once the job is done")
    finally:
        gate.touch()
        dash.close()
