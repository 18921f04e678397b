"""A joblib backend: ``Parallel`` (and scikit-learn's ``n_jobs=``) on a jobsched scheduler.

::

    import jobsched.joblib  # registers the backend "jobsched"
    with joblib.parallel_config(backend="jobsched"):               # the default scheduler
        results = Parallel(n_jobs=4)(delayed(f)(x) for x in xs)
    with joblib.parallel_config(backend="jobsched", scheduler=s):  # this one
        GridSearchCV(model, grid, n_jobs=-1).fit(X, y)

Each batch of calls that joblib makes (``BatchedCalls``) is one jobsched job, submitted as ``sched.submit``
would: it shows on the dashboard and the timeline, it is journaled when the scheduler has a journal, and
cancelling it (``future.cancel()``, the dashboard's button, ``sched.cancel``) stops it. When ``Parallel`` fails
or is interrupted, the jobs it still has queued are cancelled. A scheduler that is not running is started in
the background with ``n_jobs`` workers; one that runs keeps its workers (``n_jobs`` then counts them).

joblib is an optional dependency (``pip install 'jobsched[joblib]'``): this module imports it, nothing else in
jobsched does.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

try:
    import joblib  # type: ignore[import-untyped]
    from joblib.parallel import AutoBatchingMixin, ParallelBackendBase  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the optional dependency is missing
    raise ImportError(f"jobsched.joblib needs joblib ({exc}): pip install 'jobsched[joblib]'") from exc

from .background import default_scheduler
from .commands import processor_count
from .scheduler import Scheduler

NAME = "jobsched"


class JobschedBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's ``ParallelBackendBase`` over a jobsched ``Scheduler`` (the default one, or ``scheduler=``).

    Args:
        scheduler: the scheduler to run on; None: ``jobsched.default_scheduler()``.
    """

    supports_retrieve_callback = True
    supports_timeout = True
    supports_inner_max_num_threads = False
    default_n_jobs = -1  # as many as the scheduler's workers

    def __init__(self, scheduler: Scheduler | None = None, **kwargs: Any) -> None:
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            raise TypeError(f"parallel_config(backend='jobsched', scheduler=...) takes a jobsched.Scheduler, got "
                            f"{type(scheduler).__name__}")
        super().__init__(**kwargs)
        self.scheduler = scheduler
        self._sched: Scheduler | None = None
        self._futures: set[Future[Any]] = set()

    def _target(self) -> Scheduler:
        return self.scheduler if self.scheduler is not None else default_scheduler()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """joblib's meaning of ``n_jobs`` (-1: every core, -2: all but one ...), or the running scheduler's count."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 has no meaning; pass n_jobs >= 1 or a negative count from the cores")
        sched = self._target()
        if sched.running and sched.n_workers:
            return sched.n_workers
        if n_jobs is None or n_jobs < 0:
            return max(processor_count() + 1 + (n_jobs if n_jobs is not None else -1), 1)
        return int(n_jobs)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_kwargs: Any) -> int:
        """Start the scheduler in the background if it does not run; return the number of workers."""
        n = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        sched = self._sched = self._target()
        if not sched.running:
            sched.start(n, wait=False)
        return n

    def submit(self, func: Any, callback: Any = None) -> Future[Any]:
        """Run one batch of calls as one job."""
        assert self._sched is not None, "configure() first"
        future = self._sched.submit(func)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def apply_async(self, func: Any, callback: Any = None) -> Future[Any]:  # joblib < 1.5 calls this name
        return self.submit(func, callback)

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        return out.result()

    def retrieve_result(self, out: Future[Any], timeout: float | None = None) -> Any:
        return out.result(timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """``Parallel`` failed or was interrupted: cancel its jobs, queued or running."""
        for future in list(self._futures):
            future.cancel()
        self._futures.clear()

    def terminate(self) -> None:
        self._futures.clear()
        self._sched = None


joblib.register_parallel_backend(NAME, JobschedBackend)

__all__ = ["NAME", "JobschedBackend"]
