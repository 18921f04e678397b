"""A worker's process tree: the processes its jobs started, even those that left its process group.

A worker leads its own process group, and one signal to the group reaches every process a job started
(``processes.signal_group``) - but not one that started a session of its own (``setsid``,
``start_new_session=True``, a double fork, a daemon): it is in another group. Two steps catch those:

1. Each worker makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux 3.4+, once at its
   start). An orphan among its descendants - the daemon whose parent exited - is then re-parented to the
   worker instead of to init, so while the worker lives, every process its jobs started is in its subtree
   (found through ``/proc/PID/stat``'s parent field).
2. Whoever kills a worker while it lives (the scheduler: cancel, timeout, retire, close) first freezes its
   group (SIGSTOP), walks the subtree, stops what it finds outside the group until nothing new appears
   (a stopped process cannot fork, nor reap, so no pid in the list can be reused), then SIGKILLs those
   and signals the group as before. A worker that ends by itself (``close()``) does the same to its own
   leftovers before it exits.

An orphan that exits stays a zombie of the worker (a pid, no memory) until the worker ends: reaping it would
take a ``waitpid`` per job, which could also steal the exit status of a process a job still waits for.

Cost: one ``prctl`` per worker start, and a scan of ``/proc`` per worker kill; nothing per job.
Not covered: a worker killed from outside (the OOM killer, ``kill -9``) or a scheduler's process that is
SIGKILLed takes the subtree's links with it: the processes still in the worker's group die (the group is
killed, by the scheduler or its reaper), those that left it are re-parented to init. A cgroup would cover
those too, but needs a writable cgroup v2 delegation, which most machines and containers do not give a user.

Imports only the standard library: the worker loads this module.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
_ROUNDS = 50  # a subtree that still grows after this many stop-and-walk rounds is a fork bomb: kill what we have


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        return bool(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, tuple[int, int]]:
    """Map each live pid to (parent pid, process group id), from ``/proc``; zombies are left out."""
    found: dict[int, tuple[int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # exited while we looked
            continue
        # "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses; it ends at the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[:1] == [b"Z"]:  # exited, waiting for its parent to reap it: nothing left to kill
            continue
        try:
            found[int(name)] = (int(fields[1]), int(fields[2]))
        except (IndexError, ValueError):
            continue
    return found


def strays(root: int) -> list[int]:
    """Return the descendants of ``root`` that are outside its process group (they called ``setsid``)."""
    table = _parents()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgid) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if table[pid][1] != root:
            out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:  # gone already
        pass


def kill_strays(root: int, freeze_group: bool) -> list[int]:
    """SIGKILL every descendant of ``root`` outside its process group; return their pids.

    ``root`` must be alive or an unreaped zombie, or its pid could name another process. With
    ``freeze_group`` (the caller signals the group next, and SIGCONTs it if that signal is not SIGKILL), the
    group is stopped first so that no one in it forks while we look; what is found is stopped too, until a
    walk finds nothing new.
    """
    if freeze_group:
        try:
            os.killpg(root, signal.SIGSTOP)
        except OSError:
            pass
    stopped: set[int] = set()
    for _ in range(_ROUNDS):
        new = [pid for pid in strays(root) if pid not in stopped]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    return sorted(stopped)
