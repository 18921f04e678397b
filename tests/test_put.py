"""Data sent once with real workers: ``Scheduler.put``, the handle's life, and its errors."""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

import numpy as np
import put_jobs
import pytest
from waiting import TIMEOUT, eventually

import jobsched
from jobsched import Executor, Handle, JobError, Scheduler
from jobsched._data import shm as _shm


def segments(sched: Scheduler) -> list[str]:
    """The names of the handle segments of ``sched`` in /dev/shm."""
    prefix = sched._backend.shm.prefix + _shm.HANDLE  # type: ignore[attr-defined]
    return sorted(n for n in os.listdir(_shm.SHM_DIR) if n.startswith(prefix))


pytestmark = pytest.mark.skipif(not _shm.available(), reason="needs /dev/shm")


def test_jobs_receive_the_object_read_only_and_each_worker_unpickles_it_once(sched: Scheduler) -> None:
    array = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: out of band
    handle = sched.put(array)
    assert isinstance(handle, Handle) and handle.nbytes >= array.nbytes
    assert len(segments(sched)) == 2  # the array's buffer and the pickle around it
    sched.start(2, wait=False)
    futures = [sched.submit(put_jobs.describe, {"data": [handle]}) for _ in range(20)]
    seen = [f.result(timeout=TIMEOUT) for f in futures]
    assert {total for _, _, total, _ in seen} == {float(array.sum())}
    assert not any(writeable for _, _, _, writeable in seen)
    ids_per_pid: dict[int, set[int]] = {}
    for pid, ident, _, _ in seen:
        ids_per_pid.setdefault(pid, set()).add(ident)
    assert all(len(ids) == 1 for ids in ids_per_pid.values()), "a worker unpickled the object more than once"


def test_release_removes_the_segments_and_workers_drop_their_copy(sched: Scheduler) -> None:
    handle = sched.put(b"x" * (1 << 20))
    sched.start(1, wait=False)
    assert sched.submit(put_jobs.length, handle).result(timeout=TIMEOUT) == 1 << 20
    assert sched.submit(put_jobs.n_cached).result(timeout=TIMEOUT) == 1
    handle.release()
    handle.release()  # idempotent
    assert segments(sched) == [] and handle.released
    sched.submit(put_jobs.n_cached).result(timeout=TIMEOUT)  # the worker looks between jobs
    assert sched.submit(put_jobs.n_cached).result(timeout=TIMEOUT) == 0
    with pytest.raises(ValueError, match="was released"):
        sched.submit(put_jobs.length, handle)
    assert sched.n_queued_jobs == 0


def test_a_handle_lives_while_a_queued_or_running_job_refers_to_it_then_goes_with_the_gc(sched: Scheduler,
                                                                                           tmp_path: Any) -> None:
    handle = sched.put(np.ones(1 << 16))
    future = sched.submit(put_jobs.length_after, handle, 0.5)
    del handle
    gc.collect()
    assert len(segments(sched)) == 2  # the queued job holds it
    sched.start(1, wait=False)
    assert future.result(timeout=TIMEOUT) == 1 << 16
    del future
    assert sched.wait(timeout=TIMEOUT)
    eventually(lambda: gc.collect() is not None and segments(sched) == [], "the handle's segments to go")


def test_close_removes_every_segment() -> None:
    sched = Scheduler()
    try:
        handle = sched.put(np.zeros(1 << 16))
        assert segments(sched)
    finally:
        sched.close()
    assert segments(sched) == [] and handle.released


def test_bad_handles_and_objects_are_refused_where_they_are_given(sched: Scheduler) -> None:
    with pytest.raises(TypeError, match="put"):
        sched.put(threading.Lock())
    with Scheduler() as other:
        foreign = other.put([1, 2, 3])
        with pytest.raises(ValueError, match="another scheduler"):
            sched.submit(put_jobs.length, foreign)
        with pytest.raises(ValueError, match="another scheduler"):
            sched.add_job(jobsched.remote_call(put_jobs.length, {"deep": [foreign]}))
    assert sched.n_queued_jobs == 0


def test_a_handle_released_while_its_job_waits_fails_that_job_clearly(sched: Scheduler) -> None:
    handle = sched.put(np.zeros(1 << 16))
    future = sched.submit(put_jobs.length, handle)
    handle.release()
    sched.start(1, wait=False)
    with pytest.raises(JobError, match=r"cannot be mapped in this worker.*released"):
        future.result(timeout=TIMEOUT)


def test_small_objects_and_the_executor_put(tmp_path: Any) -> None:
    with Executor(max_workers=1) as ex:
        handle = ex.put({"k": "v"})
        assert list(ex.map(put_jobs.length, [handle] * 3, timeout=TIMEOUT)) == [1, 1, 1]


def test_journal_keys_of_jobs_with_a_handle_use_its_content_so_a_resume_recognises_them(tmp_path: Any) -> None:
    journal = tmp_path / "run.sqlite"
    data = np.arange(1 << 16)
    with Scheduler(journal=journal) as first:
        first.start(1, wait=False)
        assert first.submit(put_jobs.length, first.put(data)).result(timeout=TIMEOUT) == 1 << 16
    with Scheduler(journal=journal) as again:
        future = again.submit(put_jobs.length, again.put(data.copy()))
        again.start(1, wait=False)
        assert future.result(timeout=TIMEOUT) == 1 << 16
        other = again.submit(put_jobs.length, again.put(data[:10]))
        assert other.result(timeout=TIMEOUT) == 10
        assert again.stats()["from_journal"] == 1
