"""A job's descendants that left its worker's process group (``setsid``, a daemon) die with the job.

Real workers throughout. Each job starts a grandchild in a session of its own - directly
(``start_new_session=True``) or as a daemon (double fork: an orphan) - which writes its pid to a file and
sleeps for minutes. Whatever ends the job (cancel, timeout, the scheduler killing its worker, close), the
grandchild must be gone a few seconds later.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import tree_jobs
from waiting import TIMEOUT, eventually, gone

from jobsched import JobError, Scheduler
from jobsched._local import tree, zygote

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


@pytest.mark.skipif(not zygote.enabled(), reason="workers are forked from a zygote only on Linux with pidfds")
@pytest.mark.parametrize("how", HOW)
def test_a_worker_killed_from_outside_takes_its_grandchild_along(tmp_path: Path, how: str) -> None:
    """SIGKILL of the worker itself (as the OOM killer sends it): its job's setsid processes die too."""
    pid_file = tmp_path / "pid"
    sched = Scheduler(max_retries=1)  # one attempt: the job is not run again to start another grandchild
    try:
        sched.start(1, wait=False)
        future = sched.submit(tree_jobs.grandchild_then_sleep, str(pid_file), how, 600.0)
        proc = grandchild(pid_file)
        worker = psutil.Process(proc.ppid())  # its parent, or the subreaper it was handed to
        assert worker.pid in [row.pid for row in sched.snapshot().workers]
        worker.kill()
        with pytest.raises(JobError) as failed:
            future.result(timeout=TIMEOUT)
        assert failed.value.remote_type == "WorkerDied"
        assert_dies(proc)
    finally:
        sched.close(timeout=5.0)


@pytest.mark.skipif(not zygote.enabled(), reason="workers are forked from a zygote only on Linux with pidfds")
def test_a_forked_worker_killed_from_outside_takes_even_a_bare_grandchild_along(tmp_path: Path) -> None:
    """A worker forked from the zygote hands its orphans to the zygote when it dies: even a process that left
    its group with an environment of its own dies with it."""
    n = (os.cpu_count() or 1) + 1  # the first cpu_count workers of a cold start are spawned, the rest forked
    sched = Scheduler(max_retries=1)
    procs: list[psutil.Process] = []
    try:
        sched.start(n, wait=False)
        for i in range(n):
            sched.submit(tree_jobs.grandchild_then_sleep, str(tmp_path / f"pid{i}"), "bare", 600.0)
        procs = [grandchild(tmp_path / f"pid{i}") for i in range(n)]
        forked = [proc for proc in procs if psutil.Process(proc.ppid()).ppid() != os.getpid()]
        assert forked, "no worker was forked from the zygote"
        psutil.Process(forked[0].ppid()).kill()
        assert_dies(forked[0])
    finally:
        sched.close(timeout=5.0)
    for proc in procs:
        assert_dies(proc)


SIGKILLED_SCHEDULER = """
import sys, time
sys.path[:0] = [sys.argv[3]]
import tree_jobs
from jobsched import Scheduler

if __name__ == "__main__":
    sched = Scheduler()
    n = int(sys.argv[4])
    sched.start(n, wait=False)
    for i in range(n):
        sched.submit(tree_jobs.grandchild_then_sleep, sys.argv[1] + str(i), sys.argv[2], 600.0)
    time.sleep(600)
"""


@pytest.mark.skipif(not zygote.enabled(), reason="workers are forked from a zygote only on Linux with pidfds")
@pytest.mark.parametrize("how", HOW)
def test_a_sigkilled_scheduler_takes_its_jobs_grandchildren_along(tmp_path: Path, how: str) -> None:
    """The scheduler's process SIGKILLed mid-run: workers and what their jobs started outside their groups die."""
    script = tmp_path / "run.py"
    script.write_text(SIGKILLED_SCHEDULER)
    pid_file = tmp_path / "pid"
    tests_dir = str(Path(__file__).parent)
    n = (os.cpu_count() or 1) + 1  # spawned workers and one forked from the zygote
    runner = subprocess.Popen([sys.executable, str(script), str(pid_file), how, tests_dir, str(n)], cwd=tmp_path)
    grandchildren: list[psutil.Process] = []
    try:
        grandchildren = [grandchild(tmp_path / f"pid{i}") for i in range(n)]
        workers = [psutil.Process(proc.ppid()) for proc in grandchildren]
        runner.kill()
        runner.wait(timeout=TIMEOUT)
        for proc in [*grandchildren, *workers]:
            assert_dies(proc)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=TIMEOUT)
        for proc in grandchildren:
            if not gone(proc):
                proc.kill()


def test_strays_finds_only_descendants_outside_the_group(tmp_path: Path) -> None:
    """``tree.strays`` lists a daemon re-parented to a subreaper, and not the subreaper's own group."""
    pid_file = tmp_path / "pid"
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
