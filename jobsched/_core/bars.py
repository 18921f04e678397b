"""Progress bars over jobs; tqdm is imported only when a bar is asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def job_bar(total: int | None, desc: str = "jobs") -> Any:
    """Return a ``tqdm.auto`` bar: a widget in a notebook, text in a terminal."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("progress=True needs tqdm: pip install 'jobsched[notebook]' (or tqdm)") from exc
    return tqdm(total=total, desc=desc, unit="job", dynamic_ncols=True)


class RunBar:
    """A bar over a whole scheduler run (``start(progress=True)``): one step per delivered job.

    Its total is the jobs delivered so far plus those still queued or running, read again at each delivery:
    jobs added during the run (by ``after_stop``, ``submit`` from another thread) make it grow.
    """

    def __init__(self, remaining: Callable[[], int]) -> None:
        self._remaining = remaining
        self.bar = job_bar(remaining())

    def counting(self, after_stop: Callable[[Any, Any, Any], object] | None) -> Callable[[Any, Any, Any], object]:
        """Return an ``after_stop`` that advances the bar, then calls ``after_stop`` (if any)."""

        def counted(sched: Any, job: Any, result: Any) -> object:
            bar = self.bar
            total = bar.n + self._remaining()  # the job being delivered is still counted as active
            if total != bar.total:
                bar.total = total
            bar.update(1)
            return after_stop(sched, job, result) if after_stop is not None else None

        return counted

    def close(self) -> None:
        self.bar.close()
