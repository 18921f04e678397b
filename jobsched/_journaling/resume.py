"""The scheduler's side of ``Scheduler(journal=PATH)``: keys, lookups that skip jobs, recording, flushing.

::

    caller's thread (add_job / submit)                 the loop's thread (Engine)
    key_of(data, key=) ── derive_key / normalize_key   on_result(w, entry, kind, body, result)
    lookup(key) ── a journaled outcome? ──> state.add_settled   └─> record_done / record_failed (a buffer)
        (the job is not queued; the loop delivers it)          flush_when_due(now)       and at the loop's end
                                                                close(): flush, mark the run finished

    any thread (Scheduler.cancel, future.cancel) ── on_cancel(entry, worker) ──> a list, written on the loop's
        next turn (flush_when_due) and at close(), in the journal's cancellations table (_journal_cancels)

Keys are computed only when a journal is on: a scheduler without one pays nothing. A job cancelled by the
user is not journaled as a result (that is not its result: it runs again next time), but its cancel is kept
for the report; a job whose worker died too often, or that timed out, is journaled as failed like any other
``JobError``, so ``rerun_failed=False`` keeps it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from .._core.backend import RESULT as _RESULT
from .._data import shm as _shm
from .._keys.derive import derive_key, normalize_key
from ..errors import JobCancelled, JobError
from . import cancels as _journal_cancels
from .file import BUSY_TIMEOUT, _connect, _retry
from .writer import JournalWarning, JournalWriter

if TYPE_CHECKING:
    from .._core.slot import Worker
    from .._core.state import Entry



class Resume:
    """A scheduler's journal: made by ``Resume.open`` in ``Scheduler.__init__``, before any job runs.

    Args:
        writer: the open ``JournalWriter``.
    """

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer
        self.path = writer.path
        self._cancels: list[tuple[Any, ...]] = []  # JournalCancellation rows not written yet
        self._cancels_lock = threading.Lock()  # on_cancel runs in callers' threads, the writing in the loop's
        self._cancels_conn: sqlite3.Connection | None = None  # opened by the first cancel written

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, rerun_failed: bool) -> Resume:
        """Open (or create) the journal at ``path`` for a new run.

        Raises:
            TypeError: ``path`` is not a path.
            JournalError: the file cannot be a journal (missing folder, read-only, not a journal, newer
                schema); the message names the path and the fix, and the file is left untouched.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Scheduler: journal must be a file path (str or os.PathLike), got "
                            f"{type(path).__name__}: {path!r}")
        return cls(JournalWriter.open(path, rerun_failed=rerun_failed))

    @staticmethod
    def key_of(data: Any, key: object) -> str:
        """Return the job's key: ``key`` normalised, or one derived from ``data``.

        Raises:
            UnkeyableError: ``data`` cannot be keyed stably (the message asks for ``key=``).
            TypeError: ``key`` is not a str, an int or a tuple of them.
        """
        return derive_key(data) if key is None else normalize_key(key)

    def lookup(self, key: str) -> tuple[Any, bool] | None:
        """Return ``(result, failed)`` if the journal settles job ``key`` (it is then not run), else None."""
        record = self.writer.lookup(key)
        return None if record is None else record.outcome()

    def on_result(self, w: Worker | None, entry: Entry, kind: int | None, body: Any, result: Any) -> None:
        """Record a job's outcome (the loop's thread): the worker's bytes for a result, or the ``JobError``.

        Args:
            w: the worker that ran it last (None if it is not known).
            entry: the job; its ``job.stop_ms`` is when the result came, or when the scheduler decided.
            kind: ``_local.wire.RESULT`` (``body`` is the pickled result), ``_local.wire.ERROR`` (the job raised, or its
                result cannot be unpickled here: ``result`` is the ``JobError``), or None for a failure that
                the scheduler decided (it timed out, its worker died too often: ``result`` is its ``JobError``).
            body: the frame's body.
            result: the decoded result or ``JobError``.
        """
        key = entry.key
        if key is None or entry.cancelled or entry.from_journal or isinstance(result, JobCancelled):
            return
        job = entry.job
        worker = w.index if w is not None else None
        ended = entry.attempts  # deaths, and errors that retry_on retried
        # Every death was a start; a result (or an error the job raised) came from one more start, while a
        # failure the scheduler decided ended with the last death (a timeout's kill is a death too).
        attempts = 1 + ended if kind is not None else max(1, ended)
        seed = entry.seed
        if kind == _RESULT:
            if isinstance(body, (bytes, bytearray, memoryview)) and not _shm.is_oob(body):
                self.writer.record_done(key, entry.index, entry.cost, body, job.start_ms, job.stop_ms, worker,
                                        attempts, seed)
            else:  # values, or segments gone once read (_shm): pickled here, or a warning names the job
                self.writer.record_value(key, entry.index, entry.cost, result, job.start_ms, job.stop_ms, worker,
                                         attempts, seed)
        elif isinstance(result, JobError):
            payload = entry.payload  # the call as it was sent, for rerun_here (not data in shared memory)
            call = bytes(payload) if isinstance(payload, (bytes, bytearray)) and not _shm.is_oob(payload) else None
            self.writer.record_failed(key, entry.index, entry.cost, result, job.start_ms, job.stop_ms, worker,
                                      attempts, seed, call, os.getcwd())

    def on_cancel(self, entry: Entry, worker: int | None) -> None:
        """Note a job that the user cancelled (any thread): not a result, an event for the report.

        Args:
            entry: the job.
            worker: the slot of the worker that held it, or None if it was cancelled while queued.
        """
        key = entry.key
        if key is None or entry.from_journal:
            return
        job = entry._job
        start = job.start_ms if worker is not None and job is not None and job.start_ms else None
        row = (key, entry.index, entry.cost, start, time.time() * 1000.0, worker, self.writer.run)
        with self._cancels_lock:
            self._cancels.append(row)

    def flush_when_due(self, now: float) -> float | None:
        """Flush if it is due; return the seconds until the next flush is due (None: nothing waits).

        Called on every turn of the loop: two calls and two attribute reads while nothing waits.
        """
        if self._cancels:
            self.flush()
            return None
        return self.writer.flush_when_due(now)

    def flush(self) -> None:
        """Write the buffered results now (one transaction), then the cancels noted since the last flush."""
        self.writer.flush()
        if self._cancels:
            self._write_cancels()

    def _write_cancels(self) -> None:
        """Write the noted cancels; a failure is a warning: they only feed the report, never what runs."""
        with self._cancels_lock:
            rows, self._cancels = self._cancels, []
        if not rows:
            return
        try:
            conn = self._cancels_conn
            if conn is None:
                conn = self._cancels_conn = _connect(self.path)
            _retry(self.path, conn, lambda: _journal_cancels.write(conn, rows), BUSY_TIMEOUT)
        except Exception as exc:
            warnings.warn(f"{len(rows)} cancelled job(s) could not be noted in the journal {self.path} (its report "
                          f"will not show them): {exc}", JournalWarning, stacklevel=2)

    def close(self) -> None:
        """Flush and close the file. Idempotent; a failure is a warning (``close()`` must not raise)."""
        try:
            self._write_cancels()
            self.writer.close()
        except Exception as exc:
            warnings.warn(f"the journal {self.path} could not be closed cleanly: {exc}", JournalWarning,
                          stacklevel=2)
        finally:
            conn, self._cancels_conn = self._cancels_conn, None
            if conn is not None:
                conn.close()


__all__ = ["Resume"]
