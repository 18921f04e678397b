"""The rough edges a new user meets: each one fixed, each with a test against real workers."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import helpers
import pytest
from waiting import TIMEOUT

from jobsched import JobError, Scheduler, make_python_cmd, make_scheduler, make_server, remote_call
from jobsched._data.pickling import dumps, loads
from jobsched._local.wire import ERROR
from jobsched.worker import run_remote_call_payload, run_to_frame

WORKERS = Path(__file__).parent / "workers"


def file_scheduler(name: str = "job_worker.py", entry: str = "worker") -> Scheduler:
    path = WORKERS / name
    return make_scheduler(lambda i: make_python_cmd(path, entry=entry))


# ---------------------------------------------------------------- plain data to the default worker


def test_plain_data_for_the_default_worker_is_refused_at_add_job_saying_what_to_do(sched: Scheduler) -> None:
    with pytest.raises(TypeError) as info:
        sched.add_job({"a": 1})
    message = str(info.value)
    assert "default worker runs remote calls" in message and "dict" in message
    assert "remote_call(f, " in message and "submit(" in message
    assert "make_server(worker_file)" in message and "start_simple_worker(run)" in message
    assert sched.n_queued_jobs == 0
    sched.start(1, wait=False)  # remote calls still go through
    assert sched.submit(helpers.add, 1, 2).result(timeout=TIMEOUT) == 3


def test_plain_data_reaching_a_remote_call_worker_fails_with_a_clear_type_error() -> None:
    # A custom command that runs the default worker: add_job cannot tell, the worker says it.
    with Scheduler(lambda i: [sys.executable, "-m", "jobsched.worker"]) as sched:
        sched.add_job({"a": 1})
        results: list[Any] = []
        sched.start(1, after_stop=lambda s, job, result: results.append(result))
    [error] = results
    assert isinstance(error, JobError) and error.remote_type == "TypeError"
    assert "runs remote calls" in error.remote_message and "a dict" in error.remote_message
    assert "remote_call(f, " in error.remote_message and "start_simple_worker(run)" in error.remote_message
    # The same runner serves Dask workers (jobsched.dask.run_payload): the same error there.
    kind, body = run_to_frame(0, run_remote_call_payload, dumps({"a": 1}))
    assert kind == ERROR and loads(body)[:2] == ("TypeError", error.remote_message)


# ---------------------------------------------------------------- the worker file and its entry


WORKER_FILE = '''
from jobsched import start_simple_worker

def run(data):
    return data

async def helper():
    pass

def worker():
    start_simple_worker(run)

if __name__ == "__main__":
    raise SystemExit("the main block must not run")
'''


def test_make_server_refuses_an_entry_the_file_does_not_define_before_any_worker_starts(tmp_path: Path) -> None:
    path = tmp_path / "w.py"
    path.write_text(WORKER_FILE)
    started = time.monotonic()
    with pytest.raises(ValueError) as info:
        make_server(path, entry="nope", n_workers=2)
    assert time.monotonic() - started < 2.0  # no worker was started (the leak check also says so)
    message = str(info.value)
    assert str(path) in message and "'nope'" in message
    assert "helper, run, worker" in message


def test_make_server_refuses_a_worker_file_with_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("def worker():\n    pass\n\ndef run(:\n    pass\n")
    with pytest.raises(ValueError, match=r"bad\.py line 4: .*SyntaxError"):
        make_server(path)


@pytest.mark.parametrize("defines", [
    "from jobsched_entry_module import worker",
    "worker = jobsched_entry_module.worker",
    "worker, other = jobsched_entry_module.worker, 1",
    "try:\n    from jobsched_entry_module import worker\nexcept ImportError:\n    raise",
    "from jobsched_entry_module import *",  # cannot be told without running it: accepted
    "globals()['worker'] = jobsched_entry_module.worker",
])
def test_make_server_accepts_an_entry_defined_otherwise_than_by_def(tmp_path: Path, defines: str) -> None:
    (tmp_path / "jobsched_entry_module.py").write_text(textwrap.dedent('''
        from jobsched import start_simple_worker

        def worker():
            start_simple_worker(lambda data: data + 1)
    '''))
    path = tmp_path / "w.py"
    path.write_text(f"import jobsched_entry_module\n{defines}\n")
    results: list[Any] = []
    sched = make_server(path)
    try:
        sched.add_job(1)
        sched.start(1, after_stop=lambda s, job, result: results.append(result))
    finally:
        sched.close()
    assert results == [2]


# ---------------------------------------------------------------- job.cost keeps its type


def test_job_cost_arrives_in_the_worker_with_its_type() -> None:
    costs: list[float] = [1, 2.5, -3, 2**70, 0]
    sched = file_scheduler()
    for cost in costs:
        sched.add_job("x", cost=cost)
    seen: dict[int, Any] = {}
    try:
        sched.start(1, after_stop=lambda s, job, result: seen.__setitem__(job.index, (job.cost, result[1])))
    finally:
        sched.close()
    in_worker = {i: worker_cost for i, (_, worker_cost) in seen.items()}
    assert {i: (type(c), c) for i, c in in_worker.items()} == {
        0: (int, 1), 1: (float, 2.5), 2: (int, -3), 3: (float, float(2**70)), 4: (int, 0)}
    assert [seen[i][0] for i in range(5)] == costs  # the scheduler's own Job keeps what was given
    assert type(seen[3][0]) is int


# ---------------------------------------------------------------- where the unpicklable value sits


@dataclasses.dataclass
class Holder:
    name: str
    lock: Any


@dataclasses.dataclass(slots=True)
class SlotHolder:
    inner: Any


def test_an_unpicklable_value_is_named_by_its_type_and_where_it_sits() -> None:
    lock = threading.Lock()
    sched = file_scheduler()  # add_job of plain data: a worker-file scheduler (none is started)
    try:
        with pytest.raises(TypeError) as info:
            sched.add_job({"cfg": [1, 2, lock]})
        assert str(info.value).startswith("add_job: data['cfg'][2] is a _thread.lock, which cannot be pickled; ")
        assert "0x" not in str(info.value)
        with pytest.raises(TypeError, match=r"^add_job: data\[1\]\.lock is a _thread\.lock, which"):
            sched.add_job([0, Holder("h", lock)])
        with pytest.raises(TypeError, match=r"^add_job: data\.inner\['k'\] is a _thread\.lock, which"):
            sched.add_job(SlotHolder({"k": lock}))
        with pytest.raises(TypeError, match=r"^add_job: a key of data\['m'\] is a _thread\.lock, which"):
            sched.add_job({"m": {lock: 1}})
        cyclic: list[Any] = [1]
        cyclic.append(cyclic)
        cyclic.append(x for x in range(3))
        with pytest.raises(TypeError, match=r"^add_job: data\[2\] is a generator, which cannot be pickled"):
            sched.add_job(cyclic)
        assert sched.n_queued_jobs == 0
    finally:
        sched.close()


def test_remote_call_names_the_argument_and_the_path_inside_it(sched: Scheduler) -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError) as info:
        remote_call(helpers.identity, 1, cfg={"a": [lock]})
    assert str(info.value).startswith(
        "remote_call(identity): keyword argument 'cfg' ['a'][0] is a _thread.lock, which cannot be pickled; ")
    with pytest.raises(TypeError, match=r"^submit\(identity\): argument 0 is a _thread\.lock, which"):
        sched.submit(helpers.identity, lock)
    assert sched.n_queued_jobs == 0


# ---- Executor.submit passes every keyword argument to the function


def takes_options(x: int, timeout: float = 0.0, cost: float = 0.0, max_retries: int = 0,
                  retry_on_timeout: bool = False) -> tuple[int, float, float, int, bool]:
    return (x, timeout, cost, max_retries, retry_on_timeout)


def test_executor_submit_passes_timeout_and_cost_to_the_function() -> None:
    from jobsched import Executor

    with Executor(1) as ex:
        future = ex.submit(takes_options, 1, timeout=7, cost=9, max_retries=2, retry_on_timeout=True)
        assert future.result(timeout=60) == (1, 7, 9, 2, True)  # not a 7-second job limit


def test_scheduler_submit_of_a_remote_call_passes_a_timeout_keyword_to_the_function(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    future = sched.submit(remote_call(takes_options, 2, timeout=0.001), cost=1)
    assert future.result(timeout=60) == (2, 0.001, 0.0, 0, False)  # the job itself had no 1 ms limit


# ---- Worker shows what users need, not the scheduler's internals


def test_worker_keeps_its_internals_private(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=60) == 2
    (w,) = sched.workers
    public = {name for name in dir(w) if not name.startswith("_")}
    assert public == {"address", "exit_description", "generation", "index", "job", "job_elapsed", "last_rss",
                      "n_done", "n_restarts", "output", "pid", "progress", "state", "tags"}
    assert Scheduler.paused.__doc__


# ---- grammar


def test_messages_count_one_thing_in_the_singular(sched: Scheduler) -> None:
    sched.add_job(remote_call(helpers.add, 1))
    with pytest.raises(ValueError, match="1 job queued but n_workers=0"):
        sched.start(0)
    sched.start(1, wait=False)
    eventually_one = time.monotonic() + 60
    while "1 worker," not in repr(sched) and time.monotonic() < eventually_one:
        time.sleep(0.01)
    assert "<Scheduler running: 1 worker, " in repr(sched)
    results: list[Any] = []
    s2 = Scheduler(max_retries=1)
    try:
        s2.add_job(remote_call(helpers.kill_self))
        s2.start(1, after_stop=lambda s, job, result: results.append(result))
    finally:
        s2.close()
    assert "its worker died once" in results[0].remote_message
