"""Scheduler(journal=...): runs that resume, with real workers and a real SQLite file.

Each job appends its number to a log file when it runs (``resume_jobs.logged``), so a test proves that a
journaled job did not run again by counting lines, not by trusting the scheduler's own counters.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import pytest
import resume_jobs
from waiting import TIMEOUT

from jobsched import Job, JobError, Journal, Scheduler, remote_call, start_simple_server
from jobsched._core.state import Entry
from jobsched._journaling.resume import Resume
from jobsched._local import wire as _wire
from jobsched.errors import JournalError, UnkeyableError
from jobsched.journal import JournalWarning

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


def run_jobs(journal: Path, log: Path, n: int, **options: Any) -> tuple[list[Any], list[Job], dict[str, Any]]:
    """One run over ``journal``: jobs 0..n-1 through add_job + a blocking start; return results, jobs, stats."""
    results: list[Any] = [None] * n
    jobs: list[Job] = []

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        results[job.data.args[1]] = result
        jobs.append(job)

    with Scheduler(journal=journal, **options) as s:
        for i in range(n):
            s.add_job(remote_call(resume_jobs.logged, str(log), i))
        s.start(2, after_stop=after_stop)
        return results, jobs, s.stats()


def test_a_second_run_takes_finished_jobs_from_the_journal(tmp_path: Path) -> None:
    journal, log = tmp_path / "runs.sqlite", tmp_path / "log"
    results, jobs, stats = run_jobs(journal, log, 10)
    assert results == [i * i for i in range(10)] and sorted(resume_jobs.runs(str(log))) == list(range(10))
    assert not any(job.from_journal for job in jobs) and stats["from_journal"] == 0
    results, jobs, stats = run_jobs(journal, log, 12)  # 10 journaled, 2 new
    assert results == [i * i for i in range(12)]
    assert sorted(resume_jobs.runs(str(log))) == list(range(12)), "only the 2 new jobs ran"
    assert sorted(job.data.args[1] for job in jobs if job.from_journal) == list(range(10))
    assert stats["from_journal"] == 10 and stats["done"] == 12 and stats["failed"] == 0
    assert len(Journal(journal)) == 12


def test_futures_resolve_to_journaled_results(tmp_path: Path) -> None:
    journal, log = tmp_path / "runs.sqlite", str(tmp_path / "log")
    for expected_runs in (5, 5):
        with Scheduler(journal=journal) as s:
            s.start(2, wait=False)
            futures = [s.submit(resume_jobs.logged, log, i) for i in range(5)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 4, 9, 16]
            assert s.wait(TIMEOUT)
        assert len(resume_jobs.runs(log)) == expected_runs
    assert s.stats()["from_journal"] == 5


def test_failed_jobs_run_again_by_default_and_not_with_rerun_failed_false(tmp_path: Path) -> None:
    journal, log, marker = tmp_path / "runs.sqlite", str(tmp_path / "log"), str(tmp_path / "ok")

    def one_run(**options: Any) -> Any:
        with Scheduler(journal=journal, **options) as s:
            s.start(1, wait=False)
            future = s.submit(resume_jobs.fails_without, log, marker, 7)
            try:
                return future.exception(timeout=TIMEOUT) or future.result()
            finally:
                s.wait(TIMEOUT)

    first = one_run()
    assert isinstance(first, JobError) and first.remote_type == "ValueError"
    kept = one_run(rerun_failed=False)
    assert isinstance(kept, JobError) and kept.remote_type == "ValueError"
    assert resume_jobs.runs(log) == [7], "rerun_failed=False keeps the journaled error: no run"
    assert one_run() == first or resume_jobs.runs(log) == [7, 7]  # rerun by default (fails again)
    assert resume_jobs.runs(log) == [7, 7]
    Path(marker).touch()
    assert one_run() == 7 and resume_jobs.runs(log) == [7, 7, 7]
    assert one_run(rerun_failed=False) == 7 and resume_jobs.runs(log) == [7, 7, 7], "a success is final"


def test_explicit_keys_name_the_job(tmp_path: Path) -> None:
    journal, log = tmp_path / "runs.sqlite", str(tmp_path / "log")
    with Scheduler(journal=journal) as s:
        s.add_job(remote_call(resume_jobs.logged, log, 3), key=("fit", 3))
        s.start(1)
    with Scheduler(journal=journal) as s:  # other data, same key: the journaled result, not a run
        s.start(1, wait=False)
        assert s.submit(resume_jobs.logged, log, 4, key=("fit", 3)).result(timeout=TIMEOUT) == 9
        assert s.submit(resume_jobs.logged, log, 4, key=4).result(timeout=TIMEOUT) == 16
    assert resume_jobs.runs(log) == [3, 4]
    assert set(Journal(journal).results()) == {'["fit",3]', "4"}
    with Scheduler(journal=journal) as s, pytest.raises(TypeError, match="key="):
        s.add_job(remote_call(resume_jobs.logged, log, 5), key=1.5)


def test_a_job_that_cannot_be_keyed_is_refused_with_a_hint_to_pass_key(tmp_path: Path) -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with Scheduler(journal=tmp_path / "runs.sqlite") as s:
        with pytest.raises(UnkeyableError, match="key="):
            s.submit(resume_jobs.logged, cyclic, 1)
        assert s.n_queued_jobs == 0 and s.stats()["active"] == 0, "the queue is unchanged"
        s.start(1, wait=False)
        future = s.submit(len, cyclic, key="cyclic")
        assert future.result(timeout=TIMEOUT) == 1


def _newer_journal(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {0x4A534348}")
    conn.execute("PRAGMA user_version = 99")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


def _foreign_db(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()


def _read_only(path: Path) -> None:
    Scheduler(journal=path).close()
    path.chmod(stat.S_IRUSR)


BAD_JOURNALS = [
    ("missing folder", lambda p: None, "no/such/folder/runs.sqlite", "does not exist"),
    ("read-only file", _read_only, "runs.sqlite", "read-only"),
    ("not a journal", lambda p: p.write_text("hello, I am a text file\n" * 10), "notes.txt", "not a jobsched journal"),
    ("another SQLite database", _foreign_db, "other.db", "not a jobsched journal"),
    ("newer schema", _newer_journal, "new.sqlite", "newer jobsched"),
]


@pytest.mark.parametrize(("make", "name", "says"), [case[1:] for case in BAD_JOURNALS],
                         ids=[case[0] for case in BAD_JOURNALS])
def test_a_bad_journal_is_refused_at_construction_and_left_untouched(tmp_path: Path, make: Any, name: str,
                                                                      says: str) -> None:
    path = tmp_path / name
    make(path)
    before = path.read_bytes() if path.exists() else None
    siblings = sorted(os.listdir(tmp_path))
    with pytest.raises(JournalError, match=says) as info:
        Scheduler(journal=path)
    assert str(path) in str(info.value)
    assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(os.listdir(tmp_path)) == siblings, "no -wal or -shm file made"
    if path.exists():
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_start_simple_server_and_executor_take_a_journal(tmp_path: Path) -> None:
    from jobsched import Executor

    journal, log = tmp_path / "runs.sqlite", str(tmp_path / "log")
    for _ in range(2):
        with Executor(2, journal=journal) as ex:
            assert list(ex.map(resume_jobs.logged, [log] * 4, range(4), timeout=TIMEOUT)) == [0, 1, 4, 9]
    assert sorted(resume_jobs.runs(log)) == [0, 1, 2, 3]
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent("""
        from jobsched import start_simple_worker

        def worker():
            start_simple_worker(lambda data: data * 10)
    """))
    for _ in range(2):
        got: list[tuple[Any, Any]] = []
        start_simple_server(worker, [1, 2, 3], lambda d, r, got=got: got.append((d, r)), n_workers=1,
                            journal=tmp_path / "server.sqlite")
        assert sorted(got) == [(1, 10), (2, 20), (3, 30)]
    assert len(Journal(tmp_path / "server.sqlite")) == 3


def test_a_result_that_cannot_be_pickled_is_delivered_but_not_journaled_with_a_warning(tmp_path: Path) -> None:
    # Workers send bytes (an unpicklable result is already a JobError there); a backend that hands over a
    # value takes this path.
    resume = Resume.open(tmp_path / "runs.sqlite", rerun_failed=True)
    try:
        entry = Entry(0, None, None, None, None, 3, False, "k")
        entry.index = 5
        with pytest.warns(JournalWarning, match="job 5"):
            resume.on_result(None, entry, _wire.RESULT, threading.Lock(), threading.Lock())
        resume.flush()
    finally:
        resume.close()
    assert len(Journal(tmp_path / "runs.sqlite")) == 0


def test_failures_the_scheduler_decides_are_journaled_with_their_times_worker_and_attempts(tmp_path: Path) -> None:
    import helpers

    path, marker = tmp_path / "runs.sqlite", str(tmp_path / "died")
    jobs: dict[str, Job] = {}
    with Scheduler(journal=path, max_retries=2) as s:
        before = time.time() * 1000.0
        s.start(1, wait=False, after_stop=lambda _s, job, _r: jobs.__setitem__(job.data.fun_name, job))
        futures = {
            "died": s.submit(helpers.kill_self, key="died"),  # its worker dies twice: WorkerDied
            "late": s.submit(helpers.sleep_then, 30.0, key="late", timeout=0.5),  # killed: JobTimeout
            "once": s.submit(helpers.die_once, marker, 5, key="once"),  # dies, then succeeds
            "poison": s.submit(helpers.result_that_fails_to_unpickle, key="poison"),  # fails here, not there
            "raised": s.submit(helpers.raise_value_error, "boom", key="raised"),
        }
        for f in futures.values():
            f.exception(timeout=TIMEOUT)
        assert s.wait(TIMEOUT)
        after = time.time() * 1000.0
    journal = Journal(path)
    records = {r.key: r for r in journal}
    assert {k: r.status for k, r in records.items()} == {"died": "failed", "late": "failed", "once": "done",
                                                         "poison": "failed", "raised": "failed"}
    assert {k: r.error.remote_type for k, r in records.items() if r.error} == {
        "died": "WorkerDied", "late": "JobTimeout", "poison": "RuntimeError", "raised": "ValueError"}
    assert {k: r.attempts for k, r in records.items()} == {"died": 2, "late": 1, "once": 2, "poison": 1, "raised": 1}
    assert {k: r.worker for k, r in records.items()} == dict.fromkeys(records, 0)
    for r in records.values():
        assert r.start_ms is not None and r.stop_ms is not None
        assert before <= r.start_ms <= r.stop_ms <= after, r
    assert records["late"].elapsed_ms >= 450.0, "stop is when the scheduler decided: after the timeout"
    # The Job that after_stop receives carries the same stop time as the journal.
    assert jobs["sleep_then"].stop_ms == records["late"].stop_ms
    assert jobs["kill_self"].stop_ms == records["died"].stop_ms > 0
    assert journal.get("poison").result is None  # type: ignore[union-attr]  # the error, not undecodable bytes


PARTIALS = """
import functools, json, sys

import resume_jobs
from jobsched import Scheduler

journal, log = sys.argv[1], sys.argv[2]
with Scheduler(journal=journal) as s:
    s.start(2, wait=False)
    futures = [s.submit(functools.partial(resume_jobs.logged, log), i) for i in range(3)]
    futures += [s.submit(functools.partial(resume_jobs.logged, log, seconds=0.0), i) for i in range(3, 5)]
    futures += [s.submit(resume_jobs.Logger(log).run, i) for i in range(10, 13)]
    print(json.dumps([[f.result(timeout=60) for f in futures], s.stats()["from_journal"]]))
"""


def test_partials_and_bound_methods_resume_in_a_fresh_process(tmp_path: Path) -> None:
    script, journal, log = tmp_path / "partials.py", tmp_path / "runs.sqlite", tmp_path / "log"
    script.write_text(PARTIALS)
    expected = [i * i for i in (0, 1, 2, 3, 4, 10, 11, 12)]
    for seed, from_journal in (("1", 0), ("2", 8)):  # another hash seed, other addresses: the same keys
        out = subprocess.run([sys.executable, str(script), str(journal), str(log)], capture_output=True, text=True,
                             timeout=120, env={**ENV, "PYTHONHASHSEED": seed})
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [expected, from_journal]
    assert sorted(resume_jobs.runs(str(log))) == [0, 1, 2, 3, 4, 10, 11, 12], "each job ran once"


# ---- durability: SIGKILL of the scheduler's process at random moments

CHILD = """
import sys

import resume_jobs
from jobsched import Scheduler, remote_call


def main():
    journal, log, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with Scheduler(journal=journal) as s:
        for i in range(first, last):
            s.add_job(remote_call(resume_jobs.logged, log, i, 0.004), key=i)
        s.start(2)
        print("finished", s.stats()["from_journal"], flush=True)


if __name__ == "__main__":
    main()
"""


def _spawn(script: Path, journal: Path, log: Path, first: int, last: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(script), str(journal), str(log), str(first), str(last)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _committed(journal: Path) -> set[int]:
    try:
        return {int(k) for k in Journal(journal).results()}
    except JournalError:  # killed before the file was made
        return set()


def test_sigkill_at_random_moments_then_resume_reruns_only_uncommitted_jobs(tmp_path: Path) -> None:
    script, journal, log = tmp_path / "child.py", tmp_path / "runs.sqlite", tmp_path / "log"
    script.write_text(CHILD)
    n = 300
    rng = random.Random(int(os.environ.get("JOBSCHED_SEED", time.time())))
    checkpoints: list[tuple[int, set[int]]] = []  # (log lines at the kill, keys committed at the kill)
    for _ in range(5):
        proc = _spawn(script, journal, log, 0, n)
        try:
            time.sleep(rng.uniform(0.3, 1.2))
            family = psutil.Process(proc.pid).children(recursive=True)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=TIMEOUT)
        # Its workers exit by themselves (within 2 s): only then is the log final for this run.
        _, alive = psutil.wait_procs(family, timeout=10)
        for p in alive:
            p.kill()
        assert not alive, f"workers outlived their SIGKILLed scheduler: {alive}"
        checkpoints.append((len(resume_jobs.runs(str(log))), _committed(journal)))
    proc = _spawn(script, journal, log, 0, n)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.startswith("finished"), err
    assert Journal(journal).results() == {str(i): i * i for i in range(n)}, "every result, complete"
    ran = resume_jobs.runs(str(log))
    for at, committed in checkpoints:
        again = committed & set(ran[at:])
        assert not again, f"jobs committed before a kill ran again after it: {sorted(again)}"
    assert set(ran) == set(range(n))
    assert any(committed for _, committed in checkpoints), "no kill came after a commit: nothing was tested"


def test_two_schedulers_in_two_processes_share_one_journal(tmp_path: Path) -> None:
    script, journal = tmp_path / "child.py", tmp_path / "runs.sqlite"
    script.write_text(CHILD)
    procs = [_spawn(script, journal, tmp_path / "log-a", 0, 150), _spawn(script, journal, tmp_path / "log-b", 100, 250)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0 and out.startswith("finished"), err
    assert Journal(journal).results() == {str(i): i * i for i in range(250)}
    runs = Journal(journal).runs()
    assert len(runs) == 2 and all(r.finished is not None for r in runs)


def test_no_journal_no_key_cost(tmp_path: Path) -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with Scheduler() as s, warnings.catch_warnings():
        warnings.simplefilter("error")
        s.add_job(remote_call(len, cyclic))  # without a journal nothing is keyed: no UnkeyableError
        assert s.n_queued_jobs == 1
