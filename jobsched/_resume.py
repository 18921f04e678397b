"""The scheduler's side of ``Scheduler(journal=PATH)``: keys, lookups that skip jobs, recording, flushing.

::

    caller's thread (add_job / submit)                 the loop's thread (Engine)
    key_of(data, key=) ── derive_key / normalize_key   on_result(w, entry, kind, body, result)
    lookup(key) ── a journaled outcome? ──> state.add_settled   └─> record_done / record_failed (a buffer)
        (the job is not queued; the loop delivers it)          flush_due(now)? flush()   and at the loop's end
                                                                close(): flush, mark the run finished

Keys are computed only when a journal is on: a scheduler without one pays nothing. A job cancelled by the
user is not journaled (that is not its result); a job whose worker died too often, or that timed out, is
journaled as failed like any other ``JobError``, so ``rerun_failed=False`` keeps it.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from . import _shm, _wire
from ._journal_writer import JournalWarning, JournalWriter
from ._keys import derive_key, normalize_key
from .errors import JobCancelled, JobError

if TYPE_CHECKING:
    from ._slot import Worker
    from ._state import Entry

_RESULT = _wire.RESULT


class Resume:
    """A scheduler's journal: made by ``Resume.open`` in ``Scheduler.__init__``, before any job runs.

    Args:
        writer: the open ``JournalWriter``.
    """

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer
        self.path = writer.path

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
            kind: ``_wire.RESULT`` (``body`` is the pickled result), ``_wire.ERROR`` (the job raised, or its
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
        deaths = len(entry.deaths or ())
        # Every death was a start; a result (or an error the job raised) came from one more start, while a
        # failure the scheduler decided ended with the last death (a timeout's kill is a death too).
        attempts = 1 + deaths if kind is not None else max(1, deaths)
        if kind == _RESULT:
            if isinstance(body, (bytes, bytearray, memoryview)) and not _shm.is_oob(body):
                self.writer.record_done(key, entry.index, entry.cost, body, job.start_ms, job.stop_ms, worker,
                                        attempts)
            else:  # values, or segments gone once read (_shm): pickled here, or a warning names the job
                self.writer.record_value(key, entry.index, entry.cost, result, job.start_ms, job.stop_ms, worker,
                                         attempts)
        elif isinstance(result, JobError):
            self.writer.record_failed(key, entry.index, entry.cost, result, job.start_ms, job.stop_ms, worker,
                                      attempts)

    def next_flush_in(self, now: float) -> float | None:
        """Seconds until a flush is due (None: nothing waits)."""
        return self.writer.next_flush_in(now)

    def flush_due(self, now: float) -> bool:
        return self.writer.flush_due(now)

    def flush(self) -> None:
        """Write the buffered results now (one transaction)."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the file. Idempotent; a failure is a warning (``close()`` must not raise)."""
        try:
            self.writer.close()
        except Exception as exc:
            warnings.warn(f"the journal {self.path} could not be closed cleanly: {exc}", JournalWarning,
                          stacklevel=2)


__all__ = ["Resume"]
