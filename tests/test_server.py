"""The manual's server API: make_server / server_start / server_close / start_simple_server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helpers
import pytest

from jobsched import make_server, server_close, server_start, start_simple_server

PID_WORKER = Path(__file__).parent / "workers" / "pid_worker.py"


def test_make_server_keeps_its_workers_across_server_start_calls(tmp_path: Path) -> None:
    sched = make_server(PID_WORKER, n_workers=2, worker_args=[str(tmp_path)])
    try:
        first: list[Any] = []
        server_start(sched, range(10), lambda data, result: first.append((data, result)))
        # Pids are known from the spawn on, even for a worker too slow to take a job in the first call.
        worker_pids = {w.pid for w in sched.workers}
        second: list[Any] = []
        server_start(sched, range(10, 20), lambda data, result: second.append((data, result)))
        assert sorted(d for d, _ in first) == list(range(10))
        assert sorted(d for d, _ in second) == list(range(10, 20))
        assert all(r[1] == d for d, r in first + second)
        assert len(worker_pids) == 2 and None not in worker_pids
        assert {w.pid for w in sched.workers} == worker_pids  # the same processes, kept between the calls
        assert {r[0] for _, r in first + second} <= worker_pids
    finally:
        server_close(sched)
    # server_close let each worker's code after start_simple_worker run (it wrote a marker and exited).
    closed = sorted(p.name for p in tmp_path.iterdir())
    assert closed == sorted(f"closed-{pid}" for pid in worker_pids)
    assert not any(helpers.is_live(pid) for pid in worker_pids)


def test_server_start_with_close_workers_closes_them(tmp_path: Path) -> None:
    sched = make_server(PID_WORKER, worker_args=[str(tmp_path)])
    results: list[Any] = []
    try:
        server_start(sched, ["a", "b", "c"], lambda data, result: results.append(result[1]),
                     n_workers=2, close_workers=True)
        assert sorted(results) == ["a", "b", "c"]
        assert sched.workers == []
        assert len(list(tmp_path.iterdir())) >= 1  # the workers ran their clean-up code
    finally:
        server_close(sched)


def test_start_simple_server_with_progress(capsys: pytest.CaptureFixture[str]) -> None:
    results: dict[Any, Any] = {}
    start_simple_server(PID_WORKER, [1, 2, 3, 4], lambda data, result: results.__setitem__(data, result[1]),
                        n_workers=2, progress=True)
    assert results == {1: 1, 2: 2, 3: 3, 4: 4}
    err = capsys.readouterr().err
    assert "4/4" in err  # the tqdm bar (text in a terminal) reached the end


def test_start_simple_server_with_no_data_does_nothing() -> None:
    calls: list[Any] = []
    start_simple_server(PID_WORKER, [], lambda data, result: calls.append(result))
    assert calls == []


def test_make_server_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        make_server(tmp_path / "nope.py")


def test_process_result_must_be_callable() -> None:
    sched = make_server(PID_WORKER)
    try:
        with pytest.raises(TypeError, match="process_result must be a function"):
            server_start(sched, [1], "print")  # type: ignore[arg-type]
        assert sched.n_queued_jobs == 0
    finally:
        server_close(sched)


def test_make_server_without_a_file_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match="this_file\\(\\) returns None in a notebook cell"):
        make_server(None)
