"""``Journal.clear()`` and ``forget()`` win against results a running scheduler received but has not written
yet: results delivered before the call never reappear when the writer flushes (up to its flush interval
later), and results that arrive after it are recorded as usual."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import helpers
from waiting import TIMEOUT, eventually

from jobsched import Journal, Scheduler
from jobsched.journal import JournalWriter

PAST_FLUSH = 0.5  # seconds: well past the writer's flush interval (0.1 s)


def test_a_clear_right_after_delivery_is_not_undone_by_the_next_flush(tmp_path: Path) -> None:
    """Results delivered just before clear() stay cleared; a job after it is recorded."""
    path = tmp_path / "runs.sqlite"
    with Scheduler(journal=path) as sched:
        sched.start(2, wait=False)
        for attempt in range(5):
            futures = [sched.submit(helpers.square, i, key=("round", attempt, i)) for i in range(40)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [i * i for i in range(40)]
            assert Journal(path).clear() == 40  # written or still buffered: every one of them counts
            time.sleep(PAST_FLUSH)  # the writer has flushed since: what it held must not reappear
            assert len(Journal(path)) == 0, f"round {attempt}: {sorted(Journal(path).results())}"
        after = sched.submit(helpers.square, 7, key="after")
        assert after.result(timeout=TIMEOUT) == 49
        eventually(lambda: len(Journal(path)) == 1, "the result after the clear is recorded")
    assert Journal(path).results() == {"after": 49}


def test_a_job_resubmitted_right_after_clear_runs_again(tmp_path: Path) -> None:
    """The scheduler's own lookup does not serve a cleared result it still held in memory."""
    path = tmp_path / "runs.sqlite"
    log = tmp_path / "ran.log"
    with Scheduler(journal=path) as sched:
        sched.start(1, wait=False)
        first = sched.submit(helpers.append_line, str(log), "run", key="job")
        assert first.result(timeout=TIMEOUT)
        Journal(path).clear()
        again = sched.submit(helpers.append_line, str(log), "run", key="job")
        assert again.result(timeout=TIMEOUT)
    assert log.read_text().splitlines() == ["run", "run"]
    assert list(Journal(path).results()) == ["job"]


def test_forget_right_after_delivery_drops_only_those_keys(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with Scheduler(journal=path) as sched:
        sched.start(2, wait=False)
        futures = [sched.submit(helpers.square, i, key=f"k{i}") for i in range(30)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == [i * i for i in range(30)]
        forgotten = [f"k{i}" for i in range(0, 30, 3)]
        assert Journal(path).forget(forgotten) == len(forgotten)
        time.sleep(PAST_FLUSH)
        eventually(lambda: len(Journal(path)) == 20, "the 20 results not forgotten are written")
        assert Journal(path).results() == {f"k{i}": i * i for i in range(30) if i % 3}
        again = sched.submit(helpers.square, 3, key="k3")  # forgotten: it runs and is recorded again
        assert again.result(timeout=TIMEOUT) == 9
        eventually(lambda: "k3" in Journal(path), "the forgotten key's new result is recorded")


_CLEAR = "import sys; from jobsched import Journal; print(Journal(sys.argv[1]).{call})"


def _in_another_process(path: Path, call: str) -> str:
    done = subprocess.run([sys.executable, "-c", _CLEAR.format(call=call), str(path)], capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_clear_or_forget_from_another_process_wins_against_a_writer_s_buffer(tmp_path: Path) -> None:
    """The file carries the clear to a writer in another process: its buffered rows from before are dropped."""
    path = tmp_path / "runs.sqlite"
    writer = JournalWriter.open(path, flush_interval=3600.0)
    try:
        for i in range(5):
            writer.record_done(f"k{i}", i, 0.0, b"\x80\x05K\x07.", 0.0, 1.0, 0)  # pickle of 7
        writer.flush()
        writer.record_done("buffered", 5, 0.0, b"\x80\x05K\x07.", 0.0, 1.0, 0)
        assert _in_another_process(path, "clear()") == "5"
        writer.record_done("later", 6, 0.0, b"\x80\x05K\x07.", 0.0, 1.0, 0)
        writer.flush()
        assert Journal(path).results() == {"later": 7}
        assert writer.lookup("buffered") is None and writer.lookup("k0") is None

        writer.record_done("kept", 7, 0.0, b"\x80\x05K\x07.", 0.0, 1.0, 0)
        writer.record_done("dropped", 8, 0.0, b"\x80\x05K\x07.", 0.0, 1.0, 0)
        assert _in_another_process(path, "forget(['dropped', 'later'])") == "1"
        writer.flush()
        assert Journal(path).results() == {"kept": 7}
    finally:
        writer.close()
