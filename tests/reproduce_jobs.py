"""Jobs for tests/test_reproduce.py: random draws, errors on demand, memory hogs, deaths on demand."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import numpy as np  # at the top: imported when a worker loads this module, before the job's seed applies

import jobsched


def draws(i: int) -> tuple[int, list[float], int]:
    """Return ``i``, three draws of ``random`` and the job's seed."""
    return i, [random.random() for _ in range(3)], jobsched.job_seed()


def numpy_draws(i: int) -> tuple[int, list[float], list[float]]:
    """Return ``i``, three draws of numpy's global state and three of ``job_rng()``."""
    return i, np.random.random(3).tolist(), jobsched.job_rng().random(3).tolist()


def draws_after_dying_once(marker: str, i: int) -> tuple[int, list[float], list[float]]:
    """Kill this worker with SIGKILL on the first run (``marker`` is created), then return three draws of
    ``random`` and three of numpy's global state."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return i, [random.random() for _ in range(3)], np.random.random(3).tolist()


def slow_draws(i: int) -> tuple[int, list[float], list[float], list[float]]:
    """Sleep 0.2 s, then return ``i`` and three draws each of ``random``, numpy's global state and ``job_rng()``."""
    time.sleep(0.2)
    return (i, [random.random() for _ in range(3)], np.random.random(3).tolist(),
            jobsched.job_rng().random(3).tolist())


def count_run(log: str) -> int:
    """Append a line to ``log``; return how many runs it holds now."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x\n")
    finally:
        os.close(fd)
    with open(log) as f:
        return sum(1 for _ in f)


def fails_until(log: str, n: int, exc_type: type[BaseException] = ConnectionResetError) -> int:
    """Raise ``exc_type`` on the first ``n - 1`` runs (counted in ``log``); return the run count then."""
    run = count_run(log)
    if run < n:
        raise exc_type(f"run {run} of {n}")
    return run


def allocate(n_bytes: int) -> int:
    """Allocate ``n_bytes`` and touch them; return the pid of the worker."""
    block = bytearray(n_bytes)
    block[::4096] = b"\1" * len(range(0, n_bytes, 4096))
    return os.getpid()


def pid() -> int:
    return os.getpid()


def numpy_imported() -> bool:
    return "numpy" in sys.modules


def draw_then_fail(i: int) -> float:
    """Draw a number, then raise ValueError showing it (and the job's seed) when ``i`` is odd."""
    drawn = random.random()
    if i % 2:
        raise ValueError(f"job {i} drew {drawn!r} with seed {jobsched.job_seed()} in {os.getcwd()}")
    return drawn


def fails_then_waits(log: str, n: int, release: str) -> int:
    """Raise ``ConnectionResetError`` on the first ``n - 1`` runs; then wait (60 s at most) for the file
    ``release``, and return the run count."""
    run = count_run(log)
    if run < n:
        raise ConnectionResetError(f"run {run} of {n}")
    for _ in range(6000):
        if os.path.exists(release):
            break
        time.sleep(0.01)
    return run
