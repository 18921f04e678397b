"""No shared memory outlives its scheduler: a dropped scheduler's segments go when it is collected, at
normal interpreter exit, and at once after a SIGKILL, even before any worker started.

Each case runs a scheduler in a child process and reads ``/dev/shm`` from here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from waiting import TIMEOUT, eventually

from jobsched._data import shm

pytestmark = pytest.mark.skipif(not shm.available(), reason="needs a writable /dev/shm")

PRELUDE = """
import gc, os, sys, time
import jobsched
from jobsched import remote_call

def segments(prefix):
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]

sched = jobsched.Scheduler()
for i in range(3):
    sched.add_job(remote_call(len, bytes(1 << 20)))   # 1 MiB each: through shared memory
prefix = sched._backend.shm.prefix
print(prefix, len(segments(prefix)), flush=True)
"""


def _segments(prefix: str) -> list[str]:
    return [name for name in os.listdir(shm.SHM_DIR) if name.startswith(prefix)]


def _child(body: str) -> subprocess.Popen[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _first_line(proc: subprocess.Popen[str]) -> tuple[str, int]:
    assert proc.stdout is not None
    prefix, count = proc.stdout.readline().split()
    return prefix, int(count)


def test_a_dropped_scheduler_removes_its_segments_when_collected() -> None:
    proc = _child("""
        del sched
        gc.collect()
        print(len(segments(prefix)), flush=True)
    """)
    try:
        prefix, before = _first_line(proc)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert before == 3, err
    assert out.split() == ["0"], err  # gone while the process still runs
    assert proc.returncode == 0, err
    assert _segments(prefix) == []


def test_a_scheduler_left_open_removes_its_segments_at_normal_exit() -> None:
    proc = _child("""
        gc.disable()  # nothing collected before exit: only the exit can clean up
        del sched
    """)
    prefix, before = _first_line(proc)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert before == 3 and proc.returncode == 0, err
    assert _segments(prefix) == []


def test_a_sigkilled_scheduler_leaves_no_segment_even_before_any_worker_started() -> None:
    proc = _child("""
        time.sleep(120)
    """)
    try:
        prefix, before = _first_line(proc)
        assert before == 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        eventually(lambda: _segments(prefix) == [], "the reaper to remove the segments")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate(timeout=TIMEOUT)
