"""Jobs for tests/test_zygote.py: what a worker process looks like from inside (importable by workers)."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from typing import Any


def describe_process(seconds: float = 0.0) -> dict[str, Any]:
    """What a spawned and a forked worker must agree on (pids aside); busy ``seconds`` after looking."""
    main = sys.modules["__main__"]
    streams = {name: (s.line_buffering, s.write_through, s.encoding, s.errors)
               for name, s in (("stdout", sys.stdout), ("stderr", sys.stderr))}
    seen = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "session_leader": os.getsid(0) == os.getpid(),
        "group_leader": os.getpgid(0) == os.getpid(),
        # The fds a job finds: 0-2 and the worker's own (its connection, the watchdog's copy of stdin).
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "fd_kinds": sorted(_kind(int(fd)) for fd in os.listdir("/proc/self/fd")),
        "sys_path": list(sys.path),
        "argv": list(sys.argv),
        "orig_argv": list(sys.orig_argv),
        "main": (main.__name__, getattr(main, "__file__", None), getattr(main.__spec__, "name", None)),
        "mp_main_is_main": sys.modules.get("__mp_main__") is main,
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "streams": streams,
        "signals": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGTERM,
                                                         signal.SIGCHLD)],
        "cmdline": [a for a in _read("/proc/self/cmdline").split("\0") if a],
        "notebook_stack": sorted({"IPython", "ipywidgets", "ipykernel"} & sys.modules.keys()),
        "modules": sorted(sys.modules),
    }
    time.sleep(seconds)  # the next job goes to another worker
    return seen


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode()


def _kind(fd: int) -> str:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "gone"  # the fd of listdir itself
    return target.split(":")[0] if ":" in target else "file"


def draw(seconds: float = 0.0, numpy: bool = False) -> tuple[int, float, int, float | None]:
    """This worker's pid and its next random numbers: forked workers must not share a random state."""
    x, bits = random.random(), random.getrandbits(64)
    y = None
    if numpy:
        import numpy as np

        y = float(np.random.random())
    time.sleep(seconds)  # the next job goes to another worker
    return os.getpid(), x, bits, y


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def die_if_forked(scheduler_pid: int, how: str) -> str:
    """Kill this worker (``how``: a function of helpers) if a zygote forked it; a spawned one answers."""
    if os.getppid() == scheduler_pid:
        time.sleep(0.1)  # busy: the next job goes to the other worker
        return "spawned"
    import helpers

    getattr(helpers, how)(*{"exit_process": (3,), "kill_self": (signal.SIGKILL,)}.get(how, ()))
    return "survived"
