"""Stress: a storm of worker kills under 20,000 jobs, 50 MB payloads, and 120 workers × 10,000 jobs.

Everything here runs real worker processes on loopback TCP and stops by itself; each test bounds its own
waits, and pytest-timeout bounds the whole test.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time
from typing import Any

import helpers
import psutil
import pytest
from waiting import TIMEOUT

from jobsched import Job, Scheduler, WorkerState

MB = 1 << 20


class WorkerKiller:
    """A thread that SIGKILLs a random worker every ``interval`` seconds, until ``stop()``.

    It draws one of the scheduler's slots at random each time, and kills its process if that process has
    connected; a slot whose worker is still starting is spared this time. So each slot is hit about once
    every ``interval * n_workers`` seconds, however many others are down (choosing among the live ones
    only would concentrate every kill on the last survivors). A worker killed before it is ready, again
    and again, is the fork-bomb guard's business (``WorkerStartupError``), not this test's.
    """

    def __init__(self, sched: Scheduler, interval: float, seed: int = 4) -> None:
        self.sched = sched
        self.interval = interval
        self.kills = 0
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-worker-killer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self.interval):
            workers = self.sched.workers
            if not workers:
                continue
            w = self._random.choice(workers)
            pid = w.pid
            if pid is None or w.state not in (WorkerState.READY, WorkerState.RUNNING):
                continue
            try:
                proc = psutil.Process(pid)
                # The pid was read from another thread: make sure it is still our live worker, spawned by us
                # or forked by our zygote.
                parents = {me, self.sched._backend._starter.zygote_pid}  # type: ignore[attr-defined]
                if proc.ppid() not in parents or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
            self.kills += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        return self.kills


def test_20000_jobs_on_8_workers_killed_every_100ms_deliver_each_result_exactly_once() -> None:
    n_jobs, n_workers = 20_000, 8
    delivered: collections.Counter[int] = collections.Counter()
    results: dict[int, Any] = {}

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        delivered[job.index] += 1
        results[job.index] = (job.data.args[0], result)

    # A job may be on a killed worker more than once; retries enough that none fails for that reason,
    # so that "every result exactly once" is what is checked.
    sched = Scheduler(max_retries=1000, echo_output=False)
    try:
        # 2 ms each: quick, yet the run lasts a few seconds, so that the killer strikes often.
        futures = [sched.submit(helpers.square_slowly, i, 0.002) for i in range(n_jobs)]
        sched.start(n_workers, after_stop=after_stop, wait=False)
        killer = WorkerKiller(sched, interval=0.1)
        try:
            assert sched.wait(timeout=240), f"not done after 240 s: {sched.stats()}"
        finally:
            kills = killer.stop()
        assert kills >= 10  # the run lasts at least 20000 * 2 ms / 8 = 5 s
        # Every index once, with its own correct result: none lost, none twice.
        assert len(delivered) == n_jobs and set(delivered.values()) == {1}
        assert sorted(results) == list(range(n_jobs))
        assert all(result == x * x for x, result in results.values())
        assert [f.result(timeout=0) for f in futures] == [i * i for i in range(n_jobs)]
        # The books balance.
        stats = sched.stats()
        assert (stats["queued"], stats["active"], stats["done"], stats["failed"]) == (0, 0, n_jobs, 0)
        assert sched.n_queued_jobs == 0 and sched.n_active_jobs == 0
        workers = sched.workers
        assert len(workers) == n_workers
        assert sum(w.n_done for w in workers) == n_jobs
        assert stats["restarts"] == sum(w.n_restarts for w in workers)
        assert 0 < stats["restarts"] <= kills
        # Still usable (a slot may still be in its restart back-off: CLOSED is a fair state here).
        assert sched.submit(helpers.square, 9).result(timeout=TIMEOUT) == 81
    finally:
        sched.close(timeout=5.0)


@pytest.mark.parametrize("direction", ["result", "job data", "both ways"])
def test_50mb_payloads_arrive_intact(direction: str) -> None:
    n = 50 * MB
    with Scheduler(echo_output=False) as sched:
        sched.start(2, wait=False)
        if direction == "result":
            future = sched.submit(helpers.pattern, n, 7)
            small = sched.submit(helpers.square, 5)
            assert future.result(timeout=120) == helpers.pattern(n, 7)
        elif direction == "job data":
            data = helpers.pattern(n, 8)
            future = sched.submit(helpers.sha256, data)
            small = sched.submit(helpers.square, 5)
            assert future.result(timeout=120) == helpers.sha256(data)
        else:
            data = helpers.pattern(n, 9)
            futures = [sched.submit(helpers.identity, data) for _ in range(2)]
            small = sched.submit(helpers.square, 5)
            assert all(f.result(timeout=120) == data for f in futures)
        assert small.result(timeout=TIMEOUT) == 25
        assert sum(w.n_restarts for w in sched.workers) == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_120_workers_run_10000_jobs() -> None:
    n_workers, n_jobs = 120, 10_000
    delivered: collections.Counter[int] = collections.Counter()
    with Scheduler(echo_output=False) as sched:
        sched.start(n_workers, after_stop=lambda s, job, result: delivered.update([job.index]), wait=False)
        # All 120 connected before the jobs come: each of them gets work, at the same time.
        deadline = time.monotonic() + 240
        while sum(w.state is WorkerState.READY for w in sched.workers) < n_workers:
            assert time.monotonic() < deadline, f"not all workers ready after 240 s: {sched.stats()}"
            assert sched.stats()["error"] is None, sched.stats()["error"]
            time.sleep(0.05)
        futures = [sched.submit(helpers.square_and_pid, i) for i in range(n_jobs)]
        assert sched.wait(timeout=240), f"not done after 240 s: {sched.stats()}"
        results = [f.result(timeout=0) for f in futures]
        assert [square for square, _ in results] == [i * i for i in range(n_jobs)]
        assert len(delivered) == n_jobs and set(delivered.values()) == {1}
        pids = {pid for _, pid in results}
        assert pids == {w.pid for w in sched.workers} and len(pids) == n_workers
        stats = sched.stats()
        assert (stats["done"], stats["failed"], stats["restarts"], stats["workers"]) == (n_jobs, 0, 0, n_workers)
