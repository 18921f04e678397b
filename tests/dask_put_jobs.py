"""Jobs for tests/test_dask_put.py: count, in each worker process, how often shared data is unpickled."""

from __future__ import annotations

import os
import sys
from typing import Any

UNPICKLED: dict[str, int] = {}  # tag -> times an object with that tag was unpickled in this process


class Counted:
    """A payload whose every unpickling this process counts (``UNPICKLED``)."""

    def __init__(self, tag: str, payload: bytes) -> None:
        self.tag = tag
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self.tag, self.payload)


def _rebuild(tag: str, payload: bytes) -> Counted:
    UNPICKLED[tag] = UNPICKLED.get(tag, 0) + 1
    return Counted(tag, payload)


def read(config: dict[str, Any]) -> tuple[int, int, int]:
    """This process's pid, how often it unpickled the object, and the size of the payload it got."""
    counted = config["data"]
    return os.getpid(), UNPICKLED.get(counted.tag, 0), len(counted.payload)


def n_cached() -> int:
    """How many handles' objects this worker keeps."""
    handles = sys.modules.get("jobsched._data.handles")
    return 0 if handles is None else len(handles._cache)


def length_plus(value: Any, i: int) -> int:
    return len(value) + i
