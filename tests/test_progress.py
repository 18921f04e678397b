"""``jobsched.progress`` inside a job, and tqdm bars in workers: PROGRESS frames, rate limit, last value."""

from __future__ import annotations

import ast
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import helpers
import pytest
from waiting import TIMEOUT

import jobsched
from jobsched import Scheduler
from jobsched._local import wire as _wire
from jobsched.worker import progress as _report


class Sink:
    """The scheduler's end of a socketpair on which a Reporter sends: decodes PROGRESS frames."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(5.0)
        self.conn = _wire.BlockingConnection(sock, _wire.SCHEDULER_ACCEPTS)
        self.sock = sock

    def frame(self, timeout: float = 5.0) -> tuple[int, tuple[Any, Any, str]]:
        self.sock.settimeout(timeout)
        kind, index, body = self.conn.recv_frame()
        assert kind == _wire.PROGRESS
        return index, pickle.loads(body)

    def frames(self, quiet: float = 0.3) -> list[tuple[int, tuple[Any, Any, str]]]:
        """Every frame until none arrives for ``quiet`` seconds."""
        out = []
        while True:
            try:
                out.append(self.frame(timeout=quiet))
            except TimeoutError:
                return out


@pytest.fixture
def worker_side() -> Iterator[tuple[_report.Reporter, Sink]]:
    """This process as a worker whose reports go to a socketpair (restored afterwards)."""
    mine, theirs = socket.socketpair()
    conn = _wire.BlockingConnection(mine)
    previous = _report._reporter
    reporter = _report.attach(conn.send_frame, _wire.PROGRESS)
    try:
        yield reporter, Sink(theirs)
    finally:
        _report._reporter = previous
        mine.close()
        theirs.close()


def test_progress_is_exported_and_does_nothing_outside_a_worker() -> None:
    assert jobsched.progress is _report.progress
    assert "progress" in jobsched.__all__
    assert jobsched.progress(1, 10, "outside") is None


@pytest.mark.parametrize(("args", "message"), [
    (("1",), "done must be a number"),
    ((1, "10"), "total must be a number"),
    ((None,), "done must be a number"),
    ((1, 10, 3), "note must be a str"),
])
def test_bad_arguments_raise_type_error(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        jobsched.progress(*args)


class Index:
    def __index__(self) -> int:
        return 7


def test_numbers_travel_as_plain_int_or_float(worker_side: tuple[_report.Reporter, Sink]) -> None:
    reporter, sink = worker_side
    reporter.job = 3
    for done, total, expected in [(True, None, (1, None)), (Index(), 10.0, (7, 10.0)),
                                  (Fraction(1, 2), Fraction(3, 1), (0.5, 3.0))]:
        reporter.next_send = 0.0  # the window is open: each call sends at once
        jobsched.progress(done, total)
        index, (got_done, got_total, note) = sink.frame()
        assert (index, (got_done, got_total), note) == (3, expected, "")
        assert type(got_done) in (int, float)


def test_the_first_report_is_sent_at_once_and_a_long_note_is_cut(worker_side: tuple[_report.Reporter, Sink]) -> None:
    reporter, sink = worker_side
    reporter.job = 12
    jobsched.progress(5, 10, "x" * 1000)
    assert sink.frame(timeout=1.0) == (12, (5, 10, "x" * _report.MAX_NOTE))


def test_the_last_value_gets_through_when_the_job_stops_calling(worker_side: tuple[_report.Reporter, Sink]) -> None:
    reporter, sink = worker_side
    reporter.job = 1
    jobsched.progress(1, 10)
    jobsched.progress(5, 10, "then a long computation")  # inside the rate window: held back
    start = time.monotonic()
    assert sink.frame() == (1, (1, 10, ""))
    assert sink.frame() == (1, (5, 10, "then a long computation"))  # sent by the thread
    assert time.monotonic() - start < 1.0
    assert sink.frames() == []


def test_a_tight_loop_sends_about_ten_frames_a_second_and_the_last(worker_side: tuple[_report.Reporter,
                                                                                     Sink]) -> None:
    reporter, sink = worker_side
    reporter.job = 2
    n = 0
    start = time.monotonic()
    while time.monotonic() - start < 0.5:
        n += 1
        jobsched.progress(n, None, "loop")
    elapsed = time.monotonic() - start
    frames = sink.frames()
    assert frames[-1] == (2, (n, None, "loop"))
    assert len(frames) <= elapsed / _report.INTERVAL + 3, frames
    assert n > 10 * len(frames)  # nearly every call stayed in the worker


def test_no_progress_frame_between_jobs_or_after_the_result(worker_side: tuple[_report.Reporter, Sink]) -> None:
    reporter, sink = worker_side
    jobsched.progress(1, 2)  # no job running: nothing
    reporter.job = 4
    jobsched.progress(1, 2)
    jobsched.progress(2, 2)  # pending when the job ends
    with reporter.lock:  # what the job loop does before it sends the result
        reporter.job = reporter.pending = None
    assert sink.frames() == [(4, (1, 2, ""))]


def test_a_process_forked_by_a_job_reports_nothing(worker_side: tuple[_report.Reporter, Sink]) -> None:
    reporter, sink = worker_side
    reporter.job = 5
    assert helpers.progress_in_a_forked_child() == 0
    assert sink.frames() == []


def test_tqdm_bars_in_a_worker_report_as_progress_and_do_not_draw(tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    code = textwrap.dedent("""
        import pickle, socket, sys, time
        from jobsched.worker import progress as _report
        from jobsched._local import wire as _wire

        mine, theirs = socket.socketpair()
        reporter = _report.attach(_wire.BlockingConnection(mine).send_frame, _wire.PROGRESS)
        _report.install_tqdm_hook()
        assert "tqdm" not in sys.modules  # patched on import, not imported by the hook

        from tqdm import tqdm, trange
        from tqdm.auto import tqdm as auto_tqdm

        def run(index, make_bar):
            reporter.job = index
            for _ in make_bar():
                time.sleep(0.01)
            time.sleep(0.3)  # the last value gets through
            with reporter.lock:
                reporter.job = reporter.pending = None

        run(1, lambda: tqdm(range(30), desc="plain"))
        run(2, lambda: trange(25, desc="trange"))
        run(3, lambda: auto_tqdm(range(20), desc="auto"))
        with tqdm(total=8, desc="manual") as bar:
            reporter.job = 4
            for _ in range(4):
                bar.update(2)
                time.sleep(0.01)
        time.sleep(0.3)
        with open(sys.argv[1], "w") as log:  # a bar with a file of its own still draws there (and reports)
            reporter.job = 5
            for _ in tqdm(range(3), desc="logged", file=log):
                pass
        time.sleep(0.3)
        with reporter.lock:
            reporter.job = reporter.pending = None
        mine.close()
        conn = _wire.BlockingConnection(theirs, _wire.SCHEDULER_ACCEPTS)
        frames = []
        while True:
            try:
                kind, index, body = conn.recv_frame()
            except ConnectionError:
                break
            frames.append((kind, index, pickle.loads(body)))
        print(repr(frames))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(jobsched.__file__)))
    log = tmp_path / "bar.log"
    out = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "logged: 100%" in log.read_text()
    frames = ast.literal_eval(out.stdout)
    assert {kind for kind, _, _ in frames} == {_wire.PROGRESS}
    by_job: dict[int, list[tuple[Any, Any, str]]] = {}
    for _, index, value in frames:
        by_job.setdefault(index, []).append(value)
    assert by_job[1][-1] == (30, 30, "plain")
    assert by_job[2][-1] == (25, 25, "trange")
    assert by_job[3][-1] == (20, 20, "auto")
    assert by_job[4][-1] == (8, 8, "manual")
    assert by_job[5][-1] == (3, 3, "logged")
    assert all(len(values) <= 10 for values in by_job.values()), by_job  # about 0.3-0.6 s each: rate-limited
    assert "\r" not in out.stderr and "|" not in out.stderr, out.stderr  # no bar drawn


def test_the_hook_patches_a_tqdm_imported_before_the_worker_started() -> None:
    pytest.importorskip("tqdm")
    code = ("import sys, tqdm; from jobsched.worker import progress; progress.install_tqdm_hook(); "
            "print(tqdm.tqdm._jobsched_patched, any(isinstance(f, progress.TqdmHook) for f in sys.meta_path))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(jobsched.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


def test_a_worker_does_not_import_tqdm_until_a_job_does(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.identity, 1).result(timeout=TIMEOUT) == 1
    assert sched.submit(helpers.loaded_modules, ["tqdm", "tqdm.std"]).result(timeout=TIMEOUT) == []


def test_worker_progress_shows_the_running_jobs_report(sched: Scheduler, tmp_path: Path) -> None:
    release = tmp_path / "release"
    sched.start(1, wait=False)
    future = sched.submit(helpers.report_then_wait, str(release), 3, 10, "three of ten")
    try:
        deadline = time.monotonic() + 30.0
        while sched.workers[0].progress != (3, 10, "three of ten"):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, sched.workers
            time.sleep(0.02)
    finally:
        release.touch()
    assert future.result(timeout=TIMEOUT) == 3
    assert sched.workers[0].progress is None  # type: ignore[attr-defined]
