"""Jobs for tests/test_resume.py: each run leaves a line in a log file, so a test can count the runs."""

from __future__ import annotations

import os
import time


def logged(log: str, i: int, seconds: float = 0.0) -> int:
    """Append ``i`` to ``log`` (one atomic write), sleep ``seconds``, return ``i * i``."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    if seconds:
        time.sleep(seconds)
    return i * i


def fails_without(log: str, marker: str, i: int) -> int:
    """Log the run; raise ValueError unless the file ``marker`` exists."""
    logged(log, i)
    if not os.path.exists(marker):
        raise ValueError(f"no {marker}")
    return i


def runs(log: str) -> list[int]:
    """The job numbers logged so far, in order."""
    try:
        with open(log) as f:
            return [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


class Logger:
    """Jobs as bound methods: ``Logger(log).run`` logs like ``logged``."""

    def __init__(self, log: str) -> None:
        self.log = log

    def run(self, i: int) -> int:
        return logged(self.log, i)
