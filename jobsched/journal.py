"""The results journal: a SQLite file that remembers every job's result, so that a run can resume.

::

    scheduler loop thread                         JournalWriter                        runs.sqlite (WAL)
    job added ── key ──> lookup(key) ──> done (or failed, with rerun_failed=False)? ──> deliver it, skip the job
    result bytes from a worker ──> record_done / record_failed ──> buffer (a dict, no I/O)
    every loop turn: flush_due(now)? ──> flush(): one transaction for the whole batch ──────> records
    close() ──> flush(), mark the run finished

    Journal(path)  (any process, any time) ── reads records, results(), failed(); forget(keys), clear()
    python -m jobsched.journal PATH [--failed] ── a summary

**What is stored.** ``records`` holds one row per job key: its index, cost, status (``"done"`` or
``"failed"``), the result exactly as the worker pickled it (never re-pickled), or the error's type,
message and traceback, the wall-clock start and stop times in milliseconds, the worker slot, the
number of attempts and the run that wrote it. ``runs`` has one row per writer (start, end, pid, host,
argv); ``meta`` says who made the file and its schema version, which is also in the SQLite header
(``application_id`` and ``user_version``), so that a file can be recognised before SQLite opens it.

**Durability.** Results are buffered in memory and written in one transaction per batch: when
``flush_batch`` results are waiting or the oldest has waited ``flush_interval`` seconds, whichever
comes first, and at ``close()``. A transaction is all or nothing, so after a SIGKILL at any moment a
record is either committed whole or absent; at worst the last batch's jobs run again. The file is in
WAL mode with ``synchronous=NORMAL``: a committed transaction survives the death of the process; only
a power cut or an OS crash can lose the last few transactions (never corrupt the file).

**Several writers.** Two schedulers, in two processes, may share a journal: SQLite serialises their
transactions; a writer that finds the file locked waits (``busy_timeout``, then a retry loop) and
only gives up, with a ``JournalError`` naming the runs that are active, if the lock lasts longer than
``busy_timeout`` seconds in all. Each writer reads the finished keys once, when it opens: results that
another process records later are not seen by it (the job just runs again). A failure never
overwrites a success; a later success overwrites an earlier one.

**Bad files.** Every check that can fail (missing folder, read-only file or folder, a file that is
not a jobsched journal, a journal of a newer schema) runs before the file is opened for writing, and
raises ``JournalError`` naming the path and the fix, leaving the file byte-identical.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import JobError, JobschedError

SCHEMA_VERSION = 1
"""The schema this jobsched writes; a file of a higher version is refused (by an older jobsched)."""

APPLICATION_ID = 0x4A534348  # "JSCH", in the SQLite header: a jobsched journal is known by it
FLUSH_INTERVAL = 0.1
"""Seconds a result may wait in memory before it is written."""
FLUSH_BATCH = 2000
"""Results written in one transaction at most (a flush is due as soon as this many wait). Measured on 20,000
small results: 500 per transaction cost 6.3 µs a result, 2000 cost 3.9 µs (with the cache below), 5000 3.7 µs."""
BUSY_TIMEOUT = 60.0
"""Seconds a writer waits for another process's transaction before it gives up."""

_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    argv TEXT NOT NULL
);
CREATE TABLE records (
    key TEXT PRIMARY KEY,
    idx INTEGER,
    cost REAL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    result BLOB,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    start_ms REAL,
    stop_ms REAL,
    worker INTEGER,
    attempts INTEGER,
    run INTEGER
);
"""

_COLUMNS = ("key, idx, cost, status, result, error_type, error_message, error_traceback, "
            "start_ms, stop_ms, worker, attempts, run")

# A failure never replaces a success (another process may have finished the same job meanwhile).
_UPSERT = f"""
INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    idx = excluded.idx, cost = excluded.cost, status = excluded.status, result = excluded.result,
    error_type = excluded.error_type, error_message = excluded.error_message,
    error_traceback = excluded.error_traceback, start_ms = excluded.start_ms, stop_ms = excluded.stop_ms,
    worker = excluded.worker, attempts = excluded.attempts, run = excluded.run
WHERE excluded.status = 'done' OR records.status = 'failed'
"""


class JournalError(JobschedError, ValueError):
    """The journal file cannot be used (wrong path, read-only, not a journal, too new) or stays locked."""


class JournalWarning(RuntimeWarning):
    """A result was not journaled, or a journaled one could not be read back (its job runs again)."""


# ---- checks that run before SQLite touches the file


def _read_only(path: str) -> bool:
    # os.access says yes to root for any file; a file without a write bit is meant to stay as it is.
    return not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222


def _check_file(path: str, *, writing: bool) -> None:
    """Raise JournalError if ``path`` cannot be a journal (for writing, if it cannot be written)."""
    folder = os.path.dirname(path) or "."
    if not os.path.exists(path):
        if not writing:
            raise JournalError(f"there is no journal at {path}: check the path (a journal is created by "
                               "Scheduler(journal=...) on its first run)")
        if not os.path.isdir(folder):
            raise JournalError(f"cannot create the journal {path}: the folder {folder} does not exist; "
                               f"create it first (os.makedirs({folder!r})) or choose another path")
    elif os.path.isdir(path):
        raise JournalError(f"the journal path {path} is a folder; give a file name, e.g. "
                           f"{os.path.join(path, 'runs.sqlite')}")
    else:
        _check_header(path)
        if writing and _read_only(path):
            raise JournalError(f"the journal {path} is read-only; make it writable (chmod u+w {path}) "
                               "or choose another path")
    if writing and _read_only(folder):
        raise JournalError(f"cannot write the journal {path}: its folder {folder} is read-only, and SQLite "
                           "needs to create files beside the journal (-wal, -shm); make the folder writable "
                           "or choose another path")


def _check_header(path: str) -> None:
    """Recognise a jobsched journal by its SQLite header (the first 100 bytes), without opening it."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}; check its permissions") from exc
    if not header:
        return  # an empty file: SQLite makes a new database of it
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise JournalError(f"{path} is not a jobsched journal (it is not even a SQLite database), and is left "
                           "as it is; choose another path, or delete that file if you no longer need it")
    application_id = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big")
    if application_id != APPLICATION_ID:
        raise JournalError(f"{path} is a SQLite database but not a jobsched journal (application_id "
                           f"{application_id:#x}, not {APPLICATION_ID:#x}), and is left as it is; "
                           "choose another path for the journal")
    if version > SCHEMA_VERSION:
        raise JournalError(_too_new(path, version))


def _too_new(path: str, version: int) -> str:
    return (f"the journal {path} was written by a newer jobsched (journal schema {version}; this version reads "
            f"schemas up to {SCHEMA_VERSION}); upgrade jobsched (pip install -U jobsched) or use another path")


def _connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        from pathlib import Path

        target, uri = Path(path).absolute().as_uri() + "?mode=ro", True
    else:
        target, uri = path, False
    # Autocommit (isolation_level=None): every transaction is an explicit BEGIN IMMEDIATE ... COMMIT.
    conn = sqlite3.connect(target, timeout=5.0, isolation_level=None, check_same_thread=False, uri=uri)
    return conn


def _retry(path: str, conn: sqlite3.Connection, work: Any, busy_timeout: float) -> Any:
    """Run ``work()``; while another process holds the lock, wait and try again, up to ``busy_timeout`` s."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            return work()
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            text = str(exc)
            if "locked" not in text and "busy" not in text:
                raise JournalError(f"the journal {path} could not be written: {exc}") from exc
            if time.monotonic() >= deadline:
                raise JournalError(
                    f"the journal {path} stayed locked by another process for {busy_timeout:g} s "
                    f"({_active_runs(conn)}); let that run finish, or give this one another journal") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def _active_runs(conn: sqlite3.Connection) -> str:
    try:
        rows = conn.execute("SELECT run, pid, host, argv FROM runs WHERE finished IS NULL "
                            "ORDER BY run DESC LIMIT 3").fetchall()
    except sqlite3.Error:
        return "its runs table cannot be read either"
    if not rows:
        return "no unfinished run is recorded in it"
    return "unfinished runs: " + "; ".join(f"run {r} by pid {pid} on {host}: {argv}" for r, pid, host, argv in rows)


# ---- records

_UNREAD = object()


class JournalRecord:
    """One journaled job.

    Attributes:
        key: the job's key (given with ``key=``, or derived from its content).
        index: the job's index in the run that wrote it.
        cost: the job's cost.
        status: ``"done"`` or ``"failed"``.
        start_ms: wall-clock time in milliseconds when the job was sent to a worker.
        stop_ms: wall-clock time in milliseconds when its result arrived.
        worker: the index of the worker slot that ran it (None if unknown).
        attempts: how many times it was started (more than 1 if a worker died under it).
        run: the run that wrote the record (see ``Journal.runs()``).
    """

    __slots__ = ("key", "index", "cost", "status", "start_ms", "stop_ms", "worker", "attempts", "run",
                 "_result_bytes", "_error_fields", "_value")

    def __init__(self, key: str, index: int | None, cost: float | None, status: str, result_bytes: bytes | None,
                 error_fields: tuple[str, str, str] | None, start_ms: float | None, stop_ms: float | None,
                 worker: int | None, attempts: int | None, run: int | None) -> None:
        self.key = key
        self.index = index
        self.cost = cost
        self.status = status
        self._result_bytes = result_bytes
        self._error_fields = error_fields
        self.start_ms = start_ms
        self.stop_ms = stop_ms
        self.worker = worker
        self.attempts = attempts
        self.run = run
        self._value: Any = _UNREAD

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> JournalRecord:
        key, idx, cost, status, result, etype, emsg, etb, start, stop, worker, attempts, run = row
        errors = (etype or "", emsg or "", etb or "") if status == "failed" else None
        return cls(key, idx, cost, status, result, errors, start, stop, worker, attempts, run)

    @property
    def result(self) -> Any:
        """The job's result, unpickled now (None for a failed job: see ``error``).

        Raises:
            JournalError: the stored bytes cannot be unpickled here (e.g. the result's class is gone);
                ``Journal(path).forget([key])`` makes the job run again.
        """
        if self._value is not _UNREAD:
            return self._value
        if self._result_bytes is None:
            return None
        try:
            self._value = pickle.loads(self._result_bytes)
            return self._value
        except Exception as exc:
            raise JournalError(
                f"the journaled result of key {self.key} cannot be unpickled here ({type(exc).__name__}: {exc}); "
                "import what it needs, or forget the key (Journal(path).forget([key])) to run the job again"
            ) from exc

    @property
    def error(self) -> JobError | None:
        """The job's ``JobError`` if it failed, else None."""
        if self._error_fields is None:
            return None
        return JobError(*self._error_fields, self.index)

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds between sending the job and receiving its result."""
        if self.start_ms is None or self.stop_ms is None:
            return 0.0
        return max(0.0, self.stop_ms - self.start_ms)

    def outcome(self, index: int | None = None) -> tuple[Any, bool]:
        """Return ``(result, failed)`` as the scheduler delivers it: the result, or the JobError.

        Args:
            index: the index of the job that receives it in this run (the JobError's ``job_index``).

        Raises:
            JournalError: the result cannot be unpickled (see ``result``).
        """
        if self._error_fields is not None:
            return JobError(*self._error_fields, index), True
        return self.result, False

    def __repr__(self) -> str:
        return (f"JournalRecord(key={self.key!r}, index={self.index}, status={self.status!r}, "
                f"elapsed_ms={self.elapsed_ms:.1f}, worker={self.worker}, attempts={self.attempts}, run={self.run})")


# ---- the writer, for the scheduler


class JournalWriter:
    """The scheduler's side of a journal: look up finished jobs, record results in batches.

    Made by ``JournalWriter.open(path)``. Meant to be driven by one thread (the scheduler's loop);
    every method takes an internal lock, so ``close()`` or ``flush()`` from another thread is safe too.
    ``record_*`` only appends to a buffer: the only I/O is in ``flush()``, which the loop calls when
    ``flush_due(now)`` says so, and ``lookup()``, which reads one row for a job that is skipped.
    """

    def __init__(self, path: str, conn: sqlite3.Connection, run: int, done: dict[str, bool], *,
                 rerun_failed: bool, flush_interval: float, flush_batch: int, busy_timeout: float) -> None:
        self.path = path
        self.run = run
        self.rerun_failed = rerun_failed
        self.flush_interval = flush_interval
        self.flush_batch = flush_batch
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = conn
        self._known = done  # key -> True if done, False if failed (failed keys only if rerun_failed=False)
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._oldest: float | None = None  # time.monotonic() of the oldest unwritten result
        self._lock = threading.Lock()
        self.n_written = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, rerun_failed: bool = True, flush_interval: float = FLUSH_INTERVAL,
             flush_batch: int = FLUSH_BATCH, busy_timeout: float = BUSY_TIMEOUT) -> JournalWriter:
        """Open (or create) the journal at ``path`` for a new run; call before any job runs.

        Args:
            path: the journal file; its folder must exist.
            rerun_failed: whether ``lookup`` lets failed jobs run again (True) or returns their error.
            flush_interval: seconds a recorded result may wait in memory before ``flush_due`` says so.
            flush_batch: number of waiting results that makes a flush due at once.
            busy_timeout: seconds to wait for another process's lock before giving up.

        Raises:
            JournalError: the path cannot hold a journal (the message names it and the fix); the file is
                left untouched.
        """
        path = os.path.abspath(os.fspath(path))
        _check_file(path, writing=True)
        try:
            conn = _connect(path)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc
        try:
            _retry(path, conn, lambda: _prepare(path, conn), busy_timeout)
            # WAL: readers do not block the writer, and a commit is one append to the -wal file.
            _retry(path, conn, lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), busy_timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
            # Keys are random (hashes), so each batch touches index pages all over the file: keep them in
            # memory (up to 64 MB, allocated only as used), and checkpoint the WAL less often.
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA wal_autocheckpoint=4000")
            run = _retry(path, conn, lambda: _new_run(conn), busy_timeout)
            query = "SELECT key, status = 'done' FROM records" + (" WHERE status = 'done'" if rerun_failed else "")
            known = dict(conn.execute(query).fetchall())
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, run, known, rerun_failed=rerun_failed, flush_interval=flush_interval,
                   flush_batch=flush_batch, busy_timeout=busy_timeout)

    def __len__(self) -> int:
        """The number of keys this run will not run again (done, and failed with rerun_failed=False)."""
        return len(self._known)

    def lookup(self, key: str, index: int | None = None) -> JournalRecord | None:
        """Return the journaled record that replaces running the job ``key``, or None to run it.

        A record is returned for a done job, and for a failed one when ``rerun_failed`` is False; its
        result is already unpickled (``record.outcome(index)`` gives what to deliver). A record whose
        result cannot be unpickled any more counts as absent (a ``JournalWarning`` says so), so the job
        runs again and its new result replaces it.

        Args:
            key: the job's key.
            index: the job's index in this run, for the warning.
        """
        with self._lock:
            status = self._known.get(key)
            if status is None:
                return None
            row = self._pending.get(key)
            if row is None:
                if self._conn is None:
                    raise JournalError(f"the journal {self.path} is closed")
                row = self._conn.execute(f"SELECT {_COLUMNS} FROM records WHERE key = ?", (key,)).fetchone()
            if row is None:  # forgotten by another process since this one opened the journal
                del self._known[key]
                return None
        record = JournalRecord._from_row(row)
        if record.status == "failed" and self.rerun_failed:
            return None
        if record.status == "done":
            try:
                record.result  # noqa: B018  # unpickled now, and kept: outcome() hands it over
            except JournalError as exc:
                job = f"job {index}" if index is not None else "a job"
                warnings.warn(f"{exc}; {job} runs again", JournalWarning, stacklevel=2)
                return None
        return record

    def record_done(self, key: str, index: int, cost: float, result: bytes | bytearray | memoryview,
                    start_ms: float, stop_ms: float, worker: int | None, attempts: int = 1) -> None:
        """Buffer a finished job's result: ``result`` is its pickle, as it came from the worker (copied here).

        Args:
            key: the job's key.
            index: the job's index.
            cost: its cost.
            result: the pickled result, byte for byte as the worker sent it (never re-pickled).
            start_ms: wall-clock milliseconds when the job was sent.
            stop_ms: wall-clock milliseconds when its result arrived.
            worker: the worker slot's index.
            attempts: how many times the job was started.
        """
        row = (key, index, cost, "done", bytes(result), None, None, None, start_ms, stop_ms, worker, attempts,
               self.run)
        with self._lock:
            self._pending[key] = row
            self._known[key] = True
            if self._oldest is None:
                self._oldest = time.monotonic()

    def record_failed(self, key: str, index: int, cost: float, error: JobError, start_ms: float, stop_ms: float,
                      worker: int | None, attempts: int = 1) -> None:
        """Buffer a failed job's error (its type, message and traceback).

        A failure never replaces a success recorded for the same key. The scheduler should not record a
        job that the user cancelled: that is not the job's result.
        """
        row = (key, index, cost, "failed", None, error.remote_type, error.remote_message, error.remote_traceback,
               start_ms, stop_ms, worker, attempts, self.run)
        with self._lock:
            previous = self._pending.get(key)
            if previous is not None and previous[3] == "done":
                return
            self._pending[key] = row
            if not self.rerun_failed and key not in self._known:
                self._known[key] = False
            if self._oldest is None:
                self._oldest = time.monotonic()

    def record_value(self, key: str, index: int, cost: float, result: Any, start_ms: float, stop_ms: float,
                     worker: int | None, attempts: int = 1) -> bool:
        """Pickle ``result`` and buffer it, for a backend that hands over values rather than bytes.

        Returns:
            True if it was journaled; False if it cannot be pickled: a ``JournalWarning`` names the job,
            and the caller delivers the result anyway.
        """
        try:
            data = pickle.dumps(result, 5)
        except Exception:
            try:
                from ._pickling import dumps

                data = dumps(result, f"the result of job {index}")
            except TypeError as exc:
                warnings.warn(f"the result of job {index} (key {key}) is delivered but not journaled: {exc}",
                              JournalWarning, stacklevel=2)
                return False
        self.record_done(key, index, cost, data, start_ms, stop_ms, worker, attempts)
        return True

    def next_flush_in(self, now: float) -> float | None:
        """Seconds until a flush is due (0 if it is), or None if nothing waits: a bound for the loop's sleep.

        Args:
            now: ``time.monotonic()``.
        """
        oldest = self._oldest
        if oldest is None:
            return None
        if len(self._pending) >= self.flush_batch:
            return 0.0
        return max(0.0, oldest + self.flush_interval - now)

    def flush_due(self, now: float) -> bool:
        """Whether results have waited long enough, or are many enough, to be written now."""
        oldest = self._oldest
        return oldest is not None and (len(self._pending) >= self.flush_batch or now - oldest >= self.flush_interval)

    def flush(self) -> None:
        """Write every buffered result in one transaction (waiting out another process's lock).

        Raises:
            JournalError: the journal stayed locked for ``busy_timeout`` seconds, or cannot be written (disk
                full...); the results stay buffered, and the next flush tries again.
        """
        with self._lock:
            if not self._pending:
                return
            conn = self._conn
            if conn is None:
                raise JournalError(f"the journal {self.path} is closed; results cannot be recorded any more")
            rows = list(self._pending.values())

            def write() -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_UPSERT, rows)
                conn.execute("COMMIT")

            _retry(self.path, conn, write, self.busy_timeout)
            self._pending.clear()
            self._oldest = None
            self.n_written += len(rows)

    def close(self) -> None:
        """Flush, mark the run finished and close the file. Idempotent."""
        try:
            self.flush()
        finally:
            with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        _retry(self.path, conn, lambda: conn.execute(
                            "UPDATE runs SET finished = ? WHERE run = ?", (time.time(), self.run)), 5.0)
                    except JournalError:
                        pass  # only the summary's "finished" column is lost
                    finally:
                        conn.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prepare(path: str, conn: sqlite3.Connection) -> None:
    """Create the schema in a new file, or check an existing one; in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if application_id == 0 and not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            # Still in rollback-journal mode: the header (application_id, user_version) reaches the main
            # file with this commit, where _check_header reads it, rather than staying in a -wal file.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)",
                             [("created_by", "jobsched"), ("schema_version", str(SCHEMA_VERSION))])
        elif application_id != APPLICATION_ID:
            raise JournalError(f"{path} is a SQLite database but not a jobsched journal; choose another path")
        elif version > SCHEMA_VERSION:
            raise JournalError(_too_new(path, version))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _new_run(conn: sqlite3.Connection) -> int:
    import json
    import socket

    cursor = conn.execute("INSERT INTO runs (started, pid, host, argv) VALUES (?, ?, ?, ?)",
                          (time.time(), os.getpid(), socket.gethostname(), json.dumps(sys.argv)))
    run = cursor.lastrowid
    assert run is not None
    return run


# ---- the reader, for people


class JournalRun:
    """One run that wrote to a journal: ``run, started, finished`` (Unix seconds; None while running or
    if it was killed), ``pid, host, argv``."""

    __slots__ = ("run", "started", "finished", "pid", "host", "argv")

    def __init__(self, run: int, started: float, finished: float | None, pid: int, host: str,
                 argv: list[str]) -> None:
        self.run = run
        self.started = started
        self.finished = finished
        self.pid = pid
        self.host = host
        self.argv = argv

    def __repr__(self) -> str:
        return (f"JournalRun(run={self.run}, started={self.started}, finished={self.finished}, pid={self.pid}, "
                f"host={self.host!r}, argv={self.argv!r})")


class Journal:
    """A journal file, to look inside: ``len()``, iteration over its records, ``results()``, ``failed()``.

    Each call reads the file afresh (a running scheduler may be adding to it), through a connection
    opened for that call: a ``Journal`` holds no file open and needs no closing.

    Args:
        path: the journal file.

    Raises:
        JournalError: there is no journal at ``path``, or the file is not one (or of a newer schema).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        _check_file(self.path, writing=False)
        if os.path.getsize(self.path) == 0:
            raise JournalError(f"{self.path} is an empty file, not a jobsched journal; check the path")

    def _read(self) -> sqlite3.Connection:
        try:
            return _connect(self.path, read_only=True)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = self._read()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc
        finally:
            conn.close()

    def __len__(self) -> int:
        """The number of records (done and failed)."""
        return int(self._query("SELECT COUNT(*) FROM records")[0][0])

    def __iter__(self) -> Iterator[JournalRecord]:
        """Iterate over the records in the order they were first written; results are unpickled on access."""
        conn = self._read()
        try:
            for row in conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY rowid"):
                yield JournalRecord._from_row(row)
        finally:
            conn.close()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._query("SELECT 1 FROM records WHERE key = ?", (key,)))

    def get(self, key: str) -> JournalRecord | None:
        """Return the record of ``key``, or None."""
        rows = self._query(f"SELECT {_COLUMNS} FROM records WHERE key = ?", (key,))
        return JournalRecord._from_row(rows[0]) if rows else None

    def results(self) -> dict[str, Any]:
        """Return ``{key: result}`` for every done job, in the order they were written.

        Raises:
            JournalError: a result cannot be unpickled here (the message names its key).
        """
        rows = self._query("SELECT key, result FROM records WHERE status = 'done' ORDER BY rowid")
        loads = pickle.loads
        try:
            return {key: loads(data) for key, data in rows}
        except Exception:
            for key, data in rows:  # find the culprit: the error names it
                _ = JournalRecord(key, None, None, "done", data, None, None, None, None, None, None).result
            raise

    def failed(self) -> dict[str, JobError]:
        """Return ``{key: JobError}`` for every failed job."""
        rows = self._query("SELECT key, idx, error_type, error_message, error_traceback FROM records "
                           "WHERE status = 'failed' ORDER BY rowid")
        return {key: JobError(etype or "", emsg or "", etb or "", idx) for key, idx, etype, emsg, etb in rows}

    def runs(self) -> list[JournalRun]:
        """Return the runs that wrote to this journal, oldest first."""
        import json

        return [JournalRun(run, started, finished, pid, host, json.loads(argv))
                for run, started, finished, pid, host, argv in
                self._query("SELECT run, started, finished, pid, host, argv FROM runs ORDER BY run")]

    def to_pandas(self) -> Any:
        """Return the records as a ``pandas.DataFrame`` (typed ``Any``: pandas is optional), results unpickled.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as exc:
            raise ImportError("Journal.to_pandas() needs pandas: pip install pandas") from exc
        columns = ["key", "index", "cost", "status", "result", "error_type", "error_message", "start_ms",
                   "stop_ms", "elapsed_ms", "worker", "attempts", "run"]
        rows = []
        for r in self:
            error = r._error_fields
            rows.append([r.key, r.index, r.cost, r.status, r.result, error[0] if error else None,
                         error[1] if error else None, r.start_ms, r.stop_ms, r.elapsed_ms, r.worker, r.attempts,
                         r.run])
        return pd.DataFrame(rows, columns=columns)

    def forget(self, keys: str | int | tuple[Any, ...] | Iterable[object]) -> int:
        """Delete the records of ``keys``, so that their jobs run again; return how many were deleted.

        Args:
            keys: one key as ``key=`` accepts it (a str, an int, a tuple of them: a tuple is *one* key),
                or a list, set or other iterable of keys.
        """
        from ._keys import normalize_key

        single = isinstance(keys, (str, int, tuple))
        keyed = [normalize_key(keys)] if single else [normalize_key(k) for k in keys]  # type: ignore[union-attr]
        return self._write(lambda conn: conn.executemany("DELETE FROM records WHERE key = ?",
                                                         [(k,) for k in keyed]).rowcount)

    def clear(self) -> int:
        """Delete every record, so that every job runs again; return how many were deleted.

        The list of runs is kept.
        """
        return self._write(lambda conn: conn.execute("DELETE FROM records").rowcount)

    def _write(self, change: Any) -> int:
        _check_file(self.path, writing=True)
        conn = _connect(self.path)
        try:
            def work() -> int:
                conn.execute("BEGIN IMMEDIATE")
                n = int(change(conn))
                conn.execute("COMMIT")
                return n

            return int(_retry(self.path, conn, work, BUSY_TIMEOUT))
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"


# ---- python -m jobsched.journal PATH [--failed]


def summary(journal: Journal, *, failed: bool = False, n_slowest: int = 5) -> str:
    """Return the text that ``python -m jobsched.journal`` prints."""
    import json
    from collections import Counter

    by_status = dict(journal._query("SELECT status, COUNT(*) FROM records GROUP BY status"))
    per_run: dict[int, dict[str, int]] = {}
    for run, status, n in journal._query("SELECT run, status, COUNT(*) FROM records GROUP BY run, status"):
        per_run.setdefault(run, {})[status] = n
    n_done, n_failed = by_status.get("done", 0), by_status.get("failed", 0)
    lines = [f"{journal.path}: {n_done + n_failed} records: {n_done} done, {n_failed} failed"]
    runs = journal.runs()
    if runs:
        lines.append("")
        lines.append(f"{'run':>5}  {'started':19}  {'state':9}  {'pid':>7}  {'host':12}  {'done':>7}  "
                     f"{'failed':>7}  command")
        for r in runs:
            counts = per_run.get(r.run, {})
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
            state = "finished" if r.finished is not None else "running?"  # or killed: no end was written
            command = " ".join(r.argv) if isinstance(r.argv, list) else json.dumps(r.argv)
            lines.append(f"{r.run:>5}  {started:19}  {state:9}  {r.pid:>7}  {r.host[:12]:12}  "
                         f"{counts.get('done', 0):>7}  {counts.get('failed', 0):>7}  {command}")
    slowest = journal._query("SELECT key, idx, stop_ms - start_ms AS ms, worker, status, run FROM records "
                             "WHERE start_ms IS NOT NULL AND stop_ms IS NOT NULL ORDER BY ms DESC LIMIT ?",
                             (n_slowest,))
    if slowest:
        lines += ["", "slowest jobs:"]
        for key, idx, ms, worker, status, run in slowest:
            lines.append(f"  {ms:>12.1f} ms  job {idx}  worker {worker}  run {run}  {status:6}  key {key}")
    errors = journal._query("SELECT key, idx, error_type, error_message, error_traceback, run FROM records "
                            "WHERE status = 'failed' ORDER BY rowid")
    if errors:
        lines += ["", "failures:"]
        if failed:
            for key, idx, etype, emsg, etb, run in errors:
                lines.append(f"  job {idx} (run {run}, key {key}): {etype}: {emsg}")
                if etb:
                    lines += ["      " + line for line in etb.rstrip().splitlines()]
        else:
            kinds = Counter((etype, (emsg or "").splitlines()[0] if emsg else "") for _, _, etype, emsg, _, _ in errors)
            for (etype, first_line), n in kinds.most_common():
                lines.append(f"  {n:>7} x  {etype}: {first_line}")
            lines.append("  (--failed lists each failed job with its traceback)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m jobsched.journal PATH [--failed]``: print a journal's summary; 2 if it cannot be read."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobsched.journal",
                                     description="Summarise a jobsched results journal.")
    parser.add_argument("path", help="the journal file (Scheduler(journal=PATH))")
    parser.add_argument("--failed", action="store_true", help="list every failed job with its traceback")
    args = parser.parse_args(argv)
    try:
        print(summary(Journal(args.path), failed=args.failed))
    except JournalError as exc:
        print(f"python -m jobsched.journal: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
