"""``prefetch``: 1 (the default), ``k`` and ``"auto"`` with real workers: ordering, exactly once, crashes.

The depth that ``"auto"`` picks is tested with a fake clock in ``test_state.py``; here the guarantees of each
mode are checked with jobs in flight.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import prefetch_jobs
import pytest

from jobsched import Executor, Job, Scheduler, remote_call


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "fast", None, "AUTO"])
def test_prefetch_is_an_int_from_1_or_auto(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"prefetch must be an integer >= 1 .* or \"auto\""):
        Scheduler(prefetch=bad)


def test_the_executor_uses_auto_and_a_scheduler_1() -> None:
    for ex, expected in ((Executor(1), "auto"), (Executor(1, prefetch=1), 1)):
        try:
            assert ex.scheduler.prefetch == expected
        finally:
            ex.shutdown()
    sched = Scheduler()
    try:
        assert sched.prefetch == 1
    finally:
        sched.close()


def test_default_a_cheapest_job_added_by_after_stop_is_the_very_next_to_start(tmp_path: Path) -> None:
    sched = Scheduler()
    for i in range(5):
        sched.add_job(remote_call(prefetch_jobs.record, str(tmp_path), i), cost=10)
    started: list[int] = []

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        if job.index == 0:
            s.add_job(remote_call(prefetch_jobs.record, str(tmp_path), 99), cost=0)

    try:
        sched.start(1, before_start=lambda s, job: started.append(job.index), after_stop=after_stop)
    finally:
        sched.close()
    assert started == [0, 5, 1, 2, 3, 4]  # job 5 (cost 0, added after job 0 ended) goes before 1..4


def test_default_with_two_workers_a_cheapest_job_added_by_after_stop_goes_next(tmp_path: Path) -> None:
    sched = Scheduler()
    for i in range(20):
        sched.add_job(remote_call(prefetch_jobs.record, str(tmp_path), i), cost=10)
    started: list[int] = []
    added: list[tuple[int, int]] = []  # (index of a job added by after_stop, jobs started before it was added)

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        if job.index < 20 and job.index % 4 == 0:
            s.add_job(remote_call(prefetch_jobs.record, str(tmp_path), 100 + job.index), cost=0)
            added.append((20 + len(added), len(started)))  # jobs are numbered in the order they are added

    try:
        sched.start(2, before_start=lambda s, job: started.append(job.index), after_stop=after_stop)
    finally:
        sched.close()
    assert len(added) == 5
    for index, n_started in added:
        assert started[n_started] == index  # the very next job to start


@pytest.mark.parametrize("prefetch", ["auto", 8])
def test_jobs_queued_before_the_start_run_in_cost_order_whatever_the_prefetch(prefetch: Any) -> None:
    rng = random.Random(5)
    costs = [rng.randrange(10) for _ in range(400)]
    sched = Scheduler(prefetch=prefetch)
    for i, cost in enumerate(costs):
        sched.add_job(remote_call(abs, i), cost=cost)
    order: list[int] = []
    try:
        sched.start(1, after_stop=lambda s, job, result: order.append(result))
    finally:
        sched.close()
    assert order == sorted(range(len(costs)), key=lambda i: (costs[i], i))


def test_auto_delivers_each_of_20000_trivial_results_exactly_once() -> None:
    n = 20_000
    sched = Scheduler(prefetch="auto")
    futures = [sched.submit(abs, -i) for i in range(n // 2)]
    for i in range(n // 2, n):
        sched.add_job(remote_call(abs, -i))
    seen: collections.Counter[int] = collections.Counter()
    try:
        sched.start(2, after_stop=lambda s, job, result: seen.update([result]))
        assert [f.result(timeout=0) for f in futures] == list(range(n // 2))
    finally:
        sched.close()
    assert len(seen) == n and set(seen.values()) == {1}
    assert sched._state.job_seconds is not None  # it measured
    assert sched.n_active_jobs == 0 and sched.n_queued_jobs == 0


@pytest.mark.parametrize("prefetch", ["auto", 5])
def test_a_worker_killed_while_holding_several_jobs_has_them_rerun_once_and_delivered_once(
        tmp_path: Path, prefetch: Any) -> None:
    folder = str(tmp_path)
    sched = Scheduler(prefetch=prefetch)
    futures = [sched.submit(prefetch_jobs.record, folder, 0, 30.0)]  # its first run holds until killed
    futures += [sched.submit(prefetch_jobs.record, folder, i) for i in range(1, 20)]
    sched.start(1, wait=False)
    try:
        deadline = time.monotonic() + 30
        while prefetch_jobs.runs(folder, 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (w,) = sched.workers
        held = [e.index for e in w._inflight]
        assert held[0] == 0 and len(held) >= 2  # the running job and at least one sent ahead
        pid = w.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert [f.result(timeout=60) for f in futures] == list(range(20))
    finally:
        sched.close(timeout=5)
    assert prefetch_jobs.runs(folder, 0) == 2  # the job it was running: once more
    assert [prefetch_jobs.runs(folder, i) for i in range(1, 20)] == [1] * 19  # the ones sent ahead: once


def test_executor_map_with_auto_streams_every_result_in_order() -> None:
    with Executor(2) as ex:
        assert list(ex.map(abs, range(-5000, 0))) == list(range(5000, 0, -1))
        assert list(ex.map(pow, range(300), range(300), buffersize=7)) == [i ** i for i in range(300)]
        it = ex.map(abs, range(-100_000, 0), buffersize=64)  # a bounded window: inputs are read lazily
        assert next(it) == 100_000
        assert ex.scheduler.n_active_jobs + ex.scheduler.n_queued_jobs <= 64
        it.close()  # the calls not yet started are dropped
