"""What runs inside a worker process: the job loop, and ``python -m jobsched.worker``.

A worker is started by its scheduler (see ``_wire`` for the protocol). It connects, authenticates,
then runs one job at a time until the scheduler says CLOSE, when ``start_worker`` returns and the
worker's own code after it runs. A job that raises does not end the worker: the exception travels back
as text. A watchdog thread exits the process as soon as the scheduler's process is gone.

This module must stay lean: it imports neither IPython, ipywidgets nor tqdm.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _wire
from .._pickling import dumps, loads
from ..job import Job
from ..remote_call import load_file, run_remote_call

# Exit status of a worker whose scheduler vanished.
ORPHAN_EXIT = 70


def _watch_scheduler(stdin: Any) -> None:
    """Exit the process when the scheduler's end of our stdin closes (its process died)."""
    try:
        while stdin.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os._exit(ORPHAN_EXIT)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class _DieWithScheduler:
    """Have the kernel SIGKILL this process when its scheduler's process dies (Linux).

    The stdin watchdog is a Python thread: it cannot run while a job holds the GIL in a long C call
    (``sum(itertools.repeat(1, 10**12))``, many C extensions). ``PR_SET_PDEATHSIG`` needs no GIL. It fires
    when the *thread* that started this process exits; schedulers start every worker from one thread that
    lives as long as their process (``_pool.spawn``), so it is armed once, for the worker's whole life.
    """

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self._prctl: Any = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                prctl = ctypes.CDLL(None, use_errno=True).prctl
                prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
                prctl.restype = ctypes.c_int
                self._prctl = prctl
            except (OSError, AttributeError):
                pass

    def arm(self) -> None:
        armed = self._prctl is not None and self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        if armed and os.getppid() != self.parent:  # the scheduler died before the signal was armed
            os._exit(ORPHAN_EXIT)


def _connect_from_environment() -> _wire.BlockingConnection:
    address = os.environ.pop(_wire.ENV_ADDRESS, None)
    ident = os.environ.pop(_wire.ENV_WORKER, None)
    if address is None or ident is None:
        raise RuntimeError(
            "start_worker: this process was not started by a jobsched scheduler "
            f"({_wire.ENV_ADDRESS} is not set). Run the worker file through make_server / "
            "start_simple_server / Scheduler, not by hand."
        )
    stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    secret = bytes.fromhex(stdin.readline().decode().strip())
    # Replace fd 0 so that job code reading stdin sees EOF instead of stealing the watchdog's pipe.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    threading.Thread(target=_watch_scheduler, args=(stdin,), name="jobsched-watchdog", daemon=True).start()
    host, port = address.rsplit(":", 1)
    index, generation = (int(x) for x in ident.split(":"))
    return _wire.connect((host, int(port)), secret, index, generation)


_PLUMBING = (os.path.dirname(os.path.abspath(__file__)), os.path.abspath(run_remote_call.__code__.co_filename))


def _error_body(exc: BaseException) -> bytes:
    # Show the user's frames, not the worker loop's.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PLUMBING):
        tb = tb.tb_next
    import traceback  # only when a job fails: most workers never need it

    tb_text = "".join(traceback.format_exception(type(exc), exc, tb))
    return dumps((type(exc).__name__, str(exc), tb_text))


def run_to_frame(index: int, run: Callable[..., Any], *args: Any) -> tuple[int, bytes]:
    """Run job ``index`` as ``run(*args)``; return the frame that reports it: ``(RESULT, pickled result)``
    or ``(ERROR, error triple)``.

    A job that raises, or whose result cannot be pickled, becomes an ERROR; the worker goes on. Local
    workers and ``jobsched.dask`` both report through this, so their results and failures are the same.
    (``run`` and its arguments, not a closure: a worker's loop calls this once per job.)
    """
    try:
        result = run(*args)
    except (Exception, SystemExit) as exc:
        return _wire.ERROR, _error_body(exc)
    try:
        return _wire.RESULT, dumps(result, f"the result of job {index}")
    except TypeError as exc:
        return _wire.ERROR, _error_body(exc)


def run_remote_call_payload(payload: bytes) -> Any:
    """Unpickle a ``RemoteCall`` and run it (here, so that its frame counts as plumbing in tracebacks)."""
    return run_remote_call(loads(payload))


def start_worker(run_job: Callable[[Job], Any], silent: bool = False) -> None:
    """Serve jobs from the scheduler that started this process until it says to close.

    Args:
        run_job: called with each ``Job``; its return value (any picklable value, ``None`` included)
            is the job's result. If it raises, the result is a ``JobError`` and the worker goes on.
        silent: suppress what ``run_job`` prints to stdout (stderr is untouched).
    """

    def run(index: int, cost: float, data: memoryview) -> Any:
        return run_job(Job(index, cost, loads(data), time.time() * 1000.0))

    if silent:
        quiet = contextlib.redirect_stdout(open(os.devnull, "w"))  # noqa: SIM115  # reusable: one for every job
        loud = run

        def run(index: int, cost: float, data: memoryview) -> Any:
            with quiet:
                return loud(index, cost, data)

    _serve(run)


def _serve(run: Callable[[int, float, memoryview], Any]) -> None:
    """The job loop: ``run(index, cost, pickled data)`` for each JOB frame, until CLOSE."""
    _DieWithScheduler(os.getppid()).arm()
    conn = _connect_from_environment()
    recv_frame, send_frame, unpack_cost = conn.recv_frame, conn.send_frame, _wire.COST.unpack_from
    job_kind, cost_size = _wire.JOB, _wire.COST.size
    try:
        while True:
            kind, index, body = recv_frame()
            if kind != job_kind:
                if kind == _wire.CLOSE:
                    return
                raise ConnectionError(f"unexpected frame kind {kind} from the scheduler")
            (cost,) = unpack_cost(body)
            kind, out = run_to_frame(index, run, index, cost, memoryview(body)[cost_size:])
            send_frame(kind, index, out)
    except ConnectionError:
        # The scheduler went away between jobs: nothing to report to anyone.
        os._exit(ORPHAN_EXIT)
    finally:
        conn.sock.close()


def start_simple_worker(run: Callable[[Any], Any], silent: bool = False) -> None:
    """Like ``start_worker``, but ``run`` receives the job's data instead of the ``Job``."""
    start_worker(lambda job: run(job.data), silent=silent)


def start_remote_call_worker() -> None:
    """Serve ``remote_call`` jobs: import (or unpickle) each function and call it with its arguments."""

    def run(index: int, cost: float, data: memoryview) -> Any:
        return run_remote_call(loads(data))  # what start_worker does, without a Job nobody looks at

    _serve(run)


def _extend_sys_path() -> None:
    """Make the scheduler's import path ours too, so its modules resolve here (as multiprocessing does)."""
    extra = os.environ.pop(_wire.ENV_SYS_PATH, None)
    if extra:
        for entry in extra.split(os.pathsep):  # as PYTHONPATH, without importing json in every worker
            if entry and entry not in sys.path:
                sys.path.append(entry)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m jobsched.worker [--file PATH --entry NAME -- ARGS...]``."""
    if not (sys.argv[1:] if argv is None else argv):  # the default worker: no argparse to import
        _extend_sys_path()
        start_remote_call_worker()
        return
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobsched.worker",
                                     description="A jobsched worker (started by a scheduler).")
    parser.add_argument("--file", help="worker file to load as a module (not as __main__)")
    parser.add_argument("--entry", default="worker", help="function of the file to call (default: worker)")
    parser.add_argument("args", nargs="*", help="arguments for the worker file (its sys.argv[1:])")
    ns = parser.parse_args(argv)
    _extend_sys_path()
    if ns.file is None:
        start_remote_call_worker()
        return
    sys.argv = [ns.file, *ns.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(ns.file)))
    module = load_file(ns.file)
    entry = getattr(module, ns.entry, None)
    if not callable(entry):
        sys.exit(f"jobsched worker: {ns.file} has no function {ns.entry!r} to start the worker; "
                 f"define `def {ns.entry}(): start_simple_worker(run)` (or pass entry=...)")
    entry()

