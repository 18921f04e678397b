"""Cancel by stage: a job sent ahead to a worker is withdrawn there; only a running job costs its worker.

Real workers with ``prefetch`` > 1, so that a worker holds jobs behind the one it runs. Each job appends a line
to a log when it starts: a test reads there how many times each job ran.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from pathlib import Path

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import JobCancelled, Scheduler


def _starts(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("seed", [None, 7], ids=["unseeded", "seeded"])  # seeded jobs travel in frames of their own
@pytest.mark.parametrize("prefetch", [2, "auto"])
def test_cancelling_a_job_sent_ahead_leaves_the_job_before_it_alone(tmp_path: Path, prefetch: int | str,
                                                                    seed: int | None) -> None:
    """The running job's side effects happen once; the withdrawn job never starts; the worker stays."""
    log, release = tmp_path / "log", tmp_path / "release"
    with Scheduler(prefetch=prefetch, seed=seed) as sched:  # type: ignore[arg-type]
        sched.start(1, wait=False)
        first = sched.submit(helpers.record_start_then_wait, str(log), str(release), "A")
        ahead = sched.submit(helpers.record_start_then_wait, str(log), str(release), "B")
        eventually(lambda: len(_starts(log)) == 2, "job A to start")  # "<pid> 1": one start so far
        pid = sched.workers[0].pid
        if prefetch == "auto":  # "auto" starts with more than one job in flight; check it sent B ahead
            assert sched.n_queued_jobs == 0
        assert ahead.cancel() is True
        assert ahead.cancelled()
        release.touch()
        assert first.result(timeout=TIMEOUT) == "A"
        with pytest.raises(CancelledError):
            ahead.result(timeout=TIMEOUT)
        # The worker serves on: the same process runs the next job, and A started exactly once.
        assert sched.submit(helpers.getpid).result(timeout=TIMEOUT) == pid
        assert _starts(log) == [str(pid), "1"]
        assert sched.workers[0].n_restarts == 0
        stats = sched.stats()
        assert stats["cancelled"] == 1 and stats["failed"] == 1


def test_sched_cancel_of_a_job_sent_ahead_gives_after_stop_job_cancelled(tmp_path: Path) -> None:
    """``Scheduler.cancel(index)`` of a job held behind a running one: ``after_stop`` gets ``JobCancelled``."""
    from jobsched import remote_call

    log, release = tmp_path / "log", tmp_path / "release"
    results: dict[int, object] = {}
    with Scheduler(prefetch=2) as sched:
        a = sched.add_job(remote_call(helpers.record_start_then_wait, str(log), str(release), "A"))
        b = sched.add_job(remote_call(helpers.record_start_then_wait, str(log), str(release), "B"))
        assert (a, b) == (1, 2)
        sched.start(1, wait=False, after_stop=lambda s, job, result: results.__setitem__(job.index, result))
        eventually(lambda: len(_starts(log)) == 2, "job A to start")
        assert sched.cancel(1) is True
        release.touch()
        assert sched.wait(timeout=TIMEOUT)
        assert results[0] == "A"
        assert isinstance(results[1], JobCancelled)
        assert len(_starts(log)) == 2
        assert sched.workers[0].n_restarts == 0


def test_a_withdrawn_job_that_already_started_is_stopped_by_killing_its_worker(tmp_path: Path) -> None:
    """Cancelling the job a worker runs still kills it, with prefetch > 1, and the job behind it runs once."""
    log, release = tmp_path / "log", tmp_path / "release"
    with Scheduler(prefetch=2) as sched:
        sched.start(1, wait=False)
        running = sched.submit(helpers.record_start_then_wait, str(log), str(tmp_path / "never"), "A")
        behind = sched.submit(helpers.record_start_then_wait, str(log), str(release), "B")
        eventually(lambda: len(_starts(log)) == 2, "job A to start")
        assert running.cancel() is True
        release.touch()
        assert behind.result(timeout=TIMEOUT) == "B"
        lines = log.read_text().splitlines()
        assert len(lines) == 2 and lines[1].endswith(" 2"), lines  # A once, then B once (in a new worker)
        assert lines[0].split()[0] != lines[1].split()[0]
