"""The ``shared_data`` scenario: one large array read by many jobs, sent once (``put``) vs a tiny argument.

Measured in one child process, jobsched and Dask side by side, on a warm pool:

* ``jobsched_tiny_s`` / ``jobsched_put_s``: ``n`` jobs of ``ends(a)`` (the array's first and last elements:
  proof that the job holds the whole array, without the job's own memory traffic), ``a`` an 8-element array
  vs a handle of the ``size_mb`` array made beforehand; the target is ``ratio`` = put / tiny <= 1.2, what
  sending the array costs the jobs once it was put. A batch of 1,000 trivial jobs lasts only tens of
  milliseconds, so one batch of each says more about the machine's noise than about either: after the ``put``
  the two batches alternate ``PAIRS`` times, and each figure is the median of its batches.
* ``put_s``: the ``put`` itself (the array copied into shared memory once), for a run of any length.
* ``touch_us``: per job, ``touch(a)`` through the handle (one float per page of the array: every page read),
  which is the job's own work, not jobsched's; shown to size the first figure.
* ``pss_copies``: the proportional set size (PSS: shared pages divided among the processes that map them) of
  the scheduler and its workers after the run, above what they held before the array existed, divided by
  the array's size. About 1: the machine holds one copy, whatever the number of workers.
* ``dask_tiny_s`` / ``dask_scatter_s`` / ``dask_ratio`` / ``dask_put_s`` / ``dask_pss_copies``: the same with
  ``client.scatter(a, broadcast=True)`` on a ``LocalCluster`` of as many single-threaded workers.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

PAIRS = 5
"""Batches of each kind, alternating, whose medians are compared."""


def ends(a: Any) -> float:
    """The first and last elements of ``a``: the job has the array, and reads no more of it."""
    return float(a[0] + a[-1])


def touch(a: Any) -> float:
    """Read every page of ``a`` (one float in 512: a page of float64) and return their sum."""
    return float(a[::512].sum())


def pss(pids: list[int]) -> int:
    """The summed PSS of ``pids``, in bytes (/proc/PID/smaps_rollup)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def _jobsched(workers: int, n: int, size: int) -> dict[str, Any]:
    import numpy as np

    from jobsched import Scheduler

    out: dict[str, Any] = {}
    with Scheduler(prefetch="auto", echo_output=False) as sched:
        sched.start(workers, wait=False)
        small = np.zeros(8)
        for f in [sched.submit(ends, small) for _ in range(4 * workers)]:
            f.result()
        pids = [os.getpid(), *(w.pid for w in sched.workers if w.pid is not None)]
        before = pss(pids)
        array = np.ones(size // 8)
        t = time.perf_counter()
        handle = sched.put(array)
        out["put_s"] = time.perf_counter() - t
        del array  # sent once: the caller keeps only the handle
        tiny, through_handle = [], []
        for _ in range(PAIRS):
            t = time.perf_counter()
            for f in [sched.submit(ends, small) for _ in range(n)]:
                f.result()
            tiny.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = [f.result() for f in [sched.submit(ends, handle) for _ in range(n)]]
            through_handle.append(time.perf_counter() - t)
            if got != [2.0] * n:
                raise AssertionError(f"wrong results through the handle: {sorted(set(got))}")
        out["jobsched_tiny_s"] = statistics.median(tiny)
        out["jobsched_put_s"] = statistics.median(through_handle)
        t = time.perf_counter()
        for f in [sched.submit(touch, handle) for _ in range(n // 10)]:
            f.result()
        out["touch_us"] = (time.perf_counter() - t) / (n // 10) * workers * 1e6
        out["pss_copies"] = (pss(pids) - before) / size
        handle.release()
    out["ratio"] = out["jobsched_put_s"] / out["jobsched_tiny_s"]
    return out


def _dask(workers: int, n: int, size: int) -> dict[str, Any]:
    import numpy as np
    from distributed import Client, LocalCluster

    out: dict[str, Any] = {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        small = np.zeros(8)
        client.gather([client.submit(ends, small, pure=False) for _ in range(4 * workers)])
        pids = [os.getpid(), *(int(p) for p in client.run(os.getpid).values())]
        pids += [int(p) for p in client.run(os.getppid).values()]  # the nannies
        before = pss(pids)
        t = time.perf_counter()
        client.gather([client.submit(ends, small, pure=False) for _ in range(n)])
        out["dask_tiny_s"] = time.perf_counter() - t
        array = np.ones(size // 8)
        t = time.perf_counter()
        shared = client.scatter(array, broadcast=True)
        out["dask_put_s"] = time.perf_counter() - t
        del array
        t = time.perf_counter()
        client.gather([client.submit(ends, shared, pure=False) for _ in range(n)])
        out["dask_scatter_s"] = time.perf_counter() - t
        out["dask_pss_copies"] = (pss(pids) - before) / size
        del shared
    out["dask_ratio"] = out["dask_scatter_s"] / out["dask_tiny_s"]
    return out


def shared_data(workers: int, n: int, size_mb: int) -> dict[str, Any]:
    """Run the scenario (see the module docstring) and return its measurements."""
    size = size_mb << 20
    out = {"workers": workers, "n": n, "size_mb": size_mb, **_jobsched(workers, n, size)}
    gc.collect()
    try:
        out.update(_dask(workers, n, size))
    except ImportError as exc:
        out["dask"] = f"not installed: {exc}"
    return out
