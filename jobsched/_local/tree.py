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

3. Every worker starts with ``JOBSCHED_TREE=TAG.INDEX.GENERATION`` in its environment (TAG names its
   scheduler), which every process its jobs start inherits unless it is given an environment of its own.
   When a worker exits without being told to (the OOM killer, ``kill -9``, a crash), the scheduler kills the
   processes that carry its value (``kill_tagged``, a read of each ``/proc/PID/environ``); when the
   scheduler's process dies, its reaper kills those that carry its TAG.
4. The zygote that forks the workers (``_local.zygote_process``) is a child subreaper too. A worker that dies
   however it dies - the OOM killer, ``kill -9``, a crash - hands its orphans to the zygote, which kills
   every child of its own that is not a worker, with its subtree (``kill_tree``). When the scheduler's process
   dies, even by SIGKILL, the zygote is told (its end of the control pair closes, and the kernel sends it
   SIGTERM): it freezes and kills its whole tree, workers and what their jobs started, before it exits.

Cost: one ``prctl`` per worker start, and a scan of ``/proc`` per worker kill or unexpected death; nothing
per job. Not covered: a process that left its worker's group *and* was given an environment without
``JOBSCHED_TREE``, when its worker was spawned rather than forked from the zygote (the first workers of a cold
start, ``JOBSCHED_ZYGOTE=0``, a worker command of the user's), and that worker is killed from outside or the
scheduler's process is SIGKILLed: it is re-parented to init, and nothing marks it as the job's. (The scheduler
does not make the user's process a subreaper: it would inherit every orphan of the user's other children.) A
cgroup would cover it, but needs a writable cgroup v2 delegation, which most machines and containers do not
give a user.

Imports only the standard library: the worker loads this module.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
ENV_TAG = "JOBSCHED_TREE"  # TAG.INDEX.GENERATION: which scheduler's which worker a process was started under
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


def _each_process(entry: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(pid, contents of /proc/PID/entry)`` for each process we may read (one that exits meanwhile, or
    another user's, is skipped)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/{entry}", "rb") as f:
                yield int(name), f.read()
        except OSError:
            continue


def _parents(zombies: bool = False) -> dict[int, tuple[int, int]]:
    """Map each pid to (parent pid, process group id), from ``/proc``; zombies are left out unless asked for."""
    found: dict[int, tuple[int, int]] = {}
    for pid, stat in _each_process("stat"):
        # "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses; it ends at the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[:1] == [b"Z"] and not zombies:  # exited, waiting for its parent to reap it: nothing to kill
            continue
        try:
            found[pid] = (int(fields[1]), int(fields[2]))
        except (IndexError, ValueError):
            continue
    return found


def children(parent: int) -> list[int]:
    """Return the pids whose parent is ``parent``, zombies included (they wait for ``parent`` to reap them)."""
    return [pid for pid, (ppid, _pgid) in _parents(zombies=True).items() if ppid == parent]


def descendants(root: int, outside_group: bool = False) -> list[int]:
    """Return the live descendants of ``root``; with ``outside_group``, only those outside its process group
    (they called ``setsid``)."""
    table = _parents()
    below: dict[int, list[int]] = {}
    for pid, (ppid, _pgid) in table.items():
        below.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = list(below.get(root, ()))
    while todo:
        pid = todo.pop()
        if not outside_group or table[pid][1] != root:
            out.append(pid)
        todo.extend(below.get(pid, ()))
    return out


def strays(root: int) -> list[int]:
    """Return the descendants of ``root`` that are outside its process group (they called ``setsid``)."""
    return descendants(root, outside_group=True)


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
    return _stop_then_kill(lambda: strays(root))


def kill_tree(root: int) -> list[int]:
    """SIGKILL ``root`` and all its descendants, stopped first so that none forks meanwhile; return their pids.

    As for ``kill_strays``, ``root`` must be our child (alive or an unreaped zombie).
    """
    return _stop_then_kill(lambda: [root, *descendants(root)])


def kill_descendants(root: int) -> list[int]:
    """SIGKILL every descendant of ``root`` (this process, say), stopped first; return their pids."""
    return _stop_then_kill(lambda: descendants(root))


def tagged(value: str) -> list[int]:
    """Return the pids (not this process's) whose environment holds ``JOBSCHED_TREE=value`` exactly."""
    needle = f"\0{ENV_TAG}={value}\0".encode()
    me = os.getpid()
    return [pid for pid, environ in _each_process("environ") if pid != me and needle in b"\0" + environ + b"\0"]


def kill_tagged(value: str) -> list[int]:
    """SIGKILL every process started under the worker whose ``JOBSCHED_TREE`` is ``value``, stopped first."""
    return _stop_then_kill(lambda: tagged(value))


def _stop_then_kill(find: Callable[[], list[int]]) -> list[int]:
    """SIGSTOP what ``find`` lists until it lists nothing new (a stopped process can neither fork nor reap, so
    no pid found can be reused meanwhile), then SIGKILL them all."""
    stopped: set[int] = set()
    for _ in range(_ROUNDS):
        new = [pid for pid in find() if pid not in stopped]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    return sorted(stopped)
