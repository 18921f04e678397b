"""The manual's scheduler example: ``python -m jobsched.examples.server_worker [--seed N]``.

Workers "paint" colours and fail at random; ``after_stop`` puts a failed colour back in the queue, with a
higher cost so that fresh colours go first. ``before_start`` shows each job as it leaves the queue.
"""

from __future__ import annotations

import argparse
import random
import time

from jobsched import Job, Scheduler, make_python_cmd, make_scheduler, start_worker, this_file

COLOURS = ["red", "orange", "yellow", "green", "blue", "indigo", "violet", "black", "white", "grey"]
FAILED = "FAILED"


# === Worker ===
def run_job(job: Job) -> str:
    colour, failure_rate, seed = job.data
    rng = random.Random(f"{seed}-{job.index}")
    time.sleep(rng.uniform(0.0, 0.05))
    return FAILED if rng.random() < failure_rate else f"painted {colour}"


def worker() -> None:
    start_worker(run_job)


# === Server ===
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failure-rate", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)

    file = this_file()
    assert file is not None
    sched = make_scheduler(lambda worker_index: make_python_cmd(file, entry="worker"))
    for cost, colour in enumerate(COLOURS):
        sched.add_job((colour, args.failure_rate, args.seed), cost=cost)

    def before_start(s: Scheduler, job: Job) -> None:
        print(f"start  job {job.index:>2} {job.data[0]} (cost {job.cost})")

    def after_stop(s: Scheduler, job: Job, result: str) -> None:
        colour = job.data[0]
        if result == FAILED:
            print(f"FAILED job {job.index:>2} {colour}: re-added")
            s.add_job(job.data, cost=job.cost + len(COLOURS))
        else:
            print(f"done   job {job.index:>2} {colour}: {result} in {job.elapsed_ms:.0f} ms")

    sched.start(args.workers, before_start=before_start, after_stop=after_stop)
    print("all colours painted")


if __name__ == "__main__":
    main()
