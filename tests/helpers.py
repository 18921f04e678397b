"""Picklable, importable functions that tests run in workers (by reference, like a user's module)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any


def add(x: int, y: int = 1) -> int:
    return x + y


def identity(x: Any) -> Any:
    return x


def return_none() -> None:
    return None


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def unpicklable_result() -> Any:
    import threading

    return threading.Lock()  # a lock cannot be pickled, even by cloudpickle


def getpid() -> int:
    return os.getpid()


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def kill_self(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)


def exit_process(code: int) -> None:
    os._exit(code)


def print_lines(n: int, width: int = 100) -> int:
    line = "x" * width
    for i in range(n):
        print(i, line)
    sys.stdout.flush()
    return n


def die_once(marker: str, value: Any) -> Any:
    """Kill the worker the first time (marker file absent), return ``value`` the second time."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def big_bytes(n: int) -> bytes:
    return b"\xab" * n


def append_line(path: str, text: str) -> str:
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def sleep_once(marker: str, seconds: float, value: Any) -> Any:
    """Sleep ``seconds`` the first time (marker file absent), return ``value`` at once the next time."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("slept")
        time.sleep(seconds)
    return value


_hoard: list[bytes] = []


def hoard_memory(n_bytes: int) -> int:
    """Keep ``n_bytes`` alive in this worker (a leak), return the pid."""
    _hoard.append(bytearray(n_bytes))
    return os.getpid()


def wait_for_file(path: str, value: Any = None, timeout: float = 60.0) -> Any:
    """Block until ``path`` exists, then return ``value``: a job that a test lets finish when it wants.

    Holding a job open this way (instead of sleeping) keeps a test right on a loaded machine: the job is
    still running whenever the test looks, however slow everything is. Gives up after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value
