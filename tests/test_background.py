"""Background mode: start(wait=False), jobs from other threads, wait, live scaling, pause, close, stats, workers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import helpers
import psutil
import pytest
from waiting import TIMEOUT, eventually

import jobsched
from jobsched import Job, JobError, Scheduler, SchedulerClosedError, WorkerState


def live_workers(sched: Scheduler) -> list[jobsched.Worker]:
    return [w for w in sched.workers if w.state is not WorkerState.CLOSED]


def test_start_without_wait_returns_at_once_and_runs_submitted_jobs(sched: Scheduler) -> None:
    sched.start(2, wait=False)
    assert sched.running
    futures = [sched.submit(helpers.add, i, y=10) for i in range(20)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [i + 10 for i in range(20)]
    assert sched.wait(timeout=TIMEOUT) is True
    assert sched.running, "a background scheduler keeps running when idle, until close()"


def test_jobs_added_from_other_threads_while_running() -> None:
    results: dict[int, object] = {}
    lock = threading.Lock()

    def after_stop(s: Scheduler, job: Job, result: object) -> None:
        with lock:
            results[job.data.args[0]] = result

    sched = Scheduler()
    try:
        sched.start(2, after_stop=after_stop, wait=False)
        futures: dict[int, object] = {}

        def producer(base: int) -> None:
            for i in range(base, base + 25):
                if i % 2:
                    futures[i] = sched.submit(helpers.add, i, y=1000)
                else:
                    sched.add_job(jobsched.remote_call(helpers.add, i, y=1000), cost=i % 3)

        threads = [threading.Thread(target=producer, args=(k * 100,), name=f"producer-{k}") for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT)
            assert not t.is_alive()
        assert sched.wait(timeout=TIMEOUT)
        eventually(lambda: len(results) == 100, "after_stop for every job")
        expected = {i: i + 1000 for k in range(4) for i in range(k * 100, k * 100 + 25)}
        assert results == expected
        assert {i: f.result(timeout=0) for i, f in futures.items()} == {  # type: ignore[attr-defined]
            i: v for i, v in expected.items() if i % 2}
        stats = sched.stats()
        assert (stats["done"], stats["failed"], stats["queued"], stats["active"]) == (100, 0, 0, 0)
    finally:
        sched.close(timeout=5)


def test_wait_timeout_semantics(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(1, wait=False)
    assert sched.wait(timeout=5) is True, "an idle scheduler is done waiting at once"
    gate = tmp_path / "gate"
    slow = sched.submit(helpers.wait_for_file, str(gate), "slow")
    assert sched.wait(timeout=0.05) is False
    assert sched.wait(timeout=0.3) is False
    assert not slow.done()
    gate.touch()
    assert sched.wait(timeout=TIMEOUT) is True
    assert slow.result(timeout=0) == "slow"


def test_wait_covers_a_slow_after_stop_that_adds_a_job(sched: Scheduler) -> None:
    # A job counts as active until its after_stop has returned: wait() must not see the scheduler idle
    # while after_stop is still deciding to add the next job (it polls every 0.1 s; this one takes 0.4 s).
    results: list[object] = []

    def after_stop(s: Scheduler, job: Job, result: object) -> None:
        results.append(result)
        if result == 1:
            time.sleep(0.4)
            s.add_job(jobsched.remote_call(helpers.add, 10, y=1))

    sched.start(1, after_stop=after_stop, wait=False)
    future = sched.submit(helpers.add, 0, y=1)
    assert future.result(timeout=TIMEOUT) == 1
    assert sched.wait(timeout=TIMEOUT) is True
    assert results == [1, 11]
    assert sched.stats()["done"] == 2


def test_wait_before_start_with_queued_jobs_says_to_start(sched: Scheduler) -> None:
    sched.submit(helpers.add, 1)
    with pytest.raises(RuntimeError, match="start"):
        sched.wait(timeout=1)


def test_wait_raises_a_background_callback_error_once(sched: Scheduler) -> None:
    def after_stop(s: Scheduler, job: Job, result: object) -> None:
        raise KeyError("boom in after_stop")

    sched.add_job(jobsched.remote_call(helpers.add, 1))
    sched.start(1, after_stop=after_stop, wait=False)
    with pytest.raises(KeyError, match="boom in after_stop"):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            sched.wait(timeout=1)
    assert sched.stats()["error"] is None, "the error is raised once, then cleared"


def test_scale_up_live(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    sched.scale(3)
    eventually(lambda: sum(w.state is WorkerState.READY for w in sched.workers) == 3, "3 ready workers")
    # Three jobs held open together must run on three different processes.
    gate = tmp_path / "gate"
    futures = [sched.submit(helpers.wait_for_file, str(gate), i) for i in range(3)]
    eventually(lambda: sched.stats()["busy"] == 3, "3 busy workers")
    pids = {w.pid for w in sched.workers if w.state is WorkerState.RUNNING}
    gate.touch()
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 2]
    assert len(pids) == 3
    assert sched.stats()["workers"] == 3 and sched.n_workers == 3


def test_scale_down_lets_busy_workers_finish_their_job(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(3, wait=False)
    gate = tmp_path / "gate"
    futures = [sched.submit(helpers.wait_for_file, str(gate), i) for i in range(3)]
    eventually(lambda: sched.stats()["busy"] == 3, "3 busy workers")
    pids = [w.pid for w in sched.workers]
    sched.scale(1)
    # The loop marks the workers beyond the target as retiring (a private flag of the slot): it has acted on
    # the new target, and they must still be running their jobs.
    eventually(lambda: all(w._retiring for w in sched.workers[1:]), "the loop to retire workers 1 and 2")
    assert sched.n_workers == 1
    assert sched.stats()["busy"] == 3, "busy workers are not stopped by scaling down"
    gate.touch()
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 2], "no job is lost or failed by scaling down"
    eventually(lambda: len(sched.workers) == 1, "the retired workers gone from sched.workers")
    stats = sched.stats()
    assert (stats["failed"], stats["restarts"], stats["workers"]) == (0, 0, 1)
    retired = [pid for pid, w in zip(pids, [0, 1, 2], strict=True) if w >= 1]
    eventually(lambda: not any(helpers.is_live(p) for p in retired), "the retired processes to exit")
    assert sched.submit(helpers.add, 41).result(timeout=TIMEOUT) == 42


def test_scale_to_zero_keeps_jobs_queued_until_scaled_up(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(1, wait=False)
    gate = tmp_path / "gate"
    held = sched.submit(helpers.wait_for_file, str(gate), "held")
    eventually(lambda: sched.n_active_jobs == 1, "the held job running")
    sched.scale(0)
    future = sched.submit(helpers.add, 1)
    gate.touch()
    assert held.result(timeout=TIMEOUT) == "held"
    # The witness: the loop handled the held job's result and then its worker's exit, both after `future` was
    # queued; it had every chance to hand `future` to that worker, and no worker is left to take it now.
    eventually(lambda: sched.stats()["workers"] == 0, "no worker")
    assert not future.done() and sched.n_queued_jobs == 1
    sched.scale(1)
    assert future.result(timeout=TIMEOUT) == 2


def test_pause_stops_dispatch_running_jobs_finish_and_resume_goes_on(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(2, wait=False)
    gate, go, end = tmp_path / "gate", tmp_path / "go", tmp_path / "end"
    running = sched.submit(helpers.wait_for_file, str(gate), "ran")
    witness = sched.submit(helpers.report_when, str(go), "after the first result", str(end))
    eventually(lambda: sched.n_active_jobs == 2, "both jobs running")
    sched.pause()
    assert sched.paused and sched.stats()["paused"]
    queued = [sched.submit(helpers.add, i) for i in range(5)]
    gate.touch()
    assert running.result(timeout=TIMEOUT) == "ran", "a running job finishes while paused"
    # The witness: a progress report sent after that result was delivered has been handled, so the loop has
    # decided what to hand the freed worker; paused, it must be nothing.
    go.touch()
    eventually(lambda: any(w.progress is not None and w.progress[2] == "after the first result"
                           for w in sched.workers), "the witness's progress report")
    assert not any(f.done() for f in queued)
    assert (sched.n_queued_jobs, sched.n_active_jobs) == (5, 1)
    end.touch()
    assert witness.result(timeout=TIMEOUT) == "after the first result"
    assert sched.n_queued_jobs == 5
    assert sched.wait(timeout=0.2) is False, "paused with queued jobs is not idle"
    sched.resume()
    assert not sched.paused
    assert [f.result(timeout=TIMEOUT) for f in queued] == [1, 2, 3, 4, 5]


def test_close_is_idempotent_cancels_queued_futures_and_refuses_new_jobs(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(1, wait=False)
    gate = tmp_path / "gate"
    running = sched.submit(helpers.wait_for_file, str(gate), "finished")
    eventually(lambda: sched.n_active_jobs == 1, "the first job running")
    sched.pause()
    queued = sched.submit(helpers.add, 1)
    pids = [w.pid for w in sched.workers]
    opener = threading.Timer(0.5, gate.touch)  # the job ends while close() waits for it
    opener.start()
    sched.close(timeout=30)
    opener.join(timeout=TIMEOUT)
    assert running.result(timeout=0) == "finished", "close lets the running job finish"
    assert queued.cancelled()
    sched.close()
    sched.close(timeout=1)
    assert not sched.running and sched.stats()["closed"] and sched.workers == []
    assert not any(helpers.is_live(p) for p in pids)
    with pytest.raises(SchedulerClosedError):
        sched.submit(helpers.add, 1)
    with pytest.raises(SchedulerClosedError):
        sched.start(1, wait=False)


def test_close_of_a_never_started_scheduler() -> None:
    s = Scheduler()
    s.close()
    s.close()
    assert s.stats()["closed"]


def test_stats_read_right_after_a_result_count_that_job(sched: Scheduler) -> None:
    # The job is counted done before its future is resolved: no window in which result() has returned and
    # stats() still shows the job active.
    sched.start(2, wait=False)
    for i in range(200):
        assert sched.submit(helpers.add, i).result(timeout=TIMEOUT) == i + 1
        stats = sched.stats()
        assert (stats["done"], stats["active"]) == (i + 1, 0), f"after job {i}"


def test_stats_snapshot(sched: Scheduler) -> None:
    assert {"queued", "active", "done", "failed", "workers", "jobs_per_s"} <= sched.stats().keys()
    sched.start(2, wait=False)
    ok = [sched.submit(helpers.add, i) for i in range(6)]
    bad = [sched.submit(helpers.raise_value_error, f"bad {i}") for i in range(2)]
    for f in ok:
        f.result(timeout=TIMEOUT)
    for f in bad:
        with pytest.raises(JobError, match="bad"):
            f.result(timeout=TIMEOUT)
    stats = sched.stats()
    assert {k: stats[k] for k in ("queued", "active", "done", "failed", "workers", "paused", "running",
                                  "closed", "error")} == {
        "queued": 0, "active": 0, "done": 8, "failed": 2, "workers": 2, "paused": False, "running": True,
        "closed": False, "error": None}
    assert stats["jobs_per_s"] >= 0.0


def test_workers_attributes_while_idle_running_and_after_a_restart(sched: Scheduler, tmp_path: Path) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    (w,) = sched.workers
    assert isinstance(w, jobsched.Worker)
    assert (w.index, w.state, w.job, w.n_done, w.n_restarts) == (0, WorkerState.READY, None, 1, 0)
    assert w.pid in {p.pid for p in psutil.Process().children(recursive=True)}
    first_pid = w.pid

    gate = tmp_path / "gate"
    future = sched.submit(helpers.wait_for_file, str(gate), "slept")
    eventually(lambda: w.job is not None, "the worker to hold the job")
    assert w.state is WorkerState.RUNNING
    assert isinstance(w.job, Job) and w.job.data.fun_name == "wait_for_file"
    eventually(lambda: w.job_elapsed > 0.1, "the job's elapsed time to grow")
    gate.touch()
    assert future.result(timeout=TIMEOUT) == "slept"
    eventually(lambda: w.job is None and w.n_done == 2, "the worker idle again")

    # A worker that dies in a job is replaced in its slot: new pid, n_restarts counts it, the job re-runs.
    marker = str(tmp_path / "died")
    assert sched.submit(helpers.die_once, marker, "second try").result(timeout=TIMEOUT) == "second try"
    eventually(lambda: w.state is WorkerState.READY, "the replaced worker to be ready")
    assert (w.n_restarts, sched.stats()["restarts"], w.n_done) == (1, 1, 3)
    assert w.pid != first_pid


def test_worker_output_is_kept_per_worker_and_bounded(sched: Scheduler) -> None:
    sched.echo_output = False
    sched.start(1, wait=False)
    assert sched.submit(helpers.print_lines, 500, 10).result(timeout=TIMEOUT) == 500
    (w,) = sched.workers
    eventually(lambda: len(w.output) > 0 and w.output[-1].startswith("499 "), "the last printed line")
    assert len(w.output) <= 200
    assert w.output[-1] == "499 " + "x" * 10


def test_default_scheduler_is_one_process_wide_scheduler_renewed_after_close() -> None:
    first = jobsched.default_scheduler()
    try:
        assert jobsched.default_scheduler() is first
        assert isinstance(first, Scheduler)
        first.start(1, wait=False)
        assert first.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3
    finally:
        first.close()
    second = jobsched.default_scheduler()
    try:
        assert second is not first and not second.stats()["closed"]
    finally:
        second.close()


def test_repr_is_one_line_outside_a_notebook(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    sched.submit(helpers.add, 1).result(timeout=TIMEOUT)
    text = repr(sched)
    assert "\n" not in text
    assert text == "<Scheduler running: 1 worker, 0 queued, 0 active, 1 done, 0 failed>"


def test_the_default_scheduler_is_replaced_only_through_the_public_functions() -> None:
    from jobsched import background

    first = jobsched.default_scheduler()
    mine = Scheduler()
    try:
        assert background.current_default_scheduler() is first
        assert background.set_default_scheduler(mine) is first
        assert jobsched.default_scheduler() is mine and not first.stats()["closed"], "the previous one is left alone"
        with pytest.raises(TypeError, match="must return a Scheduler, got str"):
            background.replace_default_scheduler(lambda current: "nope")  # type: ignore[arg-type,return-value]
        assert jobsched.default_scheduler() is mine
        seen: list[Scheduler | None] = []
        assert background.replace_default_scheduler(lambda current: seen.append(current) or current) is mine  # type: ignore[func-returns-value]
        assert seen == [mine]
        mine.close()
        assert background.current_default_scheduler() is None, "a closed default scheduler is not current"
        assert background.replace_default_scheduler(lambda current: seen.append(current) or first) is first  # type: ignore[func-returns-value]
        assert seen == [mine, None]
    finally:
        mine.close()
        first.close()
