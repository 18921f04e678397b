"""Jobs that a test stops while they run: each says where it is, and leaves a side effect if it gets to the end.

They travel by reference (this module is importable in the workers), like a user's module. Each one writes
``started`` (a JSON record of its pid and of any process it started) before its cancel point, then does its
slow part, then writes ``effect``: a test that stops the job proves that ``effect`` never appears.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time


def _started(path: str, **extra: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), **extra}, f)
    os.replace(tmp, path)  # the test never reads half a record


def _effect(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"written by {os.getpid()}\n")


def sleep_then_write(started: str, effect: str, seconds: float) -> str:
    """Sleep ``seconds`` after the cancel point, then write ``effect``."""
    _started(started)
    time.sleep(seconds)
    _effect(effect)
    return "finished"


def compute_then_write(started: str, effect: str, n: int) -> str:
    """Sum ``n`` ones in one C call that never releases the GIL, then write ``effect``."""
    _started(started)
    total = sum(itertools.repeat(1, n))
    _effect(effect)
    return f"summed {total}"


def child_then_write(started: str, effect: str, seconds: float) -> str:
    """Start ``sleep 60`` (recording its pid), sleep ``seconds``, then write ``effect``."""
    child = subprocess.Popen(["sleep", "60"])
    _started(started, child=child.pid)
    time.sleep(seconds)
    _effect(effect)
    child.kill()
    child.wait()
    return "finished"


def grandchild_then_sleep(started: str, seconds: float) -> str:
    """Start ``sleep 60`` (recording its pid), then sleep: the job's own process outlives it unless killed."""
    child = subprocess.Popen(["sleep", "60"])
    _started(started, child=child.pid)
    time.sleep(seconds)
    child.kill()
    child.wait()
    return "finished"


def sleep_then_return(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value
