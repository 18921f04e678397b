"""jobsched on a real Dask cluster: ``Scheduler(backend=DaskBackend(...))`` against ``LocalCluster`` processes.

The cluster listens on 127.0.0.1 only. One module-scoped cluster serves the tests that leave its workers alive;
the tests that kill Dask workers get a cluster of their own (a restarted worker is a new process, which the
leak check of conftest.py would rightly flag in a shared cluster), closed before that check runs.
"""

from __future__ import annotations

import multiprocessing.resource_tracker
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import conftest
import helpers
import psutil
import pytest
from waiting import TIMEOUT

import jobsched
from jobsched import (
    Executor,
    JobError,
    JobTimeout,
    Scheduler,
    WorkerState,
    remote_call,
)

try:
    import distributed

    from jobsched.dask import DaskBackend, DaskClientClosedError, DaskWorker
except ImportError:  # conftest.skip_or_fail in the fixtures: a skip here, a failure in CI
    distributed = None

pytestmark = [
    pytest.mark.dask,
    pytest.mark.timeout(180),
    # A second cluster in this process finds the first one's HTTP port (on 127.0.0.1) taken and picks another.
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use"),
]

CLUSTER_OPTIONS: dict[str, Any] = {"processes": True, "threads_per_worker": 1, "host": "127.0.0.1",
                                   "dashboard_address": None, "worker_dashboard_address": None}
WORKERS = Path(__file__).parent / "workers"


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _close_cluster(cluster: Any, pids: set[int]) -> None:
    """Close a LocalCluster and make sure its worker processes are gone (kill and fail if not)."""
    cluster.close(timeout=TIMEOUT)
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        p.kill()
    assert not alive, f"LocalCluster.close() left processes behind: {[p.pid for p in alive]}"


def _start_cluster(n_workers: int) -> tuple[Any, set[int]]:
    if distributed is None:
        conftest.skip_or_fail("dask.distributed is not installed: pip install 'jobsched[dask]'")
    # multiprocessing's resource tracker is started by the first spawned process and lives as long as this
    # interpreter; start it outside any test so that the leak check does not take it for a leaked worker.
    multiprocessing.resource_tracker.ensure_running()
    before = _children()
    cluster = distributed.LocalCluster(n_workers=n_workers, **CLUSTER_OPTIONS)
    return cluster, _children() - before


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Dask worker processes with one thread each, on loopback, for the whole module."""
    cluster, pids = _start_cluster(2)
    try:
        yield cluster
    finally:
        _close_cluster(cluster, pids)


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client


@pytest.fixture
def fresh_cluster() -> Iterator[Any]:
    """A cluster for one test that kills its workers; closed (processes gone) before the leak check."""
    cluster, pids = _start_cluster(2)
    try:
        yield cluster
    finally:
        _close_cluster(cluster, pids)


@pytest.fixture
def dsched(client: Any) -> Iterator[Scheduler]:
    """A scheduler on the module's cluster, closed after the test whatever happens."""
    s = Scheduler(backend=DaskBackend(client))
    try:
        yield s
    finally:
        s.close(timeout=10.0)


MODES = ["per-task", "resident"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Both modes of ``DaskBackend``: one Dask task per job, or resident jobsched workers placed by Dask."""
    if request.param == "resident":
        pytest.importorskip("cryptography")  # TLS for the workers that connect back
    return str(request.param)


def backend_for(client: Any, mode: str) -> DaskBackend:
    return DaskBackend(client, resident=mode == "resident")


@pytest.fixture
def msched(client: Any, mode: str) -> Iterator[Scheduler]:
    """A scheduler on the module's cluster in each mode, closed after the test whatever happens."""
    s = Scheduler(backend=backend_for(client, mode))
    try:
        yield s
    finally:
        s.close(timeout=10.0)


def worker_pids(client: Any) -> dict[str, int]:
    return dict(client.run(os.getpid))


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------------------------- imports


def test_import_jobsched_does_not_import_dask() -> None:
    code = "import sys, jobsched; print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_jobsched_dask_without_distributed_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['distributed'] = None\n"
            "try:\n    import jobsched.dask\nexcept ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert "pip install 'jobsched[dask]'" in out.stdout


def test_dask_py_names_no_private_member_of_the_scheduler() -> None:
    source = (Path(jobsched.__file__).parent / "dask.py").read_text()
    assert not re.findall(r"\b(?:sched|scheduler|self\._sched)\._", source)


def test_the_cluster_listens_on_loopback_only(cluster: Any) -> None:
    me = psutil.Process()
    listening = [c.laddr for p in [me, *me.children(recursive=True)] for c in p.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {addr.ip for addr in listening} == {"127.0.0.1"}


# ---------------------------------------------------------------------------------------- the same API


def test_remote_calls_give_the_results_of_local_workers(msched: Scheduler) -> None:
    offset = 7
    calls = [
        remote_call(helpers.add, 1, y=2),  # by reference
        remote_call(helpers.return_none),  # None is a result
        remote_call(lambda x: x * offset, 6),  # by value: a closure
        remote_call(helpers.identity, {"nested": [1, 2.5, "three", (None,)]}),
        remote_call(helpers.big_bytes, 3_000_000),
    ]
    results: dict[int, Any] = {}
    for rc in calls:
        msched.add_job(rc)
    msched.start(2, after_stop=lambda s, job, result: results.__setitem__(job.index, result))
    assert results == {0: 3, 1: None, 2: 42, 3: {"nested": [1, 2.5, "three", (None,)]}, 4: b"\xab" * 3_000_000}


def test_executor_map_on_dask(client: Any, mode: str) -> None:
    with Executor(backend=backend_for(client, mode)) as ex:
        assert list(ex.map(helpers.add, range(20), range(20), timeout=TIMEOUT)) == [2 * i for i in range(20)]
        assert ex.submit(pow, 2, 10).result(timeout=TIMEOUT) == 1024
        assert ex.scheduler.n_workers == 2
        assert all(isinstance(w, DaskWorker) for w in ex.scheduler.workers)
    assert client.status == "running"  # the executor's scheduler did not close a client it was given


def test_executor_map_over_16_mib_arrays_on_dask(client: Any) -> None:
    """Large arrays take the same way in through Executor.map on Dask as through submit."""
    np = pytest.importorskip("numpy")
    arrays = [np.full(2 * 1024 * 1024, i, dtype=np.float64) for i in range(3)]  # 16 MiB each
    with Executor(backend=DaskBackend(client)) as ex:
        results = list(ex.map(helpers.identity, arrays, timeout=TIMEOUT))
        assert len(results) == 3 and all(np.array_equal(a, b) for a, b in zip(results, arrays, strict=True))


def test_a_failed_call_on_dask_raises_its_own_type(client: Any) -> None:
    with Executor(backend=DaskBackend(client)) as ex:
        with pytest.raises(ZeroDivisionError) as caught:
            ex.submit(divmod, 1, 0).result(timeout=TIMEOUT)
        assert isinstance(caught.value, jobsched.JobError)


# ---------------------------------------------------------------------------------------- the same failures


def _job_errors(sched: Scheduler, n_workers: int) -> list[JobError]:
    futures = [sched.submit(helpers.raise_value_error, "boom"), sched.submit(helpers.unpicklable_result)]
    with pytest.raises(TypeError, match="the default worker runs remote calls"):
        sched.add_job(5)  # not a remote call: refused in the caller, on Dask as locally
    sched.start(n_workers)
    errors = []
    for f in futures:
        exc = f.exception(timeout=TIMEOUT)
        assert isinstance(exc, JobError)
        errors.append(exc)
    return errors


def _without_addresses(error: JobError) -> tuple[Any, ...]:
    return tuple(re.sub(r" at 0x[0-9a-f]+", " at 0x…", a) if isinstance(a, str) else a for a in error.args)


def test_failures_are_the_job_errors_of_local_workers(msched: Scheduler) -> None:
    on_dask = _job_errors(msched, 2)
    local = Scheduler()
    try:
        on_local = _job_errors(local, 1)
    finally:
        local.close(timeout=10.0)
    raised, unpicklable = on_dask
    assert (raised.remote_type, raised.remote_message, raised.job_index) == ("ValueError", "boom", 0)
    assert raised.remote_traceback.startswith("Traceback (most recent call last):\n")
    assert 'helpers.py", line' in raised.remote_traceback and "in raise_value_error" in raised.remote_traceback
    assert os.path.dirname(jobsched.__file__) not in raised.remote_traceback  # no plumbing frames
    assert unpicklable.remote_type == "TypeError" and "the result of job 1" in unpicklable.remote_message
    # Type, message, traceback text and job index are equal (but for the address in an object's repr).
    assert [_without_addresses(e) for e in on_dask] == [_without_addresses(e) for e in on_local]


def test_a_job_over_its_timeout_fails_and_its_thread_takes_no_job_until_it_ends(dsched: Scheduler,
                                                                                  client: Any) -> None:
    dsched.start(1, wait=False)
    slow = dsched.submit(helpers.sleep_then, 3.0, "late", timeout=0.5)
    with pytest.raises(JobTimeout, match=r"timeout of 0.5 s; worker 0 .*cannot be stopped"):
        slow.result(timeout=TIMEOUT)
    # The one slot moved to the other Dask worker: the first one still runs the abandoned task.
    first, second = dsched.submit(helpers.getpid), dsched.submit(helpers.getpid)
    pids = worker_pids(client)
    assert first.result(timeout=TIMEOUT) == second.result(timeout=TIMEOUT)
    (slot,) = dsched.workers
    assert isinstance(slot, DaskWorker) and pids[slot.address] == first.result()
    assert slot.n_restarts == 0 and dsched.stats()["failed"] == 1


class CustomBaseError(BaseException):
    """Neither an Exception nor SystemExit: a job raising it must still be the job's failure."""


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("stop it")


def raise_custom_base_error() -> None:
    raise CustomBaseError("custom")


@pytest.mark.parametrize(("fn", "remote_type", "message"), [
    (raise_keyboard_interrupt, "KeyboardInterrupt", "stop it"),
    (raise_custom_base_error, "CustomBaseError", "custom"),
])
def test_a_job_raising_a_base_exception_is_the_jobs_error_not_the_installations(
        dsched: Scheduler, fn: Callable[[], None], remote_type: str, message: str) -> None:
    dsched.start(1, wait=False)
    error = dsched.submit(fn).exception(timeout=TIMEOUT)
    assert isinstance(error, JobError) and (error.remote_type, error.remote_message) == (remote_type, message)
    assert f"in {fn.__name__}" in error.remote_traceback
    assert "installed" not in str(error) and "raised by Dask" not in str(error)
    assert dsched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2  # the Dask thread goes on
    stats = dsched.stats()
    assert (stats["done"], stats["failed"], stats["restarts"]) == (2, 1, 0)


class _FailedTask:
    """A Dask future whose task Dask itself failed to run (what ``DaskBackend`` sees in its done callback)."""

    status = "error"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def exception(self, timeout: float | None = None) -> BaseException:
        return self.error

    def traceback(self, timeout: float | None = None) -> None:
        return None


@pytest.mark.parametrize(("error", "blamed"), [
    (ModuleNotFoundError("No module named 'jobsched'"), True),
    (RuntimeError("the worker's deserializer broke"), False),
])
def test_a_task_that_dask_failed_to_run_is_a_job_error_naming_dask(client: Any, error: BaseException,
                                                                   blamed: bool) -> None:
    backend = DaskBackend(client)
    kind, body, pid = backend._outcome(_FailedTask(error))  # type: ignore[arg-type, misc]
    remote_type, message, _ = jobsched._data.pickling.loads(body)
    assert (kind, pid, remote_type) == (jobsched._local.wire.ERROR, None, type(error).__name__)
    assert message.startswith(f"{error} (raised by Dask while running the job's task, not by the job")
    assert ("are jobsched and the job's modules installed on the Dask workers?" in message) is blamed


# ---------------------------------------------------------------------------------------- state and control


def test_slots_beyond_the_clusters_threads_wait_for_one_and_are_retired_at_once(dsched: Scheduler,
                                                                                 client: Any) -> None:
    dsched.start(1, wait=False)
    assert dsched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    dsched.scale(5)  # more than the cluster's 2 threads: 2 slots run, 3 wait for Dask threads (STARTING)
    assert dsched.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3
    assert wait_until(lambda: sum(w.state is WorkerState.READY for w in dsched.workers) == 2)
    seated = [w for w in dsched.workers if w.state is WorkerState.READY]
    assert {w.address for w in seated} == set(client.nthreads())
    waiting = [w for w in dsched.workers if w.state is WorkerState.STARTING]
    assert [w.index for w in waiting] == [2, 3, 4] and all(w.address is None for w in waiting)
    assert dsched.n_workers == 5
    dsched.scale(1)  # the waiting slots have nothing to finish: they go at once, and count no restart
    assert wait_until(lambda: [w.index for w in dsched.workers if w.state is not WorkerState.CLOSED] == [0],
                      timeout=5.0)
    assert dsched.submit(helpers.add, 4).result(timeout=TIMEOUT) == 5
    assert dsched.stats()["restarts"] == 0


def test_close_closes_only_a_client_that_jobsched_created(cluster: Any, client: Any) -> None:
    backends = [DaskBackend(client), DaskBackend(cluster.scheduler_address), DaskBackend(cluster)]
    schedulers = [Scheduler(backend=backend) for backend in backends]
    given = schedulers[0]
    try:
        for i, s in enumerate(schedulers):
            s.start(1, wait=False)
            assert s.submit(helpers.add, i).result(timeout=TIMEOUT) == i + 1
    finally:
        for s in schedulers:
            s.close(timeout=10.0)
    assert client.status == "running"
    assert [backend.client.status for backend in backends[1:]] == ["closed", "closed"]
    assert "all" not in client._event_handlers  # the last scheduler on the client unsubscribed from its events
    given.close()  # idempotent


def test_a_client_closed_under_the_scheduler_is_reported(cluster: Any) -> None:
    own = distributed.Client(cluster.scheduler_address, set_as_default=False)
    sched = Scheduler(backend=DaskBackend(own))
    try:
        sched.start(1, wait=False)
        assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
        sched.pause()
        queued = sched.submit(helpers.add, 2)
        own.close(timeout=TIMEOUT)
        with pytest.raises(DaskClientClosedError, match="was closed while the scheduler ran; 1 jobs stay queued"):
            sched.wait(timeout=TIMEOUT)
        assert not queued.done() and sched.n_queued_jobs == 1
    finally:
        sched.close(timeout=10.0)
    assert queued.cancelled()


def test_bad_arguments_are_refused_at_once(client: Any) -> None:
    with pytest.raises(TypeError, match=r"pass a distributed\.Client, a scheduler address"):
        DaskBackend(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefetch=2 is not supported with DaskBackend"):
        Scheduler(prefetch=2, backend=DaskBackend(client))
    backend = DaskBackend(client)
    first = Scheduler(backend=backend)
    try:
        with pytest.raises(ValueError, match="already serves a Scheduler"):
            Scheduler(backend=backend)
    finally:
        first.close(timeout=10.0)


def test_prefetch_auto_means_one_job_per_dask_thread(client: Any) -> None:
    with jobsched.Executor(backend=DaskBackend(client)) as ex:  # the executor's default is "auto"
        assert ex.scheduler.prefetch == 1 and ex.scheduler._state.prefetch == 1
        assert list(ex.map(abs, range(-20, 0))) == list(range(20, 0, -1))
        assert ex.scheduler._state.prefetch == 1 and not ex.scheduler._state.auto


def test_worker_file_mode_is_refused_at_once(client: Any) -> None:
    worker_file = WORKERS / "job_worker.py"
    with pytest.raises(ValueError, match="worker files are not supported on Dask"):
        jobsched.make_server(worker_file, backend=DaskBackend(client))
    with pytest.raises(ValueError, match=r"add remote_call\(run, data\) jobs"):
        Scheduler(lambda i: jobsched.make_python_cmd(worker_file, entry="worker"), backend=DaskBackend(client))


def test_magic_start_dask_drives_the_default_scheduler_on_the_cluster(cluster: Any) -> None:
    pytest.importorskip("IPython")
    import builtins

    import dask
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    main, saved_builtins = sys.modules["__main__"], set(vars(builtins))
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "jobsched")
    address = cluster.scheduler_address
    try:
        ip.run_line_magic("jobsched", f"start --dask {address} -n 1")
        sched = jobsched.default_scheduler()
        backend = sched._backend
        assert isinstance(backend, DaskBackend) and sched.n_workers == 1
        assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
        ip.run_line_magic("jobsched", f"start --dask {address.removeprefix('tcp://')}")  # the same cluster
        assert jobsched.default_scheduler() is sched
        with pytest.raises(UsageError, match=r"the default scheduler is running .*; `%jobsched stop` it first"):
            ip.run_line_magic("jobsched", "start --dask tcp://127.0.0.1:9")
        ip.run_line_magic("jobsched", "stop")  # the workers go; the scheduler (and its client) stay
        assert jobsched.default_scheduler() is sched and sched.stats()["workers"] == 0
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
                pytest.raises(UsageError, match=re.escape("no Dask scheduler answers at 'tcp://127.0.0.1:9'")):
            ip.run_line_magic("jobsched", "start --dask tcp://127.0.0.1:9")
        assert jobsched.default_scheduler() is sched  # a failed replacement keeps the old one
        sched.close(timeout=5)
        assert backend.client.status == "closed"  # jobsched opened that client from the address
    finally:
        jobsched.default_scheduler().close(timeout=5)
        sys.modules["__main__"] = main
        for name in set(vars(builtins)) - saved_builtins:
            delattr(builtins, name)
        InteractiveShell.clear_instance()


# ---------------------------------------------------------------------------------------- lost Dask workers


def test_a_job_whose_dask_worker_dies_is_retried_and_delivered_once(fresh_cluster: Any, tmp_path: Path) -> None:
    with distributed.Client(fresh_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        sched = Scheduler(backend=DaskBackend(client))
        delivered: list[tuple[int, Any]] = []
        try:
            sched.add_job(remote_call(helpers.die_once, str(tmp_path / "marker"), "survived"))
            for i in range(4):
                sched.add_job(remote_call(helpers.add, i), cost=1)
            sched.start(2, after_stop=lambda s, job, result: delivered.append((job.index, result)),
                        close_workers=False)
            slots = sched.workers
        finally:
            sched.close(timeout=10.0)
        assert sorted(delivered) == [(0, "survived"), (1, 1), (2, 2), (3, 3), (4, 4)]  # each exactly once
        assert sched.stats()["restarts"] == 1 and sched.stats()["failed"] == 0
        assert sorted(w.n_restarts for w in slots) == [0, 1]
        assert (tmp_path / "marker").exists()  # it did die once


def test_a_job_that_keeps_killing_its_dask_worker_fails_with_worker_died(fresh_cluster: Any) -> None:
    with distributed.Client(fresh_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        sched = Scheduler(max_retries=2, backend=DaskBackend(client))
        try:
            sched.start(wait=False)
            doomed = sched.submit(helpers.kill_self)
            error = doomed.exception(timeout=TIMEOUT)
            assert sched.submit(helpers.add, 41).result(timeout=TIMEOUT) == 42  # the cluster recovered
        finally:
            sched.close(timeout=10.0)
        assert isinstance(error, JobError) and error.remote_type == "WorkerDied"
        assert error.remote_message.startswith("its worker died 2 times: worker ")
        assert error.remote_message.count("lost its Dask worker tcp://127.0.0.1:") == 2
        assert sched.stats()["restarts"] == 2 and sched.stats()["failed"] == 1


def test_the_journal_works_the_same_on_dask(client: Any, mode: str, tmp_path: Path) -> None:
    journal = tmp_path / "runs.sqlite"
    for expected in (0, 4):
        with Scheduler(backend=backend_for(client, mode), journal=journal) as s:
            s.start(2, wait=False)
            futures = [s.submit(helpers.add, i) for i in range(4)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [1, 2, 3, 4]
            assert s.wait(TIMEOUT)
            assert s.stats()["from_journal"] == expected
    assert sorted(jobsched.Journal(journal).results().values()) == [1, 2, 3, 4]


def test_seeded_jobs_draw_on_dask_what_they_draw_on_local_workers(client: Any, mode: str) -> None:
    """Scheduler(seed=S) on Dask: each job's random and numpy draws equal those of local workers."""
    import reproduce_jobs

    for fn in (reproduce_jobs.draws, reproduce_jobs.numpy_draws):
        with Scheduler(seed=2024) as local:
            local.start(2, wait=False)
            expected = [f.result(timeout=TIMEOUT) for f in [local.submit(fn, i) for i in range(8)]]
        s = Scheduler(backend=backend_for(client, mode), seed=2024)
        try:
            s.start(wait=False)
            futures = [s.submit(fn, i) for i in reversed(range(8))]
            got = [f.result(timeout=TIMEOUT) for f in futures][::-1]
        finally:
            s.close(timeout=10.0)
        assert got == expected


# ---------------------------------------------------------------------------------------- both modes alike


def test_one_slot_starts_jobs_in_cost_order(msched: Scheduler) -> None:
    costs = [5, 1, 3, 0, 4, 2]
    for cost in costs:
        msched.add_job(remote_call(helpers.identity, cost), cost=cost)
    order: list[int] = []
    msched.start(1, after_stop=lambda s, job, result: order.append(result))
    assert order == sorted(costs)


def test_callbacks_add_jobs_that_keep_their_place_by_cost(msched: Scheduler) -> None:
    """Each result adds two jobs: the cheap one runs next, the dear ones wait, lowest cost first."""
    seen: list[int] = []

    def after_stop(s: Scheduler, job: Any, result: int) -> None:
        seen.append(result)
        if result < 4:
            s.add_job(remote_call(helpers.identity, 100 + result), cost=100 + result)
            s.add_job(remote_call(helpers.add, result), cost=result + 1)

    msched.add_job(remote_call(helpers.identity, 0), cost=0)
    msched.start(1, after_stop=after_stop)
    assert seen == [0, 1, 2, 3, 4, 100, 101, 102, 103]


def test_futures_chain_wait_and_complete_as_on_local_workers(msched: Scheduler) -> None:
    import concurrent.futures

    msched.start(2, wait=False)
    first = msched.submit(helpers.add, 1, 2)
    second = msched.submit(helpers.add, first, 10)  # a Future argument: queued once first is done
    many = [msched.submit(helpers.square, i) for i in range(10)]
    done, pending = concurrent.futures.wait(many, timeout=TIMEOUT)
    assert not pending and sorted(f.result() for f in done) == [i * i for i in range(10)]
    assert sorted(f.result() for f in concurrent.futures.as_completed(many, timeout=TIMEOUT)) == \
        [i * i for i in range(10)]
    assert second.result(timeout=TIMEOUT) == 13
    failed = msched.submit(helpers.raise_value_error, "boom")
    assert isinstance(failed.exception(timeout=TIMEOUT), ValueError)


def test_cancel_stops_a_running_job_and_drops_a_queued_one(msched: Scheduler, tmp_path: Path) -> None:
    release = tmp_path / "release"
    msched.start(1, wait=False)
    try:
        running = msched.submit(helpers.wait_for_file, str(release), "late")
        queued = msched.submit(helpers.add, 1)
        assert wait_until(lambda: msched.workers[0].job is not None), msched.workers
        assert queued.cancel() and running.cancel()
        assert queued.cancelled() and running.cancelled()
    finally:
        release.touch()  # a Dask thread cannot be stopped: the given-up task ends here
    assert msched.submit(helpers.add, 2).result(timeout=TIMEOUT) == 3
    assert msched.stats()["restarts"] == 0  # a cancel is no crash


def test_progress_reported_by_a_job_shows_on_its_slot(msched: Scheduler, tmp_path: Path) -> None:
    release = tmp_path / "release"
    msched.start(1, wait=False)
    try:
        future = msched.submit(helpers.report_then_wait, str(release), 3, 10, "three of ten")
        assert wait_until(lambda: msched.workers[0].progress == (3, 10, "three of ten")), msched.workers
    finally:
        release.touch()
    assert future.result(timeout=TIMEOUT) == 3
    assert wait_until(lambda: msched.workers[0].progress is None)
