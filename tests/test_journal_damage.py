"""A damaged or foreign journal file is refused with a ``JournalError`` naming it, before anything is written:
the file's bytes stay as they were (checked by hash), and no worker starts."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import helpers
import pytest
from waiting import TIMEOUT

from jobsched import Journal, JournalError, Scheduler


@pytest.fixture(scope="module")
def good_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal written by real workers: 300 results, many pages."""
    path = tmp_path_factory.mktemp("good") / "runs.sqlite"
    with Scheduler(journal=path) as sched:
        sched.start(2, wait=False)
        futures = [sched.submit(helpers.identity, f"result {i} " + "x" * 100) for i in range(300)]
        assert all(f.result(timeout=TIMEOUT) for f in futures)
    assert len(Journal(path)) == 300
    assert path.stat().st_size > 16384
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 3 + 4, len(data), 4096):  # one byte of every page past the third
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"results, as a CSV file\n" * 100)


def _another_schema(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x)")
    conn.execute(f"PRAGMA application_id = {0x4A534348}")  # claims to be a journal
    conn.commit()
    conn.close()


def _foreign(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()


def _newer(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncate, "truncated|damaged"),
    "garbled": (_garble, "damaged"),
    "not-sqlite": (_not_sqlite, "not a jobsched journal"),
    "another-schema": (_another_schema, "has no meta, records, runs table"),
    "foreign": (_foreign, "not a jobsched journal"),
    "newer": (_newer, "newer jobsched"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_or_foreign_journal_is_refused_and_left_byte_identical(good_journal: Path, tmp_path: Path,
                                                                        case: str) -> None:
    damage, message = DAMAGE[case]
    path = tmp_path / "runs.sqlite"
    shutil.copy(good_journal, path)
    damage(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(JournalError, match=message) as info:
        Scheduler(journal=path)
    assert str(path) in str(info.value)
    with pytest.raises(JournalError, match=message):
        Journal(path).results()
    with pytest.raises(JournalError, match=message):
        Journal(path).forget(["a key"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]  # no -wal, no -shm beside it


def test_an_intact_journal_still_resumes(good_journal: Path, tmp_path: Path) -> None:
    """The checks refuse nothing sound: a copy of the good journal serves its 300 results."""
    path = tmp_path / "runs.sqlite"
    shutil.copy(good_journal, path)
    with Scheduler(journal=path) as sched:
        sched.start(1, wait=False)
        f = sched.submit(helpers.identity, "result 7 " + "x" * 100)
        assert f.result(timeout=TIMEOUT) == "result 7 " + "x" * 100
        assert sched.stats()["from_journal"] == 1
