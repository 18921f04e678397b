"""The journal's file: its schema, the checks that run before SQLite touches it, connecting, waiting out
other writers' locks, creating or converting the schema, and reading what it holds at open.

``_journaling.writer`` (the scheduler's side) and ``jobsched.journal`` (the reader) both stand on it.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import Any

from ..errors import JournalError

SCHEMA_VERSION = 3
"""The schema this jobsched writes; a file of a higher version is refused (by an older jobsched).

1 had one row per key (``key TEXT PRIMARY KEY``); 2 makes ``records`` an append-only log (see ``CURRENT``);
3 adds a job's ``seed``, and for a failed job its ``call`` (pickled as it was sent) and the scheduler's working
directory ``cwd`` (for ``Journal.rerun_here``). A writer converts an older file when it opens it; a reader
reads any version (the columns an older file lacks read as NULL: see ``extra_columns``)."""

APPLICATION_ID = 0x4A534348  # "JSCH", in the SQLite header: a jobsched journal is known by it
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
    key TEXT NOT NULL,
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
    run INTEGER,
    seed INTEGER,
    call BLOB,
    cwd TEXT
);
"""
# Why no PRIMARY KEY on key: keys are hashes, so every batch would insert into index pages all over the
# file, and in WAL mode each touched page is written whole: measured on 20,000 results in batches of 2,000,
# 2.9 µs and 436 bytes a row with the unique index, 1.3 µs and 128 bytes appended to a table without one.
# The price is paid by readers, which pick each key's record (CURRENT), and by the writer's open(), which
# reads every key once anyway (to skip finished jobs) and drops superseded rows then.

_COLUMNS = ("key, idx, cost, status, result, error_type, error_message, error_traceback, "
            "start_ms, stop_ms, worker, attempts, run")

EXTRA_COLUMNS = "seed, call, cwd"  # schema 3: after _COLUMNS in a record's row


def extra_columns(conn: sqlite3.Connection) -> str:
    """What to select after ``_COLUMNS`` for ``EXTRA_COLUMNS`` in this file: NULLs in a file of schema < 3."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return EXTRA_COLUMNS if version >= 3 else "NULL, NULL, NULL"


CURRENT = ("(SELECT * FROM (SELECT rowid AS seq, *, row_number() OVER (PARTITION BY key ORDER BY "
           "status = 'done' DESC, rowid DESC) AS nth FROM records) WHERE nth = 1)")
"""The record of each key, as a table to select from (``seq`` is its rowid): ``records`` is an append-only log
where a key may have several rows (written by several runs or processes); its latest success counts, else
its latest failure. A failure never replaces a success."""
_BY_KEY = ("SELECT {columns} FROM records WHERE key = ? ORDER BY status = 'done' DESC, rowid DESC LIMIT 1")


# ---- checks that run before SQLite touches the file

IN_USE: dict[str, int] = {}
"""Journal paths that this process's writers hold open (path -> how many writers), whose bytes are not read
here again: closing *any* descriptor of a file drops every POSIX lock the process holds on it, SQLite's
too, and without them another process may checkpoint and delete the -wal under the open connection. The
writer's open checked the file already."""


def _read_only(path: str) -> bool:
    # os.access says yes to root for any file; a file without a write bit is meant to stay as it is.
    return not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222


def _on_read_only_mount(path: str) -> bool:
    """Whether ``path`` lies on a file system mounted read-only (where no chmod can help)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
    elif not IN_USE.get(path):
        _check_header(path)
        _check_intact(path)
    if writing and _on_read_only_mount(folder):
        exists = os.path.exists(path)
        raise JournalError(f"cannot write the journal {path}: {'it' if exists else 'its folder'} is on a file "
                           "system mounted read-only, which no chmod can change; "
                           + ("copy it to a writable place and give that path (its results come along), or "
                              "choose another path; reading it where it is works (Journal(path), "
                              "python -m jobsched.journal)" if exists else "choose a path on a writable one"))
    if writing and os.path.exists(path) and _read_only(path):
        raise JournalError(f"the journal {path} is read-only; make it writable (chmod u+w {path}) "
                           "or choose another path")
    if writing and _read_only(folder):
        raise JournalError(f"cannot write the journal {path}: its folder {folder} is read-only, and SQLite "
                           "needs to create files beside the journal (-wal, -shm); make the folder writable "
                           f"(chmod u+w {folder}) or choose another path")


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


_TABLES = frozenset({"meta", "runs", "records"})


def _check_intact(path: str) -> None:
    """Raise JournalError if the journal at ``path`` is damaged (truncated, garbled pages, tables missing).

    Runs before anything opens the file for writing, on a read-only connection (the file's bytes stay as
    they are): a damaged file is refused whole, never half-used. ``PRAGMA quick_check`` reads every page once
    (about a second per GB). A file whose -wal holds transactions not yet copied back (its writer was killed)
    is checked only as far as a read-only connection can see it; opening it for writing recovers the -wal
    first, and any damage found then is a JournalError too.
    """
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from exc
    if size == 0:
        return
    wal = path + "-wal"
    pending_wal = os.path.exists(wal) and os.path.getsize(wal) > 0
    with open(path, "rb") as f:
        header = f.read(100)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    n_pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    if not pending_wal and counter_valid and n_pages and size < page_size * n_pages:
        raise JournalError(f"the journal {path} is damaged: it is truncated ({size} bytes of the "
                           f"{page_size * n_pages} its header announces), and is left as it is; restore it from a "
                           "copy, or delete it (its jobs run again) or choose another path")
    try:
        if pending_wal:
            conn = _connect(path, read_only=True)
        else:  # the file holds everything: read it as it is, creating no -wal or -shm beside it
            from pathlib import Path

            conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro&immutable=1", uri=True,
                                   check_same_thread=False)
    except sqlite3.Error:
        return  # nothing a read-only connection can check (a -wal to recover): the writer's open checks
    try:
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.OperationalError as exc:
            if pending_wal or "readonly" in str(exc) or "unable to open" in str(exc):
                return  # the -wal needs a writer to recover it first
            problems = [str(exc)]
            tables = set(_TABLES)
        except sqlite3.DatabaseError as exc:  # "database disk image is malformed", "file is not a database"
            problems = [str(exc)]
            tables = set(_TABLES)
    finally:
        conn.close()
    if problems != ["ok"]:
        raise JournalError(f"the journal {path} is damaged ({'; '.join(problems)}), and is left as it is; restore "
                           "it from a copy, or delete it (its jobs run again) or choose another path")
    missing = _TABLES - tables
    if missing:
        raise JournalError(f"{path} says it is a jobsched journal but has no {', '.join(sorted(missing))} table "
                           "(another program's schema, or a damaged file), and is left as it is; choose another path")


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


def connect_reader(path: str) -> sqlite3.Connection:
    """Open the journal at ``path`` to read it, wherever it lies: a read-only file, folder or mount too.

    A WAL database is read through its ``-shm`` index, which SQLite creates beside the file: in a folder the
    reader cannot write (or on a read-only mount) that fails with "unable to open database file". Then, if no
    ``-wal`` holds transactions (no writer is running, none was killed mid-run: a writer could not have
    written there either), the file holds everything, and is read as immutable, with no ``-shm`` at all.

    Raises:
        JournalError: the file cannot be read (the message says why and what to do).
    """
    from pathlib import Path

    uri = Path(path).absolute().as_uri()
    try:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # the -shm is opened here
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
            wal = path + "-wal"
            if os.path.exists(wal) and os.path.getsize(wal) > 0:
                raise JournalError(
                    f"cannot read the journal {path}: its -wal file holds transactions (a writer is running, or "
                    "was killed), and reading them needs a -shm file that cannot be created in its folder "
                    f"({exc}); copy the journal with its -wal file to a writable folder and read it there, or "
                    "let its writer finish") from exc
        return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from exc


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
        elif version < SCHEMA_VERSION:
            if version < 2:  # 1: the same columns, with a unique key; its rows are copied in order
                conn.execute("ALTER TABLE records RENAME TO records_v1")
                conn.execute(_SCHEMA[_SCHEMA.index("CREATE TABLE records"):])
                conn.execute(f"INSERT INTO records ({_COLUMNS}) SELECT {_COLUMNS} FROM records_v1 ORDER BY rowid")
                conn.execute("DROP TABLE records_v1")
            else:  # 2: three columns more, NULL in the rows it has
                for column in ("seed INTEGER", "call BLOB", "cwd TEXT"):
                    conn.execute(f"ALTER TABLE records ADD COLUMN {column}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _read_keys(conn: sqlite3.Connection) -> tuple[dict[str, bool], dict[str, int]]:
    """Read every key's record (key -> done?, key -> rowid), and delete the rows it supersedes (see CURRENT).

    One transaction: rows that another writer appends meanwhile wait, and a superseded row stays superseded
    whatever others append, so the deletion is safe with writers in other processes.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        done: dict[str, bool] = {}
        rowids: dict[str, int] = {}
        superseded: list[tuple[int]] = []
        for rowid, key, is_done in conn.execute("SELECT rowid, key, status = 'done' FROM records ORDER BY rowid"):
            before = rowids.get(key)
            if before is not None:
                if not is_done and done[key]:  # a failure after a success: the success stands
                    superseded.append((rowid,))
                    continue
                superseded.append((before,))
            rowids[key] = rowid
            done[key] = bool(is_done)
        if superseded:
            conn.executemany("DELETE FROM records WHERE rowid = ?", superseded)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done, rowids


def _new_run(conn: sqlite3.Connection) -> int:
    import json
    import socket

    cursor = conn.execute("INSERT INTO runs (started, pid, host, argv) VALUES (?, ?, ?, ?)",
                          (time.time(), os.getpid(), socket.gethostname(), json.dumps(sys.argv)))
    run = cursor.lastrowid
    assert run is not None
    return run
