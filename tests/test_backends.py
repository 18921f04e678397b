"""One conformance suite for every backend: the same scenarios on local worker processes and on Dask.

Each test runs once per backend (``local``: the default worker processes; ``dask``: a ``LocalCluster`` of two
single-threaded worker processes on loopback, started once for this module, one Dask task per job;
``dask-resident``: the same cluster, with resident jobsched workers placed by Dask that connect back) and
expects the same behaviour: the backends differ in how they run a job, never in what the scheduler promises.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import helpers
import pytest
from test_dask import _close_cluster, _start_cluster
from waiting import TIMEOUT, eventually

from jobsched import Job, JobError, JobTimeout, Scheduler, SchedulerClosedError, WorkerState, remote_call

BACKENDS = ["local", "dask", "dask-resident"]

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use"),
]


RESIDENT = False  # the dask_client fixture's mode, for new_sched


@pytest.fixture(scope="module", params=BACKENDS)
def dask_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """None for local processes; for Dask, a client of two single-threaded workers on loopback.

    Module-scoped (so set up before the leak check of each test begins) and parametrized: the tests run on
    local processes first, then on one cluster started once.
    """
    if request.param == "local":
        yield None
        return
    request.module.RESIDENT = request.param == "dask-resident"
    cluster, pids = _start_cluster(2)
    try:
        import distributed

        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=TIMEOUT)
            yield client
    finally:
        _close_cluster(cluster, pids)


@pytest.fixture
def new_sched(dask_client: Any) -> Iterator[Scheduler]:
    """A scheduler on each backend, not started yet; closed after the test whatever happens."""
    if dask_client is not None:
        from jobsched.dask import DaskBackend

        s = Scheduler(backend=DaskBackend(dask_client, resident=RESIDENT))
    else:
        s = Scheduler()
    try:
        yield s
    finally:
        s.close(timeout=10.0)


@pytest.fixture
def started(new_sched: Scheduler) -> Scheduler:
    """A scheduler on each backend, running 2 workers in the background."""
    new_sched.start(2, wait=False)
    return new_sched


def live(sched: Scheduler) -> list[int]:
    return [w.index for w in sched.workers if w.state is not WorkerState.CLOSED]


def test_one_worker_starts_jobs_in_cost_then_insertion_order(new_sched: Scheduler) -> None:
    costs = [3, 1, 2, 1, 0, 3, 2.5, -1]
    for i, cost in enumerate(costs):
        assert new_sched.add_job(remote_call(helpers.add, i, y=100), cost=cost) == i + 1
    started: list[int] = []
    results: dict[int, int] = {}
    new_sched.start(1, before_start=lambda s, job: started.append(job.index),
                    after_stop=lambda s, job, result: results.__setitem__(job.index, result))
    order = sorted(range(len(costs)), key=lambda i: (costs[i], i))
    assert started == order
    assert list(results) == order  # one worker: results come back in the order the jobs left the queue
    assert results == {i: i + 100 for i in range(len(costs))}
    assert new_sched.n_queued_jobs == 0 and new_sched.n_active_jobs == 0


def test_after_stop_and_before_start_can_add_jobs(new_sched: Scheduler) -> None:
    new_sched.add_job(remote_call(helpers.add, 0))
    seen: list[int] = []
    before: list[int] = []
    jobs: list[Job] = []

    def after_stop(s: Scheduler, job: Job, result: int) -> None:
        seen.append(result)
        jobs.append(job)
        if result < 5:
            s.add_job(remote_call(helpers.add, result))

    def before_start(s: Scheduler, job: Job) -> None:
        before.append(job.index)
        if job.index == 0:
            s.add_job(remote_call(helpers.add, 100))

    new_sched.start(2, before_start=before_start, after_stop=after_stop)
    assert sorted(seen) == [1, 2, 3, 4, 5, 101]
    assert sorted(before) == list(range(6))
    assert all(job.stop_ms >= job.start_ms > 0 for job in jobs)


def test_submit_gives_futures_and_a_job_error_with_the_remote_traceback(started: Scheduler) -> None:
    futures = [started.submit(helpers.add, i, y=i) for i in range(10)]
    more: list[Any] = []
    thread = threading.Thread(target=lambda: more.extend(started.submit(helpers.add, i) for i in range(5)),
                              name="test-adder")
    thread.start()
    thread.join(TIMEOUT)
    with pytest.raises(JobError) as info:
        started.submit(helpers.raise_value_error, "bad input 42").result(timeout=TIMEOUT)
    error = info.value
    assert (error.remote_type, error.remote_message) == ("ValueError", "bad input 42")
    assert error.remote_traceback.startswith("Traceback (most recent call last):\n")
    assert "in raise_value_error" in error.remote_traceback and "ValueError: bad input 42" in error.remote_traceback
    assert "Remote traceback" in str(error)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [2 * i for i in range(10)]
    assert [f.result(timeout=TIMEOUT) for f in more] == [i + 1 for i in range(5)]
    assert started.wait(timeout=TIMEOUT)
    stats = started.stats()
    assert (stats["done"], stats["failed"], stats["restarts"]) == (16, 1, 0)


def test_a_job_over_its_timeout_fails_with_job_timeout_and_later_jobs_run(started: Scheduler) -> None:
    slow = started.submit(helpers.sleep_then, 3.0, "late", timeout=0.5)
    with pytest.raises(JobTimeout, match=r"the job ran longer than its timeout of 0\.5 s; worker \d"):
        slow.result(timeout=TIMEOUT)
    assert [started.submit(helpers.add, i).result(timeout=TIMEOUT) for i in range(3)] == [1, 2, 3]
    assert started.wait(timeout=TIMEOUT)
    assert (started.stats()["done"], started.stats()["failed"]) == (4, 1)


def test_stats_and_workers_describe_the_slots(started: Scheduler) -> None:
    gate = started.submit(helpers.sleep_then, 1.0, "slept")
    eventually(lambda: any(w.state is WorkerState.RUNNING for w in started.workers), "a busy worker")
    (busy,) = [w for w in started.workers if w.state is WorkerState.RUNNING]
    assert busy.job is not None and busy.job.index == 0 and started.stats()["busy"] == 1
    assert gate.result(timeout=TIMEOUT) == "slept"
    pids = {started.submit(helpers.getpid).result(timeout=TIMEOUT) for _ in range(6)}
    assert started.wait(timeout=TIMEOUT)
    slots = started.workers
    assert [w.index for w in slots] == [0, 1]
    assert all(w.state is WorkerState.READY and w.job is None and w.n_restarts == 0 for w in slots)
    assert {w.pid for w in slots if w.n_done} <= pids
    assert sum(w.n_done for w in slots) == 7
    stats = started.stats()
    assert {k: stats[k] for k in ("queued", "active", "done", "failed", "workers", "busy", "restarts")} == {
        "queued": 0, "active": 0, "done": 7, "failed": 0, "workers": 2, "busy": 0, "restarts": 0}
    assert started.n_workers == 2 and started.running and not started.paused


def test_scale_pause_resume(started: Scheduler) -> None:
    started.scale(1)
    assert started.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    eventually(lambda: live(started) == [0], "worker 1 closed after scale(1)")
    started.pause()
    assert started.paused
    paused = started.submit(helpers.add, 2)
    assert not started.wait(timeout=0.5)  # paused: the job stays queued
    assert started.n_queued_jobs == 1 and not paused.done()
    started.resume()
    assert paused.result(timeout=TIMEOUT) == 3
    started.scale(2)
    assert [started.submit(helpers.add, i).result(timeout=TIMEOUT) for i in range(4)] == [1, 2, 3, 4]
    eventually(lambda: live(started) == [0, 1], "worker 1 back after scale(2)")
    assert started.wait(timeout=TIMEOUT) and started.stats()["restarts"] == 0


def test_close_lets_a_busy_worker_finish_within_its_grace_then_settles_every_future(new_sched: Scheduler) -> None:
    new_sched.start(1, wait=False)
    busy = new_sched.submit(helpers.sleep_then, 5.0, "too late")
    queued = new_sched.submit(helpers.add, 1)
    eventually(lambda: any(w.state is WorkerState.RUNNING for w in new_sched.workers), "a busy worker")
    closer = threading.Thread(target=new_sched.close, kwargs={"timeout": 0.5}, name="test-closer")
    closer.start()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert queued.cancelled()  # settled by the time close() returns
    with pytest.raises(SchedulerClosedError, match="still running when close"):
        busy.result(timeout=0)
    assert live(new_sched) == [] and new_sched.stats()["closed"]
    new_sched.close()  # idempotent


def test_executor_map_over_large_arrays_goes_through_the_one_intake_step(dask_client: Any) -> None:
    """``Executor.map`` batches take the same path as ``submit``: 16 MiB arrays travel and come back whole."""
    np = pytest.importorskip("numpy")
    from jobsched import Executor

    backend = None
    if dask_client is not None:
        from jobsched.dask import DaskBackend

        backend = DaskBackend(dask_client)
    arrays = [np.full(2 * 1024 * 1024, float(i)) for i in range(4)]  # 16 MiB each
    with Executor(2, backend=backend) as ex:
        results = list(ex.map(helpers.identity, arrays, timeout=TIMEOUT))
    assert [r.nbytes for r in results] == [16 * 1024 * 1024] * 4
    assert [float(r[0]) for r in results] == [0.0, 1.0, 2.0, 3.0]
    assert all(np.array_equal(r, a) for r, a in zip(results, arrays, strict=True))
