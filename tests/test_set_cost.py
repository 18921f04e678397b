"""Reprioritising queued jobs with real workers: ``future.set_cost`` and ``Scheduler.set_cost``."""

from __future__ import annotations

from typing import Any

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import Job, Scheduler, remote_call


def test_set_cost_moves_queued_jobs_also_from_a_callback_that_adds_jobs(sched: Scheduler, tmp_path: Any) -> None:
    """A job moved ahead runs next; a callback may add a job and push another back behind it."""
    release = str(tmp_path / "release")
    order: list[Any] = []
    indices = {"a": 1, "b": 2, "c": 3}  # job numbers, after the blocker's 0

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        order.append(result)
        if result == "a":
            s.add_job(remote_call(helpers.identity, "d"), cost=10)
            assert s.set_cost(indices["b"], 20)  # behind d, which was added after it

    blocker = sched.submit(helpers.wait_for_file, release, "blocker")
    sched.start(1, wait=False, after_stop=after_stop)
    eventually(lambda: sched.n_active_jobs == 1, "the blocker to run")
    for name, cost in (("a", 1), ("b", 2), ("c", 3)):
        sched.add_job(remote_call(helpers.identity, name), cost=cost)
    assert sched.set_cost(indices["c"], 0)
    assert not sched.set_cost(0, 5)  # the blocker runs: it keeps its place, and says so
    open(release, "w").close()
    assert blocker.result(timeout=TIMEOUT) == "blocker"
    assert sched.wait(timeout=TIMEOUT)
    assert order == ["blocker", "c", "a", "d", "b"]
    assert not sched.set_cost(indices["c"], 0)  # finished


def test_future_set_cost_moves_a_queued_job_and_returns_false_once_it_is_sent(sched: Scheduler, tmp_path: Any) -> None:
    release = str(tmp_path / "release")
    blocker = sched.submit(helpers.wait_for_file, release, 0)
    later = [sched.submit(helpers.getpid) for _ in range(3)]
    urgent = sched.submit(helpers.identity, "urgent", cost=5)
    sched.start(1, wait=False)
    eventually(lambda: sched.n_active_jobs >= 1 and blocker.running(), "the blocker to run")
    assert not blocker.set_cost(-1)  # type: ignore[attr-defined]
    assert urgent.set_cost(-1)  # type: ignore[attr-defined]
    done_order: list[str] = []
    for f, name in ((urgent, "urgent"), *((f, "later") for f in later)):
        f.add_done_callback(lambda _f, name=name: done_order.append(name))
    open(release, "w").close()
    assert urgent.result(timeout=TIMEOUT) == "urgent"
    for f in later:
        f.result(timeout=TIMEOUT)
    assert done_order[0] == "urgent"
    assert not urgent.set_cost(0)  # type: ignore[attr-defined]  # finished
    with pytest.raises(TypeError, match="got nan"):
        later[0].set_cost(float("nan"))  # type: ignore[attr-defined]
