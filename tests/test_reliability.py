"""Timeouts, retries, recycling, callback errors and interrupts, with real workers (and a real kernel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import helpers
import psutil
import pytest
from waiting import TIMEOUT, eventually, reap

from jobsched import Job, JobError, JobTimeout, Scheduler, remote_call


def test_a_job_over_its_timeout_fails_and_its_worker_is_replaced(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    pid = sched.submit(helpers.getpid).result(timeout=TIMEOUT)
    slow = sched.submit(helpers.sleep_then, 60, "late", timeout=0.5)
    after = sched.submit(helpers.getpid)
    with pytest.raises(JobTimeout) as info:
        slow.result(timeout=TIMEOUT)
    assert isinstance(info.value, JobError) and isinstance(info.value, TimeoutError)
    assert "timeout of 0.5 s" in info.value.remote_message
    assert "killed by signal SIGKILL (timeout)" in info.value.remote_message
    new_pid = after.result(timeout=TIMEOUT)
    assert new_pid != pid
    assert not helpers.is_live(pid)


def test_the_scheduler_default_timeout_applies_to_add_job() -> None:
    results: list[Any] = []
    with Scheduler(timeout=0.5) as sched:
        sched.add_job(remote_call(helpers.sleep_then, 60))
        sched.add_job(remote_call(helpers.add, 1), timeout=30)
        sched.start(1, after_stop=lambda s, job, result: results.append((job.index, result)))
    by_index = dict(results)
    assert isinstance(by_index[0], JobTimeout) and by_index[1] == 2


def test_retry_on_timeout_reruns_the_job(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(1, wait=False)
    future = sched.submit(helpers.sleep_once, str(tmp_path / "m"), 60, "second try", timeout=1.0,
                          retry_on_timeout=True)
    assert future.result(timeout=TIMEOUT) == "second try"
    assert sched.workers[0].n_restarts == 1


def test_retry_on_timeout_still_gives_up_after_max_retries(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    future = sched.submit(helpers.sleep_then, 60, timeout=0.3, retry_on_timeout=True, max_retries=2)
    with pytest.raises(JobTimeout, match=r"timeout of 0\.3 s"):
        future.result(timeout=TIMEOUT)
    assert sched.workers[0].n_restarts == 2


def test_max_jobs_per_worker_recycles_the_process() -> None:
    with Scheduler(max_jobs_per_worker=3) as sched:
        sched.start(1, wait=False)
        pids = [sched.submit(helpers.getpid).result(timeout=TIMEOUT) for _ in range(10)]
        assert [len(set(pids[i:i + 3])) for i in range(0, 9, 3)] == [1, 1, 1]
        assert len(set(pids)) == 4
        assert sched.workers[0].n_restarts == 0  # a planned replacement, not a crash


def test_max_worker_memory_recycles_a_leaky_worker() -> None:
    with Scheduler(max_worker_memory=150 * 2**20) as sched:
        sched.start(1, wait=False)
        small = sched.submit(helpers.hoard_memory, 1).result(timeout=TIMEOUT)
        assert sched.submit(helpers.getpid).result(timeout=TIMEOUT) == small  # under the limit: kept
        big = sched.submit(helpers.hoard_memory, 200 * 2**20).result(timeout=TIMEOUT)
        assert big == small
        assert sched.submit(helpers.getpid).result(timeout=TIMEOUT) != big  # replaced between two jobs


def test_bad_recycling_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_jobs_per_worker must be an integer >= 1, got 0"):
        Scheduler(max_jobs_per_worker=0)
    with pytest.raises(ValueError, match="max_worker_memory"):
        Scheduler(max_worker_memory=-5)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        Scheduler(timeout=0)


def test_a_callback_error_in_background_mode_is_kept_shown_and_raised_by_wait(sched: Scheduler) -> None:
    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        if result == 3:
            raise ValueError("callback failed on 3")

    for i in range(5):
        sched.add_job(remote_call(helpers.add, i))
    sched.start(1, after_stop=after_stop, wait=False)
    eventually(lambda: sched.stats()["error"] is not None, "the callback error to be kept")
    assert sched.stats()["error"] == "ValueError: callback failed on 3"
    with pytest.raises(ValueError, match="callback failed on 3"):
        sched.wait(timeout=TIMEOUT)
    assert sched.n_queued_jobs == 2  # dispatch stopped, nothing lost
    results: list[int] = []
    sched.start(1, after_stop=lambda s, job, result: results.append(result))
    assert sorted(results) == [4, 5]


SCRIPT = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    import helpers
    from jobsched import Scheduler, remote_call
    s = Scheduler()
    for _ in range(4):
        s.add_job(remote_call(helpers.sleep_then, 120))
    s.start(2, wait=False)
    while sum(1 for w in s.workers if w.job is not None) < 2:
        time.sleep(0.05)
    print(" ".join(str(w.pid) for w in s.workers), flush=True)
    s.start(2)   # blocks: Ctrl-C arrives here
''')

# A blocking start() of a stopped scheduler runs the loop in the main thread itself: Ctrl-C must stop it
# between two events, never in the middle of one.
SCRIPT_LOOP_IN_MAIN = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    import helpers
    from jobsched import Scheduler, remote_call
    s = Scheduler()
    for _ in range(4):
        s.add_job(remote_call(helpers.sleep_then, 120))

    def before_start(s, job):
        if job.index == 1:  # the second job is about to go: both workers are up
            print(" ".join(str(w.pid) for w in s.workers), flush=True)

    s.start(2, before_start=before_start)   # blocks in this thread: Ctrl-C arrives here
''')


# close() waits out a grace period for running jobs: Ctrl-C there kills the workers at once.
SCRIPT_CLOSING = SCRIPT.replace("s.start(2)   # blocks: Ctrl-C arrives here",
                                "s.close(timeout=300)   # blocks for the grace period: Ctrl-C arrives here")


@pytest.mark.parametrize("source", [SCRIPT, SCRIPT_LOOP_IN_MAIN, SCRIPT_CLOSING],
                         ids=["background-loop", "loop-in-main-thread", "during-close"])
def test_ctrl_c_in_a_script_ends_it_and_every_worker_exits(tmp_path: Path, source: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(source.format(tests=str(Path(__file__).parent)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        proc.wait(timeout=20)
        assert proc.returncode != 0
        assert "KeyboardInterrupt" in proc.stderr.read()  # type: ignore[union-attr]
        eventually(lambda: not any(psutil.pid_exists(p) for p in pids), "the workers of the interrupted script to exit",
                   timeout=10)
    finally:
        reap(proc)


KERNEL_SETUP = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    import helpers
    from jobsched import Scheduler, remote_call
    s = Scheduler()
    results = []
    for i in range(6):
        s.add_job(remote_call(helpers.log_then_sleep, {log!r}, 0.5, i))
''')


def test_interrupting_a_blocking_start_in_a_kernel_keeps_the_jobs_running(tmp_path: Path) -> None:
    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", startup_timeout=TIMEOUT)
    try:
        log = tmp_path / "starts"
        setup = KERNEL_SETUP.format(tests=str(Path(__file__).parent), log=str(log))
        reply = kc.execute_interactive(setup, timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok"
        msg_id = kc.execute("s.start(2, after_stop=lambda s, job, r: results.append(r))")
        eventually(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, "the first two jobs to start")
        interrupted_at = time.monotonic()
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=30)
        assert time.monotonic() - interrupted_at < 5  # 1 s in the kernel, plus messaging on a loaded machine
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        # The jobs go on in the background; start() again continues; every result exactly once.
        outputs: list[str] = []
        reply = kc.execute_interactive(
            "s.start(2, after_stop=lambda s, job, r: results.append(r)); print(sorted(results))",
            timeout=120, output_hook=lambda m: outputs.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        assert "".join(outputs).strip() == str(list(range(6)))
    finally:
        kc.execute_interactive("s.close()", timeout=TIMEOUT)
        kc.stop_channels()
        km.shutdown_kernel(now=False)


EXIT_SCRIPT = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    import helpers
    from jobsched import Scheduler, remote_call
    s = Scheduler()
    s.start(2, wait=False)
    print(s.submit(helpers.add, 1).result(timeout=60), flush=True)
    busy = s.submit(helpers.sleep_then, 120)     # a long job still running at exit
    # A worker forked from the zygote has its pid once the zygote has booted (the first one is spawned).
    while s.n_active_jobs == 0 or any(w.pid is None for w in s.workers):
        time.sleep(0.01)
    print(" ".join(str(w.pid) for w in s.workers), flush=True)
    # no close(): the interpreter's exit must close the workers
''')


def test_interpreter_exit_closes_every_worker_even_a_busy_one(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(EXIT_SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2"
    pids = [int(p) for p in lines[1].split()]
    assert len(pids) == 2
    eventually(lambda: not any(helpers.is_live(p) for p in pids), "the workers to exit with the interpreter",
               timeout=10)
