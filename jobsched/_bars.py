"""Progress bars over jobs; tqdm is imported only when a bar is asked for."""

from __future__ import annotations

from typing import Any


def job_bar(total: int | None, desc: str = "jobs") -> Any:
    """Return a ``tqdm.auto`` bar: a widget in a notebook, text in a terminal."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("progress=True needs tqdm: pip install 'jobsched[notebook]' (or tqdm)") from exc
    return tqdm(total=total, desc=desc, unit="job", dynamic_ncols=True)
