"""Waiting in tests: poll a condition with a bound, never sleep a fixed time and hope."""

from __future__ import annotations

import time
from collections.abc import Callable

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
