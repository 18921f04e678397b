"""joblib's ``Parallel`` on jobsched, with real workers: the backend, its scheduler, its errors, scikit-learn."""

from __future__ import annotations

import operator
from typing import Any

import helpers
import pytest
from waiting import TIMEOUT, eventually

from jobsched import JobError, Scheduler

joblib = pytest.importorskip("joblib")
import jobsched.joblib  # noqa: E402, F401  # registers the backend

Parallel, delayed = joblib.Parallel, joblib.delayed


def test_parallel_runs_on_the_given_scheduler(sched: Scheduler) -> None:
    with joblib.parallel_config(backend="jobsched", scheduler=sched):
        out = Parallel(n_jobs=2)(delayed(helpers.square)(x) for x in range(40))
    assert out == [x * x for x in range(40)]
    assert sched.running and sched.n_workers == 2
    assert sched.stats()["done"] >= 1  # the batches ran as this scheduler's jobs


def test_a_lambda_and_keyword_arguments_travel(sched: Scheduler) -> None:
    with joblib.parallel_config(backend="jobsched", scheduler=sched):
        out = Parallel(n_jobs=2)(delayed(lambda x, y=0: x - y)(x, y=1) for x in range(5))
    assert out == [-1, 0, 1, 2, 3]


def test_an_exception_in_a_call_reaches_the_caller_as_a_job_error(sched: Scheduler) -> None:
    with joblib.parallel_config(backend="jobsched", scheduler=sched), \
            pytest.raises(JobError, match="ZeroDivisionError: division by zero"):
        Parallel(n_jobs=2)(delayed(operator.truediv)(1, x) for x in (1, 0, 2))


def test_the_default_scheduler_serves_when_none_is_given() -> None:
    from jobsched.background import current_default_scheduler, default_scheduler

    try:
        with joblib.parallel_config(backend="jobsched"):
            assert Parallel(n_jobs=1)(delayed(helpers.add)(x) for x in range(3)) == [1, 2, 3]
        assert default_scheduler().running
    finally:
        current = current_default_scheduler()
        if current is not None:
            current.close(timeout=5.0)


def test_a_scheduler_that_is_not_one_is_refused() -> None:
    with pytest.raises(TypeError, match=r"takes a jobsched\.Scheduler"), \
            joblib.parallel_config(backend="jobsched", scheduler="nope"):
        Parallel(n_jobs=1)(delayed(helpers.add)(1) for _ in range(1))


def test_n_jobs_zero_is_refused(sched: Scheduler) -> None:
    with joblib.parallel_config(backend="jobsched", scheduler=sched), pytest.raises(ValueError, match="n_jobs"):
        Parallel(n_jobs=0)(delayed(helpers.add)(1) for _ in range(1))


def test_a_failing_parallel_cancels_the_jobs_it_still_had(sched: Scheduler, tmp_path: Any) -> None:
    never = str(tmp_path / "never")
    calls = [delayed(operator.truediv)(1, 0)] + [delayed(helpers.wait_for_file)(never, 1, 30.0) for _ in range(6)]
    with joblib.parallel_config(backend="jobsched", scheduler=sched), pytest.raises(JobError):
        Parallel(n_jobs=2, batch_size=1, pre_dispatch="all")(calls)
    eventually(lambda: sched.n_queued_jobs == 0 and sched.n_active_jobs == 0, "the remaining jobs to be cancelled",
               timeout=TIMEOUT)
    assert sched.stats()["cancelled"] >= 1


def test_grid_search_cv_runs_its_fits_as_jobs(sched: Scheduler) -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    search = GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2)
    with joblib.parallel_config(backend="jobsched", scheduler=sched):
        search.fit(X, y)
    assert search.best_params_["C"] in (0.1, 1.0, 10.0) and 0.5 < search.best_score_ <= 1.0
    assert sched.stats()["done"] >= 1
