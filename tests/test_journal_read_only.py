"""A finished journal is read where it lies, on a read-only file, folder or mount: ``Journal(path)``,
``len()``, ``results()``, ``failed()``, the report and the command-line summary. Writing there is refused with
advice that fits the cause (chmod for a file or folder, another place for a read-only mount).

Root ignores file permissions: run as root, the file and folder cases read in a forked child that became
``nobody`` first. The mount case mounts a small tmpfs and remounts it read-only, which stops root too (it is
skipped, saying why, where this user may not mount).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
from waiting import TIMEOUT

import jobsched._journaling.report  # imported here: the child that drops to nobody cannot read the stdlib
import jobsched.journal
from jobsched import Journal, JournalError, Scheduler

NOBODY = 65534


def _write_journal(path: Path) -> None:
    """A finished run of real workers: 20 results and 2 failures."""
    with Scheduler(journal=path) as sched:
        sched.start(2, wait=False)
        futures = [sched.submit(helpers.square, i) for i in range(20)]
        failing = [sched.submit(helpers.raise_value_error, f"bad {i}") for i in range(2)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == [i * i for i in range(20)]
        for f in failing:
            assert isinstance(f.exception(timeout=TIMEOUT), ValueError)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal, no -shm left


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_everything(path: Path, html_out: Path) -> dict[str, Any]:
    """What a user reads of a finished journal; runs in the process that lacks write access."""
    journal = Journal(path)
    results = journal.results()
    failed = journal.failed()
    page = journal.plot().html()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = jobsched.journal.main([str(path), "--html", str(html_out)])
    return {"len": len(journal), "results": sorted(results.values()), "failed": sorted(str(e) for e in failed.values()),
            "page": "<svg" in page, "cli": code, "summary": out.getvalue()}


def _as_nobody(work: Callable[[], Any]) -> Any:
    """Run ``work()`` without root's privileges: in a forked child that became ``nobody`` if this process is
    root (root reads and writes whatever the permissions say), else here; return its (JSON) result."""
    if os.geteuid() != 0:
        return json.loads(json.dumps(work()))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child)
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            answer = ["ok", work()]
        except BaseException as exc:
            answer = ["error", f"{type(exc).__name__}: {exc}"]
        try:
            os.write(write, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    deadline = time.monotonic() + TIMEOUT
    with os.fdopen(read, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline:
            if select.select([pipe], [], [], 0.5)[0]:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                data += chunk
        else:
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert data, f"the reader without privileges did not answer within {TIMEOUT} s"
    status, value = json.loads(data)
    assert status == "ok", f"reading without privileges failed: {value}"
    return value


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder that ``nobody`` can reach (pytest's tmp_path is root's alone), with ``out/`` that it may write
    to; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="jobsched-ro-"))
    os.chmod(folder, 0o755)
    (folder / "out").mkdir()
    os.chmod(folder / "out", 0o777)
    try:
        yield folder
    finally:
        for place in folder.rglob("*"):
            if place.is_dir():
                os.chmod(place, 0o755)
        shutil.rmtree(folder)


def _check_read(value: dict[str, Any]) -> None:
    assert value["len"] == 22
    assert value["results"] == sorted(i * i for i in range(20))
    assert len(value["failed"]) == 2 and all("bad" in f for f in value["failed"]), value["failed"]
    assert value["page"] is True
    assert value["cli"] == 0, value["summary"]
    assert "22 records: 20 done, 2 failed" in value["summary"]
    assert "report written to" in value["summary"]


@pytest.mark.parametrize("what", ["folder", "file and folder"])
def test_a_finished_journal_in_a_read_only_folder_is_read(shared_folder: Path, what: str) -> None:
    """Reading a finished WAL journal needs no -shm beside it: a reader without write access reads it whole."""
    folder = shared_folder / "journals"
    folder.mkdir()
    path = folder / "runs.sqlite"
    _write_journal(path)
    if what == "file and folder":
        os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    before = _digest(path)
    html_out = shared_folder / "out" / "report.html"
    value = _as_nobody(lambda: _read_everything(path, html_out))
    _check_read(value)
    assert "<svg" in html_out.read_text()
    assert _digest(path) == before
    assert sorted(p.name for p in folder.iterdir()) == ["runs.sqlite"]  # nothing created beside it


def test_a_read_only_file_refuses_writing_with_chmod_advice(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    _write_journal(path)
    os.chmod(path, 0o444)
    before = _digest(path)
    with pytest.raises(JournalError, match=r"is read-only; make it writable \(chmod u\+w"):
        Scheduler(journal=path)
    with pytest.raises(JournalError, match=r"chmod u\+w"):
        Journal(path).clear()
    assert _digest(path) == before
    assert len(Journal(path)) == 22


def test_a_read_only_folder_refuses_writing_naming_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "journals"
    folder.mkdir()
    path = folder / "runs.sqlite"
    _write_journal(path)
    os.chmod(folder, 0o555)
    try:
        before = _digest(path)
        with pytest.raises(JournalError, match=rf"its folder {folder} is read-only.*chmod u\+w {folder}"):
            Scheduler(journal=path)
        assert _digest(path) == before
        assert sorted(p.name for p in folder.iterdir()) == ["runs.sqlite"]
    finally:
        os.chmod(folder, 0o755)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """A small tmpfs mounted at a fresh folder; calling the fixture's value remounts it read-only."""
    with helpers.tmpfs(tmp_path / "mnt", "8m", "a read-only mount") as where:

        def remount() -> Path:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True, timeout=30)
            return where

        yield remount


def test_a_journal_on_a_read_only_mount_is_read_and_writing_is_refused(
        read_only_mount: Callable[[], Path], tmp_path: Path) -> None:
    """A read-only mount stops root too; the advice to write there is to copy the journal, never chmod."""
    path = tmp_path / "mnt" / "runs.sqlite"
    _write_journal(path)
    before = _digest(path)
    read_only_mount()
    with pytest.raises(OSError):
        (tmp_path / "mnt" / "probe").write_text("x")  # the mount really is read-only
    _check_read(_read_everything(path, tmp_path / "report.html"))
    assert "<svg" in (tmp_path / "report.html").read_text()
    for write in (lambda: Scheduler(journal=path), lambda: Journal(path).clear(), lambda: Journal(path).forget("k")):
        with pytest.raises(JournalError, match="mounted read-only") as info:
            write()
        assert "copy it to a writable place" in str(info.value)
        assert "chmod" not in str(info.value).replace("no chmod can change", "")
    with pytest.raises(JournalError, match=r"its folder is on a file system mounted read-only.*writable one"):
        Scheduler(journal=tmp_path / "mnt" / "new.sqlite")
    assert _digest(path) == before


def test_a_journal_with_pending_transactions_in_a_read_only_folder_says_what_to_do(shared_folder: Path) -> None:
    """A -wal that holds transactions cannot be read without a -shm: the error says so, nothing is half-read."""
    folder = shared_folder / "journals"
    folder.mkdir()
    path = folder / "runs.sqlite"
    _write_journal(path)
    import sqlite3

    holder = sqlite3.connect(path)  # a writer that is still running: its -wal holds a transaction
    try:
        holder.execute("PRAGMA wal_autocheckpoint=0")
        holder.execute("INSERT INTO meta (name, value) VALUES ('probe', 'x')")
        holder.commit()
        assert (folder / "runs.sqlite-wal").stat().st_size > 0
        shm = folder / "runs.sqlite-shm"
        shutil.copy(path.with_name("runs.sqlite-wal"), folder / "wal.copy")
        holder.close()  # checkpoints and removes -wal and -shm; put a pending -wal back without its -shm
        os.replace(folder / "wal.copy", folder / "runs.sqlite-wal")
        assert not shm.exists()
    finally:
        holder.close()
    os.chmod(folder, 0o555)

    def attempt() -> str:
        try:
            Journal(path).results()
        except JournalError as exc:
            return str(exc)
        return "read"

    message = _as_nobody(attempt)
    assert "-wal file holds transactions" in message and "copy the journal with its -wal" in message
