"""Nothing a job or a caller does can break the loop.

Real schedulers with real workers. Each test names the defect it guards against; each fails on the code
before the fix. The general rules: no exception raised by a job's bytes can end the loop, and no future is
left pending after any error.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import guard_jobs
import helpers
import pytest
from waiting import TIMEOUT, eventually

import jobsched
from jobsched import JobError, Scheduler, remote_call
from jobsched.errors import SchedulerBrokenError, SchedulerClosedError, WorkerStartupError
from jobsched.job import Job

pytestmark = pytest.mark.timeout(300)


def _pids(sched: Scheduler) -> list[int | None]:
    return sorted((w.pid for w in sched.workers), key=lambda pid: pid or 0)


def _ready(sched: Scheduler, n: int) -> None:
    """Wait until ``n`` workers have a pid and have each run a job (so they are past their start-up)."""
    futures = [sched.submit(helpers.sleep_then, 0.2, i) for i in range(n)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(n))
    eventually(lambda: len([w for w in sched.workers if w.pid]) == n, f"{n} workers with a pid")


@pytest.fixture
def switchy() -> Iterator[None]:
    """Switch threads every microsecond, as in the issue's reproductions of the races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


# ---------------------------------------------------------------- a result whose unpickling raises


@pytest.mark.parametrize("kind", guard_jobs.HOSTILE_KINDS)
def test_a_result_whose_unpickling_raises_fails_only_its_own_job(sched: Scheduler, kind: str) -> None:
    """Defect 3: SystemExit from unpickling a result killed every worker, hung its future, failed a neighbour."""
    sched.start(2, wait=False)
    _ready(sched, 2)
    pids = _pids(sched)
    slow = sched.submit(helpers.sleep_then, 0.5, "neighbour")  # running on the other worker meanwhile
    hostile = sched.submit(guard_jobs.hostile_result, kind)
    after = [sched.submit(helpers.add, i) for i in range(10)]

    error = hostile.exception(timeout=TIMEOUT)
    assert isinstance(error, JobError), repr(error)
    expected = {"Exception": "ValueError"}.get(kind, kind)
    assert error.remote_type == expected
    assert "could not be unpickled" in error.remote_message
    assert slow.result(timeout=TIMEOUT) == "neighbour"
    assert [f.result(timeout=TIMEOUT) for f in after] == list(range(1, 11))
    assert sched.wait(timeout=TIMEOUT) is True
    assert sched.running
    assert _pids(sched) == pids, "no worker was killed or replaced"
    stats = sched.stats()
    assert (stats["failed"], stats["error"]) == (1, None)


def test_a_hostile_result_reaches_after_stop_as_a_job_error_in_a_blocking_start() -> None:
    """Defect 3, blocking start: the loop runs in the caller's thread, so a SystemExit would end the caller."""
    sched = Scheduler()
    try:
        for kind in guard_jobs.HOSTILE_KINDS:
            sched.add_job(remote_call(guard_jobs.hostile_result, kind))
        sched.add_job(remote_call(helpers.add, 41))
        results: dict[int, Any] = {}
        sched.start(2, after_stop=lambda s, job, result: results.__setitem__(job.index, result))
        assert sorted(results) == list(range(len(guard_jobs.HOSTILE_KINDS) + 1))
        assert results[len(guard_jobs.HOSTILE_KINDS)] == 42
        for kind, index in zip(guard_jobs.HOSTILE_KINDS, range(len(guard_jobs.HOSTILE_KINDS)), strict=True):
            assert isinstance(results[index], JobError)
            assert results[index].remote_type == {"Exception": "ValueError"}.get(kind, kind)
    finally:
        sched.close(timeout=5.0)


# ---------------------------------------------------------------- general rule: no job's bytes end the loop


def test_hostile_and_odd_results_interleaved_with_normal_jobs_never_end_the_loop(sched: Scheduler) -> None:
    """The rule behind it: every future settles, normal jobs get their values, the loop stays up."""
    sched.start(2, wait=False)
    big = 20 * 1024 * 1024
    expected: list[tuple[Future[Any], Any]] = []
    hostile: list[tuple[Future[Any], str]] = []
    for round_ in range(3):
        for kind in guard_jobs.HOSTILE_KINDS:
            hostile.append((sched.submit(guard_jobs.hostile_result, kind), kind))
            expected.append((sched.submit(helpers.add, round_, 100), round_ + 100))
        expected.append((sched.submit(helpers.return_none), None))
        expected.append((sched.submit(helpers.big_bytes, big), b"\xab" * big))
        expected.append((sched.submit(helpers.identity, [round_] * 3), [round_] * 3))
    cycles = [sched.submit(guard_jobs.recursive_list) for _ in range(3)]
    unpicklable = sched.submit(helpers.unpicklable_result)

    for future, value in expected:
        assert future.result(timeout=TIMEOUT) == value
    for future, kind in hostile:
        error = future.exception(timeout=TIMEOUT)
        assert isinstance(error, JobError) and error.remote_type == {"Exception": "ValueError"}.get(kind, kind)
    for future in cycles:
        cycle = future.result(timeout=TIMEOUT)
        assert cycle[:2] == [1, 2] and cycle[2] is cycle
    assert isinstance(unpicklable.exception(timeout=TIMEOUT), JobError)
    assert sched.wait(timeout=TIMEOUT) is True
    assert sched.running
    stats = sched.stats()
    assert (stats["done"], stats["failed"], stats["error"]) == (len(expected) + len(hostile) + 4,
                                                                len(hostile) + 1, None)
    assert all(w.n_restarts == 0 for w in sched.workers)


# ---------------------------------------------------------------- numbers that pass the checks


HUGE = 10**400  # an int no float can hold


@pytest.mark.parametrize(("options", "error", "words"), [
    ({"cost": HUGE}, ValueError, "too large"),
    ({"cost": -HUGE}, ValueError, "too large"),
    ({"cost": math.nan}, TypeError, "nan"),
    ({"cost": "1"}, TypeError, "real number"),
    ({"cost": True}, TypeError, "real number"),
    ({"timeout": HUGE}, ValueError, "timeout"),
    ({"timeout": math.inf}, ValueError, "timeout"),
    ({"timeout": -math.inf}, ValueError, "timeout"),
    ({"timeout": math.nan}, ValueError, "timeout"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"timeout": 0}, ValueError, "timeout"),
    ({"timeout": 1e13}, ValueError, "timeout"),
    ({"timeout": "5"}, TypeError, "timeout"),
    ({"max_retries": 0}, ValueError, "max_retries"),
    ({"max_retries": 1.5}, ValueError, "max_retries"),
])
def test_out_of_range_numbers_are_refused_at_once_and_the_queue_is_unchanged(
        sched: Scheduler, options: dict[str, Any], error: type[Exception], words: str) -> None:
    """Defect 4: cost=10**400 or timeout=10**400 passed the checks and broke the loop later."""
    sched.add_job(remote_call(helpers.add, 1))
    with pytest.raises(error, match=words):
        sched.add_job(remote_call(helpers.add, 2), **options)
    with pytest.raises(error, match=words):
        sched.submit(helpers.add, 3, **options)
    assert (sched.n_queued_jobs, sched.stats()["done"]) == (1, 0)
    later = sched.submit(helpers.add, 4, cost=-1)
    sched.start(1, wait=False)
    assert later.result(timeout=TIMEOUT) == 5
    assert sched.wait(timeout=TIMEOUT) is True
    assert sched.stats()["done"] == 2


def test_extreme_but_valid_costs_and_timeouts_run_in_cost_order() -> None:
    """Defect 4, the other side: infinite costs and huge ints that fit a float are valid and keep their order.

    ``cost=float('inf')`` is allowed: it is a real number that orders after every finite cost (``-inf``
    before), so it means "last" / "first". A huge int cost travels as a float (the JOB frame), a small one
    as the caller's int.
    """
    worker_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "job_worker.py")
    sched = Scheduler(make_worker_command=lambda i: jobsched.make_python_cmd(worker_file, entry="worker"))
    try:
        costs: list[float] = [math.inf, 10**300, -(10**300), 2**63, -(2**63), 1e308, -math.inf, 0, 7]
        for cost in costs:
            sched.add_job("x", cost=cost, timeout=1e12)
        seen: list[Any] = []
        sched.start(1, after_stop=lambda s, job, result: seen.append(result))
        in_order = sorted(range(len(costs)), key=lambda i: float(costs[i]))
        assert [index for index, _, _ in seen] == in_order
        sent = {index: cost for index, cost, _ in seen}
        for index, cost in enumerate(costs):  # the worker's job.cost: the int itself within int64, else a float
            assert sent[index] == (cost if isinstance(cost, int) and -(2**63) <= cost < 2**63 else float(cost))
            assert type(sent[index]) is (int if isinstance(cost, int) and -(2**63) <= cost < 2**63 else float)
        assert sched.stats()["done"] == len(costs)
    finally:
        sched.close(timeout=5.0)


# ---------------------------------------------------------------- the loop died, the scheduler took work


EXITS_AT_ONCE = [sys.executable, "-c", "import sys; sys.exit(1)"]
MISSING_PROGRAM = ["/nonexistent/jobsched-worker"]


@pytest.mark.parametrize("argv", [EXITS_AT_ONCE, MISSING_PROGRAM], ids=["exits", "missing"])
def test_after_workers_fail_to_start_every_future_fails_and_new_jobs_are_refused_until_start(
        argv: list[str]) -> None:
    """Defect 5: after the loop ended on WorkerStartupError, submit kept taking jobs whose futures never ended."""
    sched = Scheduler(make_worker_command=lambda i: argv, echo_output=False)
    try:
        sched.start(2, wait=False)
        futures = [sched.submit(helpers.add, i) for i in range(5)]
        for future in futures:
            assert isinstance(future.exception(timeout=TIMEOUT), WorkerStartupError)
        eventually(lambda: not sched.running, "the loop to end")
        for attempt in (lambda: sched.submit(helpers.add, 1), lambda: sched.add_job(remote_call(helpers.add, 1))):
            with pytest.raises(SchedulerBrokenError, match="WorkerStartupError") as info:
                attempt()
            assert isinstance(info.value.__cause__, WorkerStartupError)
        assert sched.n_queued_jobs == 0
        with pytest.raises(WorkerStartupError):  # the kept error, once
            sched.wait(timeout=TIMEOUT)
        assert sched.stats()["error"] is not None, "still refusing new jobs until start()"
        with pytest.raises(SchedulerBrokenError):
            sched.submit(helpers.add, 1)
        # start() again clears it: the workers fail again, and so does the new future, at once.
        sched.start(1, wait=False)
        again = sched.submit(helpers.add, 1)
        assert isinstance(again.exception(timeout=TIMEOUT), WorkerStartupError)
    finally:
        sched.close(timeout=5.0)


def test_submits_racing_the_end_of_a_failing_loop_are_refused_or_settled(switchy: None) -> None:
    """Defect 5's rule: a job submitted while the loop is ending on an error is refused or settled, never lost.

    Failed before the fix: a job added after the loop failed the queued futures, but before it ended, stayed
    pending forever; and a wait() that took the error meanwhile let the loop run on with no workers.
    """
    for round_ in range(10):
        _submit_while_the_loop_fails(round_)


def _submit_while_the_loop_fails(round_: int) -> None:
    sched = Scheduler(make_worker_command=lambda i: EXITS_AT_ONCE, echo_output=False)
    futures: list[Future[Any]] = []
    refusals: list[BaseException] = []
    stop = threading.Event()

    def submitter() -> None:
        while not stop.is_set():
            try:
                futures.append(sched.submit(helpers.add, 1))
            except BaseException as exc:  # SchedulerBrokenError; anything else fails the test
                refusals.append(exc)
                return

    thread = threading.Thread(target=submitter, name="submitter")
    try:
        sched.start(1, wait=False)
        futures.append(sched.submit(helpers.add, 0))  # wait() cannot find the scheduler idle before the error
        thread.start()
        if round_ % 2:  # a caller's wait() takes the error while the loop is still ending
            with pytest.raises(WorkerStartupError):
                sched.wait(timeout=TIMEOUT)
        eventually(lambda: not sched.running, "the loop to end")
        stop.set()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert all(isinstance(r, SchedulerBrokenError) for r in refusals), refusals
        for future in futures:
            assert isinstance(future.exception(timeout=30), WorkerStartupError), f"round {round_}"
    finally:
        stop.set()
        sched.close(timeout=5.0)


def test_an_executor_whose_workers_cannot_start_fails_its_futures_and_says_why() -> None:
    """Defect 5 in Executor: ``_started`` stayed set and later submits hung on a dead loop."""
    ex = jobsched.Executor(1, make_worker_command=lambda i: EXITS_AT_ONCE, echo_output=False)
    try:
        first = ex.submit(helpers.add, 1)
        assert isinstance(first.exception(timeout=TIMEOUT), WorkerStartupError)
        eventually(lambda: not ex.scheduler.running, "the loop to end")
        # The next call either raises the kept error at once or starts afresh; its future is never left pending.
        for _ in range(3):
            try:
                future = ex.submit(helpers.add, 2)
            except (WorkerStartupError, SchedulerBrokenError) as exc:
                assert "WorkerStartupError" in f"{type(exc).__name__}: {exc}"
            else:
                assert isinstance(future.exception(timeout=TIMEOUT), WorkerStartupError)
                eventually(lambda: not ex.scheduler.running, "the loop to end")
    finally:
        ex.shutdown(wait=False)
        ex.scheduler.close(timeout=5.0)


# ---------------------------------------------------------------- submit racing close()


def test_a_future_submitted_while_close_runs_is_refused_or_settled(switchy: None) -> None:
    """Defect 6: a future submitted during close() stayed pending forever (about 1 try in 4)."""
    for round_ in range(30):
        _submit_while_closing(round_)


def _submit_while_closing(round_: int) -> None:
    sched = Scheduler()
    futures: list[Future[Any]] = []
    refusals: list[BaseException] = []
    go = threading.Barrier(3)

    def submitter() -> None:
        go.wait(TIMEOUT)
        while True:
            try:
                futures.append(sched.submit(helpers.add, 1))
            except BaseException as exc:  # SchedulerClosedError; anything else fails the test
                refusals.append(exc)
                return

    threads = [threading.Thread(target=submitter, name=f"submitter-{i}") for i in range(2)]
    try:
        sched.start(1, wait=False)
        if round_ % 2:
            assert sched.submit(helpers.add, 0).result(timeout=TIMEOUT) == 1  # a worker is up and busy
        for t in threads:
            t.start()
        go.wait(TIMEOUT)
        time.sleep(0.001 * (round_ % 5))
        sched.close(timeout=5.0)
    finally:
        for t in threads:
            t.join(TIMEOUT)
        sched.close(timeout=5.0)
    assert not any(t.is_alive() for t in threads)
    assert len(refusals) == 2 and all(isinstance(r, SchedulerClosedError) for r in refusals), refusals
    for future in futures:
        # Settled within a bound: a result, an error (SchedulerClosedError), or cancelled while queued.
        done, _ = concurrent.futures.wait([future], timeout=10.0)
        assert done, f"round {round_}: a future submitted during close() is left pending"
        if not future.cancelled():
            error = future.exception(timeout=0)
            assert (error is None and future.result(timeout=0) == 2) or isinstance(error, SchedulerClosedError), error


def test_futures_cancelled_while_queued_are_done_for_concurrent_futures_wait_and_as_completed(
        tmp_path: Any) -> None:
    """Defect 6, found by the test above: close() (or cancel()) left queued futures CANCELLED but never told
    their waiters, so ``concurrent.futures.wait`` and ``as_completed`` never counted them as done."""
    sched = Scheduler()
    try:
        sched.start(1, wait=False)
        gate = str(tmp_path / "gate")
        busy = sched.submit(helpers.wait_for_file, gate, "busy")
        queued = [sched.submit(helpers.add, i) for i in range(4)]
        assert queued[0].cancel() is True
        done, not_done = concurrent.futures.wait(queued[:1], timeout=10.0)
        assert (done, not_done) == ({queued[0]}, set())
        assert list(concurrent.futures.as_completed(queued[:1], timeout=10.0)) == [queued[0]]
        eventually(lambda: busy.running(), "the first job to run")
        (tmp_path / "gate").touch()
        sched.close(timeout=5.0)  # the busy job finishes; the queued ones are cancelled
        assert busy.result(timeout=0) == "busy"
        done, not_done = concurrent.futures.wait(queued, timeout=10.0)
        assert not_done == set() and all(f.cancelled() for f in queued)
        assert len(list(concurrent.futures.as_completed(queued, timeout=10.0))) == 4
    finally:
        sched.close(timeout=5.0)


# ---------------------------------------------------------------- two threads start one scheduler


@pytest.mark.parametrize("modes", [(True, True), (False, False), (True, False)],
                         ids=["both-blocking", "both-background", "mixed"])
def test_two_threads_starting_one_scheduler_make_one_loop(modes: tuple[bool, bool]) -> None:
    """Defect 7: two concurrent start() calls ran two loops over one state (IndexError, lost jobs)."""
    for round_ in range(20):
        _start_from_two_threads(round_, modes)


def _start_from_two_threads(round_: int, modes: tuple[bool, bool]) -> None:
    sched = Scheduler()
    delivered: list[int] = []
    loop_threads: set[str] = set()
    outcomes: dict[str, BaseException | None] = {}
    most_loops = [0]
    go = threading.Barrier(2)

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        assert result == job.index + 1
        delivered.append(job.index)
        loop_threads.add(threading.current_thread().name)
        loops = [t for t in threading.enumerate() if t.name == "jobsched-scheduler"]
        most_loops[0] = max(most_loops[0], len(loops))

    def starter(wait: bool) -> None:
        name = threading.current_thread().name
        try:
            go.wait(TIMEOUT)
            sched.start(2, after_stop=after_stop, wait=wait)
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    for i in range(8):
        sched.add_job(remote_call(helpers.add, i), cost=i)
    threads = [threading.Thread(target=starter, args=(wait,), name=f"starter-{k}") for k, wait in enumerate(modes)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        assert len(outcomes) == 2
        for name, exc in outcomes.items():
            if exc is not None:  # the loser of two blocking starts: a clear error naming the winner
                other = "starter-1" if name == "starter-0" else "starter-0"
                assert type(exc) is RuntimeError, repr(exc)
                assert f"thread {other!r}" in str(exc) and "wait()" in str(exc), str(exc)
        assert any(exc is None for exc in outcomes.values())
        if sched.running:
            assert sched.wait(timeout=TIMEOUT) is True
        assert sorted(delivered) == list(range(8)), f"round {round_}: each job exactly once"
        assert most_loops[0] <= 1
        assert len(loop_threads) == 1, f"round {round_}: callbacks ran on {loop_threads}"
        assert sched.stats()["error"] is None
    finally:
        sched.close(timeout=5.0)


# ---------------------------------------------------------------- blocking calls from a callback


def test_wait_from_after_stop_is_a_clear_error_raised_by_start() -> None:
    """Defect 8: wait() in after_stop stalled the whole loop."""
    sched = Scheduler()
    try:
        sched.add_job(remote_call(helpers.add, 1))
        sched.add_job(remote_call(helpers.add, 2))
        calls: list[int] = []

        def after_stop(s: Scheduler, job: Job, result: Any) -> None:
            calls.append(job.index)
            s.wait(timeout=30)

        started = time.monotonic()
        with pytest.raises(RuntimeError, match="callbacks run on the scheduler's loop thread") as info:
            sched.start(1, after_stop=after_stop)
        assert "wait()" in str(info.value)
        assert time.monotonic() - started < 20, "it did not wait for its own loop"
        assert calls == [0]
        assert sched.n_queued_jobs == 1, "dispatch stopped; the other job stays queued"
        sched.start(1)  # and runs when started again
        assert sched.n_queued_jobs == 0 and sched.stats()["done"] == 2
    finally:
        sched.close(timeout=5.0)


@pytest.mark.parametrize("callback", ["before_start", "after_stop"])
def test_a_blocking_start_from_a_callback_is_a_clear_error(sched: Scheduler, callback: str) -> None:
    """Defect 8: start(wait=True) from a callback would block the loop it runs on."""
    def call_start(s: Scheduler, *rest: Any) -> None:
        s.start(1)

    sched.add_job(remote_call(helpers.add, 1))
    with pytest.raises(RuntimeError, match="callbacks run on the scheduler's loop thread"):
        sched.start(1, **{callback: call_start})


def test_wait_from_a_background_after_stop_is_raised_once_by_wait(sched: Scheduler) -> None:
    """Defect 8 in the background: the callback's error reaches the caller's wait(), not a stalled loop."""
    sched.start(1, wait=False, after_stop=lambda s, job, result: s.wait())
    sched.submit(helpers.add, 1)
    with pytest.raises(RuntimeError, match="callbacks run on the scheduler's loop thread"):
        sched.wait(timeout=TIMEOUT)


# ---------------------------------------------------------------- controls on a closed scheduler


@pytest.mark.parametrize("started", [False, True])
def test_scale_pause_resume_on_a_closed_scheduler_raise(started: bool) -> None:
    """Defect 9: scale(n) and pause() on a closed scheduler were accepted silently."""
    sched = Scheduler()
    if started:
        sched.start(1, wait=False)
        assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    sched.close(timeout=5.0)
    n_workers, paused = sched.n_workers, sched.paused
    for control in (lambda: sched.scale(3), sched.pause, sched.resume):
        with pytest.raises(SchedulerClosedError, match="closed"):
            control()
    assert (sched.n_workers, sched.paused) == (n_workers, paused) == (0, False)
    with pytest.raises(SchedulerClosedError):
        sched.start(1, wait=False)
    assert not sched.running


# ---------------------------------------------------------------- general rule: no pending future after an error


def test_a_raising_background_after_stop_keeps_queued_futures_until_start_again(tmp_path: Any) -> None:
    """The rule behind defects 5 and 8 (README "Failures"): after a callback error no future is lost.

    The raising callback's own job is delivered (its future has its result); dispatch stops; queued jobs stay
    queued, with pending futures, and new jobs are refused (SchedulerBrokenError) until ``start()`` runs them;
    ``close()`` instead would cancel them. wait() raises the callback's error once.
    """
    sched = Scheduler()
    try:
        raised: list[int] = []

        def after_stop(s: Scheduler, job: Job, result: Any) -> None:
            if not raised:
                raised.append(job.index)
                raise KeyError("after_stop failed")

        sched.start(1, wait=False, after_stop=after_stop)
        first = sched.submit(helpers.add, 0)
        queued = [sched.submit(helpers.add, i) for i in range(1, 6)]
        assert first.result(timeout=TIMEOUT) == 1
        with pytest.raises(KeyError, match="after_stop failed"):
            sched.wait(timeout=TIMEOUT)
        eventually(lambda: not sched.running, "the loop to stop")
        assert raised == [0]
        # Queued futures may have been dispatched before the error: each is either done or still queued.
        pending = [f for f in queued if not f.done()]
        assert sched.n_queued_jobs == len(pending)
        with pytest.raises(SchedulerBrokenError, match="KeyError") as info:
            sched.submit(helpers.add, 99)
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(RuntimeError, match="not running; call start"):  # not the KeyError again
            sched.wait(timeout=TIMEOUT)
        sched.start(1, wait=False, after_stop=None)
        assert [f.result(timeout=TIMEOUT) for f in queued] == [2, 3, 4, 5, 6]
        assert sched.submit(helpers.add, 9).result(timeout=TIMEOUT) == 10
        assert sched.wait(timeout=TIMEOUT) is True
    finally:
        sched.close(timeout=5.0)


# ---------------------------------------------------------------- memory for a large payload


_MEMORY_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import guard_jobs, helpers
    from jobsched import Scheduler

    def hwm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    SIZE = {size}
    if __name__ == "__main__":
        with Scheduler() as sched:
            sched.start(1, wait=False)
            assert sched.submit(helpers.add, 1).result(timeout=60) == 2
            payload = bytes(SIZE) if {direction!r} == "argument" else None
            before = hwm()
            if payload is not None:
                assert sched.submit(guard_jobs.length, payload).result(timeout=120) == SIZE
            else:
                result = sched.submit(helpers.big_bytes, SIZE).result(timeout=120)
                assert len(result) == SIZE
            after = hwm()
        print(after - before)
""")


@pytest.mark.parametrize("direction", ["argument", "result"])
def test_a_100mb_payload_costs_at_most_about_twice_its_size_in_the_scheduler(tmp_path: Any, direction: str) -> None:
    """Defect 13: a 100 MB argument cost about 3.9x its size in scheduler memory (joins and copies)."""
    size = 100 * 1024 * 1024
    script = tmp_path / "memory.py"
    script.write_text(_MEMORY_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), size=size,
                                            direction=direction))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    growth = int(out.stdout.split()[-1])
    assert growth <= 2.3 * size, f"{direction}: peak grew by {growth / size:.2f}x the payload"
