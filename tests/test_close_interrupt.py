"""Ctrl-C while a script's ``with Scheduler()`` / ``with Executor()`` waits for busy workers: one line, then a
second Ctrl-C stops them now.

A real script in a subprocess, real SIGINTs, assertions on its stderr and on how long it took.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from waiting import TIMEOUT, eventually, reap

ROOT = Path(__file__).resolve().parent.parent

SCHEDULER_SCRIPT = """
import sys, time
from jobsched import Scheduler
with Scheduler() as s:
    s.start(2, wait=False)
    futures = [s.submit(time.sleep, 120) for _ in range(2)]
    while not all(f.running() for f in futures):
        time.sleep(0.02)
    print("running", flush=True)
    futures[0].result()
"""

EXECUTOR_SCRIPT = """
import time
from jobsched import Executor
with Executor(max_workers=2) as ex:
    futures = [ex.submit(time.sleep, 120) for _ in range(3)]
    while sum(f.running() for f in futures) < 2:
        time.sleep(0.02)
    print("running", flush=True)
    futures[0].result()
"""


def run_and_interrupt(tmp_path: Path, script: str) -> tuple[list[str], float, float]:
    """Run ``script``; Ctrl-C once it runs its jobs, again once it says it waits. Return its stderr lines,
    the seconds from the first Ctrl-C to its message, and from the second Ctrl-C to its exit."""
    err = tmp_path / "stderr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(err, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=err_file,
                                env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"running\n"
        first = time.monotonic()
        proc.send_signal(signal.SIGINT)
        eventually(lambda: b"press Ctrl-C again" in err.read_bytes(), "the line saying what close() waits for",
                   timeout=TIMEOUT)
        told = time.monotonic() - first
        second = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=TIMEOUT)
        stopped = time.monotonic() - second
    finally:
        reap(proc)
    return err.read_text().splitlines(), told, stopped


def test_ctrl_c_in_a_with_scheduler_block_says_what_close_waits_for_and_a_second_one_stops_now(
        tmp_path: Path) -> None:
    """The first Ctrl-C prints one line naming the running jobs and the grace; the second kills them at once."""
    lines, told, stopped = run_and_interrupt(tmp_path, SCHEDULER_SCRIPT)
    waiting = [line for line in lines if line.startswith("jobsched: waiting")]
    assert waiting == ["jobsched: waiting up to 10 s for 2 running jobs to finish; "
                       "press Ctrl-C again to stop them now"], lines
    assert lines[0] == waiting[0], f"nothing may come before the line (no traceback first): {lines}"
    assert told < 8.0 and stopped < 8.0, (told, stopped)  # the close grace is 10 s: neither waited for it


def test_ctrl_c_in_a_with_executor_block_says_what_it_waits_for_and_a_second_one_stops_now(
        tmp_path: Path) -> None:
    """Leaving ``with Executor()`` by Ctrl-C says which calls it waits for; a second Ctrl-C stops them."""
    lines, _told, stopped = run_and_interrupt(tmp_path, EXECUTOR_SCRIPT)
    waiting = [line for line in lines if line.startswith("jobsched: waiting")]
    assert len(waiting) == 1, lines
    counts = re.search(r"\((\d+) queued, (\d+) running\)", waiting[0])
    assert counts is not None and int(counts[1]) + int(counts[2]) == 3, waiting[0]  # a job sent ahead counts as running
    assert waiting[0].endswith("press Ctrl-C again to stop them now"), waiting[0]
    assert lines[0] == waiting[0], f"nothing may come before the line (no traceback first): {lines}"
    assert stopped < 30.0, stopped  # the calls sleep for 120 s


