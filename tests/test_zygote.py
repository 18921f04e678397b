"""Workers forked from a zygote: the same workers as spawned ones, started faster.

Each test says what must hold for a forked worker that held for a spawned one: its process (session, fds,
``sys.path``, ``__main__``, environment, cwd), its random state, its exit status in ``WorkerDied``, a worker
file loaded in each worker, no process left behind (``close()``, SIGKILL of the scheduler's process); and what
happens when the zygote is not there: it cannot start, it is turned off, or it dies in the middle of a run.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import helpers
import psutil
import pytest
import zygote_jobs
from waiting import TIMEOUT, eventually, gone, reap

import jobsched
from jobsched import Job, JobError, Scheduler, remote_call
from jobsched._local import zygote as _zygote

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(jobsched.__file__))

pytestmark = pytest.mark.skipif(not _zygote.enabled(), reason="no zygote here (not Linux, or no pidfd)")


def zygote_pid(sched: Scheduler) -> int | None:
    return sched._backend._starter.zygote_pid  # type: ignore[attr-defined]


def is_zygote(pid: int) -> bool:
    try:
        return "jobsched._local.zygote_process" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


# What importing cloudpickle (3.x) adds to a worker's modules, besides cloudpickle itself.
CLOUDPICKLE_IMPORTS = {"_ast", "_opcode", "_string", "_uuid", "ast", "atexit", "copy", "dataclasses", "dis",
                       "inspect", "linecache", "logging", "opcode", "platform", "string", "textwrap", "token",
                       "tokenize", "traceback", "uuid", "weakref"}


def ready(sched: Scheduler, n: int) -> None:
    eventually(lambda: sum(w.state is jobsched.WorkerState.READY for w in sched.workers) == n, f"{n} ready workers")


def replace_slot_0(sched: Scheduler) -> None:
    """SIGKILL slot 0's worker and wait until its replacement is ready."""
    pid = sched.workers[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: sched.workers[0].pid not in (None, pid) and sched.workers[0].state is
               jobsched.WorkerState.READY, "slot 0 to be replaced")


def parents(sched: Scheduler) -> list[int]:
    """The parent of each slot's process: us for a spawned worker, the zygote for a forked one."""
    return [psutil.Process(w.pid).ppid() for w in sched.workers if w.pid is not None]


@pytest.fixture(autouse=True)
def one_direct_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests below are about forked workers: the zygote starts with a run's second worker, on any machine.

    (By default as many workers as there are cores are spawned before a zygote is started: see
    ``test_a_pool_no_bigger_than_the_cores_is_spawned_and_a_bigger_one_forked``.)
    """
    monkeypatch.setattr(_zygote, "DIRECT_SPAWNS", 1)


def test_a_pool_no_bigger_than_the_cores_is_spawned_and_a_bigger_one_forked(sched: Scheduler,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_zygote, "DIRECT_SPAWNS", 2)  # a 2-core machine, whatever this one has
    sched.start(2, wait=False)
    # Spawned at once, side by side, as without a zygote: both have their process by the first result.
    assert sched.submit(zygote_jobs.pid_after, 0.0).result(timeout=TIMEOUT) is not None
    assert all(w.pid is not None for w in sched.workers)
    ready(sched, 2)
    assert parents(sched) == [os.getpid()] * 2 and zygote_pid(sched) is None, "no zygote for such a pool"
    sched.scale(4)  # two more: the zygote starts, and forks them
    ready(sched, 4)
    zygote = zygote_pid(sched)
    assert zygote is not None and is_zygote(zygote)
    assert parents(sched) == [os.getpid(), os.getpid(), zygote, zygote]
    replace_slot_0(sched)  # its replacement is forked too
    assert parents(sched)[0] == zygote
    assert sched.submit(zygote_jobs.pid_after, 0.0).result(timeout=TIMEOUT) in {w.pid for w in sched.workers}


def test_the_first_worker_is_spawned_while_the_zygote_boots_and_the_others_are_forked(sched: Scheduler) -> None:
    sched.start(3, wait=False)
    ready(sched, 3)
    zygote = zygote_pid(sched)
    assert zygote is not None and is_zygote(zygote) and psutil.Process(zygote).ppid() == os.getpid()
    assert parents(sched) == [os.getpid(), zygote, zygote]
    replace_slot_0(sched)  # a replacement is forked: the zygote is up now
    assert parents(sched) == [zygote, zygote, zygote]


def test_a_forked_worker_is_the_process_a_spawned_worker_is(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZYGOTE_TEST_VARIABLE", "from the scheduler")
    with Scheduler(echo_output=False) as sched:
        sched.start(2, wait=False)
        ready(sched, 2)
        futures = [sched.submit(zygote_jobs.describe_process, 0.2) for _ in range(2)]
        seen = [f.result(timeout=TIMEOUT) for f in futures]
        zygote = zygote_pid(sched)
    by_parent = {p["ppid"]: p for p in seen}
    assert set(by_parent) == {os.getpid(), zygote}, "one job on each worker"
    spawned, forked = by_parent[os.getpid()], by_parent[zygote]
    for p in (spawned, forked):
        assert p["session_leader"] and p["group_leader"], "its own session: group kills and the reaper work"
        assert p["fds"][:3] == [0, 1, 2]
        assert p["cwd"] == str(tmp_path)
        assert p["environ"]["ZYGOTE_TEST_VARIABLE"] == "from the scheduler"
        assert p["cmdline"][:3] == [sys.executable, "-m", "jobsched.worker"]
        assert p["notebook_stack"] == []
    # Each worker's own JOBSCHED_TREE, which marks the processes its jobs start: the scheduler's tag, then its slot.
    tags = [p["environ"].pop("JOBSCHED_TREE").rsplit(".", 2) for p in (spawned, forked)]
    assert tags[0][0] == tags[1][0] and tags[0][1:] != tags[1][1:], tags
    for key in ("fds", "fd_kinds", "sys_path", "argv", "orig_argv", "main", "mp_main_is_main", "cwd", "environ",
                "streams", "signals"):
        assert forked[key] == spawned[key], key
    assert forked["mp_main_is_main"], "a worker file's classes pickle as __mp_main__ in both"
    # What the zygote loaded beyond a spawned worker's modules: itself and, once idle, what some workers need
    # (argparse for worker files, cloudpickle for functions that travel by value), with their imports.
    extra = {m.split(".")[0] for m in set(forked["modules"]) - set(spawned["modules"])} - {"jobsched"}
    assert extra <= {"argparse", "gettext", "cloudpickle", *CLOUDPICKLE_IMPORTS}, sorted(extra)
    assert "numpy" not in forked["modules"] and "zygote_jobs" in forked["modules"]


def test_forked_workers_do_not_share_their_random_state(sched: Scheduler) -> None:
    sched.start(4, wait=False)
    ready(sched, 4)
    numpy = importlib.util.find_spec("numpy") is not None
    draws = [f.result(timeout=TIMEOUT) for f in [sched.submit(zygote_jobs.draw, 0.05, numpy) for _ in range(12)]]
    first_by_pid: dict[int, tuple[float, int, float | None]] = {}
    for pid, x, bits, y in draws:
        first_by_pid.setdefault(pid, (x, bits, y))
    if numpy:
        assert len({y for _x, _bits, y in first_by_pid.values()}) == 4, "numpy seeds in each worker too"
    assert len(first_by_pid) == 4, f"the jobs ran on {len(first_by_pid)} worker(s)"
    assert len(set(first_by_pid.values())) == 4, first_by_pid
    assert parents(sched).count(zygote_pid(sched)) == 3


@pytest.mark.parametrize(("how", "said"), [
    ("exit_process", "exit code 3"),
    ("kill_self", "killed by signal SIGKILL"),
    ("segfault", "killed by signal SIGSEGV"),
])
def test_a_forked_worker_that_dies_is_reported_with_its_exit_status(how: str, said: str) -> None:
    with Scheduler(max_retries=1, echo_output=False) as sched:
        sched.start(2, wait=False)
        ready(sched, 2)
        forked = [w.pid for w in sched.workers if w.pid and psutil.Process(w.pid).ppid() == zygote_pid(sched)]
        assert len(forked) == 1
        with pytest.raises(JobError) as info:
            for _ in range(50):  # until one lands on the forked worker
                assert sched.submit(zygote_jobs.die_if_forked, os.getpid(), how).result(timeout=TIMEOUT) == "spawned"
        assert info.value.remote_type == "WorkerDied"
        assert info.value.remote_message == f"its worker died once: worker 1 (pid {forked[0]}) {said}"
        ready(sched, 2)
        assert parents(sched) == [os.getpid(), zygote_pid(sched)], "replaced, by a fork again"


WORKER_FILE = textwrap.dedent("""
    import os, sys

    from jobsched import start_simple_worker

    with open(sys.argv[1], "a") as log:  # one line each time a process loads this file
        log.write(f"{os.getpid()}\\n")
    LOADED_BY = os.getpid()


    def worker():
        start_simple_worker(lambda data: (os.getpid(), LOADED_BY, data))
""")


def test_a_worker_file_is_loaded_fresh_in_each_forked_worker_and_never_in_the_zygote(tmp_path: Path) -> None:
    file, log = tmp_path / "loaded_worker.py", tmp_path / "loads"
    file.write_text(WORKER_FILE)
    sched = jobsched.make_server(str(file), worker_args=[str(log)], echo_output=False)
    try:
        results: list[Any] = []
        for i in range(30):
            sched.add_job(i)
        sched.start(3, after_stop=lambda s, job, result: results.append(result), close_workers=False)
        zygote = zygote_pid(sched)
        workers = {w.pid for w in sched.workers}
        assert parents(sched) == [os.getpid(), zygote, zygote]
    finally:
        sched.close()
    assert zygote is not None and len(workers) == 3
    assert sorted(data for _pid, _loaded_by, data in results) == list(range(30))
    assert all(pid == loaded_by for pid, loaded_by, _data in results), "the file was loaded in the worker itself"
    loads = [int(line) for line in log.read_text().split()]
    assert sorted(loads) == sorted(workers), "each worker loaded the file once; the zygote never did"


def test_the_zygote_is_started_once_per_scheduler_and_stopped_by_close(sched: Scheduler) -> None:
    sched.start(2, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    ready(sched, 2)
    zygote = zygote_pid(sched)
    assert zygote is not None
    process = psutil.Process(zygote)
    assert process.ppid() == os.getpid()
    sched.scale(4)
    ready(sched, 4)
    assert zygote_pid(sched) == zygote
    assert parents(sched) == [os.getpid(), zygote, zygote, zygote]
    zygotes = [p for p in psutil.Process().children() if is_zygote(p.pid)]
    assert [p.pid for p in zygotes] == [zygote], "one zygote for the scheduler, not one per worker"
    workers = [psutil.Process(w.pid) for w in sched.workers if w.pid]
    sched.close()
    assert gone(process), "close() stops the zygote"
    assert all(gone(w) for w in workers)


def test_a_dead_zygote_loses_no_job_and_new_workers_are_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    n_jobs = 120
    delivered: collections.Counter[int] = collections.Counter()
    results: dict[int, Any] = {}
    killed: list[tuple[int, list[int]]] = []

    # max_retries=1: a worker that died with its zygote is not its job's fault, and costs it no retry.
    sched = Scheduler(max_retries=1, echo_output=False)
    logged: list[str] = []
    monkeypatch.setattr(sched._engine, "log", logged.append)

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        delivered[job.index] += 1
        results[job.index] = result
        if sum(delivered.values()) == 20:  # mid-run: every worker holds a job
            zygote = zygote_pid(s)
            assert zygote is not None
            forked = [w.pid for w in s.workers if w.pid is not None and psutil.Process(w.pid).ppid() == zygote]
            assert len(forked) == 2, "the first worker was spawned, the others forked"
            os.kill(zygote, signal.SIGKILL)
            killed.append((zygote, forked))

    try:
        for i in range(n_jobs):
            sched.add_job(remote_call(helpers.square_slowly, i, 0.02))
        sched.start(3, after_stop=after_stop, close_workers=False)
        assert killed, "the zygote was killed mid-run"
        [(zygote, forked)] = killed
        # Every job once, none failed.
        assert len(delivered) == n_jobs and set(delivered.values()) == {1}
        assert [results[i] for i in range(n_jobs)] == [i * i for i in range(n_jobs)]
        stats = sched.stats()
        assert (stats["done"], stats["failed"], stats["restarts"]) == (n_jobs, 0, 0), stats
        # The forked workers died with their zygote; their replacements are spawned, by us.
        family = {p.pid for p in psutil.Process().children(recursive=True)}
        assert zygote not in family and not family & set(forked)
        assert zygote_pid(sched) is None
        now = [w.pid for w in sched.workers if w.pid is not None]
        assert now and not set(now) & set(forked)
        assert all(psutil.Process(pid).ppid() == os.getpid() for pid in now)
        assert any("zygote" in line for line in logged), logged
    finally:
        sched.close()


def test_a_zygote_that_cannot_start_leaves_workers_to_be_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: _zygote.Zygote, env: dict[str, str]) -> None:
        raise _zygote.ZygoteGone("the zygote did not start: broken on purpose")

    monkeypatch.setattr(_zygote.Zygote, "__init__", broken)
    with Scheduler(echo_output=False) as sched:
        sched.start(2, wait=False)
        pids = {f.result(timeout=TIMEOUT) for f in [sched.submit(zygote_jobs.pid_after, 0.05) for _ in range(8)]}
        assert pids and all(psutil.Process(pid).ppid() == os.getpid() for pid in pids)
        assert zygote_pid(sched) is None


def test_a_blocking_start_that_ends_while_the_zygote_boots_leaves_every_worker_started(sched: Scheduler) -> None:
    # Three trivial jobs are done by the first worker (spawned) before the zygote is ready to fork the second.
    results: list[Any] = []
    for i in range(3):
        sched.add_job(remote_call(helpers.square, i))
    sched.start(2, after_stop=lambda s, job, result: results.append(result), close_workers=False)
    first = [w.pid for w in sched.workers]
    assert None not in first, "every worker asked for has its process when start() returns"
    assert parents(sched) == [os.getpid(), zygote_pid(sched)]
    sched.add_job(remote_call(helpers.square, 3))
    sched.start(2, after_stop=lambda s, job, result: results.append(result), close_workers=False)
    assert [w.pid for w in sched.workers] == first, "the next run uses the same workers"
    assert sorted(results) == [0, 1, 4, 9]


@pytest.mark.parametrize("zygote_code", ["import time; time.sleep(600)", "raise SystemExit(3)"],
                         ids=["hangs", "dies"])
def test_workers_waiting_for_a_zygote_that_never_boots_are_spawned_and_the_loop_never_waits(
        zygote_code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_zygote, "ZYGOTE_CODE", zygote_code)
    monkeypatch.setattr(_zygote, "START_TIMEOUT", 3.0)
    with Scheduler(echo_output=False) as sched:
        t0 = time.monotonic()
        sched.start(3, wait=False)
        # The first worker is spawned at once, and serves while the others wait for the zygote.
        assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
        if zygote_code.startswith("import time"):
            assert time.monotonic() - t0 < 2.5, "a job ran before the zygote's deadline: the loop did not wait"
        ready(sched, 3)
        assert parents(sched) == [os.getpid()] * 3, "given up on the zygote: the others were spawned"
        assert zygote_pid(sched) is None


def test_jobsched_zygote_0_spawns_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_zygote.ENV_SWITCH, "0")
    with Scheduler(echo_output=False) as sched:
        sched.start(2, wait=False)
        assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
        assert zygote_pid(sched) is None
        assert all(psutil.Process(w.pid).ppid() == os.getpid() for w in sched.workers if w.pid)


def test_a_worker_started_after_os_environ_changed_gets_the_new_environment(sched: Scheduler,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sched.start(2, wait=False)
    ready(sched, 2)
    zygote = zygote_pid(sched)
    assert parents(sched) == [os.getpid(), zygote]
    monkeypatch.setenv("ZYGOTE_LATE_VARIABLE", "late")  # what a worker's interpreter read at start-up may differ
    sched.scale(3)
    ready(sched, 3)
    assert parents(sched) == [os.getpid(), zygote, os.getpid()], "spawned: the zygote has the old environment"
    seen = [f.result(timeout=TIMEOUT) for f in [sched.submit(zygote_jobs.describe_process, 0.2) for _ in range(3)]]
    late = {p["pid"]: p["environ"].get("ZYGOTE_LATE_VARIABLE") for p in seen}
    assert late == {w.pid: ("late" if w.index == 2 else None) for w in sched.workers}


DOOMED = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    import helpers
    from jobsched._local import zygote as _zygote
    from jobsched import Scheduler

    if __name__ == "__main__":
        _zygote.DIRECT_SPAWNS = 1  # a zygote from the second worker on, on any machine
        sched = Scheduler(echo_output=False)
        futures = [sched.submit(helpers.hold_gil), sched.submit(helpers.hang)]
        sched.start(3, wait=False)  # two busy (one holding the GIL), one idle
        assert sched.submit(helpers.add, 1).result(timeout=60) == 2
        time.sleep(0.5)  # the C loop has begun
        zygote = sched._backend._starter.zygote_pid
        print(json.dumps({{"zygote": zygote, "workers": [w.pid for w in sched.workers]}}), flush=True)
        time.sleep(600)  # SIGKILLed long before this
""")


def test_a_sigkilled_scheduler_leaves_neither_its_zygote_nor_a_worker_behind(tmp_path: Path) -> None:
    script = tmp_path / "doomed.py"
    script.write_text(DOOMED.format(tests=HERE))
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    family: list[psutil.Process] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the doomed scheduler exited early ({proc.wait(timeout=TIMEOUT)})"
        reported = json.loads(line)
        family = psutil.Process(proc.pid).children(recursive=True)
        zygote = psutil.Process(reported["zygote"])
        workers = [psutil.Process(pid) for pid in reported["workers"]]
        assert is_zygote(zygote.pid) and zygote.ppid() == proc.pid
        assert [w.ppid() for w in workers] == [proc.pid, zygote.pid, zygote.pid]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        t0 = time.monotonic()
        eventually(lambda: gone(zygote), "the zygote to die with its scheduler", timeout=2.0)
        eventually(lambda: all(gone(w) for w in workers), "the workers to die with their scheduler", timeout=2.0)
        eventually(lambda: all(gone(p) for p in family), f"every process of the scheduler to exit: {family}",
                   timeout=5.0)
        assert time.monotonic() - t0 < 5.0
    finally:
        reap(proc, family)


def test_the_zygote_never_gets_the_secret(sched: Scheduler) -> None:
    sched.start(2, wait=False)  # the second worker starts the zygote
    ready(sched, 2)
    pid = zygote_pid(sched)
    assert pid is not None
    zygote = psutil.Process(pid)
    secret = sched._secret.hex()
    assert secret not in " ".join(zygote.cmdline())
    assert secret not in str(zygote.environ())
    assert [c.fd for c in zygote.net_connections("inet")] == [], "it connects nowhere and listens nowhere"
