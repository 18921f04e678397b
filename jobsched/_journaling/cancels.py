"""Cancelled jobs in the results journal: a table of their own, for the report, never a result.

A cancel is not the job's result: a cancelled job is not a record (``records`` holds results only), so it
runs again next time. But a report of a run that does not show the jobs cancelled in it misreads the run,
so each cancel is kept as an event in a table of its own::

    Scheduler.cancel / future.cancel / Executor.shutdown(cancel_futures=True)   (the caller's thread)
        └─ Resume.on_cancel ──> a list ──(the loop's next turn, or close())──> write(): one transaction
    Journal(path).cancelled(), .plot(), python -m jobsched.journal ──> read()

**Old and new files.** The table is created by the first cancel that a run journals (``CREATE TABLE IF NOT
EXISTS``), in a file of schema 1 as before: the schema version is not bumped, because nothing an older
jobsched reads or writes changes. An older jobsched opens such a file as it always did, ignores the table
(its report shows no cancels, as before) and its ``clear()`` leaves the table's rows; this jobsched reads a
file without the table as a file with no cancel. A version bump would have made older versions refuse files
that they can use in full.

**Durability.** Cancels are written on the loop's next turn and at ``close()``, in their own transaction:
a SIGKILL may lose the last ones. They do not decide what runs, only what the report shows.
"""

from __future__ import annotations

import sqlite3
from typing import Any

TABLE = """
CREATE TABLE IF NOT EXISTS cancellations (
    key TEXT NOT NULL,
    idx INTEGER,
    cost REAL,
    start_ms REAL,
    stop_ms REAL NOT NULL,
    worker INTEGER,
    run INTEGER
)
"""

_COLUMNS = "key, idx, cost, start_ms, stop_ms, worker, run"


class JournalCancellation:
    """A job cancelled in a run (not a result: the job runs again next time).

    Attributes:
        key: the job's key.
        index: its index in the run.
        cost: its cost.
        start_ms: wall-clock milliseconds when it was sent to a worker; None if it was cancelled while queued.
        stop_ms: wall-clock milliseconds when it was cancelled.
        worker: the worker slot that held it; None if it was cancelled while queued.
        run: the run it was cancelled in (see ``Journal.runs()``).
    """

    __slots__ = ("key", "index", "cost", "start_ms", "stop_ms", "worker", "run")

    def __init__(self, key: str, index: int | None, cost: float | None, start_ms: float | None, stop_ms: float,
                 worker: int | None, run: int | None) -> None:
        self.key = key
        self.index = index
        self.cost = cost
        self.start_ms = start_ms
        self.stop_ms = stop_ms
        self.worker = worker
        self.run = run

    def __repr__(self) -> str:
        return (f"JournalCancellation(key={self.key!r}, index={self.index}, start_ms={self.start_ms}, "
                f"stop_ms={self.stop_ms}, worker={self.worker}, run={self.run})")


def write(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Append ``rows`` (in ``JournalCancellation`` order), creating the table if needed; one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(TABLE)
        conn.executemany(f"INSERT INTO cancellations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def exists(conn: sqlite3.Connection) -> bool:
    """Whether the file has the table (a journal that never saw a cancel, or of an older jobsched, has not)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cancellations'").fetchone() \
        is not None


def read(conn: sqlite3.Connection) -> list[JournalCancellation]:
    """Every journaled cancel, in the order they happened."""
    if not exists(conn):
        return []
    return [JournalCancellation(*row) for row in
            conn.execute(f"SELECT {_COLUMNS} FROM cancellations ORDER BY stop_ms, rowid")]


__all__ = ["TABLE", "JournalCancellation", "exists", "read", "write"]
