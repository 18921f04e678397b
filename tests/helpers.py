"""What tests run inside workers, as plain importable functions (they travel by reference, like a user's module).

Ordinary jobs, and worker-side misbehaviour: raise, exit, segfault, hang, stop itself, flood its output,
return something huge or poisonous, or break the wire protocol from the inside. They stay module-level
functions of this importable module so that a worker can load them by reference, and so that a test can
also call the harmless ones in-process. ``run_doomed_scheduler`` is the body of a separate scheduler
process that a test SIGKILLs.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import itertools
import json
import os
import pickle
import random
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# ---------------------------------------------------------------- ordinary jobs



def host_port(sched: Any) -> tuple[str, int]:
    """``sched.address`` ("HOST:PORT") as the ``(host, port)`` that ``socket.create_connection`` takes."""
    from jobsched._local.wire import parse_address

    assert sched.address is not None, "the scheduler does not listen yet"
    return parse_address(sched.address, "sched.address")


def is_live(p: Any) -> bool:
    """Whether ``p`` (a pid or a ``psutil.Process``) runs and is no zombie; False once it is gone, at any moment.

    A process may end between any two psutil calls: each of them may raise ``NoSuchProcess``.
    """
    import psutil

    try:
        proc = p if isinstance(p, psutil.Process) else psutil.Process(p)
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def add(x: int, y: int = 1) -> int:
    return x + y


def identity(x: Any) -> Any:
    return x


def return_none() -> None:
    return None


def getpid() -> int:
    return os.getpid()


def square(x: int) -> int:
    return x * x


def square_slowly(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


def square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` pseudo-random bytes, the same for the same seed (so a corrupted copy does not look right)."""
    return random.Random(seed).randbytes(n)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def big_bytes(n: int) -> bytes:
    return b"\xab" * n


def print_lines(n: int, width: int = 100) -> int:
    line = "x" * width
    for i in range(n):
        print(i, line)
    sys.stdout.flush()
    return n


def append_line(path: str, text: str) -> str:
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


_hoard: list[bytes] = []


def hoard_memory(n_bytes: int) -> int:
    """Keep ``n_bytes`` alive in this worker (a leak), return the pid."""
    _hoard.append(bytearray(n_bytes))
    return os.getpid()


# ---------------------------------------------------------------- jobs that a test holds open or runs twice


def wait_for_file(path: str, value: Any = None, timeout: float = 60.0) -> Any:
    """Block until ``path`` exists, then return ``value``: a job that a test lets finish when it wants.

    Holding a job open this way (instead of sleeping) keeps a test right on a loaded machine: the job is
    still running whenever the test looks, however slow everything is. Gives up after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def record_start_then_wait(log: str, release: str, value: Any = None) -> Any:
    """Append ``<pid> <attempt>`` to ``log`` (attempt 1, 2, ... counts the lines already there), then block
    until ``release`` exists and return ``value``: a job whose every start a test can see, and that a test
    can kill or let finish when it wants."""
    with open(log, "a+") as f:
        f.seek(0)
        attempt = len(f.read().splitlines()) + 1
        f.write(f"{os.getpid()} {attempt}\n")
    return wait_for_file(release, value)


def log_then_sleep(log: str, seconds: float, value: Any = None) -> Any:
    """Append this worker's pid to ``log`` (a test sees the job has started), sleep ``seconds``, return ``value``."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return value


def die_once(marker: str, value: Any) -> Any:
    """Kill the worker the first time (marker file absent), return ``value`` the second time."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def sleep_once(marker: str, seconds: float, value: Any) -> Any:
    """Sleep ``seconds`` the first time (marker file absent), return ``value`` at once the next time."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("slept")
        time.sleep(seconds)
    return value

# ---------------------------------------------------------------- crashes


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def raise_system_exit(code: int) -> None:
    # sys.exit() inside a job is a failed job, not the end of the worker.
    sys.exit(code)


def exit_process(code: int) -> None:
    os._exit(code)


def kill_self(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(10)  # a signal that does not end us at once must not look like a result


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def stop_self() -> None:
    """SIGSTOP ourselves: the process is alive but never answers again."""
    os.kill(os.getpid(), signal.SIGSTOP)


def hang(seconds: float = 3600.0) -> None:
    time.sleep(seconds)


def spin(seconds: float = 3600.0) -> int:
    """A pure-Python busy loop (the interpreter still switches threads)."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


def hold_gil(n: int = 10**12) -> int:
    """A C-level loop that never releases the GIL: no other thread of the worker runs meanwhile."""
    return sum(itertools.repeat(1, n))


# ---------------------------------------------------------------- output floods


def flood_stdout(n_lines: int, width: int = 100) -> int:
    """Print ``n_lines`` lines of ``width`` characters; the last one is ``last line <n_lines - 1>``."""
    body = "y" * width
    write = sys.stdout.write
    for i in range(n_lines - 1):
        write(f"{i} {body}\n")
    write(f"last line {n_lines - 1}\n")
    sys.stdout.flush()
    return n_lines


def flood_without_newline(n_bytes: int) -> int:
    """Write ``n_bytes`` to stdout with no line break at all."""
    chunk = "z" * 65536
    left = n_bytes
    while left > 0:
        sys.stdout.write(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    sys.stdout.flush()
    return n_bytes


# ---------------------------------------------------------------- poisonous results


def _explode_on_load() -> None:
    raise RuntimeError("this result refuses to be unpickled")


class _PoisonOnLoad:
    """Pickles fine in the worker; unpickling it (in the scheduler) raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode_on_load, ())


def result_that_fails_to_unpickle() -> Any:
    return _PoisonOnLoad()


def unpicklable_result() -> Any:
    return threading.Lock()  # neither pickle nor cloudpickle can take a lock


# ---------------------------------------------------------------- protocol abuse from inside a worker


def _connection() -> Any:
    """Find this worker's authenticated connection to the scheduler (a ``BlockingConnection``)."""
    from jobsched._local.wire import BlockingConnection

    for obj in gc.get_objects():
        if isinstance(obj, BlockingConnection):
            return obj
    raise RuntimeError("no BlockingConnection in this process")


def send_oversized_frame() -> None:
    """An authenticated worker announces a frame larger than MAX_FRAME, then waits to be killed."""
    from jobsched._local import wire as _wire

    conn = _connection()
    conn.sock.sendall(_wire.HEADER.pack(0xFFFFFFFF, _wire.RESULT, 0))
    time.sleep(60)


def send_result_for_another_job() -> None:
    """An authenticated worker answers for a job index it was never given."""
    from jobsched._local import wire as _wire

    conn = _connection()
    conn.send_frame(_wire.RESULT, 10**9, pickle.dumps("forged"))
    time.sleep(60)


def close_connection() -> None:
    """Hang up on the scheduler in the middle of a job, and stay alive."""
    _connection().sock.close()
    time.sleep(60)


# ---------------------------------------------------------------- a malicious pickle


class CreateFileOnLoad:
    """Unpickling this calls ``open(path, "w")``: proof that someone unpickled bytes they should not have."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def malicious_pickle(path: str) -> bytes:
    """A pickle that creates ``path`` when loaded (by reference to ``builtins.open``: no import of ours)."""
    data = pickle.dumps(CreateFileOnLoad(path), protocol=5)
    assert b"helpers" not in data  # loading it needs nothing from the test suite
    return data


# ---------------------------------------------------------------- a scheduler process to SIGKILL


def run_doomed_scheduler(n_workers: int, kind: str) -> None:
    """Start ``n_workers`` workers busy with ``kind`` jobs, print their pids as JSON, then wait to be killed.

    ``kind``: ``"sleep"`` (blocked in a long sleep), ``"spin"`` (pure-Python busy loop), ``"gil"`` (a C loop
    holding the GIL), ``"idle"`` (connected, no job).
    """
    from jobsched import Scheduler, WorkerState

    sched = Scheduler(echo_output=False)
    jobs = {"sleep": (hang, ()), "spin": (spin, ()), "gil": (hold_gil, ())}
    if kind in jobs:
        fn, args = jobs[kind]
        for _ in range(n_workers):
            sched.submit(fn, *args)
    sched.start(n_workers, wait=False)
    wanted = WorkerState.READY if kind == "idle" else WorkerState.RUNNING
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        workers = sched.workers
        if len(workers) == n_workers and all(w.state is wanted for w in workers):
            break
        time.sleep(0.02)
    else:
        print(json.dumps({"error": repr(sched.workers)}), flush=True)
        sys.exit(1)
    if kind == "gil":
        time.sleep(0.5)  # let the C loop begin (the job is RUNNING once sent, not once it has started)
    print(json.dumps({"pids": [w.pid for w in sched.workers]}), flush=True)
    time.sleep(600)  # killed long before this


# ---------------------------------------------------------------- exceptions that are hard to report


class StrRaises(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise ValueError("__str__ is broken")


class ReprAndStrRaise(Exception):
    """An exception whose ``repr()`` and ``str()`` both raise."""

    def __str__(self) -> str:
        raise ValueError("__str__ is broken")

    def __repr__(self) -> str:
        raise ValueError("__repr__ is broken")


class StrReturnsSubclass(Exception):
    """An exception whose ``str()`` is a str subclass defined here (a scheduler need not import it)."""

    class Text(str):
        pass

    def __str__(self) -> str:
        return self.Text("a str subclass")


class CustomBaseException(BaseException):
    """A BaseException that is neither Exception, SystemExit nor KeyboardInterrupt."""


class _RaisesOnReduce:
    def __reduce__(self) -> Any:
        raise KeyboardInterrupt("__reduce__ raised KeyboardInterrupt")


WEIRD_TYPE_NAME = "weird name\n\t<é>"


def raise_after_logging(path: str, kind: str) -> None:
    """Append a line to ``path`` (one per run of the job), then raise the exception named by ``kind``."""
    with open(path, "a") as f:
        f.write("ran\n")
    raise make_exception(kind)


def make_exception(kind: str) -> BaseException:
    """The exception of each hard-to-report case, by name."""
    if kind == "str_raises":
        return StrRaises()
    if kind == "repr_and_str_raise":
        return ReprAndStrRaise()
    if kind == "str_subclass":
        return StrReturnsSubclass()
    if kind == "weird_type_name":
        return type(WEIRD_TYPE_NAME, (Exception,), {})("weird")
    if kind == "module_not_str":
        cls = type("ModuleNotStr", (Exception,), {})
        cls.__module__ = 42  # type: ignore[assignment]
        return cls("module is an int")
    if kind == "bad_notes":
        exc = ValueError("with notes")
        exc.__notes__ = [StrRaises(), 42]  # type: ignore[attr-defined]
        return exc
    if kind == "keyboard_interrupt":
        return KeyboardInterrupt("interrupted by the job")
    if kind == "custom_base_exception":
        return CustomBaseException("custom")
    if kind == "generator_exit":
        return GeneratorExit("generator exit")
    if kind == "system_exit":
        return SystemExit(3)
    raise ValueError(f"unknown kind {kind!r}")


def result_whose_reduce_raises() -> Any:
    return _RaisesOnReduce()


# ---------------------------------------------------------------- state carried between jobs


def change_cwd_and_environ(directory: str) -> str:
    """Change what a later job would inherit: the working directory and the environment."""
    os.chdir(directory)
    os.environ["JOBSCHED_TEST_ADDED"] = "added"
    os.environ.pop("JOBSCHED_TEST_KEPT", None)
    os.environ["PATH"] = "/nowhere"
    return os.getcwd()


def cwd_and_environ() -> tuple[str, str | None, str | None, str | None, int]:
    return (os.getcwd(), os.environ.get("JOBSCHED_TEST_ADDED"), os.environ.get("JOBSCHED_TEST_KEPT"),
            os.environ.get("PATH"), os.getpid())


def remove_own_cwd(directory: str) -> int:
    """Move into ``directory`` and remove it: the worker's cwd no longer exists after the job."""
    os.chdir(directory)
    os.rmdir(directory)
    return os.getpid()


def faulthandler_enabled() -> bool:
    import faulthandler

    return faulthandler.is_enabled()


# ---------------------------------------------------------------- progress


def report_then_wait(path: str, done: int, total: int, note: str) -> int:
    """Report progress once, then hold the job open until ``path`` exists (at most 60 s)."""
    import jobsched

    jobsched.progress(done, total, note)
    return wait_for_file(path, done)


def report_when(path: str, note: str, release: str) -> str:
    """Block until ``path`` exists, report progress ``(1, 1, note)``, then hold the job until ``release`` exists.

    A witness for a test's negative check: once ``worker.progress`` shows ``note``, the scheduler's loop has
    handled a frame sent after ``path`` appeared, so everything it had to do before that is done.
    """
    import jobsched

    wait_for_file(path)
    jobsched.progress(1, 1, note)
    return wait_for_file(release, note)


def loaded_modules(names: list[str]) -> list[str]:
    """Which of ``names`` this process (a worker) has imported."""
    return [name for name in names if name in sys.modules]


def progress_in_a_forked_child() -> int:
    """Report progress from a forked child (it must send nothing); return the child's exit status."""
    import jobsched

    pid = os.fork()
    if pid == 0:
        try:
            jobsched.progress(1, 2, "from the child")
            time.sleep(0.3)  # any sender thread would have sent by now
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status


class Box:
    """A plain object (weakly referenceable, unlike ints and bytes): tells when the scheduler lets go of it."""

    def __init__(self, value: Any) -> None:
        self.value = value


def append_then_sleep(path: str, text: str, seconds: float) -> str:
    """Append ``text`` to ``path`` as the job starts (a job run twice shows twice), sleep, return ``text``."""
    append_line(path, text)
    time.sleep(seconds)
    return text


@contextlib.contextmanager
def tmpfs(where: Path, size: str, needed_for: str) -> Iterator[Path]:
    """Mount a ``size`` tmpfs at the new folder ``where`` for the block, then unmount it; skip the test (saying
    it was ``needed_for``) where this user may not mount one."""
    import subprocess

    import pytest

    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"{needed_for} needs permission to mount a tmpfs, which this user lacks: {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False, capture_output=True, timeout=30)

