"""Crash stacks: a worker's last output, a fatal-error stack included, travels with its death.

A job segfaults in a real worker (``ctypes.string_at(0)``); the workers run with ``faulthandler`` on, so the
worker prints Python's fatal-error stack before it dies. That stack is in the ``WorkerDied`` error, in
``stats()["last_worker_died"]`` and in the dashboard's error area.
"""

from __future__ import annotations

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import JobError, Scheduler


def crash(sched: Scheduler) -> JobError:
    sched.start(1, wait=False)
    future = sched.submit(helpers.segfault, max_retries=1)
    error = future.exception(timeout=TIMEOUT)
    assert isinstance(error, JobError), error
    return error


def test_a_segfaulting_job_fails_with_the_fatal_error_stack_of_its_worker(sched: Scheduler) -> None:
    error = crash(sched)
    assert error.remote_type == "WorkerDied"
    assert "its worker died once" in error.remote_message and "SIGSEGV" in error.remote_message
    tb = error.remote_traceback
    assert tb.startswith("Last output of worker 0:\n"), tb
    assert "Fatal Python error: Segmentation fault" in tb
    assert 'helpers.py", line' in tb and "in segfault" in tb, "the stack names the job's function"
    assert "Fatal Python error" in str(error)
    stats = sched.stats()
    assert stats["last_worker_died"] == str(error)
    assert stats["error"] is None, "a crashed job is a failed job, not a scheduler error"
    assert sched.submit(helpers.square, 3).result(timeout=TIMEOUT) == 9, "the worker was replaced"


def test_the_dashboard_shows_the_last_crash_stack_in_its_error_area(sched: Scheduler) -> None:
    pytest.importorskip("ipywidgets")
    dash = sched.dashboard()
    try:
        assert dash.error.layout.display == "none" and dash.error.value == ""
        error = crash(sched)
        eventually(lambda: "Fatal Python error" in dash.error.value, "the crash stack in the dashboard's error area")
        assert "jobsched-error" in dash.error._dom_classes
        assert dash.error.layout.display is None
        assert "in segfault" in dash.error.value and "WorkerDied" in dash.error.value
        assert dash.error.value.startswith("<pre>") and str(error.job_index) in dash.error.value
        assert "jobsched-progress-bar" in dash.progress.value and "danger" not in dash.progress.value
    finally:
        dash.close()
