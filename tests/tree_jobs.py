"""Jobs that start a process outside their worker's process group, which writes its pid to a file and sleeps.

They travel by reference (this module is importable in the workers), like a user's module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

# The grandchild: write our pid (atomically), then sleep far longer than any test.
_SLEEPER = ("import os, sys, time\n"
            "tmp = sys.argv[1] + '.tmp'\n"
            "open(tmp, 'w').write(str(os.getpid()))\n"
            "os.replace(tmp, sys.argv[1])\n"
            "time.sleep(600)\n")

# A daemon: fork, setsid, fork again; the intermediate processes exit, so the sleeper is an orphan.
_DAEMON = ("import os, sys\n"
           "if os.fork(): os._exit(0)\n"
           "os.setsid()\n"
           "if os.fork(): os._exit(0)\n"
           f"exec({_SLEEPER!r})\n")


def start_grandchild(pid_file: str, how: str) -> None:
    """Start a process that leaves this process's group: ``setsid`` (its own session), ``bare`` (the same, with an
    empty environment) or ``daemon``."""
    if how == "setsid":
        subprocess.Popen([sys.executable, "-c", _SLEEPER, pid_file], start_new_session=True)
    elif how == "bare":  # and an environment of its own, without the worker's variables
        subprocess.Popen([sys.executable, "-c", _SLEEPER, pid_file], start_new_session=True, env={})
    elif how == "daemon":
        subprocess.run([sys.executable, "-c", _DAEMON, pid_file], check=True, timeout=60)
    else:
        raise ValueError(f"unknown way to start a grandchild: {how!r}")


def grandchild_then_sleep(pid_file: str, how: str, seconds: float) -> str:
    """Start a grandchild outside our group, then sleep ``seconds`` (until cancelled or timed out)."""
    start_grandchild(pid_file, how)
    time.sleep(seconds)
    return "finished"


def grandchild_and_return(pid_file: str, how: str) -> int:
    """Start a grandchild outside our group and return at once, leaving it running."""
    start_grandchild(pid_file, how)
    return os.getpid()
