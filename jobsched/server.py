"""The manual's simple server: a scheduler hidden behind a worker file and a list of data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from ._core.bars import job_bar  # tqdm itself is imported only when a bar is made
from .commands import check_entry, check_main_guard, make_python_cmd, processor_count
from .job import Job
from .remote_call import refuse_while_loading_script
from .scheduler import Scheduler

ProcessResult = Callable[[Any, Any], object]


def make_server(
    worker_file: str | os.PathLike[str] | None,
    entry: str = "worker",
    n_workers: int | None = None,
    debug: bool = False,
    worker_args: Iterable[str | os.PathLike[str]] = (),
    **options: Any,
) -> Scheduler:
    """Return a scheduler whose workers run ``entry()`` of ``worker_file``.

    If ``n_workers`` is given, the workers start now, in the background, and are ready sooner.
    ``options`` go to ``Scheduler`` (max_retries, timeout, prefetch, journal, rerun_failed, ...).
    """
    refuse_while_loading_script("make_server()")
    if worker_file is None:
        raise ValueError(
            "make_server: worker_file is None (this_file() returns None in a notebook cell or the REPL); "
            "write the worker function to a .py file and pass its path, or use remote_call with Scheduler()"
        )
    args = [os.fspath(a) for a in worker_args]
    file = os.fspath(worker_file)
    check_main_guard(file, "make_server")
    make_python_cmd(file, *args, entry=entry, debug=debug)  # fail now on a missing file or bad entry name
    check_entry(file, entry)  # and on a file that cannot run it: before any worker tries 3 times

    def command(worker_index: int) -> list[str]:
        return make_python_cmd(file, *args, entry=entry, debug=debug)

    sched = Scheduler(command, **options)
    if n_workers:
        sched.start(n_workers, wait=False)
    return sched


def server_start(
    sched: Scheduler,
    data_list: Iterable[Any],
    process_result: ProcessResult,
    n_workers: int | None = None,
    close_workers: bool = False,
    progress: bool = False,
) -> None:
    """Run one job per element of ``data_list``; call ``process_result(data, result)`` for each result.

    Args:
        n_workers: default: the workers already running, or ``min(len(data_list), processor_count())``.
        close_workers: close the workers at the end (default False: keep them for the next call).
        progress: show a tqdm progress bar (a widget in a notebook).
    """
    data = list(data_list)
    if not callable(process_result):
        raise TypeError(f"server_start: process_result must be a function (data, result) -> None, "
                        f"got {type(process_result).__name__}")
    for item in data:
        sched.add_job(item)
    if n_workers is None:
        n_workers = sched.n_workers or min(len(data), processor_count())
    bar = job_bar(len(data)) if progress else None

    def after_stop(s: Scheduler, job: Job, result: Any) -> None:
        if bar is not None:
            bar.update(1)
        process_result(job.data, result)

    try:
        if data or sched.n_queued_jobs:
            sched.start(max(n_workers, 1), after_stop=after_stop, close_workers=close_workers)
        elif close_workers:
            sched.close()
    finally:
        if bar is not None:
            bar.close()


def server_close(sched: Scheduler) -> None:
    """Close the workers of ``sched`` gracefully and block until they have exited."""
    sched.close()


def start_simple_server(
    worker_file: str | os.PathLike[str] | None,
    data_list: Iterable[Any],
    process_result: ProcessResult,
    entry: str = "worker",
    n_workers: int | None = None,
    progress: bool = False,
    journal: str | os.PathLike[str] | None = None,
    rerun_failed: bool = True,
) -> None:
    """Run ``data_list`` through the workers of ``worker_file``: ``make_server`` + ``server_start`` + close.

    Each worker runs ``entry()`` of the file, which calls ``start_simple_worker(run)``; each element of
    ``data_list`` becomes one ``run(data)`` call, and ``process_result(data, result)`` is called here with
    each result as it arrives. With ``journal``, results are recorded in that SQLite file, and the data
    whose result it holds from an earlier run are not run again (see ``Scheduler``).
    """
    if worker_file is not None:
        check_main_guard(worker_file, "start_simple_server")
    data = list(data_list)
    sched = make_server(worker_file, entry=entry, journal=journal, rerun_failed=rerun_failed)
    try:
        server_start(sched, data, process_result, n_workers=n_workers, close_workers=True, progress=progress)
    finally:
        server_close(sched)
