"""The results journal: a SQLite file that remembers every job's result, so that a run can resume.

::

    scheduler loop thread                         JournalWriter                        runs.sqlite (WAL)
    job added ── key ──> lookup(key) ──> done (or failed, with rerun_failed=False)? ──> deliver it, skip the job
    result bytes from a worker ──> record_done / record_failed ──> buffer (a dict, no I/O)
    every loop turn: flush_when_due(now) ──> flush(): one transaction for the whole batch ──────> records
    close() ──> flush(), mark the run finished

    Journal(path)  (any process, any time) ── reads records, results(), failed(); forget(keys), clear()
    python -m jobsched.journal PATH [--failed] ── a summary
    Journal(path).plot(), python -m jobsched.journal PATH --html report.html ── the run's task timeline,
        job durations and failures over time (``_journaling.report``: inline SVG, one self-contained file)

**What is stored.** ``records`` is an append-only log with a row per outcome: the job's key, index,
cost, status (``"done"`` or ``"failed"``), the result exactly as the worker pickled it (never
re-pickled), or the error's type, message and traceback, the wall-clock start and stop times in
milliseconds, the worker slot, the number of attempts and the run that wrote it. A key's record is its
latest success, else its latest failure (a failure never replaces a success); rows that a newer one
supersedes are dropped when a writer next opens the file. ``runs`` has one row per writer (start, end,
pid, host, argv); ``meta`` says who made the file and its schema version, which is also in the SQLite
header (``application_id`` and ``user_version``), so that a file can be recognised before SQLite opens it.

**Cancelled jobs** are not records: a cancel is not the job's result, and the job runs again next time. Each
cancel is kept in a table of its own, ``cancellations`` (key, index, cost, start and stop times, worker, run),
that ``Journal.cancelled()``, the report and the summary read. The table is additive (``CREATE TABLE IF NOT
EXISTS`` on the first cancel), so the schema version stays 1: an older jobsched reads and writes such a file
as before, ignoring the table, and this one reads a file without it as one with no cancel
(``_journaling.cancels`` says more).

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
raises ``JournalError`` naming the path and the fix, leaving the file byte-identical. A finished journal on
a read-only file, folder or mount is still read (``_journaling.file.connect_reader``); writing there is
refused with advice that fits the cause (chmod for a file or folder, another place for a read-only mount).

**Clear and forget** win against results a writer still buffers, in this process or another
(``_journaling.changes``). **A result the journal cannot store** (too big, disk full) fails only its own
record (``JournalWriter.flush``): the caller has it, the run goes on, and the job runs again next time.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._core.remote_errors import job_error
from ._journaling import cancels as _journal_cancels
from ._journaling import changes as _journal_changes
from ._journaling.cancels import JournalCancellation as JournalCancellation
from ._journaling.file import (
    _BY_KEY,
    _COLUMNS,
    CURRENT,
    _check_file,
    _connect,
    _retry,
    connect_reader,
    extra_columns,
)
from ._journaling.file import APPLICATION_ID as APPLICATION_ID
from ._journaling.file import BUSY_TIMEOUT as BUSY_TIMEOUT
from ._journaling.file import SCHEMA_VERSION as SCHEMA_VERSION
from ._journaling.writer import FLUSH_BATCH as FLUSH_BATCH
from ._journaling.writer import FLUSH_INTERVAL as FLUSH_INTERVAL
from ._journaling.writer import JournalRecord as JournalRecord
from ._journaling.writer import JournalWarning as JournalWarning
from ._journaling.writer import JournalWriter as JournalWriter
from ._journaling.writer import discard_buffered
from .errors import JobError
from .errors import JournalError as JournalError

if TYPE_CHECKING:
    from ._journaling.report import RunReport

F = TypeVar("F", bound=Callable[..., Any])

# ---- the reader, for people


def key_version(version: str | int) -> Callable[[F], F]:
    """Decorate a function so that its journal key (and the key of every job that calls it) holds ``version``.

    A derived key follows a function's code, not what its code reads elsewhere (a data file, another
    module, a class's methods). When such a dependency changes, bump the version to have the journal run the
    jobs again instead of serving their old results::

        @key_version(2)          # was 1: the calibration file changed
        def simulate(seed): ...

    A function used as a same-module helper carries its version into its callers' keys too.

    Args:
        version: a str or an int; any change of it gives new keys.

    Raises:
        TypeError: ``version`` is not a str or an int.
    """
    if type(version) not in (str, int):
        raise TypeError(f"key_version: the version must be a str or an int, got {type(version).__name__}: "
                        f"{version!r:.60}")

    def mark(fn: F) -> F:
        from ._keys.cache import _wrapped_function
        from ._keys.functions import KEY_VERSION_ATTRIBUTE

        inner = _wrapped_function(fn)  # through lru_cache, functools.wraps, staticmethod...: the code's function
        if inner is None:
            raise TypeError(f"key_version: {fn!r:.80} is not a Python function; decorate a function defined with def")
        setattr(inner[0], KEY_VERSION_ATTRIBUTE, version)
        return fn

    return mark


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
        return connect_reader(self.path)  # a read-only file, folder or mount too

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = self._read()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc
        finally:
            conn.close()

    def __len__(self) -> int:
        """The number of records (done and failed): one per key."""
        return int(self._query("SELECT COUNT(DISTINCT key) FROM records")[0][0])

    def __iter__(self) -> Iterator[JournalRecord]:
        """Iterate over the records in the order they were first written; results are unpickled on access."""
        conn = self._read()
        try:
            for row in conn.execute(f"SELECT {_COLUMNS}, {extra_columns(conn)} FROM {CURRENT} ORDER BY seq"):
                yield JournalRecord._from_row(row)
        finally:
            conn.close()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._query("SELECT 1 FROM records WHERE key = ?", (key,)))

    def get(self, key: str) -> JournalRecord | None:
        """Return the record of ``key``, or None."""
        conn = self._read()
        try:
            row = conn.execute(_BY_KEY.format(columns=f"{_COLUMNS}, {extra_columns(conn)}"), (key,)).fetchone()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc
        finally:
            conn.close()
        return JournalRecord._from_row(tuple(row)) if row is not None else None

    def rerun_here(self, key_or_index: str | int, *, debug: bool = True) -> Any:
        """Run a failed job's call in this process, with its arguments, seed and working directory.

        Works in a new process, after the scheduler (or the kernel) that ran the job is gone. Returns the
        result if the call succeeds here; if it raises, the post-mortem debugger opens at the frame that
        raised (``pdb``, or IPython's ``%debug`` in a kernel; ``debug=False``: none), then the job's own
        exception is raised, with its own type.

        Args:
            key_or_index: the job's key (str), or its index (int) in the latest run that recorded it.
            debug: open the post-mortem debugger on failure.

        Raises:
            KeyError: no such job in the journal.
            ValueError: the job succeeded (its result is ``Journal(path).get(key).result``), or the journal
                keeps no call for it (written by an older jobsched, or data passed through shared memory).
            RuntimeError: its function can no longer be loaded here.
        """
        record = self._find(key_or_index)
        if record.status == "done":
            raise ValueError(f"rerun_here: job {key_or_index!r} succeeded; its result is "
                             f"Journal(path).get({record.key!r}).result")
        if record.call_bytes is None:
            raise ValueError(f"rerun_here: the journal {self.path} keeps no call for job {key_or_index!r} (written "
                             "by an older jobsched, or its data went through shared memory); run it again with "
                             "this version to record it")
        from .worker.rerun import rerun_here

        return rerun_here(record.call_bytes, record.seed, record.cwd, f"job {key_or_index!r}", debug=debug)

    def _find(self, key_or_index: str | int) -> JournalRecord:
        if isinstance(key_or_index, str):
            record = self.get(key_or_index)
        elif isinstance(key_or_index, int) and not isinstance(key_or_index, bool):
            matches = [r for r in self if r.index == key_or_index]
            record = max(matches, key=lambda r: r.run or 0) if matches else None
        else:
            raise TypeError(f"rerun_here: give a job's key (str) or index (int), got {type(key_or_index).__name__}")
        if record is None:
            raise KeyError(f"rerun_here: no job {key_or_index!r} in the journal {self.path}; list its failed jobs "
                           "with Journal(path).failed()")
        return record

    def results(self) -> dict[str, Any]:
        """Return ``{key: result}`` for every done job, in the order they were written.

        Raises:
            JournalError: a result cannot be unpickled here (the message names its key).
        """
        # Every success in order: a later one of the same key overwrites the earlier in the dict.
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
        rows = self._query(f"SELECT key, idx, error_type, error_message, error_traceback, attempts FROM {CURRENT} "
                           "WHERE status = 'failed' ORDER BY seq")
        return {key: job_error(etype or "", emsg or "", etb or "", idx, attempts or 1)
                for key, idx, etype, emsg, etb, attempts in rows}

    def cancelled(self) -> list[JournalCancellation]:
        """Return the jobs cancelled in the runs of this journal, in the order they were cancelled.

        A cancelled job has no record (a cancel is not its result: it runs again next time); this is the
        list of cancels, for the report. ``start_ms`` and ``worker`` are None for a job cancelled while queued.
        """
        conn = self._read()
        try:
            return _journal_cancels.read(conn)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc
        finally:
            conn.close()

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

    def plot(self) -> RunReport:
        """Return the report of the run(s) in this journal: the task timeline (a lane per worker, a bar per job
        coloured by outcome, as on the dashboard), a histogram of job durations and the failures over time.
        Cancelled jobs are drawn too (from ``cancelled()``): a job cancelled while it ran on its worker's lane,
        one cancelled while queued as a mark at the time of the cancel on the ``w?`` lane.

        A notebook shows it (``_repr_html_``); ``.html()`` is a self-contained page, ``.save(path)`` writes it.
        """
        from ._journaling.report import report

        return report(self)

    def forget(self, keys: str | int | tuple[Any, ...] | Iterable[object]) -> int:
        """Delete the records of ``keys``, so that their jobs run again; return how many were deleted.

        Results of those keys that a running scheduler received before the call but had not written yet are
        dropped too: they never reappear.

        Args:
            keys: one key as ``key=`` accepts it (a str, an int, a tuple of them: a tuple is *one* key),
                or a list, set or other iterable of keys.
        """
        from ._keys.derive import normalize_key

        single = isinstance(keys, (str, int, tuple))
        keyed = [normalize_key(keys)] if single else [normalize_key(k) for k in keys]  # type: ignore[union-attr]

        def delete(conn: sqlite3.Connection, at: float) -> set[str]:
            # records has no index on key: one pass over it for all the keys, not one per key.
            conn.execute("CREATE TEMP TABLE forgotten (key TEXT PRIMARY KEY)")
            conn.executemany("INSERT OR IGNORE INTO forgotten VALUES (?)", [(k,) for k in keyed])
            chosen = "WHERE key IN (SELECT key FROM forgotten)"
            deleted = {key for (key,) in conn.execute(f"SELECT DISTINCT key FROM records {chosen}")}
            conn.execute(f"DELETE FROM records {chosen}")
            if _journal_cancels.exists(conn):
                conn.execute(f"DELETE FROM cancellations {chosen}")
            _journal_changes.note(conn, keyed, at)  # results still buffered by a running writer stay forgotten
            return deleted

        return self._write(delete, keyed)

    def clear(self) -> int:
        """Delete every record (and every cancel), so that every job runs again; return how many records were
        deleted.

        Results that a running scheduler (in this process or another) received before the call but had not
        written yet are dropped too: they never reappear. The list of runs is kept.
        """
        def delete(conn: sqlite3.Connection, at: float) -> set[str]:
            deleted = {key for (key,) in conn.execute("SELECT DISTINCT key FROM records")}
            conn.execute("DELETE FROM records")
            if _journal_cancels.exists(conn):
                conn.execute("DELETE FROM cancellations")
            _journal_changes.note(conn, None, at)
            return deleted

        return self._write(delete, None)

    def _write(self, change: Callable[[sqlite3.Connection, float], set[str]], keys: list[str] | None) -> int:
        """Run ``change`` in one transaction, then drop what this process's writers hold of the same keys;
        return how many keys lost their record, written or still buffered."""
        _check_file(self.path, writing=True)
        conn = _connect(self.path)
        try:
            def work() -> tuple[set[str], float]:
                conn.execute("BEGIN IMMEDIATE")
                at = time.time()  # taken under the write lock: after every flush before, before every one after
                deleted = change(conn, at)
                conn.execute("COMMIT")
                return deleted, at

            deleted, at = _retry(self.path, conn, work, BUSY_TIMEOUT)
        finally:
            conn.close()
        return len(deleted | discard_buffered(self.path, keys, at))

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"


# ---- python -m jobsched.journal PATH [--failed]


def summary(journal: Journal, *, failed: bool = False, n_slowest: int = 5) -> str:
    """Return the text that ``python -m jobsched.journal`` prints."""
    import json

    by_status = dict(journal._query(f"SELECT status, COUNT(*) FROM {CURRENT} GROUP BY status"))
    per_run: dict[int, dict[str, int]] = {}
    for run, status, n in journal._query(f"SELECT run, status, COUNT(*) FROM {CURRENT} GROUP BY run, status"):
        per_run.setdefault(run, {})[status] = n
    n_done, n_failed = by_status.get("done", 0), by_status.get("failed", 0)
    lines = [f"{journal.path}: {n_done + n_failed} records: {n_done} done, {n_failed} failed"]
    cancelled = journal.cancelled()
    if cancelled:
        lines.append(f"and {len(cancelled)} job(s) cancelled (not results: they run again next time)")
    cancels_per_run = Counter(c.run for c in cancelled)
    runs = journal.runs()
    if runs:
        lines.append("")
        lines.append(f"{'run':>5}  {'started':19}  {'state':9}  {'pid':>7}  {'host':12}  {'done':>7}  "
                     f"{'failed':>7}  {'cancelled':>9}  command")
        for r in runs:
            counts = per_run.get(r.run, {})
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
            state = "finished" if r.finished is not None else "running?"  # or killed: no end was written
            command = " ".join(r.argv) if isinstance(r.argv, list) else json.dumps(r.argv)
            lines.append(f"{r.run:>5}  {started:19}  {state:9}  {r.pid:>7}  {r.host[:12]:12}  "
                         f"{counts.get('done', 0):>7}  {counts.get('failed', 0):>7}  {cancels_per_run[r.run]:>9}  "
                         f"{command}")
    slowest = journal._query(f"SELECT key, idx, stop_ms - start_ms AS ms, worker, status, run FROM {CURRENT} "
                             "WHERE start_ms IS NOT NULL AND stop_ms IS NOT NULL ORDER BY ms DESC LIMIT ?",
                             (n_slowest,))
    if slowest:
        lines += ["", "slowest jobs:"]
        for key, idx, ms, worker, status, run in slowest:
            lines.append(f"  {ms:>12.1f} ms  job {idx}  worker {worker}  run {run}  {status:6}  key {key}")
    errors = journal._query(f"SELECT key, idx, error_type, error_message, error_traceback, run FROM {CURRENT} "
                            "WHERE status = 'failed' ORDER BY seq")
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
    """``python -m jobsched.journal PATH [--failed] [--html REPORT]``: print a summary; 2 if unreadable."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobsched.journal",
                                     description="Summarise a jobsched results journal.")
    parser.add_argument("path", help="the journal file (Scheduler(journal=PATH))")
    parser.add_argument("--failed", action="store_true", help="list every failed job with its traceback")
    parser.add_argument("--html", metavar="REPORT", help="also write the run's timeline, job durations and "
                        "failures over time to this HTML file (one self-contained file)")
    args = parser.parse_args(argv)
    try:
        journal = Journal(args.path)
        print(summary(journal, failed=args.failed))
        if args.html:
            journal.plot().save(args.html)
            print(f"report written to {args.html}")
    except JournalError as exc:
        print(f"python -m jobsched.journal: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
