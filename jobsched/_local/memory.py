"""Naming a worker that the kernel's OOM killer chose, apart from one that we killed.

A process the OOM killer ends dies of SIGKILL, like one killed by a user, a timeout or a cancel. What tells
them apart: we did not signal it, and the OOM-kill counter of the cgroup we run in went up while it lived
(cgroup v2: ``memory.events``, ``oom_kill N``; v1: ``memory.oom_control``). Where neither file is readable,
a SIGKILL nobody sent is named as a possible OOM kill, with the worker's last measured resident memory.
"""

from __future__ import annotations

import signal

_CGROUP_FILES = ("memory.events", "memory.oom_control")


def cgroup_dirs(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> list[str]:
    """The folders where this process's memory cgroup counters may live (v2 first, then v1)."""
    dirs: list[str] = []
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return dirs
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            dirs.append(root + path.rstrip("/"))
        elif "memory" in controllers.split(","):
            dirs.append(f"{root}/memory{path.rstrip('/')}")
            dirs.append(f"{root}/memory")
    return dirs


def oom_kills(dirs: list[str] | None = None) -> int | None:
    """The number of OOM kills counted in our cgroup so far, or None if no counter is readable."""
    for folder in cgroup_dirs() if dirs is None else dirs:
        for name in _CGROUP_FILES:
            try:
                with open(f"{folder}/{name}") as f:
                    for line in f:
                        field, _, value = line.partition(" ")
                        if field == "oom_kill":
                            return int(value)
            except (OSError, ValueError):
                continue
    return None


def describe_oom(returncode: int | None, signalled: bool, kills_before: int | None, kills_after: int | None,
                 last_rss: int | None) -> str | None:
    """Say how a worker ended if the OOM killer may have chosen it, else None.

    Args:
        returncode: its exit status (``-9``: SIGKILL).
        signalled: we signalled it (a cancel, a timeout, close): never an OOM kill.
        kills_before, kills_after: the cgroup's OOM-kill counter when it started and when it ended (None:
            not readable).
        last_rss: its resident memory when last measured, in bytes.
    """
    if returncode != -signal.SIGKILL or signalled:
        return None
    rss = f"; last measured RSS {last_rss / 2**20:.0f} MiB" if last_rss else ""
    if kills_before is not None and kills_after is not None:
        if kills_after > kills_before:
            return f"killed by the kernel's OOM killer (SIGKILL, out of memory{rss})"
        return None
    return f"killed by signal SIGKILL, sent by no one in jobsched: maybe the kernel's OOM killer{rss}"
