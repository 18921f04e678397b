"""Clears and forgets that win against results a writer still holds in memory.

A ``JournalWriter`` buffers results for up to ``flush_interval`` seconds before it writes them. A
``Journal(path).clear()`` or ``forget(keys)`` made meanwhile, in any process, must not be undone by that
later write: what was delivered before the clear stays cleared. So each clear and forget notes its time in
the file, in the same transaction as its deletion, and each flush reads the notes first, in its own
transaction, and drops the buffered rows recorded at or before them::

    Journal.clear() / forget(keys) ── BEGIN; DELETE the records; note(conn, keys, at) ── COMMIT
        meta: changed_at (any change), cleared_at (the last clear); forgotten_keys (key, at), for forgets
    JournalWriter.flush() ── BEGIN; since(conn, seen) ──> drop the rows recorded at or before them ── INSERT; COMMIT

SQLite serialises the two transactions, so either the flush comes first (and the clear deletes what it
wrote) or the clear does (and the flush drops what it would have written). Times are wall-clock
(``time.time()``), as they must be between processes of one machine. A writer in the clearing process is
also told at once (``writer.discard_buffered``), so a lookup before its next flush does not serve a cleared
result either.

``forgotten_keys`` is additive (``CREATE TABLE IF NOT EXISTS``), like ``cancellations``: an older jobsched
ignores it. A forget writes its keys there only while some run is unfinished (a writer may hold results), and
drops the notes that no running writer can need any more: older than every unfinished run's start, or a day.
"""

from __future__ import annotations

import sqlite3

TABLE = "forgotten_keys"
KEEP_S = 86400.0
"""Seconds a forget's note is kept while a run that never finished (it was killed) is in the file."""


def _exists(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
    return found is not None


def note(conn: sqlite3.Connection, keys: list[str] | None, at: float) -> None:
    """Note a clear (``keys`` None) or a forget of ``keys`` at ``at``, inside the caller's transaction."""
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('changed_at', ?)", (repr(at),))
    if keys is None:
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('cleared_at', ?)", (repr(at),))
        if _exists(conn):
            conn.execute(f"DELETE FROM {TABLE}")  # the clear covers every key
        return
    live = conn.execute("SELECT min(started) FROM runs WHERE finished IS NULL").fetchone()[0]
    if _exists(conn):
        cutoff = at if live is None else max(float(live), at - KEEP_S)
        conn.execute(f"DELETE FROM {TABLE} WHERE at < ?", (cutoff,))
    if live is None:
        return  # no writer holds results: nothing to note
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, at REAL NOT NULL)")
    conn.executemany(f"INSERT OR REPLACE INTO {TABLE} (key, at) VALUES (?, ?)", [(k, at) for k in keys])


def changed_at(conn: sqlite3.Connection) -> float:
    """The time of the latest clear or forget in the file (0.0 if none): one read, on every flush."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'changed_at'").fetchone()
    return float(row[0]) if row is not None else 0.0


def since(conn: sqlite3.Connection, seen: float) -> tuple[float | None, dict[str, float]]:
    """Return the last clear after ``seen`` (or None), and ``{key: time}`` of the forgets after ``seen``."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'cleared_at'").fetchone()
    cleared = float(row[0]) if row is not None and float(row[0]) > seen else None
    forgotten: dict[str, float] = {}
    if _exists(conn):
        forgotten = dict(conn.execute(f"SELECT key, at FROM {TABLE} WHERE at > ?", (seen,)).fetchall())
    return cleared, forgotten


__all__ = ["KEEP_S", "TABLE", "changed_at", "note", "since"]
