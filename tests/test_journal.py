"""The results journal: real SQLite files, real processes killed mid-write, two writers at once."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import jobsched
from jobsched.errors import JobError
from jobsched.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalError,
    JournalWarning,
    JournalWriter,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}


def done(w: JournalWriter, key: str, index: int, value: Any, worker: int = 0) -> None:
    w.record_done(key, index, 1.0, pickle.dumps(value, 5), 1000.0 + index, 1010.0 + index, worker, 1)


def failure(message: str = "division by zero") -> JobError:
    return JobError("ZeroDivisionError", message, "Traceback (most recent call last):\n  ...\n")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite"


# ---- writer and reader


def test_results_written_by_one_run_are_found_by_the_next(path: Path) -> None:
    with JournalWriter.open(path) as w:
        assert w.lookup("a") is None
        done(w, "a", 0, {"answer": 42})
        w.record_failed("b", 1, 2.0, failure(), 1.0, 2.0, 1)
    with JournalWriter.open(path) as w:
        record = w.lookup("a", index=5)
        assert record is not None
        assert record.outcome(5) == ({"answer": 42}, False)
        assert (record.status, record.index, record.worker, record.run) == ("done", 0, 0, 1)
        assert w.lookup("b") is None  # failed jobs run again by default
        assert w.run == 2
    with JournalWriter.open(path, rerun_failed=False) as w:
        record = w.lookup("b")
        assert record is not None
        error, failed = record.outcome(7)
        assert failed and error == JobError("ZeroDivisionError", "division by zero",
                                            "Traceback (most recent call last):\n  ...\n", 7)


def test_the_result_bytes_are_stored_as_they_came(path: Path) -> None:
    payload = pickle.dumps([1, 2, 3], 4)
    with JournalWriter.open(path) as w:
        w.record_done("k", 0, 0.0, bytearray(payload), 1.0, 2.0, 0, 1)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT result FROM records").fetchone()[0] == payload
    conn.close()


def test_a_failure_never_replaces_a_success(path: Path) -> None:
    with JournalWriter.open(path) as w:
        done(w, "k", 0, "ok")
        w.record_failed("k", 0, 0.0, failure(), 1.0, 2.0, 0)  # in the same batch
    with JournalWriter.open(path) as w:
        w.record_failed("k", 1, 0.0, failure(), 1.0, 2.0, 0)  # in a later run
    assert Journal(path).results() == {"k": "ok"}
    with JournalWriter.open(path) as w:
        w.record_failed("f", 0, 0.0, failure("first"), 1.0, 2.0, 0)
    with JournalWriter.open(path) as w:
        done(w, "f", 0, "second time lucky")
    assert Journal(path).results() == {"k": "ok", "f": "second time lucky"}
    assert Journal(path).failed() == {}
    f = next(record for record in Journal(path) if record.key == "f")
    assert (f.status, f.error, f.run) == ("done", None, 4)  # the success's row, whole


def test_flushes_are_batched_by_time_and_count(path: Path) -> None:
    w = JournalWriter.open(path, flush_interval=0.1, flush_batch=3)
    try:
        assert not w.flush_due(time.monotonic()) and w.next_flush_in(time.monotonic()) is None
        done(w, "a", 0, 1)
        now = time.monotonic()  # record_* note the time of the oldest waiting result
        assert not w.flush_due(now)
        assert 0.0 < w.next_flush_in(now) <= 0.1  # type: ignore[operator]
        assert w.flush_due(now + 0.2) and w.next_flush_in(now + 0.2) == 0.0
        done(w, "b", 1, 1)
        done(w, "c", 2, 1)
        assert w.flush_due(now) and w.next_flush_in(now) == 0.0  # 3 waiting: at once
        assert len(Journal(path)) == 0  # nothing written before flush()
        w.flush()
        assert len(Journal(path)) == 3 and w.n_written == 3
        assert not w.flush_due(now + 1.0)
    finally:
        w.close()


def test_a_result_recorded_in_this_run_is_found_before_it_is_flushed(path: Path) -> None:
    with JournalWriter.open(path) as w:
        done(w, "a", 0, "fresh")
        record = w.lookup("a")
        assert record is not None and record.result == "fresh"


def test_a_result_flushed_in_this_run_is_found_by_its_rowid_until_forgotten(path: Path) -> None:
    with JournalWriter.open(path) as w:
        for i in range(250):  # 100 rows per INSERT statement, then 50 one by one: each found by its own rowid
            done(w, f"k{i}", i, f"value {i}")
        w.flush()
        for i in (0, 99, 100, 199, 200, 249):
            record = w.lookup(f"k{i}")
            assert record is not None and (record.result, record.index, record.run) == (f"value {i}", i, 1)
        record = w.lookup("k1")
        assert record is not None and (record.result, record.index, record.run) == ("value 1", 1, 1)
        assert Journal(path).forget("k1") == 1  # as another process would, while this run goes on
        assert w.lookup("k1") is None and w.lookup("k2") is not None


def test_a_key_written_several_times_has_one_record(path: Path) -> None:
    """records is an append-only log: a key's record is its latest success, else its latest failure."""
    with JournalWriter.open(path) as w:
        w.record_failed("k", 0, 0.0, failure("first"), 1.0, 2.0, 0)
        w.record_failed("f", 1, 0.0, failure("once"), 1.0, 2.0, 0)
    with JournalWriter.open(path) as w:
        w.record_failed("f", 1, 0.0, failure("twice"), 1.0, 2.0, 0)
        w.flush()
        done(w, "k", 0, "then it worked")
        w.flush()
        w.record_failed("k", 0, 0.0, failure("later"), 1.0, 2.0, 0)  # no record of it replaces the success
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 5  # every outcome, as written
    finally:
        conn.close()
    journal = Journal(path)
    assert len(journal) == 2 and journal.results() == {"k": "then it worked"}
    assert {key: error.remote_message for key, error in journal.failed().items()} == {"f": "twice"}
    assert [(r.key, r.status, r.run) for r in journal] == [("f", "failed", 2), ("k", "done", 2)]
    record = journal.get("k")
    assert record is not None and record.result == "then it worked"
    assert "1 done, 1 failed" in jobsched.journal.summary(journal)
    with JournalWriter.open(path, rerun_failed=False) as w:  # drops the rows that newer ones supersede
        k, f = w.lookup("k"), w.lookup("f")
        assert k is not None and k.result == "then it worked"
        assert f is not None and f.error is not None and f.error.remote_message == "twice"
    conn = sqlite3.connect(path)
    try:
        assert sorted(conn.execute("SELECT key, status FROM records")) == [("f", "failed"), ("k", "done")]
    finally:
        conn.close()
    assert journal.forget(["k", "f"]) == 2 and len(journal) == 0


SCHEMA_1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (run INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,
                   pid INTEGER NOT NULL, host TEXT NOT NULL, argv TEXT NOT NULL);
CREATE TABLE records (key TEXT PRIMARY KEY, idx INTEGER, cost REAL, status TEXT NOT NULL, result BLOB,
                      error_type TEXT, error_message TEXT, error_traceback TEXT, start_ms REAL, stop_ms REAL,
                      worker INTEGER, attempts INTEGER, run INTEGER);
"""


def test_a_journal_of_schema_1_is_converted_when_a_writer_opens_it(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    conn.execute("PRAGMA application_id = 0x4A534348")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO runs (started, pid, host, argv) VALUES (1.0, 1, 'h', '[]')")
    conn.execute("INSERT INTO records (key, idx, cost, status, result, start_ms, stop_ms, worker, attempts, run) "
                 "VALUES ('old', 3, 1.0, 'done', ?, 5.0, 6.0, 0, 1, 1)", (pickle.dumps("kept", 5),))
    conn.commit()
    conn.close()
    assert Journal(path).results() == {"old": "kept"}  # read as it is
    with JournalWriter.open(path) as w:
        record = w.lookup("old")
        assert record is not None and (record.result, record.index, record.run) == ("kept", 3, 1)
        done(w, "old", 3, "again")  # no unique key any more: a second row
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert conn.execute("SELECT COUNT(*) FROM records WHERE key = 'old'").fetchone()[0] == 2
    finally:
        conn.close()
    assert Journal(path).results() == {"old": "again"}


def test_a_journal_of_schema_2_is_read_as_it_is_and_gains_seed_and_call_columns_when_written(path: Path) -> None:
    """Schema 2 lacks seed, call and cwd: a reader sees them as None, a writer adds them, rows kept."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1.replace("key TEXT PRIMARY KEY", "key TEXT NOT NULL"))
    conn.execute("PRAGMA application_id = 0x4A534348")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute("INSERT INTO runs (started, pid, host, argv) VALUES (1.0, 1, 'h', '[]')")
    conn.execute("INSERT INTO records (key, idx, cost, status, result, start_ms, stop_ms, worker, attempts, run) "
                 "VALUES ('old', 3, 1.0, 'done', ?, 5.0, 6.0, 0, 1, 1)", (pickle.dumps("kept", 5),))
    conn.commit()
    conn.close()
    (old,) = list(Journal(path))
    assert (old.result, old.seed, old.call_bytes, old.cwd) == ("kept", None, None, None)
    assert Journal(path).get("old") is not None
    with JournalWriter.open(path) as w:
        w.record_done("new", 4, 0.0, pickle.dumps("n", 5), 1.0, 2.0, 0, seed=99)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        conn.close()
    records = {r.key: r for r in Journal(path)}
    assert (records["old"].result, records["old"].seed) == ("kept", None)
    assert (records["new"].result, records["new"].seed) == ("n", 99)


def test_the_reader_sees_every_field(path: Path) -> None:
    with JournalWriter.open(path) as w:
        done(w, "a", 0, [1], worker=3)
        w.record_failed("b", 1, 2.5, failure(), 5.0, 9.0, 1, attempts=2)
    journal = jobsched.Journal(path)
    assert len(journal) == 2 and "a" in journal and "zz" not in journal
    a, b = list(journal)
    assert (a.key, a.index, a.cost, a.status, a.result, a.error, a.start_ms, a.stop_ms, a.worker, a.attempts,
            a.run) == ("a", 0, 1.0, "done", [1], None, 1000.0, 1010.0, 3, 1, 1)
    assert (b.status, b.result, b.cost, b.attempts, b.elapsed_ms) == ("failed", None, 2.5, 2, 4.0)
    assert b.error == JobError("ZeroDivisionError", "division by zero",
                               "Traceback (most recent call last):\n  ...\n", 1)
    assert journal.results() == {"a": [1]}
    assert list(journal.failed()) == ["b"]
    assert journal.get("a") is not None and journal.get("nope") is None
    (run,) = journal.runs()
    assert run.pid == os.getpid() and run.finished is not None


def test_forget_and_clear_make_jobs_run_again(path: Path) -> None:
    with JournalWriter.open(path) as w:
        for i in range(5):
            done(w, f"k{i}", i, i)
        done(w, "7", 5, 7)
    journal = Journal(path)
    assert journal.forget(["k0", "k1", "missing"]) == 2
    assert journal.forget(7) == 1  # as key=7 names it
    assert journal.forget("k2") == 1  # one key, not its characters
    with JournalWriter.open(path) as w:
        assert w.lookup("k0") is None and w.lookup("k3") is not None
    assert journal.clear() == 2
    assert len(journal) == 0 and len(journal.runs()) == 2


def test_a_result_that_cannot_be_unpickled_any_more_runs_again(path: Path) -> None:
    bad = b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x07nowhere\x94\x8c\x03Gone\x94\x93\x94."
    with JournalWriter.open(path) as w:
        w.record_done("gone", 3, 0.0, bad, 1.0, 2.0, 0, 1)
        done(w, "fine", 4, "ok")
    with JournalWriter.open(path) as w, pytest.warns(JournalWarning, match="job 9 runs again"):
        assert w.lookup("gone", index=9) is None
    record = Journal(path).get("gone")
    assert record is not None
    with pytest.raises(JournalError, match=r"key gone cannot be unpickled.*forget"):
        _ = record.result
    with pytest.raises(JournalError, match="key gone"):
        Journal(path).results()


def test_a_result_that_cannot_be_pickled_is_delivered_but_not_journaled(path: Path) -> None:
    import threading

    with JournalWriter.open(path) as w:
        with pytest.warns(JournalWarning, match="job 4 .*delivered but not journaled"):
            assert w.record_value("k", 4, 0.0, threading.Lock(), 1.0, 2.0, 0) is False
        assert w.record_value("ok", 5, 0.0, {"a": 1}, 1.0, 2.0, 0) is True
    assert Journal(path).results() == {"ok": {"a": 1}}


def test_to_pandas_or_a_clear_import_error(path: Path) -> None:
    with JournalWriter.open(path) as w:
        done(w, "a", 0, 1)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install pandas"):
            Journal(path).to_pandas()
    else:
        frame = Journal(path).to_pandas()
        assert list(frame["key"]) == ["a"] and list(frame["result"]) == [1]


def test_the_command_line_summary(path: Path) -> None:
    with JournalWriter.open(path) as w:
        done(w, "a", 0, 1)
        w.record_failed("b", 1, 0.0, failure("boom"), 1.0, 5000.0, 0)
    out = subprocess.run([sys.executable, "-m", "jobsched.journal", str(path), "--failed"], capture_output=True,
                         text=True, timeout=60, env=ENV)
    assert out.returncode == 0, out.stderr
    assert "2 records: 1 done, 1 failed" in out.stdout
    assert "slowest jobs" in out.stdout and "4999.0 ms  job 1" in out.stdout
    assert "ZeroDivisionError: boom" in out.stdout and "Traceback" in out.stdout
    out = subprocess.run([sys.executable, "-m", "jobsched.journal", str(path.parent / "nope.sqlite")],
                         capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 2 and "there is no journal at" in out.stderr


def test_import_jobsched_loads_neither_sqlite_nor_the_journal() -> None:
    code = ("import sys, jobsched; print([m for m in ('sqlite3', 'jobsched.journal', 'jobsched._keys.derive') "
            "if m in sys.modules]); print(jobsched.Journal.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "jobsched.journal"]


# ---- bad input: a clear error naming the path and the fix, the file left as it was


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def newer_journal(p: Path) -> None:
    JournalWriter.open(p).close()
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")  # the header in the main file, as after a checkpoint
    conn.close()


def other_database(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()


BAD_FILES = [
    ("text", lambda p: p.write_text("name,value\nx,1\n"), "not even a SQLite database"),
    ("short", lambda p: p.write_bytes(b"SQLite"), "not even a SQLite database"),
    ("other db", other_database, "SQLite database but not a jobsched journal"),
    ("newer", newer_journal, "newer jobsched.*pip install -U jobsched"),
]


@pytest.mark.parametrize(("make", "says"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_file_that_is_not_a_journal_is_refused_and_left_untouched(path: Path, make: Any, says: str) -> None:
    make(path)
    before = digest(path)
    for attempt in (lambda: JournalWriter.open(path), lambda: Journal(path)):
        with pytest.raises(JournalError, match=says) as info:
            attempt()
        assert str(path) in str(info.value)
        assert digest(path) == before
    assert isinstance(info.value, ValueError)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "runs.sqlite"
    with pytest.raises(JournalError, match=r"folder .*no/such does not exist; create it"):
        JournalWriter.open(target)
    assert not (tmp_path / "no").exists()


def test_a_read_only_journal_is_refused_untouched(path: Path) -> None:
    with JournalWriter.open(path) as w:
        done(w, "a", 0, 1)
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    try:
        before = digest(path)
        with pytest.raises(JournalError, match=r"is read-only; make it writable \(chmod u\+w"):
            JournalWriter.open(path)
        with pytest.raises(JournalError, match="read-only"):
            Journal(path).clear()
        assert digest(path) == before
        assert Journal(path).results() == {"a": 1}  # reading is fine
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(JournalError, match=r"folder .* is read-only"):
            JournalWriter.open(folder / "runs.sqlite")
        assert list(folder.iterdir()) == []
    finally:
        os.chmod(folder, stat.S_IRWXU)


def test_a_folder_is_not_a_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a folder; give a file name"):
        JournalWriter.open(tmp_path)


def test_reading_a_missing_journal_says_so(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="there is no journal at"):
        Journal(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


# ---- processes: killed mid-write, and two writers at once

WRITER = r"""
import pickle, sys, time
from jobsched.journal import JournalWriter

path, prefix, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
w = JournalWriter.open(path, flush_interval=0.001, flush_batch=batch)
print("open", w.run, flush=True)
for i in range(n):
    key = f"{prefix}{i:07d}"
    if w.lookup(key) is not None:
        continue  # resumed: committed before a kill
    w.record_done(key, i, float(i), pickle.dumps((key, i, b"x" * (i % 300)), 5), 1.0, 2.0, i % 4, 1)
    if w.flush_due(time.monotonic()):
        w.flush()
w.close()
print("done", flush=True)
"""


def start_writer(tmp_path: Path, path: Path, prefix: str, n: int, batch: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(path), prefix, str(n), str(batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from the writer within {timeout} s"
    return proc.stdout.readline()


def committed(path: Path) -> dict[str, tuple[int, bytes]]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT key, run, result FROM records").fetchall()
        records = {key: (run, blob) for key, run, blob in rows}
        assert len(records) == len(rows), "a key was written twice"
        return records
    finally:
        conn.close()


def test_sigkill_at_random_moments_loses_at_most_the_last_batch(tmp_path: Path, path: Path) -> None:
    rng = random.Random(13)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 120
    kills = 0
    while kills < 8 and time.monotonic() < deadline:
        proc = start_writer(tmp_path, path, "k", 10**7, rng.choice([1, 7, 50, 500]))
        try:
            assert read_line(proc, 30).startswith("open")
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        kills += 1
        records = committed(path)
        # No record is half-written: every committed key is whole, and they are a prefix k0, k1, ... k(m-1),
        # as the writer records them in order and commits them in order.
        keys = sorted(records)
        assert keys == [f"k{i:07d}" for i in range(len(keys))]
        for key, (run, blob) in records.items():
            i = int(key[1:])
            assert pickle.loads(blob) == (key, i, b"x" * (i % 300))
            # What an earlier incarnation committed was never run (and so rewritten) again.
            assert seen.setdefault(key, run) == run
    assert kills == 8 and len(seen) > 0
    assert Journal(path).runs()[-1].run == kills


def test_two_writers_in_two_processes_both_record_everything(tmp_path: Path, path: Path) -> None:
    JournalWriter.open(path).close()  # both find an existing journal (creation races are tested below)
    n = 3000
    procs = [start_writer(tmp_path, path, prefix, n, 10) for prefix in ("a", "b")]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    records = committed(path)
    assert len(records) == 2 * n
    assert {run for run, _ in records.values()} == {2, 3}
    assert all(r.finished is not None for r in Journal(path).runs())


def test_two_writers_creating_the_same_journal_at_once(tmp_path: Path, path: Path) -> None:
    procs = [start_writer(tmp_path, path, prefix, 200, 50) for prefix in ("a", "b")]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert len(committed(path)) == 400
