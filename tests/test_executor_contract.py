"""``jobsched.Executor`` keeps the ``concurrent.futures`` contract: exceptions, helpers, exit, constructor.

Real workers throughout; the interpreter-exit cases run a child Python, as CPython's own tests do.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import contract_jobs as jobs
import pytest

from jobsched import Executor, JobError, Scheduler
from jobsched.errors import RemoteTraceback, SchedulerBrokenError, WorkerInitializerError, WorkerStartupError

TIMEOUT = 60
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture
def executor() -> Iterator[Executor]:
    with Executor(2) as ex:
        yield ex


# ------------------------------------------------------------------ exceptions


def test_a_failed_call_raises_its_own_type_and_a_job_error(executor: Executor) -> None:
    """``except ZeroDivisionError`` and ``except JobError`` both catch it; the remote traceback is its cause."""
    future = executor.submit(jobs.divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as caught:
        future.result(TIMEOUT)
    error = caught.value
    assert isinstance(error, JobError)
    assert error.remote_type == "ZeroDivisionError" and error.remote_message == "division by zero"
    assert error.job_index is not None and error.attempts == 1
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in divide" in error.__cause__.tb and "in divide" in error.remote_traceback
    again = pickle.loads(pickle.dumps(error))  # a class made at run time still pickles
    assert type(again) is type(error) and again == error


def test_map_raises_the_calls_own_type(executor: Executor) -> None:
    with pytest.raises(ZeroDivisionError):
        list(executor.map(jobs.divide, [1, 2], [1, 0], timeout=TIMEOUT))


def test_a_user_exception_class_with_its_own_constructor_keeps_its_type(executor: Executor) -> None:
    error = executor.submit(jobs.raise_picky).exception(TIMEOUT)
    assert isinstance(error, jobs.PickyError) and isinstance(error, ValueError) and isinstance(error, JobError)
    assert error.remote_type == "PickyError"


def test_a_class_that_exists_only_in_the_worker_gives_a_plain_job_error_naming_it(executor: Executor) -> None:
    error = executor.submit(jobs.local_error_class).exception(TIMEOUT)
    assert type(error) is JobError and error.remote_type == "OnlyHere"
    assert "defined inside the job" in str(error)


@pytest.mark.parametrize(("fn", "args", "remote_type"), [
    (jobs.keyboard_interrupt, (), "KeyboardInterrupt"),
    (sys.exit, (3,), "SystemExit"),
])
def test_a_jobs_exit_or_ctrl_c_is_a_plain_job_error(executor: Executor, fn: object, args: tuple[object, ...],
                                                    remote_type: str) -> None:
    """It must never look like the caller's own exit or Ctrl-C: an ``Exception``, not a ``BaseException``."""
    error = executor.submit(fn, *args).exception(TIMEOUT)  # type: ignore[arg-type]
    assert type(error) is JobError and error.remote_type == remote_type
    assert not isinstance(error, (SystemExit, KeyboardInterrupt))


def test_a_result_that_cannot_be_pickled_raises_the_picklers_own_error(executor: Executor) -> None:
    """As with ProcessPoolExecutor, ``except PicklingError`` catches it; the message names the result."""
    error = executor.submit(jobs.make, jobs.FailsToPickle).exception(TIMEOUT)
    assert isinstance(error, pickle.PicklingError) and isinstance(error, JobError), error
    assert "the result of job" in str(error) and "FailsToPickle" in str(error)
    assert executor.submit(jobs.divide, 4, 2).result(TIMEOUT) == 2


def test_a_result_that_cannot_be_unpickled_here_fails_that_call_alone_with_its_type(executor: Executor) -> None:
    error = executor.submit(jobs.make, jobs.FailsToUnpickle).exception(TIMEOUT)
    assert isinstance(error, pickle.UnpicklingError) and isinstance(error, JobError), error
    assert "refused at unpickling" in str(error)
    assert executor.submit(jobs.divide, 4, 2).result(TIMEOUT) == 2


def test_an_uncaught_call_error_prints_the_workers_source_line(executor: Executor) -> None:
    """The remote traceback is the ``__cause__``, so ``sys.excepthook`` shows the worker's frames first."""
    error = executor.submit(jobs.raise_with_comment).exception(TIMEOUT)
    assert isinstance(error, RuntimeError) and error.__cause__ is not None
    assert "raise RuntimeError(123)  # the line a remote traceback shows" in error.__cause__.tb
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        sys.excepthook(type(error), error, error.__traceback__)
    text = printed.getvalue()
    assert text.index("# the line a remote traceback shows") < text.index("job ")


def test_after_stop_and_the_journal_give_the_same_exception(tmp_path: Path) -> None:
    journal = str(tmp_path / "j.sqlite")
    got: list[object] = []
    with Scheduler(journal=journal) as sched:
        sched.add_job(_rc(jobs.raise_runtime, "boom"))
        sched.start(1, after_stop=lambda s, job, result: got.append(result))
    with Scheduler(journal=journal, rerun_failed=False) as sched:
        future = sched.submit(jobs.raise_runtime, "boom")
        sched.start(1)
        served = future.exception(TIMEOUT)
    for error in (got[0], served):
        assert isinstance(error, RuntimeError) and isinstance(error, JobError)
        assert error.remote_message == "boom"
    assert served is not None and isinstance(served.__cause__, RemoteTraceback)


def _rc(fn: object, *args: object) -> object:
    from jobsched import remote_call

    return remote_call(fn, *args)  # type: ignore[arg-type]


def test_broken_executor_errors_are_broken_executors() -> None:
    for cls in (WorkerStartupError, SchedulerBrokenError, WorkerInitializerError):
        assert issubclass(cls, cf.BrokenExecutor) and issubclass(cls, RuntimeError)


# ------------------------------------------------------------------ the stdlib helpers


def test_wait_first_exception_with_a_failed_future_returns_at_once(executor: Executor) -> None:
    """The stdlib holds each future's lock and asks for its exception: that must not deadlock."""
    failed = executor.submit(jobs.divide, 1, 0)
    failed.exception(TIMEOUT)
    slow = executor.submit(jobs.sleep_and_return, 30, None)
    plain: cf.Future[int] = cf.Future()
    start = time.monotonic()
    done, not_done = cf.wait([failed, slow, plain], timeout=10, return_when=cf.FIRST_EXCEPTION)
    assert done == {failed} and not_done == {slow, plain}
    assert time.monotonic() - start < 5
    assert slow.cancel()
    assert executor.submit(jobs.divide, 4, 2).result(TIMEOUT) == 2  # the executor did not freeze


@pytest.mark.parametrize("return_when", [cf.FIRST_COMPLETED, cf.FIRST_EXCEPTION, cf.ALL_COMPLETED])
def test_wait_and_as_completed_over_every_kind_of_future(executor: Executor, return_when: str) -> None:
    ok = executor.submit(jobs.divide, 1, 1)
    bad = executor.submit(jobs.divide, 1, 0)
    queued = [executor.submit(jobs.sleep_and_return, 5, i) for i in range(6)]
    cancelled = queued[-1]
    assert cancelled.cancel()
    finished: cf.Future[int] = cf.Future()
    finished.set_result(7)
    called: list[cf.Future[object]] = []
    for f in (ok, bad, cancelled, finished):
        f.add_done_callback(called.append)
    everything = [ok, bad, cancelled, finished, queued[0]]
    done, _ = cf.wait(everything, timeout=TIMEOUT, return_when=return_when)
    assert {cancelled, finished} <= done
    assert {f for f in as_completed_list(everything[:4])} == set(everything[:4])
    assert set(called) == {ok, bad, cancelled, finished}
    for f in queued:
        f.cancel()


def as_completed_list(fs: list[cf.Future[object]]) -> list[cf.Future[object]]:
    return list(cf.as_completed(fs, timeout=TIMEOUT))


# ------------------------------------------------------------------ map, dependencies, constructor


def test_map_holds_no_reference_to_a_result_it_has_yielded(executor: Executor) -> None:
    results = executor.map(jobs.make_box, [1, 2, 3], timeout=TIMEOUT)
    first = next(results)
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None  # the generator, still alive, kept nothing of it
    assert [box.n for box in results] == [2, 3]


@pytest.mark.parametrize("chunksize", [0, -1, 1.5])
def test_map_refuses_a_chunksize_below_one_at_once(executor: Executor, chunksize: object) -> None:
    with pytest.raises(ValueError, match=f"chunksize must be an integer >= 1, got {chunksize!r}"):
        executor.map(jobs.divide, [1], [1], chunksize=chunksize)  # type: ignore[arg-type]
    assert list(executor.map(jobs.divide, [4, 6], [2, 3], chunksize=50, timeout=TIMEOUT)) == [2, 2]


def test_max_tasks_per_child_with_an_early_shutdown_finishes_every_call() -> None:
    ex = Executor(3, max_tasks_per_child=1)
    futures = [ex.submit(jobs.divide, i * i, 1) for i in range(6)]
    ex.shutdown()
    assert [f.result(TIMEOUT) for f in futures] == [i * i for i in range(6)]


def test_a_future_argument_is_a_dependency_at_any_depth(executor: Executor) -> None:
    a = executor.submit(jobs.sleep_and_return, 0.3, 1)
    b = executor.submit(jobs.total, [a, 10], {"k": a})
    assert not b.done()
    assert b.result(TIMEOUT) == 12
    failed = executor.submit(jobs.divide, 1, 0)
    after = executor.submit(jobs.total, [failed], {"k": 0})
    assert isinstance(after.exception(TIMEOUT), ZeroDivisionError)


def test_a_future_inside_remote_call_is_refused_with_the_fix() -> None:
    from jobsched import remote_call

    with pytest.raises(TypeError, match=r"pass future\.result\(\)"):
        remote_call(jobs.divide, cf.Future(), 1)


def test_initializer_runs_once_in_each_worker_before_its_first_call() -> None:
    with Executor(2, None, jobs.set_init, ("ready",)) as ex:
        assert [ex.submit(jobs.get_init).result(TIMEOUT) for _ in range(4)] == ["ready"] * 4


def test_a_failing_initializer_breaks_the_executor_with_its_traceback() -> None:
    ex = Executor(2, initializer=jobs.fail_init)
    try:
        futures = [ex.submit(jobs.divide, 1, 1) for _ in range(3)]
        for future in futures:
            error = future.exception(TIMEOUT)
            assert isinstance(error, cf.BrokenExecutor), error
            assert "error in initializer" in str(error)
        with pytest.raises(cf.BrokenExecutor, match="Executor"):
            ex.submit(jobs.divide, 1, 1)
    finally:
        ex.shutdown()


def test_constructor_takes_process_pool_arguments_and_names_executor_in_errors() -> None:
    with Executor(2, max_tasks_per_child=1) as ex:
        pids = {ex.submit(os.getpid).result(TIMEOUT) for _ in range(3)}
        assert len(pids) == 3
    with pytest.raises(ValueError, match="Executor: mp_context"):
        Executor(2, mp_context=object())
    with pytest.raises(TypeError, match=r"Executor\(\) got an unexpected keyword argument 'nope'"):
        Executor(2, nope=1)
    with pytest.raises(ValueError, match="Executor: max_tasks_per_child"):
        Executor(2, max_tasks_per_child=0)


def test_four_long_calls_on_four_workers_run_side_by_side() -> None:
    """A fresh pool gives no worker a second call while another is starting or idle."""
    with Executor(4) as ex:
        ex.submit(jobs.divide, 1, 1).result(TIMEOUT)  # the pool is up (start-up time is not the point here)
        start = time.monotonic()
        assert [f.result(TIMEOUT) for f in [ex.submit(jobs.sleep_and_return, 3, i) for i in range(4)]] == \
            [0, 1, 2, 3]
        assert time.monotonic() - start < 5.5  # one at a time per worker: 3 s; two on one worker: 6 s


def test_four_long_calls_on_a_fresh_executor_run_side_by_side() -> None:
    with Executor(4) as ex:
        start = time.monotonic()
        futures = [ex.submit(jobs.sleep_and_return, 3, i) for i in range(4)]
        assert [f.result(TIMEOUT) for f in futures] == [0, 1, 2, 3]
        assert time.monotonic() - start < 5.5


def test_map_over_16_mib_arrays() -> None:
    np = pytest.importorskip("numpy")
    arrays = [np.full(2 * 1024 * 1024, i, dtype=np.float64) for i in range(3)]  # 16 MiB each
    with Executor(2) as ex:
        assert list(ex.map(jobs.nbytes, arrays, timeout=TIMEOUT)) == [16 * 1024 * 1024] * 3


# ------------------------------------------------------------------ interpreter exit and failed threads


def _child(code: str, timeout: float = 90, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, HERE])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=HERE, **kwargs)  # type: ignore[call-overload]


# CPython 3.12.0 and 3.12.1 refuse to start a thread inside threading's exit hooks ("can't create new thread at
# interpreter shutdown"), so nothing can start the workers that pending calls need there; 3.12.2 lifted that.
EXIT_HOOKS_START_THREADS = sys.version_info[:3] not in ((3, 12, 0), (3, 12, 1))
needs_threads_at_exit = pytest.mark.skipif(not EXIT_HOOKS_START_THREADS,
                                           reason="CPython 3.12.0 and 3.12.1 start no thread at interpreter exit")


@needs_threads_at_exit
def test_an_executor_not_shut_down_finishes_its_calls_at_exit(tmp_path: Path) -> None:
    out = tmp_path / "log"
    proc = _child(f"""
        import helpers
        from jobsched import Executor
        if __name__ == "__main__":
            ex = Executor(2)
            ex.submit(helpers.log_then_sleep, {str(out)!r}, 2.0, "long")
            for i in range(6):
                ex.submit(helpers.log_then_sleep, {str(out)!r}, 0.2, i)
    """)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 7, proc.stderr


@pytest.mark.parametrize("cancel_futures", [False, True])
def test_shutdown_without_wait_still_runs_the_queued_calls_unless_cancelled(tmp_path: Path,
                                                                           cancel_futures: bool) -> None:
    out = tmp_path / "log"
    proc = _child(f"""
        import helpers
        from jobsched import Executor
        if __name__ == "__main__":
            ex = Executor(1)
            ex.submit(helpers.log_then_sleep, {str(out)!r}, 0.2, "x").result(60)
            for i in range(4):
                ex.submit(helpers.log_then_sleep, {str(out)!r}, 0.2, i)
            ex.shutdown(wait=False, cancel_futures={cancel_futures})
    """)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    # With cancel_futures, the calls already at the worker (the running one and the next, kept at hand) run.
    assert len(lines) <= 3 if cancel_futures else len(lines) == 5, (lines, proc.stderr)


@needs_threads_at_exit
def test_ctrl_c_during_the_exit_wait_says_what_it_waits_for_and_a_second_stops_it(tmp_path: Path) -> None:
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import helpers
            from jobsched import Executor
            if __name__ == "__main__":
                ex = Executor(1)
                ex.submit(helpers.log_then_sleep, {str(started)!r}, 600, None)
        """)], stderr=subprocess.PIPE, text=True, cwd=HERE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, HERE])})
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "waiting for the calls pending" in err and "Ctrl-C again" in err, err
    assert "stopping the pending calls now" in err, err


def test_a_thread_that_fails_to_start_breaks_one_executor_and_a_new_one_works() -> None:
    """Every pending call of that executor gets an error naming the failure; nothing wedges the next one."""
    proc = _child("""
        import concurrent.futures as cf
        import threading
        import helpers
        from jobsched import Executor
        real_start = threading.Thread.start
        broken = [True]
        def start(self):
            if self.name == "jobsched-spawner" and broken[0]:
                raise RuntimeError("can't start new thread")
            return real_start(self)
        threading.Thread.start = start
        if __name__ == "__main__":
            ex = Executor(1)
            futures = [ex.submit(helpers.add, i, 2) for i in range(3)]
            errors = [f.exception(60) for f in futures]
            print("first:", all(isinstance(e, cf.BrokenExecutor) and "can't start new thread" in str(e)
                                for e in errors), errors[0])
            ex.shutdown()
            broken[0] = False
            with Executor(1) as ex2:
                print("second:", ex2.submit(helpers.add, 1, 2).result(60))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "first: True" in proc.stdout, proc.stdout + proc.stderr
    assert "second: 3" in proc.stdout, proc.stdout + proc.stderr
