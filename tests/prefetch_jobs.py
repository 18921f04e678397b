"""Jobs for tests/test_prefetch.py, importable by the workers (the tests folder is on their path)."""

from __future__ import annotations

import os
import time


def runs(folder: str, i: int) -> int:
    """How many times job ``i`` has started."""
    try:
        with open(os.path.join(folder, str(i))) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def record(folder: str, i: int, hold_first_run: float = 0.0) -> int:
    """Append this run of job ``i`` to ``folder/i`` (to count runs); its first run holds ``hold_first_run`` s."""
    first = runs(folder, i) == 0
    with open(os.path.join(folder, str(i)), "a") as f:
        f.write(f"{os.getpid()}\n")
    if first and hold_first_run:
        time.sleep(hold_first_run)
    return i
