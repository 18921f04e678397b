"""The scheduler with real worker processes: ordering, callbacks, results, failures, worker counts."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import helpers
import psutil
import pytest
from waiting import TIMEOUT, eventually

import jobsched
from jobsched import Job, JobError, Scheduler, WorkerState, make_python_cmd, make_scheduler, remote_call

WORKERS = Path(__file__).parent / "workers"


def file_scheduler(name: str, entry: str = "worker", **options: Any) -> Scheduler:
    path = WORKERS / name
    return make_scheduler(lambda i: make_python_cmd(path, entry=entry), **options)


def test_one_worker_starts_jobs_in_cost_then_insertion_order() -> None:
    sched = file_scheduler("job_worker.py")
    costs = [3, 1, 2, 1, 0, 3, 2.5, -1]
    for i, cost in enumerate(costs):
        assert sched.add_job(f"job{i}", cost=cost) == i + 1
    started: list[int] = []
    try:
        sched.start(1, before_start=lambda s, job: started.append(job.index))
    finally:
        sched.close()
    assert started == sorted(range(len(costs)), key=lambda i: (costs[i], i))


def test_results_reach_after_stop_with_job_fields() -> None:
    sched = file_scheduler("job_worker.py")
    for i in range(10):
        sched.add_job(i * 10, cost=i % 3)
    results: dict[int, Any] = {}
    jobs: list[Job] = []

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        results[job.index] = result
        jobs.append(job)

    try:
        sched.start(2, after_stop=after_stop)
    finally:
        sched.close()
    assert results == {i: (i, float(i % 3), i * 10) for i in range(10)}
    assert all(job.stop_ms >= job.start_ms > 0 and job.elapsed_ms >= 0 for job in jobs)
    assert sched.n_queued_jobs == 0 and sched.n_active_jobs == 0


def test_none_is_a_valid_result(sched: Scheduler) -> None:
    results: list[Any] = []
    sched.add_job(remote_call(helpers.return_none))
    sched.start(1, after_stop=lambda s, job, result: results.append(result))
    assert results == [None]


def test_a_raising_job_gives_job_error_and_keeps_its_worker(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    pid = sched.submit(helpers.getpid).result(timeout=TIMEOUT)
    with pytest.raises(JobError) as info:
        sched.submit(helpers.raise_value_error, "bad input 42").result(timeout=TIMEOUT)
    err = info.value
    assert err.remote_type == "ValueError"
    assert err.remote_message == "bad input 42"
    assert "raise_value_error" in err.remote_traceback and "ValueError: bad input 42" in err.remote_traceback
    assert "Remote traceback" in str(err)
    assert sched.submit(helpers.getpid).result(timeout=TIMEOUT) == pid
    assert sched.stats()["failed"] == 1


def test_an_unpicklable_result_is_a_job_error_not_a_hang(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    pid = sched.submit(helpers.getpid).result(timeout=TIMEOUT)
    with pytest.raises(JobError) as info:
        sched.submit(helpers.unpicklable_result).result(timeout=TIMEOUT)
    assert "cannot be pickled" in info.value.remote_message
    assert sched.submit(helpers.getpid).result(timeout=TIMEOUT) == pid


def test_a_job_printing_a_lot_breaks_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    sched = file_scheduler("job_worker.py")
    sched.add_job("print")
    sched.add_job("after")
    results: list[Any] = []
    try:
        sched.start(1, after_stop=lambda s, job, result: results.append(result), close_workers=False)
        worker = sched.workers[0]
        assert worker.output[-1].startswith("line 19999 ")
        assert len(worker.output) <= 200  # bounded
    finally:
        sched.close()
    assert results == [(0, 0.0, "print"), (1, 0.0, "after")]
    err = capfd.readouterr().err
    assert "[worker 0] line 19999 " in err


def test_silent_worker_hides_job_output() -> None:
    sched = file_scheduler("job_worker.py", entry="quiet_worker")
    sched.add_job("data")
    results: list[Any] = []
    try:
        sched.start(1, after_stop=lambda s, job, result: results.append(result), close_workers=False)
        assert "hidden" not in sched.workers[0].output
    finally:
        sched.close()
    assert results == ["data"]


def test_sigkill_of_a_busy_worker_reruns_its_job_once(sched: Scheduler, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    delivered: list[Any] = []
    sched.add_job(remote_call(helpers.die_once, str(marker), "survived"))
    sched.start(1, after_stop=lambda s, job, result: delivered.append(result), close_workers=False)
    assert delivered == ["survived"]
    assert marker.exists()
    assert sched.workers[0].n_restarts == 1
    assert sched.stats()["restarts"] == 1


def test_killing_a_busy_worker_from_outside_reruns_the_job(sched: Scheduler, tmp_path: Path) -> None:
    log, release = tmp_path / "starts", tmp_path / "release"

    def starts() -> list[tuple[int, int]]:
        text = log.read_text() if log.exists() else ""
        return [(int(pid), int(attempt)) for pid, attempt in (line.split() for line in text.splitlines())]

    delivered: list[Any] = []
    sched.add_job(remote_call(helpers.record_start_then_wait, str(log), str(release), "released"))
    sched.start(1, after_stop=lambda s, job, result: delivered.append(result), wait=False)
    eventually(lambda: len(starts()) == 1, "the job's first start")
    [(first_pid, _)] = starts()
    assert sched.workers[0].pid == first_pid
    os.kill(first_pid, signal.SIGKILL)  # the job is blocked until `release` exists: it cannot have finished
    eventually(lambda: len(starts()) == 2, "the job to start again after its worker was killed")
    release.touch()
    assert sched.wait(timeout=TIMEOUT)
    (pid_1, attempt_1), (pid_2, attempt_2) = starts()
    assert (attempt_1, attempt_2) == (1, 2) and pid_1 != pid_2, "re-run on a new worker process"
    assert delivered == ["released"], "one result, delivered once"
    assert sched.workers[0].pid == pid_2
    assert sched.workers[0].n_restarts == 1


@pytest.mark.parametrize(
    ("call", "how"),
    [
        (remote_call(helpers.kill_self), "killed by signal SIGKILL"),
        (remote_call(helpers.exit_process, 3), "exit code 3"),
    ],
)
def test_a_job_that_kills_its_worker_fails_after_three_deaths(sched: Scheduler, call: Any, how: str) -> None:
    results: list[Any] = []
    sched.add_job(call)
    sched.add_job(remote_call(helpers.add, 1))
    sched.start(1, after_stop=lambda s, job, result: results.append((job.index, result)), close_workers=False)
    by_index = dict(results)
    assert by_index[1] == 2  # the queue went on
    err = by_index[0]
    assert isinstance(err, JobError) and err.remote_type == "WorkerDied"
    assert err.remote_message.count(how) == 3
    assert "died 3 times" in err.remote_message
    assert sched.workers[0].n_restarts == 3


def test_max_retries_per_job(sched: Scheduler) -> None:
    results: list[Any] = []
    sched.add_job(remote_call(helpers.kill_self), max_retries=1)
    sched.start(1, after_stop=lambda s, job, result: results.append(result))
    assert len(results) == 1 and "died once" in results[0].remote_message


@pytest.mark.parametrize(
    ("worker_file", "quoted"),
    [
        ("broken_syntax.py", "SyntaxError"),
        ("broken_import.py", "jobsched_no_such_module_xyz"),
        ("no_entry.py", "does not define 'worker' (its functions: run)"),
    ],
)
def test_a_broken_worker_file_stops_the_scheduler_with_its_stderr(worker_file: str, quoted: str) -> None:
    sched = file_scheduler(worker_file)
    sched.add_job(1)
    started = time.monotonic()
    try:
        with pytest.raises(jobsched.WorkerStartupError) as info:
            sched.start(2)
    finally:
        sched.close()
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert quoted in message
    assert "exited before they were ready" in message
    assert sched.n_queued_jobs == 1  # nothing lost


def test_a_missing_worker_program_is_a_startup_error() -> None:
    sched = Scheduler(lambda i: ["/nonexistent/python-xyz"])
    sched.add_job(1)
    try:
        with pytest.raises(jobsched.WorkerStartupError, match="nonexistent"):
            sched.start(1)
    finally:
        sched.close()


def test_unpicklable_data_is_refused_in_the_caller_and_the_queue_is_unchanged(sched: Scheduler) -> None:
    sched.submit(helpers.add, 1)
    with pytest.raises(TypeError, match="argument 1"):
        remote_call(helpers.add, 1, (x for x in range(3)))
    with pytest.raises(TypeError, match="keyword argument 'y'"):
        sched.submit(helpers.add, 1, y=threading_lock())
    assert sched.n_queued_jobs == 1
    plain = file_scheduler("job_worker.py")  # plain data goes to a worker file (none is started here)
    plain.add_job(1)
    with pytest.raises(TypeError, match=r"add_job: data is a generator"):
        plain.add_job(x for x in range(3))
    assert plain.n_queued_jobs == 1
    plain.close()


def threading_lock() -> Any:
    import threading

    return threading.Lock()


@pytest.mark.parametrize("cost", ["1", None, float("nan"), True, [1]])
def test_a_bad_cost_is_refused(sched: Scheduler, cost: Any) -> None:
    with pytest.raises(TypeError, match="cost must be a real number"):
        sched.add_job(1, cost=cost)
    assert sched.n_queued_jobs == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_a_bad_worker_count_is_refused(sched: Scheduler, bad: Any) -> None:
    with pytest.raises(ValueError, match="n_workers must be an integer >= 0"):
        sched.start(bad)


def test_zero_workers_with_queued_jobs_is_a_value_error(sched: Scheduler) -> None:
    sched.add_job(remote_call(helpers.add, 1))
    with pytest.raises(ValueError, match="1 job queued but n_workers=0"):
        sched.start(0)
    assert sched.n_queued_jobs == 1


def test_changing_n_workers_between_starts_closes_the_extra_ones(sched: Scheduler) -> None:
    for _ in range(6):
        sched.add_job(remote_call(helpers.getpid))
    sched.start(3, close_workers=False)
    first = {w.index: w.pid for w in sched.workers}
    assert len(first) == 3
    for _ in range(4):
        sched.add_job(remote_call(helpers.getpid))
    pids: list[int] = []
    sched.start(1, close_workers=False, after_stop=lambda s, job, pid: pids.append(pid))
    assert set(pids) == {first[0]}  # the same worker 0, reused
    live = [w for w in sched.workers if w.state is not WorkerState.CLOSED]
    assert [w.index for w in live] == [0]
    for pid in (first[1], first[2]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_counts_while_running(sched: Scheduler, tmp_path: Path) -> None:
    release = tmp_path / "release"
    for _ in range(3):
        sched.add_job(remote_call(helpers.wait_for_file, str(release)))
    assert sched.n_queued_jobs == 3 and sched.n_active_jobs == 0
    sched.start(1, wait=False)
    eventually(lambda: sched.n_active_jobs == 1, "the first job to start")
    assert sched.n_active_jobs == 1 and sched.n_queued_jobs == 2  # the first job holds until `release`
    release.touch()
    assert sched.wait(timeout=TIMEOUT)
    assert sched.stats()["done"] == 3


def test_a_raising_after_stop_stops_dispatch_and_is_raised_in_start(sched: Scheduler) -> None:
    for i in range(5):
        sched.add_job(remote_call(helpers.add, i))

    def after_stop(s: Scheduler, job: Job, result: int) -> None:
        raise KeyError(f"boom {result}")

    with pytest.raises(KeyError, match="boom 1"):
        sched.start(1, after_stop=after_stop)
    assert sched.n_queued_jobs == 4  # nothing else was dispatched, nothing lost
    assert all(w.state is WorkerState.CLOSED for w in sched.workers)


def test_a_raising_before_start_keeps_the_job_queued(sched: Scheduler) -> None:
    sched.add_job(remote_call(helpers.add, 1))

    def before_start(s: Scheduler, job: Job) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        sched.start(1, before_start=before_start)
    assert sched.n_queued_jobs == 1
    results: list[int] = []
    sched.start(1, after_stop=lambda s, job, result: results.append(result))
    assert results == [2]


def test_add_job_is_safe_from_other_threads_while_running(sched: Scheduler) -> None:
    import threading

    sched.start(2, wait=False)
    futures: list[Any] = []
    lock = threading.Lock()

    def producer(base: int) -> None:
        for i in range(200):
            f = sched.submit(helpers.add, base + i, 0)
            with lock:
                futures.append((base + i, f))

    threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert len(futures) == 800
    assert all(f.result(timeout=TIMEOUT) == x for x, f in futures)


def test_the_scheduler_listens_on_loopback_only(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    host, port = helpers.host_port(sched)
    assert host == "127.0.0.1" and port > 0
    listening = [c for c in psutil.Process().net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]


def test_processor_count_is_the_default_worker_count(sched: Scheduler) -> None:
    sched.add_job(remote_call(helpers.add, 1))
    sched.start(close_workers=False)
    assert sched.n_workers == jobsched.processor_count()


def test_repr_is_a_one_line_summary(sched: Scheduler) -> None:
    text = repr(sched)
    assert "\n" not in text and "0 queued" in text and text.startswith("<Scheduler")


def test_a_finished_future_does_not_keep_its_jobs_data_alive(sched: Scheduler) -> None:
    """Holding futures (as a user holding 100,000 of them does) holds results, not the jobs' arguments; and a
    job leaves no reference cycle behind, so its data goes at once, not at the garbage collector's next pass."""
    import gc
    import weakref

    sched.start(1, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    gc.collect()
    gc.disable()  # freed by reference counting alone, or never
    try:
        data = helpers.Box(7)
        ref = weakref.ref(data)
        future = sched.submit(helpers.identity, data)
        assert future.result(timeout=TIMEOUT).value == 7
        del data
        eventually(lambda: ref() is None, "the job's argument to be freed while its future is held")
        assert future.result().value == 7 and not future.cancel()
    finally:
        gc.enable()
