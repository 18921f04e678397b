"""``put`` on Dask: the data travels once per Dask worker (per task) or once per resident worker, never per job.

Real ``LocalCluster`` worker processes; each counts how often it unpickles the object (``dask_put_jobs``).
"""

from __future__ import annotations

import multiprocessing.resource_tracker
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

import dask_put_jobs
import helpers
import pytest
from test_dask import cluster  # noqa: F401  # a fixture
from waiting import TIMEOUT, eventually

from jobsched import JobError, Scheduler
from jobsched._data import handles as _handles

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.dask, pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore:Port 8787 is already in use")]

PAYLOAD = 3_000_000  # bytes: far larger than a job's arguments


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker() -> None:
    """Started before any test's leak check: it lives as long as this interpreter (see test_dask)."""
    multiprocessing.resource_tracker.ensure_running()


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:  # noqa: F811
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client


@pytest.fixture(params=["per-task", "resident"])
def dsched(request: pytest.FixtureRequest, client: Any) -> Iterator[Scheduler]:
    from jobsched.dask import DaskBackend

    if request.param == "resident":
        pytest.importorskip("cryptography")
    s = Scheduler(backend=DaskBackend(client, resident=request.param == "resident"))
    try:
        yield s
    finally:
        s.close(timeout=10.0)


def _counted() -> dask_put_jobs.Counted:
    return dask_put_jobs.Counted(uuid.uuid4().hex, b"\x5a" * PAYLOAD)


def test_each_worker_process_unpickles_the_data_once_whatever_the_number_of_jobs(dsched: Scheduler) -> None:
    dsched.start(2, wait=False)
    handle = dsched.put(_counted())
    assert len(pickle.dumps(handle)) < 1000  # a job's arguments carry the handle, not the data
    results = [f.result(timeout=TIMEOUT) for f in [dsched.submit(dask_put_jobs.read, {"data": handle})
                                                   for _ in range(40)]]
    assert {(n, size) for _, n, size in results} == {(1, PAYLOAD)}  # unpickled once in each process
    pids = {pid for pid, _, _ in results}
    assert 1 <= len(pids) <= 2
    # Nor does it travel again to a process that has it: 40 more jobs make those processes read far less than
    # the data. (A second worker that was still starting during the first 40 may run some of these: it
    # unpickles the data once too, which the first assert checks.)
    before = {pid: _bytes_read(pid) for pid in pids}
    more = [f.result(timeout=TIMEOUT) for f in [dsched.submit(dask_put_jobs.read, {"data": handle})
                                                for _ in range(40)]]
    assert {(n, size) for _, n, size in more} == {(1, PAYLOAD)}
    assert len(pids | {pid for pid, _, _ in more}) <= 2
    assert sum(_bytes_read(pid) - before[pid] for pid in pids) < PAYLOAD // 2


def _bytes_read(pid: int) -> int:
    """What process ``pid`` has read so far, sockets included (``rchar`` of /proc/PID/io)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_per_task_put_scatters_one_copy_to_each_dask_worker_and_release_frees_them(client: Any) -> None:
    from jobsched.dask import DaskBackend

    with Scheduler(backend=DaskBackend(client)) as sched:
        sched.start(2, wait=False)
        handle = sched.put(_counted())
        keys = _handles.held(handle).keys
        assert set(keys) == set(client.nthreads())  # on every Dask worker at put, before any job
        who_has = client.who_has()
        assert all(who_has[key] == (address,) for address, key in keys.items())
        assert sched.submit(dask_put_jobs.read, {"data": handle}).result(timeout=TIMEOUT)[1:] == (1, PAYLOAD)
        handle.release()
        assert handle.released
        eventually(lambda: not set(keys.values()) & set(client.who_has()), "the copies to leave the cluster")
        other = sched.put([1, 2, 3])
        kept = set(_handles.held(other).keys.values())
        assert kept
    assert other.released  # close() released it
    eventually(lambda: not kept & set(client.who_has()), "close() to release the copies")


def test_a_handle_released_while_its_job_waits_fails_that_job_clearly(dsched: Scheduler) -> None:
    dsched.start(1, wait=False)
    assert dsched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    dsched.pause()
    handle = dsched.put(_counted())
    waiting = dsched.submit(dask_put_jobs.read, {"data": handle})
    handle.release()
    dsched.resume()
    error = waiting.exception(timeout=TIMEOUT)
    assert isinstance(error, JobError) and error.remote_type == "RuntimeError"
    assert "did not reach this worker" in error.remote_message and "released" in error.remote_message
    assert dsched.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3  # the worker goes on


def test_a_resident_worker_drops_the_object_of_a_released_handle(client: Any) -> None:
    pytest.importorskip("cryptography")
    from jobsched.dask import DaskBackend

    with Scheduler(backend=DaskBackend(client, resident=True)) as sched:
        sched.start(1, wait=False)
        assert sched.submit(dask_put_jobs.n_cached).result(timeout=TIMEOUT) == 0
        handle = sched.put(_counted())
        assert sched.submit(dask_put_jobs.read, {"data": handle}).result(timeout=TIMEOUT)[1:] == (1, PAYLOAD)
        assert sched.submit(dask_put_jobs.n_cached).result(timeout=TIMEOUT) == 1
        handle.release()
        assert sched.submit(dask_put_jobs.n_cached).result(timeout=TIMEOUT) == 0


def test_the_journal_recognises_jobs_with_a_handle_on_dask(client: Any, tmp_path: Any) -> None:
    from jobsched.dask import DaskBackend

    journal = tmp_path / "run.sqlite"
    for expected in (0, 3):
        with Scheduler(backend=DaskBackend(client), journal=journal) as sched:
            sched.start(1, wait=False)
            handle = sched.put(b"same data")
            futures = [sched.submit(dask_put_jobs.length_plus, handle, i) for i in range(3)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [9, 10, 11]
            assert sched.wait(TIMEOUT) and sched.stats()["from_journal"] == expected
