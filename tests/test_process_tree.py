"""A job's descendants that left its worker's process group (``setsid``, a daemon) die with the job.

Real workers throughout. Each job starts a grandchild in a session of its own - directly
(``start_new_session=True``) or as a daemon (double fork: an orphan) - which writes its pid to a file and
sleeps for minutes. Whatever ends the job (cancel, timeout, the scheduler killing its worker, close), the
grandchild must be gone a few seconds later.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
import tree_jobs
from waiting import TIMEOUT, eventually, gone

from jobsched import JobError, Scheduler
from jobsched._local import tree

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux and /proc")

HOW = ["setsid", "daemon"]
GONE_WITHIN = 20.0  # seconds: generous, the machine is shared


def grandchild(pid_file: Path) -> psutil.Process:
    eventually(pid_file.exists, f"the grandchild to write its pid ({pid_file.name})")
    proc = psutil.Process(int(pid_file.read_text()))
    # In a session of its own (that it or its parent started): outside the worker's group and session.
    assert os.getpgid(proc.pid) == os.getsid(proc.pid) != os.getsid(0), "the grandchild should be in a new session"
    return proc


def assert_dies(proc: psutil.Process) -> None:
    try:
        eventually(lambda: gone(proc), f"grandchild {proc.pid} to be killed", timeout=GONE_WITHIN)
    finally:
        if not gone(proc):
            proc.kill()


@pytest.mark.parametrize("how", HOW)
def test_cancel_kills_a_grandchild_that_left_the_group(sched: Scheduler, tmp_path: Path, how: str) -> None:
    """Cancelling a running job kills the processes it started in a session of their own."""
    pid_file = tmp_path / "pid"
    sched.start(1, wait=False)
    future = sched.submit(tree_jobs.grandchild_then_sleep, str(pid_file), how, 600.0)
    proc = grandchild(pid_file)
    assert not gone(proc)
    assert future.cancel()
    assert_dies(proc)


@pytest.mark.parametrize("how", HOW)
def test_timeout_kills_a_grandchild_that_left_the_group(sched: Scheduler, tmp_path: Path, how: str) -> None:
    """A job over its time limit takes the processes it started in a session of their own along."""
    pid_file = tmp_path / "pid"
    sched.start(1, wait=False)
    future = sched.submit(tree_jobs.grandchild_then_sleep, str(pid_file), how, 600.0, timeout=3.0)
    proc = grandchild(pid_file)
    with pytest.raises((JobError, TimeoutError)):
        future.result(timeout=TIMEOUT)
    assert_dies(proc)


@pytest.mark.parametrize("how", HOW)
def test_worker_kill_at_close_kills_a_grandchild_that_left_the_group(tmp_path: Path, how: str) -> None:
    """A worker killed at the end of the close grace takes its job's setsid processes along."""
    pid_file = tmp_path / "pid"
    sched = Scheduler()
    try:
        sched.start(1, wait=False)
        sched.submit(tree_jobs.grandchild_then_sleep, str(pid_file), how, 600.0)
        proc = grandchild(pid_file)
    finally:
        sched.close(timeout=0.5)
    assert_dies(proc)


@pytest.mark.parametrize("how", HOW)
def test_close_kills_what_a_finished_job_left_running(tmp_path: Path, how: str) -> None:
    """A grandchild a finished job left running outside the group dies when its idle worker closes."""
    pid_file = tmp_path / "pid"
    sched = Scheduler()
    try:
        sched.start(1, wait=False)
        worker_pid = sched.submit(tree_jobs.grandchild_and_return, str(pid_file), how).result(timeout=TIMEOUT)
        proc = grandchild(pid_file)
        assert worker_pid != proc.pid
        assert not gone(proc)
    finally:
        sched.close(timeout=30.0)
    assert_dies(proc)


def test_strays_finds_only_descendants_outside_the_group(tmp_path: Path) -> None:
    """``tree.strays`` lists a daemon re-parented to a subreaper, and not the subreaper's own group."""
    pid_file = tmp_path / "pid"
    import subprocess
    import sys

    code = ("import sys, time; sys.path[:0] = sys.argv[2:]\n"
            "from jobsched._local import tree\nimport tree_jobs\n"
            "assert tree.become_subreaper()\n"
            "tree_jobs.start_grandchild(sys.argv[1], 'daemon')\n"
            "time.sleep(600)\n")
    tests_dir = str(Path(__file__).parent)
    root = str(Path(__file__).parent.parent)
    keeper = subprocess.Popen([sys.executable, "-c", code, str(pid_file), tests_dir, root], start_new_session=True)
    try:
        proc = grandchild(pid_file)
        eventually(lambda: proc.ppid() == keeper.pid, "the daemon to be re-parented to its subreaper")
        assert tree.strays(keeper.pid) == [proc.pid]
        assert tree.kill_strays(keeper.pid, freeze_group=True) == [proc.pid]
        assert_dies(proc)
    finally:
        keeper.kill()
        keeper.wait(timeout=TIMEOUT)
