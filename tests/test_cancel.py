"""Cancelling running jobs: ``future.cancel()`` and ``sched.cancel(index)`` stop a job in its tracks.

Real workers throughout. Each stopped job would leave a side effect (a file) after its cancel point; the tests
wait until the job would surely have written it -- its worker and the processes it started are gone, its
replacement is up, and the job's own deadline has passed -- and prove that the file never appears.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import cancel_jobs
import helpers
import psutil
import pytest
from waiting import TIMEOUT, eventually, gone

from jobsched import Executor, JobCancelled, JobError, Scheduler, remote_call

SECONDS = 3.0  # how long each doomed job would go on after its cancel point



def started_record(path: Path) -> dict[str, Any]:
    eventually(path.exists, f"the job to reach its cancel point ({path.name})")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def c_loop_length(seconds: float) -> int:
    """How many ones ``sum(itertools.repeat(1, n))`` adds in about ``seconds`` here (measured now)."""
    n = 2 * 10**7
    t0 = time.perf_counter()
    sum(itertools.repeat(1, n))
    return max(n, int(n * seconds / max(time.perf_counter() - t0, 1e-3)))


def slot_of(sched: Scheduler, pid: int) -> int:
    for w in sched.workers:
        if w.pid == pid:
            return w.index
    raise AssertionError(f"no worker has pid {pid}: {sched.workers}")


@pytest.mark.parametrize("mode", ["sleep", "gil", "child"])
def test_cancelling_a_running_job_stops_it_and_what_it_started_and_its_side_effect_never_happens(
        sched: Scheduler, tmp_path: Path, mode: str) -> None:
    started, effect, gate = tmp_path / "started", tmp_path / "effect", tmp_path / "gate"
    sched.start(2, wait=False)
    bystander = sched.submit(helpers.wait_for_file, str(gate), "bystander")
    eventually(bystander.running, "the bystander job to run")
    if mode == "sleep":
        future = sched.submit(cancel_jobs.sleep_then_write, str(started), str(effect), SECONDS)
    elif mode == "gil":
        future = sched.submit(cancel_jobs.compute_then_write, str(started), str(effect), c_loop_length(SECONDS))
    else:
        future = sched.submit(cancel_jobs.child_then_write, str(started), str(effect), SECONDS)
    record = started_record(started)
    reached = time.monotonic()
    worker = psutil.Process(record["pid"])
    index = slot_of(sched, worker.pid)
    bystander_pid = next(w.pid for w in sched.workers if w.index != index)
    child = psutil.Process(record["child"]) if mode == "child" else None
    if mode == "gil":  # in the C loop: the worker burns CPU and no Python code of it runs
        cpu = sum(worker.cpu_times()[:2])
        eventually(lambda: sum(worker.cpu_times()[:2]) > cpu + 0.3, "the job to compute in C for 0.3 s")
    restarts = sched.stats()["restarts"]

    assert future.cancel() is True
    assert future.cancelled() and future.done()
    with pytest.raises(CancelledError):
        future.result(timeout=0)

    eventually(lambda: gone(worker), f"the cancelled job's worker (pid {worker.pid}) to exit")
    if child is not None:
        eventually(lambda: gone(child), f"the process the job started (sleep 60, pid {child.pid}) to exit")
    eventually(lambda: sched.workers[index].pid not in (None, worker.pid)
               and sched.workers[index].state.name == "READY", "the worker to be replaced by a new process")
    # The job would have written its file by now: SECONDS after its cancel point (plus a margin).
    eventually(lambda: time.monotonic() > reached + SECONDS + 1.0, "the job's own deadline to pass")
    assert not effect.exists(), "the job went on after it was cancelled"

    eventually(lambda: sched.stats()["cancelled"] == 1, "the cancel to be counted")
    stats = sched.stats()
    assert (stats["cancelled"], stats["failed"], stats["active"]) == (1, 1, 1)  # the bystander is still active
    # A cancel is not a crash: no restart is counted, and the job is not retried.
    assert stats["restarts"] == restarts
    assert sched.workers[index].n_restarts == 0
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2  # the replacement takes jobs
    assert not bystander.done(), "the other worker's job was left alone"
    gate.touch()
    assert bystander.result(timeout=TIMEOUT) == "bystander"
    assert next(w.pid for w in sched.workers if w.index != index) == bystander_pid
    assert sched.stats()["done"] == 3


def test_sched_cancel_stops_a_running_or_queued_add_job_job_and_after_stop_gets_job_cancelled(
        sched: Scheduler, tmp_path: Path) -> None:
    started, effect = tmp_path / "started", tmp_path / "effect"
    results: dict[int, list[Any]] = {}
    sched.start(1, wait=False, after_stop=lambda s, job, result: results.setdefault(job.index, []).append(result))
    sched.add_job(remote_call(cancel_jobs.sleep_then_write, str(started), str(effect), SECONDS))  # job 0
    sched.add_job(remote_call(helpers.add, 1))  # job 1: queued behind job 0
    worker = psutil.Process(started_record(started)["pid"])
    reached = time.monotonic()
    assert sched.n_queued_jobs == 1

    assert sched.cancel(1) is True  # queued
    assert sched.cancel(0) is True  # running
    assert sched.cancel(0) is False  # already cancelled
    assert sched.cancel(1) is False
    assert sched.cancel(99) is False  # no such job
    eventually(lambda: len(results) == 2, "after_stop for both cancelled jobs")
    for index in (0, 1):
        [result] = results[index]
        assert isinstance(result, JobCancelled) and isinstance(result, JobError)
        assert (result.remote_type, result.job_index) == ("JobCancelled", index)
    eventually(lambda: gone(worker), "the cancelled job's worker to exit")
    eventually(lambda: sched.workers[0].pid not in (None, worker.pid), "the worker to be replaced")
    eventually(lambda: time.monotonic() > reached + SECONDS + 1.0, "the job's own deadline to pass")
    assert not effect.exists(), "the job went on after it was cancelled"

    sched.add_job(remote_call(helpers.add, 41))  # job 2 runs on the replacement
    eventually(lambda: 2 in results, "job 2's result")
    assert results[2] == [42]
    assert sched.cancel(2) is False, "a finished job cannot be cancelled"
    stats = sched.stats()
    assert (stats["done"], stats["failed"], stats["cancelled"], stats["restarts"]) == (3, 2, 2, 0)
    assert results == {0: results[0], 1: results[1], 2: [42]}, "each job delivered once"


def test_cancelling_a_finished_job_is_harmless_and_keeps_its_result(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    future = sched.submit(helpers.add, 1)
    assert future.result(timeout=TIMEOUT) == 2
    pid = sched.workers[0].pid
    assert future.cancel() is False
    assert not future.cancelled() and future.result(timeout=0) == 2
    assert sched.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3
    assert sched.workers[0].pid == pid, "no worker was killed"
    assert sched.stats()["cancelled"] == 0


def test_cancelling_a_queued_future_leaves_the_running_job_alone(sched: Scheduler, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    sched.start(1, wait=False)
    running = sched.submit(helpers.wait_for_file, str(gate), "ran")
    eventually(running.running, "the first job to run")
    pid = sched.workers[0].pid
    queued = sched.submit(helpers.add, 1)
    assert queued.cancel() is True and queued.cancelled()
    gate.touch()
    assert running.result(timeout=TIMEOUT) == "ran"
    assert sched.workers[0].pid == pid
    assert sched.stats()["queued"] == 0


def test_executor_shutdown_cancel_futures_cancels_only_queued_calls(tmp_path: Path) -> None:
    started, effect = tmp_path / "started", tmp_path / "effect"
    ex = Executor(1, prefetch=1)  # with "auto", a call sent ahead to the worker is running, as in concurrent.futures
    try:
        running = ex.submit(cancel_jobs.sleep_then_write, str(started), str(effect), 0.5)
        pid = started_record(started)["pid"]
        queued = [ex.submit(helpers.add, i) for i in range(3)]
        ex.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() for f in queued)
        assert running.result(timeout=0) == "finished" and not running.cancelled()
        assert effect.read_text() == f"written by {pid}\n", "the running call was not stopped"
    finally:
        ex.shutdown(wait=True)


def test_cancel_racing_the_end_of_a_job_is_either_a_cancel_or_a_result_never_both(sched: Scheduler) -> None:
    """Cancel a 50 ms job around its end, 20 times: exactly one outcome each time, and it is consistent."""
    results: dict[int, list[Any]] = {}
    lock = threading.Lock()

    def after_stop(s: Scheduler, job: Any, result: Any) -> None:
        with lock:
            results.setdefault(job.index, []).append(result)

    sched.start(1, wait=False, after_stop=after_stop)
    outcomes = []
    for i in range(20):
        by_index = i % 2 == 1
        if by_index:
            sched.add_job(remote_call(cancel_jobs.sleep_then_return, 0.05, i))
            future: Future[Any] | None = None
        else:
            future = sched.submit(cancel_jobs.sleep_then_return, 0.05, i)
        eventually(lambda: sched.n_active_jobs == 1 and sched.workers[0].job is not None, f"job {i} to run")
        time.sleep(0.03 + 0.003 * i)  # from before its end to after it
        cancelled = sched.cancel(i) if by_index else future.cancel()  # type: ignore[union-attr]
        eventually(lambda index=i: index in results, f"after_stop for job {i}")  # type: ignore[misc]
        eventually(lambda: sched.n_active_jobs == 0, f"job {i} to be settled")
        [result] = results[i]
        if cancelled:
            assert isinstance(result, JobCancelled), (i, result)
            if future is not None:
                assert future.cancelled()
        else:
            assert result == i, (i, result)
            if future is not None:
                assert not future.cancelled() and future.result(timeout=0) == i
        outcomes.append(cancelled)
        assert sched.cancel(i) is False and (future is None or future.cancel() is future.cancelled())
    assert len(results) == 20 and all(len(r) == 1 for r in results.values()), results
    stats = sched.stats()
    assert stats["cancelled"] == sum(outcomes) and stats["done"] == 20
    assert stats["restarts"] == 0


@pytest.mark.parametrize("how", ["future", "index"])
def test_a_result_already_on_its_way_when_cancel_says_true_is_dropped(sched: Scheduler, tmp_path: Path,
                                                                      how: str) -> None:
    """The race above, made certain: the job's result reaches the scheduler while cancel() runs.

    The loop is held (a function posted to its inbox blocks it) while the job finishes and its RESULT frame
    waits on the socket; cancel() then still finds the job on its worker and says True. The late result must
    not reach the future or ``after_stop``. (Whether the worker is still replaced depends on what the loop
    sees first, the result or its signal deadline; either way nothing is retried or counted as a crash.)
    """
    started, effect, release = tmp_path / "started", tmp_path / "effect", threading.Event()
    results: list[Any] = []
    sched.start(1, wait=False, after_stop=lambda s, job, result: results.append(result))
    future = sched.submit(cancel_jobs.sleep_then_write, str(started), str(effect), 0.2)
    started_record(started)

    def hold_the_loop() -> None:
        release.wait(TIMEOUT)

    sched._engine.post(hold_the_loop)  # the loop stops here until released
    eventually(effect.exists, "the job to finish")
    time.sleep(0.2)  # its RESULT frame is sent right after the file: let it reach our socket
    try:
        assert (future.cancel() if how == "future" else sched.cancel(0)) is True
    finally:
        release.set()
    eventually(lambda: len(results) == 1 and sched.n_active_jobs == 0, "the job to be settled")
    assert isinstance(results[0], JobCancelled), results
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result(timeout=0)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    stats = sched.stats()
    assert (stats["cancelled"], stats["done"], stats["restarts"]) == (1, 2, 0)
