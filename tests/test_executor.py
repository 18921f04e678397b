"""``jobsched.Executor``: the ``concurrent.futures`` contract, over real worker processes."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import Executor, JobError


@pytest.fixture
def executor() -> Iterator[Executor]:
    ex = Executor(2)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)




def notebook_function(source: str, name: str) -> Any:
    """Define ``name`` as a notebook cell would: in a namespace whose ``__name__`` is ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    fn = namespace[name]
    assert fn.__module__ == "__main__"
    return fn


def test_is_a_concurrent_futures_executor() -> None:
    assert issubclass(Executor, concurrent.futures.Executor)


def test_submit_returns_a_future_of_the_result(executor: Executor) -> None:
    future = executor.submit(helpers.add, 1, y=2)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=TIMEOUT) == 3
    assert executor.submit(helpers.return_none).result(timeout=TIMEOUT) is None


def test_a_raising_call_gives_a_job_error_with_the_remote_traceback(executor: Executor) -> None:
    future = executor.submit(helpers.raise_value_error, "no good")
    with pytest.raises(JobError) as info:
        future.result(timeout=TIMEOUT)
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "no good"
    assert "raise_value_error" in info.value.remote_traceback
    assert isinstance(future.exception(timeout=0), JobError)


@pytest.mark.parametrize(
    ("fn", "iterables"),
    [
        (helpers.add, ([1, 2, 3, 4, 5], [10, 20, 30])),  # shortest input wins, as with zip
        (helpers.identity, (range(50),)),
        (helpers.add, ((), ())),
        (pow, (range(8), itertools.repeat(2))),  # an endless iterable alongside a finite one
    ],
)
def test_map_equals_builtin_map(executor: Executor, fn: Callable[..., Any], iterables: tuple[Any, ...]) -> None:
    assert list(executor.map(fn, *iterables, timeout=TIMEOUT)) == list(map(fn, *iterables))


def test_map_keeps_input_order_when_later_items_finish_first(executor: Executor) -> None:
    delays = [0.6, 0.3, 0.0, 0.0]
    results = executor.map(helpers.sleep_then, delays, range(4), timeout=TIMEOUT)
    assert list(results) == [0, 1, 2, 3]


def test_map_streams_an_endless_input(executor: Executor) -> None:
    results = executor.map(helpers.add, itertools.count(), buffersize=8)
    assert [next(results) for _ in range(100)] == [i + 1 for i in range(100)]
    results.close()  # type: ignore[attr-defined]  # the generator cancels its window of queued calls
    eventually(lambda: executor.scheduler.n_queued_jobs == 0, "the window's queued jobs to be cancelled")


def test_map_timeout_raises_timeout_error(executor: Executor, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    results = executor.map(helpers.wait_for_file, [str(gate)], timeout=0.5)
    with pytest.raises(concurrent.futures.TimeoutError):  # the builtin TimeoutError from Python 3.11 on
        next(results)
    gate.touch()
    # The deadline counts from the map() call, as with concurrent.futures: a generous one is met.
    assert list(executor.map(helpers.add, [1, 2], timeout=TIMEOUT)) == [2, 3]


def test_map_raises_the_first_failure_in_order(executor: Executor) -> None:
    results = executor.map(helpers.raise_value_error, ["first", "second"], timeout=TIMEOUT)
    with pytest.raises(JobError, match="first"):
        next(results)


def test_shutdown_wait_runs_what_was_submitted_then_closes_the_workers() -> None:
    ex = Executor(1)
    futures = [ex.submit(helpers.sleep_then, 0.05, i) for i in range(5)]
    ex.shutdown(wait=True)
    assert [f.result(timeout=0) for f in futures] == list(range(5))
    assert ex.scheduler.stats()["closed"] and ex.scheduler.workers == []
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(helpers.add, 1)


def test_shutdown_cancel_futures_cancels_queued_calls_only(tmp_path: Path) -> None:
    ex = Executor(1, prefetch=1)  # with "auto", a call sent ahead to the worker is running, as in concurrent.futures
    gate = tmp_path / "gate"
    running = ex.submit(helpers.wait_for_file, str(gate), "ran")
    eventually(lambda: running.running(), "the first call running")
    queued = [ex.submit(helpers.add, i) for i in range(5)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gate.touch()
    assert running.result(timeout=TIMEOUT) == "ran"
    eventually(lambda: ex.scheduler.stats()["closed"], "the executor's scheduler to close")


def test_shutdown_without_wait_returns_at_once_and_the_workers_exit_later(tmp_path: Path) -> None:
    ex = Executor(1)
    gate = tmp_path / "gate"
    future = ex.submit(helpers.wait_for_file, str(gate), "done")
    ex.shutdown(wait=False)
    assert not future.done(), "shutdown(wait=False) does not wait for the running call"
    gate.touch()
    assert future.result(timeout=TIMEOUT) == "done"
    eventually(lambda: ex.scheduler.stats()["closed"], "the executor's scheduler to close")


def test_shutdown_of_an_unused_executor() -> None:
    ex = Executor(2)
    ex.shutdown()
    ex.shutdown()
    assert ex.scheduler.stats()["closed"]


def test_context_manager_waits_and_closes() -> None:
    with Executor(2) as ex:
        futures = [ex.submit(helpers.add, i) for i in range(10)]
    assert [f.result(timeout=0) for f in futures] == list(range(1, 11))
    assert ex.scheduler.stats()["closed"]


def test_as_completed_and_wait_work_on_its_futures(executor: Executor) -> None:
    futures = [executor.submit(helpers.sleep_then, 0.01 * (i % 3), i) for i in range(12)]
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=TIMEOUT)) == list(range(12))
    more = [executor.submit(helpers.add, i) for i in range(6)] + [executor.submit(helpers.raise_value_error, "x")]
    done, not_done = concurrent.futures.wait(more, timeout=TIMEOUT)
    assert (len(done), not_done) == (7, set())
    first = concurrent.futures.wait([executor.submit(helpers.raise_value_error, "boom")], timeout=TIMEOUT,
                                    return_when=concurrent.futures.FIRST_EXCEPTION)
    assert len(first.done) == 1


def test_cancelling_a_queued_future_removes_its_job(tmp_path: Path) -> None:
    log = tmp_path / "ran.txt"
    ex = Executor(1, prefetch=1)  # one job per worker: the six below stay queued while the blocker runs
    try:
        gate = tmp_path / "gate"
        blocker = ex.submit(helpers.wait_for_file, str(gate), "blocker")
        eventually(lambda: blocker.running(), "the first call running")
        futures = [ex.submit(helpers.append_line, str(log), f"job {i}") for i in range(6)]
        assert ex.scheduler.n_queued_jobs == 6
        assert all(futures[i].cancel() for i in (1, 3, 5))
        assert ex.scheduler.n_queued_jobs == 3
        assert futures[1].cancel(), "cancelling again still says cancelled"
        assert ex.scheduler.n_queued_jobs == 3, "and is not counted twice"
        gate.touch()
        assert [futures[i].result(timeout=TIMEOUT) for i in (0, 2, 4)] == ["job 0", "job 2", "job 4"]
        assert ex.scheduler.wait(timeout=TIMEOUT)
        assert log.read_text().splitlines() == ["job 0", "job 2", "job 4"]
        assert ex.scheduler.stats()["done"] == 4
    finally:
        ex.shutdown()


def test_notebook_functions_lambdas_and_closures_run_in_workers(executor: Executor) -> None:
    square = notebook_function("def square(x):\n    return x * x\n", "square")
    offset = 100

    def closure(x: int) -> int:
        return x + offset

    assert executor.submit(square, 7).result(timeout=TIMEOUT) == 49
    assert executor.submit(lambda x: -x, 5).result(timeout=TIMEOUT) == -5
    assert executor.submit(closure, 1).result(timeout=TIMEOUT) == 101
    assert list(executor.map(square, range(5), timeout=TIMEOUT)) == [0, 1, 4, 9, 16]


def test_notebook_classes_travel_by_value_both_ways(executor: Executor) -> None:
    make = notebook_function(
        "class Point:\n"
        "    def __init__(self, x, y):\n        self.x, self.y = x, y\n"
        "    def norm2(self):\n        return self.x ** 2 + self.y ** 2\n"
        "def make(x, y):\n    return Point(x, y)\n", "make")
    point = executor.submit(make, 3, 4).result(timeout=TIMEOUT)
    assert (point.x, point.y, point.norm2()) == (3, 4, 25)
    assert executor.submit(make(1, 2).norm2).result(timeout=TIMEOUT) == 5


def test_a_function_redefined_later_is_used_in_its_new_form(executor: Executor) -> None:
    # The same name in the same "notebook" namespace, as when a cell is edited and run again.
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def step(x):\n    return x + 1\n", namespace)
    first = namespace["step"]
    assert executor.submit(first, 1).result(timeout=TIMEOUT) == 2
    exec("def step(x):\n    return x * 10\n", namespace)
    assert executor.submit(namespace["step"], 1).result(timeout=TIMEOUT) == 10
    exec("SCALE = 3\ndef step(x):\n    return x * SCALE\n", namespace)
    assert executor.submit(namespace["step"], 1).result(timeout=TIMEOUT) == 3
    namespace["SCALE"] = 5  # a global changed after the definition is seen too
    assert executor.submit(namespace["step"], 1).result(timeout=TIMEOUT) == 5


def test_unpicklable_arguments_fail_in_the_caller(executor: Executor) -> None:
    with pytest.raises(TypeError, match="argument 0"):
        executor.submit(helpers.identity, threading.Lock())
    assert executor.scheduler.n_queued_jobs == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_max_workers_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        Executor(bad)


def test_map_progress_shows_a_text_bar_outside_a_notebook(executor: Executor,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert list(executor.map(helpers.add, range(12), progress=True, timeout=TIMEOUT)) == list(range(1, 13))
    err = capsys.readouterr().err
    assert "map" in err and "12/12" in err


def test_a_job_future_sets_what_a_future_sets() -> None:
    """JobFuture does Future.__init__'s work itself: the same attributes, on every Python, and a reentrant lock."""
    from concurrent.futures import Future

    from jobsched._core.futures import JobFuture

    ours = JobFuture(lambda entry, **kw: False)
    assert set(vars(Future())) == set(vars(ours)) - {"_cancel_entry", "entry", "rerun"}
    cond = ours._condition
    assert set(vars(cond)) == {"_lock", "_waiters"}, "no bound methods: fewer objects for the collector"
    woke: list[bool] = []
    with cond, cond:  # concurrent.futures.wait() takes it twice; wait() releases both levels meanwhile
        notifier = threading.Timer(0.05, lambda: cond.acquire() and (cond.notify_all(), cond.release()))
        notifier.start()
        woke.append(cond.wait(timeout=TIMEOUT))
        assert cond._is_owned()
    notifier.join(timeout=TIMEOUT)
    assert woke == [True] and not cond._is_owned()
    assert not ours.done() and ours.cancel() and ours.cancelled()  # not yet queued: the plain cancel
