"""A result the journal cannot store (over SQLite's size limit, or a write error such as a full disk) fails
only that job's record: its caller still gets the result, the loop and the other workers go on, the other
results are journaled, and the record says what went wrong; the job runs again next time, even with
``rerun_failed=False``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import helpers
import psutil
import pytest
from waiting import TIMEOUT

from jobsched import Journal, Scheduler
from jobsched.journal import JournalWarning

BLOB_LIMIT = 1_000_000_000  # SQLite's default SQLITE_MAX_LENGTH: no string or blob may be longer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 1 MB tmpfs: a journal there fills it with one result of a few MB."""
    with helpers.tmpfs(tmp_path / "small", "1m", "a full disk") as where:
        yield where


def _run_around_a_big_result(path: Path, big: int, *, rerun_failed: bool = True) -> list[str]:
    """Run 20 small jobs, one whose result is ``big`` bytes, then 20 more; return the JournalWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", JournalWarning)
        with Scheduler(journal=path, rerun_failed=rerun_failed) as sched:
            sched.start(2, wait=False)
            before = [sched.submit(helpers.square, i, key=f"before {i}") for i in range(20)]
            make = helpers.pattern if big < BLOB_LIMIT else helpers.big_bytes  # randbytes stops short of 1 GB
            huge = sched.submit(make, big, key="huge")
            after = [sched.submit(helpers.square, i, key=f"after {i}") for i in range(20)]
            assert [f.result(timeout=TIMEOUT) for f in before] == [i * i for i in range(20)]
            data = huge.result(timeout=TIMEOUT * 3)
            assert len(data) == big and data == make(big)  # delivered, whole
            del data
            assert [f.result(timeout=TIMEOUT) for f in after] == [i * i for i in range(20)]
            # the loop goes on: more jobs run on the same workers after the failed write
            assert sched.submit(helpers.square, 12, key="later").result(timeout=TIMEOUT) == 144
    return [str(w.message) for w in caught if issubclass(w.category, JournalWarning)]


def _check_records(path: Path, cause: str) -> None:
    journal = Journal(path)
    results = journal.results()
    assert "huge" not in results
    assert results == {**{f"before {i}": i * i for i in range(20)}, **{f"after {i}": i * i for i in range(20)},
                       "later": 144}
    failed = journal.failed()
    assert list(failed) == ["huge"]
    message = str(failed["huge"])
    assert "could not be stored in the journal" in message and cause in message, message
    assert "it was delivered, and the job runs again next time" in message


def test_a_full_disk_fails_only_that_job_s_record(small_disk: Path) -> None:
    path = small_disk / "runs.sqlite"
    messages = _run_around_a_big_result(path, 3_000_000)
    assert any("job 20 (key huge" in m and "full" in m for m in messages), messages
    _check_records(path, "full")
    # rerun_failed=False replays failures, but not this one: the job succeeded, so it runs again
    again = _run_around_a_big_result(path, 3_000_000, rerun_failed=False)
    assert any("key huge" in m for m in again), again
    _check_records(path, "full")


def test_a_result_over_sqlite_s_size_limit_fails_only_that_job_s_record(tmp_path: Path) -> None:
    """A real result one byte over SQLite's blob limit (about 1 GB)."""
    needed = 6 * BLOB_LIMIT  # the worker's copy and pickle, the frame, the delivered value, the journal's copy
    if psutil.virtual_memory().available < needed:
        pytest.skip(f"needs {needed / 1e9:.0f} GB of free memory for a result over SQLite's 1 GB limit")
    path = tmp_path / "runs.sqlite"
    messages = _run_around_a_big_result(path, BLOB_LIMIT + 1)
    assert any("key huge" in m and "too big" in m for m in messages), messages
    _check_records(path, "too big")
