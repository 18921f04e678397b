"""Jobs for tests/test_shm.py (importable, so they travel by reference)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def describe(x: Any) -> tuple[str, bool, bool]:
    """Return the argument's type, whether it is backed by memory it does not own (a mapped segment), and
    whether this worker accepts segments at all."""
    from jobsched._data import shm as _shm

    return type(x).__name__, is_mapped(x), _shm._peer_prefix is not None


def is_mapped(x: Any) -> bool:
    """Whether an array's memory is a mapped segment (its base chain ends in an mmap)."""
    import mmap

    while getattr(x, "base", None) is not None:
        x = x.base
    if isinstance(x, memoryview):
        x = x.obj
    return isinstance(x, mmap.mmap)


def double(x: Any) -> Any:
    return x * 2


def identity(x: Any) -> Any:
    return x


def sleep_with(x: Any, seconds: float) -> int:
    time.sleep(seconds)
    return len(x)


def leave_segment_and_die() -> None:
    """Start a result segment the way a worker does, then die before sending it."""
    from jobsched._data import shm as _shm

    assert _shm._result_prefix is not None
    fd = os.open(os.path.join(_shm.SHM_DIR, _shm._result_prefix + os.urandom(16).hex()),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"x" * 4096)
    os.kill(os.getpid(), signal.SIGKILL)


def write_one(x: Any, i: int, value: float) -> Any:
    """Change one element of the argument in place and return the argument."""
    x[i] = value
    return x


def head(x: Any, n: int) -> Any:
    """A slice of the argument: a view of its memory."""
    return x[:n]


_kept: list[Any] = []


def keep(x: Any) -> Any:
    """Keep the argument in this worker after the job (as a cache would), and return it."""
    _kept.append(x)
    return x


def first_of_kept() -> float:
    return float(_kept[-1][0])


def halves(x: Any) -> tuple[Any, Any]:
    """Two views of the argument, each large enough for a segment of its own."""
    h = len(x) // 2
    return x[:h], x[h:]
