"""The writing side of the results journal (see ``jobsched.journal`` for the whole picture).

``JournalRecord`` and ``JournalWriter``, which the scheduler drives from its loop thread; the file itself (schema,
checks, locks, conversion) is ``_journaling.file``. ``jobsched.journal`` re-exports the public names.

It is one file, a little over 600 lines, because a record and the writer are two sides of one row format: the
columns that ``JournalWriter`` fills are the ones ``JournalRecord`` reads back, and a change to one is a change
to the other.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sqlite3
import threading
import time
import warnings
import weakref
from typing import Any

from .._core.remote_errors import job_error
from ..errors import JobError, JournalError
from . import changes as _changes
from .file import (
    _BY_KEY,
    _COLUMNS,
    BUSY_TIMEOUT,
    EXTRA_COLUMNS,
    IN_USE,
    _check_file,
    _connect,
    _new_run,
    _prepare,
    _read_keys,
    _retry,
)

FLUSH_INTERVAL = 0.1
"""Seconds a result may wait in memory before it is written."""
FLUSH_BATCH = 2000
"""Results written in one transaction at most (a flush is due as soon as this many wait). Measured on 20,000
small results: 500 per transaction cost 6.3 µs a result, 2000 cost 3.9 µs (with the cache below), 5000 3.7 µs."""
_INSERT = f"INSERT INTO records ({_COLUMNS}, {EXTRA_COLUMNS}) VALUES ({', '.join(['?'] * 16)})"
_ROW = f"{_COLUMNS}, {EXTRA_COLUMNS}"  # a record's row, as JournalRecord._from_row takes it

# The same for a success, with its constant columns in the statement: 8 parameters bound a row instead of
# 13, a quarter less CPU per row. Buffered successes are 8-tuples (_DONE_LEN) in this order. And _ROWS_PER_INSERT
# rows per statement: one statement step per 100 rows instead of per row, 0.9 µs a row instead of 1.25 (measured
# on 20,000 rows; 800 parameters stay below SQLite's oldest limit of 999).
_INSERT_DONE = ("INSERT INTO records (key, idx, cost, result, start_ms, stop_ms, worker, attempts, seed, status, run) "
                "VALUES ")
_DONE_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'done', {run})"
_ROWS_PER_INSERT = 100  # 900 parameters: below SQLite's oldest limit of 999
_DONE_LEN = 9


NOT_STORED = "JournalError"
"""The error type of a failure record that stands for a result the journal could not store (too big for
SQLite, disk full...): the job succeeded and its result was delivered, so it runs again next time, even with
``rerun_failed=False``."""

_OPEN: weakref.WeakSet[JournalWriter] = weakref.WeakSet()  # this process's open writers (Journal.clear tells them)


def _value_limit(conn: sqlite3.Connection) -> int:
    """The longest string or blob ``conn`` stores (SQLite's SQLITE_MAX_LENGTH; Python 3.11 can ask for it)."""
    getlimit = getattr(conn, "getlimit", None)
    if getlimit is None:
        return 1_000_000_000  # SQLite's default, which Debian's and python.org's builds keep
    return int(getlimit(0))  # 0 is SQLITE_LIMIT_LENGTH, a name the sqlite3 module has since Python 3.11


class JournalWarning(RuntimeWarning):
    """A result was not journaled, or a journaled one could not be read back (its job runs again)."""


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
        attempts: how many times it was started (more than 1 if a worker died under it, or ``retry_on``
            retried it).
        run: the run that wrote the record (see ``Journal.runs()``).
        seed: the job's seed (``Scheduler(seed=...)``), or None.
        cwd: for a failed job, the scheduler's working directory when it failed (``Journal.rerun_here``).
    """

    __slots__ = ("key", "index", "cost", "status", "start_ms", "stop_ms", "worker", "attempts", "run",
                 "_result_bytes", "_error_fields", "_value", "seed", "call_bytes", "cwd")

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
        self.seed: int | None = None
        self.call_bytes: bytes | None = None  # a failed job's call, pickled as it was sent
        self.cwd: str | None = None

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> JournalRecord:
        key, idx, cost, status, result, etype, emsg, etb, start, stop, worker, attempts, run = row[:13]
        errors = (etype or "", emsg or "", etb or "") if status == "failed" else None
        record = cls(key, idx, cost, status, result, errors, start, stop, worker, attempts, run)
        if len(row) > 13:
            record.seed, record.call_bytes, record.cwd = row[13:16]
        return record

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
        return job_error(*self._error_fields, self.index, self.attempts or 1)

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
            return job_error(*self._error_fields, index, self.attempts or 1), True
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
    ``flush_when_due(now)`` finds it due, and ``lookup()``, which reads one row for a job that is skipped.
    """

    def __init__(self, path: str, conn: sqlite3.Connection, run: int, done: dict[str, bool], rowids: dict[str, int],
                 *, rerun_failed: bool, flush_interval: float, flush_batch: int, busy_timeout: float) -> None:
        self.path = path
        self.run = run
        self.rerun_failed = rerun_failed
        self.flush_interval = flush_interval
        self.flush_batch = flush_batch
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = conn
        self._known = done  # key -> True if done, False if failed (failed keys only if rerun_failed=False)
        self._rowid = rowids  # key -> the rowid of its record in the file, where known (lookup reads it)
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._recorded_at: dict[str, float] = {}  # key -> time.time() its pending row was recorded (_changes)
        self._seen_change = 0.0  # the latest clear or forget in the file that flush() has applied
        self._oldest: float | None = None  # time.monotonic() of the oldest unwritten result
        self._lock = threading.Lock()
        values = _DONE_VALUES.format(run=int(run))
        self._insert_done = _INSERT_DONE + values
        self._insert_done_many = _INSERT_DONE + ", ".join([values] * _ROWS_PER_INSERT)
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
            known, rowids = _retry(path, conn, lambda: _read_keys(conn), busy_timeout)
        except sqlite3.DatabaseError as exc:  # damage that only a writer's recovery of the -wal shows
            conn.close()
            raise JournalError(f"the journal {path} is damaged ({exc}); restore it from a copy, or delete it "
                               "(its jobs run again) or choose another path") from exc
        except BaseException:
            conn.close()
            raise
        if rerun_failed:
            known = {key: True for key, done in known.items() if done}
        writer = cls(path, conn, run, known, rowids, rerun_failed=rerun_failed, flush_interval=flush_interval,
                     flush_batch=flush_batch, busy_timeout=busy_timeout)
        _OPEN.add(writer)
        IN_USE[path] = IN_USE.get(path, 0) + 1
        return writer

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
        if key not in self._known:  # most jobs, at once (a dict read needs no lock; a miss is never wrong here)
            return None
        with self._lock:
            status = self._known.get(key)
            if status is None:
                return None
            row = self._pending.get(key)
            if row is not None and len(row) == _DONE_LEN:  # a buffered success: every column
                key, index, cost, result, start_ms, stop_ms, worker, attempts, seed = row
                row = (key, index, cost, "done", result, None, None, None, start_ms, stop_ms, worker, attempts,
                       self.run, seed, None, None)
            elif row is not None and status:
                row = None  # a buffered failure does not replace the success in the file
            if row is None:
                row = self._read_record(key)
            if row is None:  # forgotten by another process since this one opened the journal
                del self._known[key]
                return None
        record = JournalRecord._from_row(row)
        if record.status == "failed" and (self.rerun_failed or row[5] == NOT_STORED):
            return None  # a result that could not be stored is no failure to replay: the job runs again
        if record.status == "done":
            try:
                record.result  # noqa: B018  # unpickled now, and kept: outcome() hands it over
            except JournalError as exc:
                job = f"job {index}" if index is not None else "a job"
                warnings.warn(f"{exc}; {job} runs again", JournalWarning, stacklevel=2)
                return None
        return record

    def _read_record(self, key: str) -> tuple[Any, ...] | None:
        """The record of ``key`` in the file: by its rowid where known, else by a scan (records has no index)."""
        conn = self._conn
        if conn is None:
            raise JournalError(f"the journal {self.path} is closed")
        rowid = self._rowid.get(key)
        if rowid is not None:
            row = conn.execute(f"SELECT {_ROW} FROM records WHERE rowid = ?", (rowid,)).fetchone()
            if row is not None and row[0] == key:
                return tuple(row)
            del self._rowid[key]  # deleted meanwhile (Journal.forget in another process)
        row = conn.execute(_BY_KEY.format(columns=_ROW), (key,)).fetchone()
        return None if row is None else tuple(row)

    def record_done(self, key: str, index: int, cost: float, result: bytes | bytearray | memoryview,
                    start_ms: float, stop_ms: float, worker: int | None, attempts: int = 1,
                    seed: int | None = None) -> None:
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
            seed: the job's seed, if it had one.
        """
        row = (key, index, cost, bytes(result), start_ms, stop_ms, worker, attempts, seed)  # _DONE_LEN, _INSERT_DONE
        with self._lock:
            self._pending[key] = row
            self._recorded_at[key] = time.time()
            self._known[key] = True
            if self._oldest is None:
                self._oldest = time.monotonic()

    def record_failed(self, key: str, index: int, cost: float, error: JobError, start_ms: float, stop_ms: float,
                      worker: int | None, attempts: int = 1, seed: int | None = None, call: bytes | None = None,
                      cwd: str | None = None) -> None:
        """Buffer a failed job's error (its type, message and traceback), its seed, call and working directory.

        A failure never replaces a success recorded for the same key. The scheduler should not record a
        job that the user cancelled: that is not the job's result.
        """
        row = (key, index, cost, "failed", None, error.remote_type, error.remote_message, error.remote_traceback,
               start_ms, stop_ms, worker, attempts, self.run, seed, call, cwd)
        with self._lock:
            previous = self._pending.get(key)
            if previous is not None and len(previous) == _DONE_LEN:
                return
            self._pending[key] = row
            self._recorded_at[key] = time.time()
            if not self.rerun_failed and key not in self._known:
                self._known[key] = False
            if self._oldest is None:
                self._oldest = time.monotonic()

    def record_value(self, key: str, index: int, cost: float, result: Any, start_ms: float, stop_ms: float,
                     worker: int | None, attempts: int = 1, seed: int | None = None) -> bool:
        """Pickle ``result`` and buffer it, for a backend that hands over values rather than bytes.

        Returns:
            True if it was journaled; False if it cannot be pickled: a ``JournalWarning`` names the job,
            and the caller delivers the result anyway.
        """
        try:
            data = pickle.dumps(result, 5)
        except Exception:
            try:
                from .._data.pickling import dumps

                data = dumps(result, f"the result of job {index}")
            except TypeError as exc:
                warnings.warn(f"the result of job {index} (key {key}) is delivered but not journaled: {exc}",
                              JournalWarning, stacklevel=2)
                return False
        self.record_done(key, index, cost, data, start_ms, stop_ms, worker, attempts, seed)
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

    def flush_when_due(self, now: float) -> float | None:
        """``flush()`` if ``flush_due(now)``; return ``next_flush_in(now)`` otherwise (None: nothing waits)."""
        oldest = self._oldest
        if oldest is None:
            return None
        if len(self._pending) >= self.flush_batch or now - oldest >= self.flush_interval:
            self.flush()
            return None
        return oldest + self.flush_interval - now

    def flush_due(self, now: float) -> bool:
        """Whether results have waited long enough, or are many enough, to be written now."""
        oldest = self._oldest
        return oldest is not None and (len(self._pending) >= self.flush_batch or now - oldest >= self.flush_interval)

    def flush(self) -> None:
        """Write every buffered result in one transaction (waiting out another process's lock).

        Buffered results that a ``Journal.clear()`` or ``forget()`` made since they were recorded covers are
        dropped first, in the same transaction (``_journaling.changes``). A result the journal cannot store
        (over SQLite's size limit, disk full, an I/O error) fails only its own record: the batch is written
        row by row, and such a row becomes a failure record of type ``NOT_STORED`` naming the cause (or, if
        even that cannot be written, only a ``JournalWarning``); its job runs again next time.

        Raises:
            JournalError: the journal stayed locked for ``busy_timeout`` seconds (the results stay buffered,
                and the next flush tries again), or it is closed.
        """
        with self._lock:
            if not self._pending:
                return
            conn = self._conn
            if conn is None:
                raise JournalError(f"the journal {self.path} is closed; results cannot be recorded any more")

            def write() -> tuple[list[tuple[Any, ...]], int, int]:
                conn.execute("BEGIN IMMEDIATE")
                self._apply_changes(conn)
                rows = list(self._pending.values())
                first, last = self._insert(conn, rows)
                conn.execute("COMMIT")
                return rows, first, last

            try:
                rows, first, last = _retry(self.path, conn, write, self.busy_timeout)
            except (sqlite3.Error, JournalError) as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _locked(exc):
                    raise
                self._write_apart(conn)
                return
            done = [row for row in rows if len(row) == _DONE_LEN]
            # SQLite gives a new row max(rowid) + 1, and this transaction held the write lock: the batch's
            # successes are first, first + 1, ... (lookup reads them by rowid). Checked, never assumed.
            if last == first + len(rows) - 1:
                self._rowid.update(zip([row[0] for row in done], itertools.count(first)))
            else:
                for row in done:
                    self._rowid.pop(row[0], None)
            for row in rows:  # a newer failure: read by key (a success, known, stays the record)
                if len(row) != _DONE_LEN and self._known.get(row[0]) is not True:
                    self._rowid.pop(row[0], None)
            self._pending.clear()
            self._recorded_at.clear()
            self._oldest = None
            self.n_written += len(rows)

    def _insert(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> tuple[int, int]:
        """Insert ``rows`` (successes first, in order) in the open transaction; return the first and last rowid."""
        done = [row for row in rows if len(row) == _DONE_LEN]
        failed = [row for row in rows if len(row) != _DONE_LEN]
        first = conn.execute("SELECT ifnull(max(rowid), 0) + 1 FROM records").fetchone()[0]
        whole = len(done) - len(done) % _ROWS_PER_INSERT
        if whole:  # in order: the rowids below follow the rows
            flat = list(itertools.chain.from_iterable(done[:whole]))
            step = _DONE_LEN * _ROWS_PER_INSERT
            conn.executemany(self._insert_done_many, [flat[i:i + step] for i in range(0, len(flat), step)])
        conn.executemany(self._insert_done, done[whole:])
        if failed:
            conn.executemany(_INSERT, failed)
        last = conn.execute("SELECT max(rowid) FROM records").fetchone()[0]
        return int(first), int(last or 0)

    def _write_apart(self, conn: sqlite3.Connection) -> None:
        """Write the buffered rows one transaction each, after the batch failed: a row that cannot be stored
        becomes a ``NOT_STORED`` failure record (or a warning), and the others are written as usual."""
        for key, row in list(self._pending.items()):
            if key not in self._pending:  # cleared or forgotten meanwhile
                continue

            def one(rows: list[tuple[Any, ...]], key: str = key) -> None:
                conn.execute("BEGIN IMMEDIATE")
                self._apply_changes(conn)
                if key in self._pending:  # not cleared meanwhile
                    self._insert(conn, rows)
                conn.execute("COMMIT")

            try:
                _retry(self.path, conn, lambda row=row: one([row]), self.busy_timeout)
            except (sqlite3.Error, JournalError) as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _locked(exc):
                    raise  # the rows not written yet stay buffered
                self._not_stored(conn, row, exc, one)
            self._pending.pop(key, None)
            self._recorded_at.pop(key, None)
            self._rowid.pop(key, None)
            self.n_written += 1
        if not self._pending:
            self._oldest = None

    def _not_stored(self, conn: sqlite3.Connection, row: tuple[Any, ...], exc: BaseException,
                    write: Any) -> None:
        """Record that ``row``'s result could not be stored: a failure record naming the cause, and a warning."""
        key, index = row[0], row[1]
        cause = exc.__cause__ if isinstance(exc, JournalError) and exc.__cause__ is not None else exc
        size = f", {len(row[3]):,} bytes pickled" if len(row) == _DONE_LEN else ""
        limit = _value_limit(conn)
        reason = f"{type(cause).__name__}: {cause}"
        if len(row) == _DONE_LEN and len(row[3]) > limit:  # Python 3.10's sqlite3 names this "unsupported type"
            reason = f"too big: SQLite stores at most {limit:,} bytes in one value ({reason})"
        message = (f"the result of job {index} (key {key}{size}) could not be stored in the journal "
                   f"{self.path}: {reason}; it was delivered, and the job runs again next time")
        if len(row) == _DONE_LEN:
            _key, _index, cost, _result, start_ms, stop_ms, worker, attempts, seed = row
        else:
            cost, start_ms, stop_ms, worker, attempts, seed = row[2], row[8], row[9], row[10], row[11], row[13]
        failure = (key, index, cost, "failed", None, NOT_STORED, message, "", start_ms, stop_ms, worker, attempts,
                   self.run, seed, None, None)
        try:
            _retry(self.path, conn, lambda: write([failure]), self.busy_timeout)
        except (sqlite3.Error, JournalError) as again:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            message += f" (not even this failure could be recorded there: {again})"
        self._known.pop(key, None)  # the file holds no result to serve: the job runs again
        warnings.warn(message, JournalWarning, stacklevel=3)

    def _apply_changes(self, conn: sqlite3.Connection) -> None:
        """In a flush's transaction: drop buffered rows that a clear or forget since they were recorded covers."""
        changed = _changes.changed_at(conn)
        if changed > self._seen_change:
            cleared, forgotten = _changes.since(conn, self._seen_change)
            self._drop(cleared, forgotten)
            self._seen_change = changed

    def _drop(self, cleared: float | None, forgotten: dict[str, float]) -> set[str]:
        """Drop the buffered rows recorded at or before ``cleared``, or before their key's time in ``forgotten``,
        and forget those keys as done; return the keys of the rows dropped. Called with the lock held."""
        dropped = set()
        for key, at in list(self._recorded_at.items()):
            if (cleared is not None and at <= cleared) or at <= forgotten.get(key, -1.0):
                del self._pending[key], self._recorded_at[key]
                dropped.add(key)
        for key in (self._known if cleared is not None else forgotten).copy():
            if key not in self._pending:
                self._known.pop(key, None)
                self._rowid.pop(key, None)
        if not self._pending:
            self._oldest = None
        return dropped

    def discard_buffered(self, keys: list[str] | None, at: float) -> set[str]:
        """Drop the buffered results that ``Journal.clear()`` (``keys`` None) or ``forget(keys)``, committed at
        ``at`` (``time.time()``) in this process, covers; return their keys.

        The next flush would drop them too (``_journaling.changes``); doing it at once keeps a ``lookup`` in
        the meantime from serving them.
        """
        with self._lock:
            return self._drop(at if keys is None else None, {} if keys is None else dict.fromkeys(keys, at))

    def close(self) -> None:
        """Flush, mark the run finished and close the file. Idempotent."""
        try:
            self.flush()
        finally:
            _OPEN.discard(self)
            with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    IN_USE[self.path] -= 1
                    if not IN_USE[self.path]:
                        del IN_USE[self.path]
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


def _locked(exc: BaseException) -> bool:
    """Whether a flush failed because another process held the journal's lock for ``busy_timeout`` seconds."""
    return isinstance(exc, JournalError) and "stayed locked" in str(exc)


def discard_buffered(path: str, keys: list[str] | None, at: float) -> set[str]:
    """Tell this process's writers of ``path`` about a clear or forget committed at ``at``; return the keys whose
    buffered results they dropped (see ``JournalWriter.discard_buffered``)."""
    dropped: set[str] = set()
    for writer in list(_OPEN):
        if writer.path == path:
            dropped |= writer.discard_buffered(keys, at)
    return dropped
