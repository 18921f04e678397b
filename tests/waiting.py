"""Waiting in tests: poll a condition with a bound, never sleep a fixed time and hope."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil
import pytest

TIMEOUT = 60.0  # generous: the machine is shared and loaded


def eventually(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(0.02)


def gone(proc: psutil.Process) -> bool:
    """The process has exited (a zombie has too); ``psutil.Process`` guards against a reused pid."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def reap(proc: subprocess.Popen[Any], strays: Iterable[psutil.Process] = ()) -> None:
    """A test's end: kill ``proc`` if it still runs, wait for it, close its pipes, and kill ``strays``.

    ``strays`` are processes that are not the test's children (a killed scheduler's workers and zygote): the
    autouse leak check cannot see them, so the test that made them kills them.
    """
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    for p in strays:
        if not gone(p):
            try:
                p.kill()
            except psutil.Error:
                pass
