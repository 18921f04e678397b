"""Per-worker environment and tags, with real workers: ``worker_env=``, ``worker_tags=`` and ``needs=``."""

from __future__ import annotations

import os
import signal

import helpers
import psutil
import pytest
import tag_jobs
from waiting import TIMEOUT, eventually

import jobsched
from jobsched import JobError, Scheduler
from jobsched._local import zygote as _zygote


def one_per_slot(i: int) -> list[str]:
    return [f"slot{i}"]


def test_each_worker_sees_its_slot_environment_forked_or_spawned_and_after_a_replacement(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """worker_env applies to a spawned worker, to forked ones and to a replacement, which keeps its slot's."""
    monkeypatch.setattr(_zygote, "DIRECT_SPAWNS", 1)  # slots 1 and 2 are forked by the zygote
    with Scheduler(worker_env=lambda i: {"CUDA_VISIBLE_DEVICES": i}, worker_tags=one_per_slot) as sched:
        sched.start(3, wait=False)
        futures = [sched.submit(tag_jobs.env_of, "CUDA_VISIBLE_DEVICES", needs=f"slot{i}") for i in range(3)]
        seen = [f.result(timeout=TIMEOUT) for f in futures]
        assert [value for value, _ in seen] == ["0", "1", "2"]
        assert [w.pid for w in sched.workers] == [pid for _, pid in seen]
        zygote = sched._backend._starter.zygote_pid  # type: ignore[attr-defined]
        assert zygote is not None and psutil.Process(seen[2][1]).ppid() == zygote
        os.kill(seen[1][1], signal.SIGKILL)
        eventually(lambda: sched.workers[1].pid not in (None, seen[1][1])
                   and sched.workers[1].state is jobsched.WorkerState.READY, "slot 1 to be replaced")
        value, pid = sched.submit(tag_jobs.env_of, "CUDA_VISIBLE_DEVICES", needs="slot1").result(timeout=TIMEOUT)
        assert (value, pid) == ("1", sched.workers[1].pid)
        assert os.environ.get("CUDA_VISIBLE_DEVICES") != "1"  # the scheduler's own environment is untouched


def test_a_list_of_dicts_sets_the_first_slots_and_leaves_the_others_alone() -> None:
    with Scheduler(worker_env=[{"JOBSCHED_TEST_SLOT": "zero"}], worker_tags={"first": [0], "second": [1]}) as s:
        s.start(2, wait=False)
        first = s.submit(tag_jobs.env_of, "JOBSCHED_TEST_SLOT", needs="first").result(timeout=TIMEOUT)
        second = s.submit(tag_jobs.env_of, "JOBSCHED_TEST_SLOT", needs="second").result(timeout=TIMEOUT)
        assert (first[0], second[0]) == ("zero", None)


@pytest.mark.parametrize(("worker_env", "message"), [
    ({"A": "1"}, "list of dicts"),
    ("A=1", "list of dicts"),
    ([{"A": object()}], "must be a str"),
    ([{"A=B": "1"}], "not an environment variable name"),
])
def test_a_malformed_worker_env_is_refused_at_once(worker_env: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Scheduler(worker_env=worker_env)  # type: ignore[arg-type]


@pytest.mark.parametrize(("worker_tags", "message"), [
    (["gpu"], "mapping tag -> worker indices"),
    ({"gpu": 0}, "must list worker indices"),
    ({"gpu": [-1]}, "ints >= 0"),
])
def test_malformed_worker_tags_are_refused_at_once(worker_tags: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Scheduler(worker_tags=worker_tags)  # type: ignore[arg-type]


def test_jobs_that_need_a_tag_run_only_on_workers_with_it() -> None:
    with Scheduler(worker_tags={"gpu": [1]}) as sched:
        sched.start(2, wait=False)
        gpu = [sched.submit(helpers.getpid, needs="gpu") for _ in range(6)]
        pids = {f.result(timeout=TIMEOUT) for f in gpu}
        assert pids == {sched.workers[1].pid}
        assert sched.workers[1].tags == frozenset({"gpu"}) and sched.workers[0].tags == frozenset()


def test_a_need_that_no_worker_can_meet_is_refused_naming_the_tags_that_exist(sched: Scheduler) -> None:
    with Scheduler(worker_tags={"gpu": [0, 1], "big": [2]}) as tagged:
        exist = r"the tags that exist: big \(worker 2\), gpu \(workers 0, 1\)"
        with pytest.raises(ValueError, match=rf"needs='tpu'.*{exist}"):
            tagged.submit(helpers.add, 1, needs="tpu")
        with pytest.raises(ValueError, match="no worker has the tags big, gpu"):
            tagged.add_job(jobsched.remote_call(helpers.add, 1), needs=["gpu", "big"])
        with pytest.raises(TypeError, match="needs=3 must be a tag"):
            tagged.submit(helpers.add, 1, needs=3)
        assert tagged.n_queued_jobs == 0
    with pytest.raises(ValueError, match="the tags that exist: none"):
        sched.submit(helpers.add, 1, needs="gpu")


def test_scaling_away_the_last_worker_with_a_tag_fails_its_queued_jobs_clearly() -> None:
    with Scheduler(worker_tags={"gpu": [1]}) as sched:
        sched.start(2, wait=False)
        assert sched.submit(helpers.add, 1, needs="gpu").result(timeout=TIMEOUT) == 2
        sched.pause()
        waiting = sched.submit(helpers.add, 2, needs="gpu")
        plain = sched.submit(helpers.add, 3)
        sched.scale(1)
        with pytest.raises(JobError, match="needs gpu, but no worker has the tag gpu") as info:
            waiting.result(timeout=TIMEOUT)
        assert info.value.remote_type == "NoWorkerWithTags"
        sched.resume()
        assert plain.result(timeout=TIMEOUT) == 4
        assert sched.wait(timeout=TIMEOUT)


def test_the_dashboard_table_shows_each_workers_tags() -> None:
    pytest.importorskip("ipywidgets")
    from jobsched.notebook.dashboard import render_workers

    with Scheduler(worker_tags={"gpu": [1], "big": [1]}) as sched:
        sched.scale(2)
        html = render_workers(sched.snapshot().workers)
    assert '<td data-col="tags">big, gpu</td>' in html and '<td data-col="tags"></td>' in html
