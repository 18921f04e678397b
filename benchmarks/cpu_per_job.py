"""CPU time per job, one job at a time: what the scheduler's process and its worker spend on each round trip.

Wall-clock round trips of tiny jobs swing by 10-15 % between runs on a small shared machine; CPU time per job
moves much less, so it is the figure to compare two versions by::

    python benchmarks/cpu_per_job.py                               # the jobsched that is imported
    PYTHONPATH=/path/to/other/checkout python benchmarks/cpu_per_job.py

One scheduler, one worker, ``x + 1`` and a 1 KiB float64 array (``numpy.asarray``, if numpy is installed)
submitted and waited for one at a time; ``--rounds`` blocks of ``--jobs`` round trips alternate between the
two values, and the medians of the blocks are printed: the scheduler process's user and system CPU
(``getrusage``) and the worker's (``/proc/<pid>/stat``, Linux), in microseconds per job.
"""

from __future__ import annotations

import argparse
import operator
import os
import resource
import statistics
import sys
from typing import Any


def _worker_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000, help="round trips per block (default 4000)")
    parser.add_argument("--rounds", type=int, default=5, help="blocks per value (default 5)")
    args = parser.parse_args()

    import jobsched

    calls: dict[str, tuple[Any, ...]] = {"x + 1": (operator.add, 1, 1)}
    try:
        import numpy

        calls["1 KiB array"] = (numpy.asarray, numpy.arange(128.0))
    except ImportError:
        pass
    sched = jobsched.Scheduler()
    sched.start(1, wait=False)
    try:
        for call in calls.values():
            for _ in range(300):  # warm: the worker's imports, the allocator, the socket buffers
                sched.submit(*call).result(60)
        pid = sched.workers[0].pid
        assert pid is not None
        blocks: dict[str, list[tuple[float, float, float]]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                before, worker_before = resource.getrusage(resource.RUSAGE_SELF), _worker_cpu(pid)
                for _ in range(args.jobs):
                    sched.submit(*call).result(60)
                after, worker_after = resource.getrusage(resource.RUSAGE_SELF), _worker_cpu(pid)
                n = args.jobs / 1e6
                blocks[name].append(((after.ru_utime - before.ru_utime) / n, (after.ru_stime - before.ru_stime) / n,
                                     (worker_after - worker_before) / n))
    finally:
        sched.close()
    print(f"jobsched from {os.path.dirname(jobsched.__file__)}, Python {sys.version.split()[0]}; "
          f"medians of {args.rounds} blocks of {args.jobs} round trips, CPU µs per job")
    for name, rows in blocks.items():
        user, system, worker = (statistics.median(r[i] for r in rows) for i in range(3))
        print(f"  {name:12s} scheduler user {user:6.1f}  system {system:6.1f}  worker {worker:6.1f}  "
              f"total {user + system + worker:6.1f}")


if __name__ == "__main__":
    main()
