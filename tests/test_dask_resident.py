"""Resident jobsched workers on a Dask cluster: retirement mid-run, abrupt loss, and a dask-jobqueue job script."""

from __future__ import annotations

import multiprocessing.resource_tracker
import os
import signal
from pathlib import Path
from typing import Any

import helpers
import pytest
from test_dask import fresh_cluster  # noqa: F401  # a fixture
from waiting import TIMEOUT, eventually

from jobsched import Journal, Scheduler

distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography")

@pytest.fixture(scope="module", autouse=True)
def _resource_tracker() -> None:
    """Started before any test's leak check: it lives as long as this interpreter (see test_dask)."""
    multiprocessing.resource_tracker.ensure_running()


pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore:Port 8787 is already in use")]


def test_a_retired_dask_worker_loses_nothing_and_duplicates_nothing(fresh_cluster: Any, tmp_path: Path) -> None:  # noqa: F811
    """Retiring a Dask worker mid-run: every job runs and is delivered exactly once, and no crash is counted."""
    from jobsched.dask import DaskBackend

    log = str(tmp_path / "started")
    with distributed.Client(fresh_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        journal = tmp_path / "run.sqlite"
        with Scheduler(backend=DaskBackend(client, resident=True), prefetch=4, journal=journal) as sched:
            sched.start(2, wait=False)
            futures = [sched.submit(helpers.append_then_sleep, log, str(i), 0.02) for i in range(150)]
            eventually(lambda: os.path.exists(log) and len(Path(log).read_text().split()) >= 20, "jobs to start")
            leaving = next(iter(client.scheduler_info()["workers"]))
            client.retire_workers([leaving])
            results = [f.result(timeout=TIMEOUT) for f in futures]
            assert results == [str(i) for i in range(150)]
            assert sched.stats()["restarts"] == 0
        started = Path(log).read_text().split()
        assert sorted(started, key=int) == [str(i) for i in range(150)]  # each job ran once
        assert len(Journal(journal)) == 150


def test_a_resident_worker_lost_abruptly_counts_a_death_and_its_job_is_rerun(fresh_cluster: Any,  # noqa: F811
                                                                             tmp_path: Path) -> None:
    from jobsched.dask import DaskBackend

    with distributed.Client(fresh_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=TIMEOUT)
        with Scheduler(backend=DaskBackend(client, resident=True)) as sched:
            sched.start(1, wait=False)
            assert sched.submit(helpers.square, 2).result(timeout=TIMEOUT) == 4
            eventually(lambda: sched.workers[0].pid is not None, "the worker's pid")
            pid = sched.workers[0].pid
            assert pid is not None
            future = sched.submit(helpers.sleep_then, 2.0, "done")
            eventually(lambda: sched.workers[0].job is not None, "the job to start")
            os.kill(pid, signal.SIGKILL)
            assert future.result(timeout=TIMEOUT) == "done"
            assert sched.workers[0].n_restarts == 1


def test_a_slurm_cluster_job_script_runs_dask_workers_that_host_resident_workers() -> None:
    """The documented SLURMCluster set-up: a worker lifetime below the walltime, so retirement is graceful."""
    jobqueue = pytest.importorskip("dask_jobqueue")
    cluster = jobqueue.SLURMCluster(cores=4, processes=1, memory="8GB", walltime="01:00:00",
                                    worker_extra_args=["--lifetime", "55m", "--lifetime-stagger", "4m"],
                                    scheduler_options={"host": "127.0.0.1", "dashboard_address": None})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -t 01:00:00" in script
    assert "distributed.cli.dask_worker" in script and "--lifetime 55m" in script



def test_seeded_jobs_draw_on_resident_workers_what_they_draw_on_local_workers(fresh_cluster: Any) -> None:  # noqa: F811
    """Scheduler(seed=S) with resident Dask workers: each job's random and numpy draws, in any order, equal
    those of local workers."""
    import reproduce_jobs

    from jobsched.dask import DaskBackend

    for fn in (reproduce_jobs.draws, reproduce_jobs.numpy_draws):
        with Scheduler(seed=2024) as local:
            local.start(1, wait=False)
            expected = [f.result(timeout=TIMEOUT) for f in [local.submit(fn, i) for i in range(8)]]
        with distributed.Client(fresh_cluster, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=TIMEOUT)
            with Scheduler(backend=DaskBackend(client, resident=True), seed=2024) as sched:
                sched.start(2, wait=False)
                futures = [sched.submit(fn, i) for i in reversed(range(8))]
                got = [f.result(timeout=TIMEOUT) for f in futures][::-1]
        assert got == expected
        assert len({repr(draws) for _, draws, _ in got}) == 8  # each job its own stream
