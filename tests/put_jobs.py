"""Jobs for tests/test_put.py: what a worker sees of data sent once (importable by workers)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def describe(config: dict[str, Any]) -> tuple[int, int, float, bool]:
    """The worker's pid, the identity of the array it got, its sum and whether it may write to it."""
    array = config["data"][0]
    return os.getpid(), id(array), float(array.sum()), bool(array.flags.writeable)


def n_cached() -> int:
    """How many handles' objects this worker keeps."""
    handles = sys.modules.get("jobsched._data.handles")
    return 0 if handles is None else len(handles._cache)


def length_after(value: Any, seconds: float) -> int:
    time.sleep(seconds)
    return len(value)


def length(value: Any) -> int:
    return len(value)
