"""What ``Scheduler(seed=S)`` costs per job, in microseconds, with and without a seed::

    python benchmarks/seeding.py              # about 5 seconds
    python benchmarks/seeding.py --jobs 2000  # a quick check

In the worker: what runs before each job (``jobsched.worker.seeding.apply`` and ``loaded``), first with
numpy not imported (only ``random`` is seeded), then with numpy imported (its legacy global state too),
against a job without a seed. In the scheduler's process: the seed's derivation, when the job has a key (a
journal key or ``key=``, derived anyway) and when it has none (the key is then derived from the job's content,
only for its seed). Each figure is the best of ``--repeat`` timings of ``--jobs`` calls, in one thread, in CPU
time.
"""

from __future__ import annotations

import argparse
import operator
import sys
import time
import timeit
from collections.abc import Callable


def per_job(fn: Callable[[], object], jobs: int, repeat: int) -> float:
    """Microseconds of CPU per call of ``fn``: the best of ``repeat`` timings of ``jobs`` calls."""
    # CPU time, not wall-clock time: on a shared machine, time spent preempted would count otherwise.
    return min(timeit.repeat(fn, number=jobs, repeat=repeat, timer=time.process_time)) / jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="calls per timing (default 50000)")
    parser.add_argument("--repeat", type=int, default=5, help="timings, the best is kept (default 5)")
    args = parser.parse_args()

    from jobsched._keys.derive import derive_key
    from jobsched._keys.seeds import job_seed
    from jobsched.remote_call import remote_call
    from jobsched.worker import seeding

    seeds = iter(range(10**18, 10**19))  # a new seed each job, as a run gives

    def seeded() -> None:
        seeding.apply(next(seeds))
        seeding.loaded()

    def unseeded() -> None:
        seeding.apply(None)

    rows: list[tuple[str, float]] = []
    baseline = per_job(unseeded, args.jobs, args.repeat)
    rows.append(("worker, no seed", baseline))
    if "numpy" in sys.modules:
        print("numpy was imported before the first measure: the 'random only' row includes numpy", file=sys.stderr)
    rows.append(("worker, seed: random", per_job(seeded, args.jobs, args.repeat)))
    try:
        import numpy  # noqa: F401  # seeding.loaded() seeds numpy's global state once it is imported
    except ImportError:
        print("numpy is not installed: no row for it", file=sys.stderr)
    else:
        rows.append(("worker, seed: random + numpy", per_job(seeded, args.jobs, args.repeat)))
    seeding.apply(None)

    call = remote_call(operator.add, 1, 2)
    derive_key(call)  # fills the key cache, as the first job of a run does
    key = derive_key(call)
    rows.append(("scheduler, seed from a key (journal or key=)", per_job(lambda: job_seed(2024, key), args.jobs,
                                                                          args.repeat)))
    rows.append(("scheduler, seed from the job's content (no key)",
                 per_job(lambda: job_seed(2024, derive_key(call)), args.jobs, args.repeat)))

    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  µs/job  more than without a seed")
    for name, us in rows:
        extra = us - baseline if name.startswith("worker") else us
        print(f"{name:{width}}  {us:6.2f}  {extra:+6.2f}")


if __name__ == "__main__":
    main()
