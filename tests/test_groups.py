"""Processes started by a job go with its worker: no grandchild outlives a kill.

Each job here starts ``sleep 60`` and records its pid. Its worker is then killed three ways -- the job's
timeout, ``close()`` with a short grace period, and a SIGKILL of the scheduler's whole process -- and the
test checks that the worker *and* the ``sleep 60`` are gone. An orphan is adopted by init (or a subreaper),
so a process is identified by ``psutil.Process`` (pid plus start time) and its command line, never by
being our child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import cancel_jobs
import psutil
import pytest
from waiting import TIMEOUT, eventually, gone, reap

import jobsched
from jobsched import JobTimeout, Scheduler

HERE = os.path.dirname(os.path.abspath(__file__))



def started_record(path: Path) -> dict[str, Any]:
    eventually(path.exists, f"the job to start its child ({path.name})")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def job_processes(record: dict[str, Any]) -> tuple[psutil.Process, psutil.Process]:
    worker, child = psutil.Process(record["pid"]), psutil.Process(record["child"])
    assert child.cmdline() == ["sleep", "60"]
    assert os.getpgid(child.pid) == worker.pid, "the job's child is in its worker's process group"
    return worker, child


def test_a_timeout_kills_the_processes_the_job_started(sched: Scheduler, tmp_path: Path) -> None:
    started = tmp_path / "started"
    sched.start(1, wait=False)
    future = sched.submit(cancel_jobs.grandchild_then_sleep, str(started), 60.0, timeout=1.0)
    worker, child = job_processes(started_record(started))
    with pytest.raises(JobTimeout):
        future.result(timeout=TIMEOUT)
    eventually(lambda: gone(worker), "the timed-out job's worker to exit", timeout=5.0)
    eventually(lambda: gone(child), f"the job's child (sleep 60, pid {child.pid}) to exit", timeout=5.0)


def test_close_kills_the_processes_a_running_job_started(tmp_path: Path) -> None:
    started = tmp_path / "started"
    sched = Scheduler()
    try:
        sched.start(1, wait=False)
        future = sched.submit(cancel_jobs.grandchild_then_sleep, str(started), 60.0)
        worker, child = job_processes(started_record(started))
        t0 = time.monotonic()
        sched.close(timeout=0.5)
        assert time.monotonic() - t0 < 10.0, "close() is bounded by its grace period, then SIGTERM/SIGKILL"
    finally:
        sched.close(timeout=0.5)
    assert future.done()
    eventually(lambda: gone(worker), "the busy worker to exit", timeout=5.0)
    eventually(lambda: gone(child), f"the job's child (sleep 60, pid {child.pid}) to exit", timeout=5.0)


SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import cancel_jobs
    from jobsched import Scheduler

    if __name__ == "__main__":
        sched = Scheduler(echo_output=False)
        sched.start(1, wait=False)
        sched.submit(cancel_jobs.grandchild_then_sleep, {started!r}, 600.0)
        time.sleep(600)  # SIGKILLed long before this
""")


def test_a_sigkilled_scheduler_takes_its_workers_and_their_jobs_children_along(tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = tmp_path / "doomed.py"
    script.write_text(SCRIPT.format(tests=HERE, started=str(started)))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(jobsched.__file__)))
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not started.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else proc.returncode
            assert time.monotonic() < deadline, "the doomed scheduler's job never started"
            time.sleep(0.02)
        worker, child = job_processes(started_record(started))
        # Everything the scheduler started: the worker and its job's child, and the reaper (sh).
        family = psutil.Process(proc.pid).children(recursive=True)
        assert {worker.pid, child.pid} <= {p.pid for p in family}
        assert any(p.name() == "sh" for p in family), f"a reaper watches the groups: {family}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    finally:
        reap(proc)
    t0 = time.monotonic()
    eventually(lambda: gone(worker), "the worker to exit with its scheduler", timeout=5.0)
    eventually(lambda: gone(child), f"the job's child (sleep 60, pid {child.pid}) to exit", timeout=5.0)
    eventually(lambda: all(gone(p) for p in family), f"every process of the scheduler to exit: {family}",
               timeout=5.0)
    assert time.monotonic() - t0 < 5.0
