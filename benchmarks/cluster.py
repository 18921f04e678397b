"""The ``cluster`` scenario: tiny jobs on a 2-process ``LocalCluster``, resident vs per-task vs Dask itself.

Measured in one child process, on one cluster, one after the other:

* ``resident_jobs_per_s`` / ``resident_rt_us``: ``DaskBackend(client, resident=True)``, ``prefetch="auto"``:
  ``n`` trivial jobs submitted at once (jobs/s), then the median round trip of one job, submit to result;
* ``pertask_jobs_per_s`` / ``pertask_rt_us``: ``DaskBackend(client)``, one Dask task per job (``n_task`` jobs:
  Dask's per-task cost makes a large ``n`` take minutes);
* ``dask_jobs_per_s`` / ``dask_rt_us``: Dask's own ``client.submit`` of the same function (``n_task`` tasks);
* ``speedup`` = resident / per-task jobs/s. Targets: resident >= 10,000 jobs/s and speedup >= 15.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def inc(x: int) -> int:
    return x + 1


def _jobsched(client: Any, resident: bool, workers: int, n: int, rt_n: int) -> tuple[float, float]:
    from jobsched import Scheduler
    from jobsched.dask import DaskBackend

    prefetch: Any = "auto" if resident else 1
    with Scheduler(backend=DaskBackend(client, resident=resident), prefetch=prefetch, echo_output=False) as sched:
        sched.start(workers, wait=False)
        for f in [sched.submit(inc, i) for i in range(4 * workers)]:  # warm: every worker has connected
            f.result(timeout=120)
        t = time.perf_counter()
        futures = [sched.submit(inc, i) for i in range(n)]
        assert [f.result(timeout=600) for f in futures] == [i + 1 for i in range(n)]
        rate = n / (time.perf_counter() - t)
        trips = []
        for i in range(rt_n):
            t = time.perf_counter()
            sched.submit(inc, i).result(timeout=60)
            trips.append(time.perf_counter() - t)
    return rate, statistics.median(trips) * 1e6


def _dask(client: Any, n: int, rt_n: int) -> tuple[float, float]:
    client.gather([client.submit(inc, i, pure=False) for i in range(20)])
    t = time.perf_counter()
    assert client.gather([client.submit(inc, i, pure=False) for i in range(n)]) == [i + 1 for i in range(n)]
    rate = n / (time.perf_counter() - t)
    trips = []
    for i in range(rt_n):
        t = time.perf_counter()
        client.submit(inc, i, pure=False).result(timeout=60)
        trips.append(time.perf_counter() - t)
    return rate, statistics.median(trips) * 1e6


def cluster(workers: int, n: int, n_task: int, rt_n: int) -> dict[str, Any]:
    """Run the scenario (see the module docstring) and return its measurements."""
    from distributed import Client, LocalCluster

    out: dict[str, Any] = {"workers": workers, "n": n, "n_task": n_task, "rt_n": rt_n}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        client.wait_for_workers(workers, timeout=120)
        out["resident_jobs_per_s"], out["resident_rt_us"] = _jobsched(client, True, workers, n, rt_n)
        out["pertask_jobs_per_s"], out["pertask_rt_us"] = _jobsched(client, False, workers, n_task, rt_n)
        out["dask_jobs_per_s"], out["dask_rt_us"] = _dask(client, n_task, rt_n)
    out["speedup"] = out["resident_jobs_per_s"] / out["pertask_jobs_per_s"]
    return out
