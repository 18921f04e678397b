"""Reproducible runs: per-job seeds, retries on chosen errors, memory limits, with real workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import reproduce_jobs as jobs

import jobsched
from jobsched import Executor, JobError, Scheduler
from jobsched._keys.seeds import job_seed

TIMEOUT = 120


def run_all(sched: Scheduler, fn: object, args: list[object], n_workers: int) -> dict[object, object]:
    sched.start(n_workers, wait=False)
    futures = {a: sched.submit(fn, a) for a in args}  # type: ignore[arg-type]
    return {a: f.result(timeout=TIMEOUT) for a, f in futures.items()}


@pytest.mark.parametrize("fn", [jobs.draws, jobs.numpy_draws], ids=["random", "numpy"])
def test_seeded_jobs_draw_the_same_numbers_whatever_the_workers_and_the_order(fn: object) -> None:
    """1 worker in order and 4 workers in reverse order give each job the same draws, and the same seed."""
    with Scheduler(seed=2024) as one:
        first = run_all(one, fn, list(range(12)), 1)
    with Scheduler(seed=2024) as four:
        second = run_all(four, fn, list(reversed(range(12))), 4)
    assert first == second
    with Scheduler(seed=2025) as other:
        third = run_all(other, fn, list(range(12)), 2)
    assert all(first[i] != third[i] for i in range(12))
    assert len({repr(v[1]) for v in first.values()}) == 12  # each job its own stream


def test_the_seed_derives_from_the_run_seed_and_the_explicit_key() -> None:
    """With key=, a job's seed is job_seed(S, key): what Journal records and rerun_here uses."""
    with Scheduler(seed=7) as sched:
        sched.start(2, wait=False)
        f = sched.submit(jobs.draws, 1, key="trial-1")
        assert f.result(timeout=TIMEOUT)[2] == job_seed(7, "trial-1")


def test_without_a_seed_job_seed_is_a_clear_error() -> None:
    with Scheduler() as sched:
        sched.start(1, wait=False)
        with pytest.raises(JobError, match=r"Scheduler\(seed=12345\)"):
            sched.submit(jobs.draws, 1).result(timeout=TIMEOUT)


def test_job_seed_outside_a_job_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no seed for this job"):
        jobsched.job_seed()


def test_seeding_a_job_sets_the_states_that_random_seed_and_numpy_seed_set() -> None:
    """The worker's fast seeding gives exactly random.seed(s) and numpy.random.seed(s folded to 32 bits),
    gauss_next included, whatever the previous job left; a job without a seed leaves the states alone."""
    import random

    import numpy as np

    from jobsched.worker import seeding

    try:
        for s in (0, 1, 2**32 + 5, job_seed(2024, "a"), 2**63 - 1):
            random.gauss(0, 1)  # leaves gauss_next set, as a job may
            np.random.standard_normal()  # leaves numpy's cached gaussian set
            seeding.apply(s)
            seeding.loaded()
            ours = random.getstate(), random.gauss(0, 1), np.random.standard_normal(3).tolist()
            random.seed(s)
            np.random.seed((s ^ (s >> 32)) & 0xFFFFFFFF)
            assert ours == (random.getstate(), random.gauss(0, 1), np.random.standard_normal(3).tolist())
            assert jobsched.job_seed() == s
        seeding.apply(None)
        before = random.getstate()
        seeding.loaded()
        assert random.getstate() == before
    finally:
        seeding.apply(None)


def test_job_seed_is_blake2b_over_the_run_seed_and_the_key_for_every_run_seed() -> None:
    """job_seed keeps its documented value when one process derives seeds for several run seeds."""
    import hashlib

    def reference(seed: int, key: str) -> int:
        h = hashlib.blake2b(digest_size=8)
        h.update(seed.to_bytes((seed.bit_length() + 8) // 8, "big") + b"\0" + key.encode("utf-8", "surrogatepass"))
        return int.from_bytes(h.digest(), "big") >> 1

    for key in ("", "trial-1", "\udcff", "k" * 300):
        for seed in (0, 7, 2**64 + 1, *range(100)):  # more run seeds than the cache holds
            assert job_seed(seed, key) == reference(seed, key)
    assert job_seed(7, "trial-1") != job_seed(8, "trial-1") != job_seed(8, "trial-2")


def test_a_job_retried_after_its_worker_died_draws_the_same_numbers(tmp_path: Path) -> None:
    """A SIGKILL mid-job: the retry on a fresh worker gets the job's seed again."""
    with Scheduler(seed=11) as sched:
        sched.start(2, wait=False)
        clean = sched.submit(jobs.draws_after_dying_once, str(tmp_path / "never"), 5)
        Path(tmp_path / "never").touch()
        reference = clean.result(timeout=TIMEOUT)
        (tmp_path / "never").unlink()
        retried = sched.submit(jobs.draws_after_dying_once, str(tmp_path / "never"), 5).result(timeout=TIMEOUT)
    assert retried == reference


def test_a_resumed_run_draws_what_a_whole_run_draws(tmp_path: Path) -> None:
    """Half the jobs in one run, the rest in a second run on the same journal: as one whole run."""
    with Scheduler(seed=3) as whole:
        expected = run_all(whole, jobs.draws, list(range(8)), 2)
    journal = tmp_path / "j.sqlite"
    with Scheduler(seed=3, journal=journal) as first:
        run_all(first, jobs.draws, list(range(0, 8, 2)), 3)
    with Scheduler(seed=3, journal=journal) as second:
        resumed = run_all(second, jobs.draws, list(range(8)), 1)
    assert resumed == expected


SWEEP = """
import sys

import reproduce_jobs

from jobsched import Scheduler

with Scheduler(seed=3, journal=sys.argv[1]) as sched:
    sched.start(2, wait=False)
    for i in range(12):
        sched.submit(reproduce_jobs.slow_draws, i)
    sched.wait()
"""


def test_a_run_killed_by_sigkill_then_resumed_draws_what_a_whole_run_draws(tmp_path: Path) -> None:
    """A seeded run with a journal, its scheduler process killed by SIGKILL half-way, then resumed: every
    job's random, numpy and job_rng() draws are those of one whole run, whichever jobs the crash cut."""
    with Scheduler(seed=3) as whole:
        expected = run_all(whole, jobs.slow_draws, list(range(12)), 2)
    script, journal = tmp_path / "sweep.py", tmp_path / "runs.sqlite"
    script.write_text(SWEEP)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}
    proc = subprocess.Popen([sys.executable, str(script), str(journal)], env=env, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and len(committed(journal)) < 3 and proc.poll() is None:
            time.sleep(0.05)
        family = psutil.Process(proc.pid).children(recursive=True)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        # Its workers exit by themselves once their scheduler is gone: wait for them before going on.
        _, alive = psutil.wait_procs(family, timeout=30)
        for p in alive:
            p.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not alive, f"workers outlived their SIGKILLed scheduler: {alive}"
    before = committed(journal)
    assert 3 <= len(before) < 12
    with Scheduler(seed=3, journal=journal) as second:
        resumed = run_all(second, jobs.slow_draws, list(range(12)), 1)
        assert second.stats()["from_journal"] == len(before)
    assert resumed == expected


def committed(journal: Path) -> dict[str, object]:
    """The results in ``journal`` (none while its writer has not made it yet)."""
    try:
        return jobsched.Journal(journal).results()
    except (FileNotFoundError, jobsched.JournalError):
        return {}


def test_executor_takes_a_seed() -> None:
    with Executor(2, seed=5) as ex:
        a = list(ex.map(jobs.draws, range(6), timeout=TIMEOUT))
    with Executor(1, seed=5) as ex:
        b = list(ex.map(jobs.draws, range(6), timeout=TIMEOUT))
    assert a == b


def test_bad_seeds_are_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"seed must be an int or None, got float"):
        Scheduler(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        Scheduler(seed=-1)


# ---------------------------------------------------------------------------------------------- retry_on


def test_retry_on_runs_a_flaky_job_until_it_succeeds(tmp_path: Path) -> None:
    with Scheduler(retry_on=ConnectionError, max_retries=4) as sched:
        sched.start(1, wait=False)
        # ConnectionResetError is a subclass of ConnectionError: it matches.
        assert sched.submit(jobs.fails_until, str(tmp_path / "log"), 3).result(timeout=TIMEOUT) == 3


def test_retry_on_stops_when_the_attempts_are_used_up(tmp_path: Path) -> None:
    with Scheduler(retry_on=(ConnectionError,), max_retries=3) as sched:
        sched.start(1, wait=False)
        future = sched.submit(jobs.fails_until, str(tmp_path / "log"), 10)
        with pytest.raises(JobError) as info:
            future.result(timeout=TIMEOUT)
    assert info.value.remote_type == "ConnectionResetError"
    assert info.value.attempts == 3
    assert (tmp_path / "log").read_text().count("x") == 3


def test_an_error_not_named_is_not_retried(tmp_path: Path) -> None:
    with Scheduler(retry_on=ConnectionError, max_retries=5) as sched:
        sched.start(1, wait=False)
        future = sched.submit(jobs.fails_until, str(tmp_path / "log"), 3, ValueError)
        with pytest.raises(JobError) as info:
            future.result(timeout=TIMEOUT)
    assert info.value.remote_type == "ValueError"
    assert info.value.attempts == 1
    assert (tmp_path / "log").read_text().count("x") == 1


def test_the_journal_records_the_attempts_of_retried_jobs(tmp_path: Path) -> None:
    """A job that succeeds on its third attempt, and one that used up its three, are journaled with 3
    attempts; the failed one's JobError, read back from the journal, says 3 too; a plain job has 1."""
    path = tmp_path / "runs.sqlite"
    with Scheduler(journal=path, retry_on=ConnectionError, max_retries=3) as sched:
        sched.start(1, wait=False)
        ok = sched.submit(jobs.fails_until, str(tmp_path / "ok"), 3, key="ok")
        bad = sched.submit(jobs.fails_until, str(tmp_path / "bad"), 10, key="bad")
        plain = sched.submit(jobs.fails_until, str(tmp_path / "plain"), 1, key="plain")
        assert ok.result(timeout=TIMEOUT) == 3 and plain.result(timeout=TIMEOUT) == 1
        with pytest.raises(JobError) as info:
            bad.result(timeout=TIMEOUT)
        assert info.value.attempts == 3
    journal = jobsched.Journal(path)
    records = {key: journal.get(key) for key in ("ok", "bad", "plain")}
    assert {key: r.attempts for key, r in records.items() if r is not None} == {"ok": 3, "bad": 3, "plain": 1}
    assert journal.failed()["bad"].attempts == 3


def test_retry_on_per_job_overrides_the_schedulers_and_waits_its_delay(tmp_path: Path) -> None:
    with Scheduler(retry_delay=0.3, max_retries=3) as sched:
        sched.start(1, wait=False)
        plain = sched.submit(jobs.fails_until, str(tmp_path / "a"), 2)
        with pytest.raises(JobError):
            plain.result(timeout=TIMEOUT)
        sched.add_job(jobsched.remote_call(jobs.fails_until, str(tmp_path / "b"), 2), retry_on=OSError)
        assert sched.wait(timeout=TIMEOUT)
        assert sched.stats()["failed"] == 1
    assert (tmp_path / "b").read_text().count("x") == 2


def test_retry_on_refuses_what_is_not_an_exception_class() -> None:
    with pytest.raises(TypeError, match=r"retry_on must be an exception class or a tuple of them, got 'oops'"):
        Scheduler(retry_on="oops")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- memory


def test_a_job_over_the_memory_limit_fails_with_memory_error_and_the_worker_goes_on() -> None:
    limit = 1 << 30
    with Scheduler(memory_limit=limit) as sched:
        sched.start(1, wait=False)
        before = sched.submit(jobs.pid).result(timeout=TIMEOUT)
        with pytest.raises(JobError) as info:
            sched.submit(jobs.allocate, 2 * limit).result(timeout=TIMEOUT)
        after = sched.submit(jobs.allocate, 1 << 20).result(timeout=TIMEOUT)
    assert info.value.remote_type == "MemoryError"
    assert after == before  # the same worker ran the next job


# ---------------------------------------------------------------------------------------------- rerun_here


def test_a_failed_job_reruns_here_from_the_journal_with_its_seed_and_its_own_exception(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with Scheduler(seed=42, journal=journal) as sched:
        sched.start(2, wait=False)
        failing = sched.submit(jobs.draw_then_fail, 3, key="three")
        fine = sched.submit(jobs.draw_then_fail, 2, key="two")
        with pytest.raises(JobError) as remote:
            failing.result(timeout=TIMEOUT)
        fine.result(timeout=TIMEOUT)
        with pytest.raises(ValueError) as here_future:
            failing.rerun_here(debug=False)  # type: ignore[attr-defined]
        with pytest.raises(ValueError) as here_sched:
            sched.rerun_here(remote.value.job_index, debug=False)
    assert str(here_future.value) == remote.value.remote_message == str(here_sched.value)
    record = jobsched.Journal(journal).get("three")
    assert record is not None and record.seed == job_seed(42, "three")
    with pytest.raises(ValueError) as here_journal:
        jobsched.Journal(journal).rerun_here("three", debug=False)
    assert type(here_journal.value) is ValueError and str(here_journal.value) == remote.value.remote_message
    with pytest.raises(ValueError, match="succeeded"):
        jobsched.Journal(journal).rerun_here("two")
    with pytest.raises(KeyError, match="no job 'nine'"):
        jobsched.Journal(journal).rerun_here("nine")


def test_rerun_here_stops_in_pdb_at_the_frame_that_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    journal = tmp_path / "j.sqlite"
    with Scheduler(seed=1, journal=journal) as sched:
        sched.start(1, wait=False)
        with pytest.raises(JobError):
            sched.submit(jobs.draw_then_fail, 1, key="one").result(timeout=TIMEOUT)
    monkeypatch.setattr(sys, "stdin", io.StringIO("p ('LOCAL', i, drawn)\nq\n"))
    with pytest.raises(ValueError):
        jobsched.Journal(journal).rerun_here("one")
    out = capsys.readouterr().out
    assert "('LOCAL', 1, 0." in out  # the debugger ran in draw_then_fail's frame


KERNEL_RUN = '''
import sys
sys.path.insert(0, {tests!r})
import jobsched, reproduce_jobs
with jobsched.Scheduler(seed=9, journal={journal!r}) as s:
    s.start(1, wait=False)
    f = s.submit(reproduce_jobs.draw_then_fail, 1, key="one")
    try:
        f.result(timeout=120)
    except jobsched.JobError as exc:
        print("REMOTE", exc.remote_message)
'''


def test_debug_a_failed_job_from_the_journal_in_a_restarted_kernel(tmp_path: Path) -> None:
    """A kernel runs a failing job with a journal and is killed; in a new kernel, `%jobsched debug` opens
    IPython's debugger in the job's frame, with its arguments and seed, then raises the job's exception."""
    jupyter_client = pytest.importorskip("jupyter_client")
    journal = str(tmp_path / "j.sqlite")
    tests = str(Path(__file__).parent)
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", startup_timeout=TIMEOUT)
    try:
        out: list[str] = []
        reply = kc.execute_interactive(KERNEL_RUN.format(tests=tests, journal=journal), timeout=TIMEOUT,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        remote = "".join(out).split("REMOTE ", 1)[1].strip()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # killed: nothing is closed cleanly
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", startup_timeout=TIMEOUT)
    try:
        out = []
        answers = iter(["p ('LOCAL', i, drawn)", "q"])
        reply = kc.execute_interactive(
            f"import sys; sys.path.insert(0, {tests!r})\n%load_ext jobsched\n%jobsched debug one --journal {journal}",
            timeout=TIMEOUT, allow_stdin=True,
            output_hook=lambda m: out.append(m["content"].get("text", "") + m["content"].get("evalue", "")),
            stdin_hook=lambda m: kc.input(next(answers)))
        text = "".join(out)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "ValueError"
        assert reply["content"]["evalue"] == remote  # the same draw, seed and working directory
        assert "('LOCAL', 1, " in text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------------------------- OOM kills

OOM_CASES = [
    # returncode, signalled, kills before, after, rss, expected fragment (None: not an OOM kill)
    (-9, False, 0, 1, 3 << 30, "OOM killer (SIGKILL, out of memory; last measured RSS 3072 MiB)"),
    (-9, True, 0, 1, None, None),  # we killed it (cancel, timeout, close): never named an OOM kill
    (-9, False, 2, 2, None, None),  # a user's kill -9: the counter did not move
    (-15, False, 0, 1, None, None),
    (-9, False, None, None, None, "maybe the kernel's OOM killer"),  # no counter readable
]


@pytest.mark.parametrize(("code", "signalled", "before", "after", "rss", "expected"), OOM_CASES)
def test_an_oom_kill_is_named_apart_from_other_deaths(code: int, signalled: bool, before: int | None,
                                                      after: int | None, rss: int | None,
                                                      expected: str | None) -> None:
    from jobsched._local.memory import describe_oom

    text = describe_oom(code, signalled, before, after, rss)
    assert (text is None) if expected is None else (text is not None and expected in text)


def test_the_oom_kill_counter_is_read_from_cgroup_v2_and_v1_files(tmp_path: Path) -> None:
    from jobsched._local.memory import cgroup_dirs, oom_kills

    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert oom_kills([str(tmp_path / "v2")]) == 2
    assert oom_kills([str(tmp_path / "missing"), str(tmp_path / "v1")]) == 5
    assert oom_kills([str(tmp_path / "missing")]) is None
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/user.slice/a\n4:memory:/b\n")
    assert cgroup_dirs(str(cgroup), "/R") == ["/R/user.slice/a", "/R/memory/b", "/R/memory"]
