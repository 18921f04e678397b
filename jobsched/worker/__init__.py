"""What runs inside a worker process: the job loop, and ``python -m jobsched.worker``.

A worker is started by its scheduler (see ``_local.wire`` for the protocol). It connects, authenticates,
then runs one job at a time until the scheduler says CLOSE, when ``start_worker`` returns and the
worker's own code after it runs. A job sent ahead and withdrawn (cancelled) before it started is dropped
here, unstarted, and reported WITHDRAWN. A job that raises - anything, ``BaseException`` included - does not end
the worker: the exception travels back as text. A watchdog thread exits the process as soon as the
scheduler's process is gone. ``faulthandler`` is on, so a job that crashes the interpreter leaves every
thread's stack in the worker's output.

**Workers are reused.** After each job, the worker restores its working directory and its environment
variables (``os.environ``) to what they were when it began serving jobs (checking both costs under 1 µs a
job; the check runs after the result has been sent). Everything else a job changes stays for the next job
on that worker, as in ``multiprocessing``'s pools: module globals, imported modules, ``sys.path``, threads it
started, signal handlers, the umask, environment variables set from C (``setenv`` in an extension).

Inside a job, ``jobsched.progress(done, total, note)`` reports progress (``worker.progress``), and tqdm bars report
through it instead of redrawing on the worker's stderr.

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

from .._data import shm as _shm
from .._data.pickling import dumps
from .._local import tree as _tree
from .._local import wire as _wire
from ..job import Job
from ..remote_call import MissingMainGuardError, RemoteCall, load_file, run_remote_call
from . import progress as _report
from . import seeding as _seeding

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
    lives as long as their process (``_local.processes.spawn``), so it is armed once, for the worker's whole life. A
    worker forked by a zygote (``_local.zygote``) has the zygote for parent, which itself dies with the scheduler
    by the same signal: the chain ends the worker all the same.
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
    host, port = _wire.parse_address(address, _wire.ENV_ADDRESS)
    index, generation = (int(x) for x in ident.split(":"))
    _shm.setup_worker(os.environ.pop(_shm.ENV_PREFIX, None), index, generation)
    _limit_memory(os.environ.pop(_wire.ENV_MEMORY_LIMIT, None))
    return _wire.connect((host, port), secret, index, generation,
                         certificate=os.environ.pop(_wire.ENV_CERTIFICATE, None))


# A worker started by hand (``--connect``): where to connect, and the credential file ("-": stdin).
_by_hand: tuple[str, str] | None = None
# Set when the launcher of a resident worker says "retire" on stdin: run no other job, then exit.
_retiring = threading.Event()


def _connect_by_hand(address: str, credentials: str) -> tuple[_wire.BlockingConnection, Any]:
    """``--connect ADDRESS --credentials FILE``: authenticate with the file's secret, pinning its certificate.

    Returns the connection, and with ``--credentials -`` the standard input its launcher holds (watched for
    "retire" and for its end), else None: a hand-started worker's stdin may be /dev/null.
    """
    from .._local.tls import Credentials

    launcher = None
    if credentials == "-":
        launcher = os.fdopen(os.dup(0), "rb", buffering=0)
        text, source = launcher.readline().decode(), "the credentials on standard input"
        devnull = os.open(os.devnull, os.O_RDONLY)  # jobs reading stdin see EOF, not the launcher's pipe
        os.dup2(devnull, 0)
        os.close(devnull)
    else:
        try:
            with open(credentials) as f:
                text = f.read()
        except OSError as exc:
            sys.exit(f"jobsched worker: cannot read the credential file {credentials!r} ({exc}); write it with "
                     "Scheduler.write_credentials(path)")
        source = f"the file {credentials!r}"
    try:
        found = Credentials.from_json(text, source)
        host, port = _wire.parse_address(address, "--connect")
    except ValueError as exc:
        sys.exit(f"jobsched worker: {exc}")
    ident = os.environ.pop(_wire.ENV_WORKER, None)  # a resident Dask worker has a slot waiting for it
    index, generation = (int(x) for x in ident.split(":")) if ident else (_wire.ADOPT, 0)
    try:
        conn = _wire.connect((host, port), found.secret, index, generation, certificate=found.certificate)
    except (OSError, ConnectionError) as exc:
        sys.exit(f"jobsched worker: could not join the scheduler at {address} ({type(exc).__name__}: {exc})")
    return conn, launcher


def _watch_launcher(launcher: Any, conn: _wire.BlockingConnection, lock: threading.Lock) -> None:
    """A resident worker's launcher holds our stdin: "retire" says its machine is leaving; EOF, that it died."""
    try:
        for line in iter(launcher.readline, b""):
            if line.strip() == b"retire" and not _retiring.is_set():
                _retiring.set()
                with lock:
                    conn.send_frame(_wire.RETIRE, 0)
    except (OSError, ValueError):
        pass
    os._exit(ORPHAN_EXIT)


def _limit_memory(limit: str | None) -> None:
    """Cap this process's address space (``Scheduler(memory_limit=...)``): an allocation past it raises
    ``MemoryError`` in the job, which fails alone, instead of the machine swapping until the OOM killer strikes."""
    if not limit:
        return
    import resource

    n = int(limit)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        n = min(n, hard)
    resource.setrlimit(resource.RLIMIT_AS, (n, hard))


_PLUMBING = (os.path.dirname(os.path.abspath(__file__)), os.path.abspath(run_remote_call.__code__.co_filename))


def _error_body(exc: BaseException, kind: BaseException | None = None) -> bytes:
    """Return the pickled ``(type name, message, traceback text, module, qualname, type names)`` of ``exc``;
    never raise.

    ``kind``, if given, is the exception whose class is reported (its name, place and MRO), while the
    message and traceback stay ``exc``'s.

    ``module`` and ``qualname`` say where the exception's class lives, so that the caller can raise an instance
    of it (``_core.remote_errors``); they are None when they are not plain text. The type names are
    ``module.qualname`` of each class in the exception type's MRO: the scheduler matches them against a job's
    ``retry_on``, so that a subclass of a named type is retried too.

    The exception is the job's: its ``__str__``, ``__repr__``, notes, type name or traceback may all be broken
    or hostile. Each part falls back to a placeholder of its own, so the job always fails with an ERROR frame,
    once, instead of killing the worker (which would have the job re-run and end as ``WorkerDied``).
    """
    kind = exc if kind is None else kind
    name = _safe_text(lambda: type(kind).__name__, "<unnamed exception type>")
    message = _safe_text(lambda: str(exc), f"<str() of the {name} raised an exception>")
    tb_text = _safe_text(lambda: _format_traceback(exc), "")
    if not tb_text:
        tb_text = f"{name}: {message}\n(the traceback could not be formatted)\n"
    mro = _safe_mro(kind)
    try:
        cls = type(kind)
        module, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)
        if type(module) is not str or type(qualname) is not str:
            module = qualname = None
    except BaseException:  # a hostile metaclass
        module = qualname = None
    try:
        return dumps((name, message, tb_text, module, qualname, mro))
    except BaseException:  # plain str always pickle; this is the last line of defence
        return dumps(("UnreportableError", "the error of this job could not be reported", ""))


def _safe_mro(exc: BaseException) -> tuple[str, ...]:
    try:
        return tuple(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__
                     if isinstance(c.__module__, str) and isinstance(c.__qualname__, str))
    except BaseException:  # a hostile metaclass: no retry_on can match it
        return ()


def _safe_text(make: Callable[[], object], fallback: str) -> str:
    """Return ``make()`` as an exact ``str`` (not a subclass that a scheduler would have to unpickle)."""
    try:
        text = make()
        if isinstance(text, str):
            return text[:]  # an exact str even from a str subclass
    except BaseException:  # the job's broken __str__ must not end the worker
        pass
    return fallback


def _format_traceback(exc: BaseException) -> str:
    import traceback  # only when a job fails: most workers never need it

    # Show the user's frames, not the worker loop's.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PLUMBING):
        tb = tb.tb_next
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:  # e.g. a __notes__ or a cause that cannot be formatted: the frames alone
        return "".join(["Traceback (most recent call last):\n", *traceback.format_tb(tb),
                        f"{_safe_text(lambda: type(exc).__name__, '?')}: "
                        f"{_safe_text(lambda: str(exc), '<str() raised>')}\n"])


def run_to_frame(index: int, run: Callable[..., Any], *args: Any) -> tuple[int, bytes]:
    """Run job ``index`` as ``run(*args)``; return the frame that reports it: ``(RESULT, pickled result)``
    or ``(ERROR, error triple)``.

    A job that raises anything, ``BaseException`` included, or whose result cannot be pickled, becomes an
    ERROR; the worker goes on (as ``ProcessPoolExecutor``'s workers do). That covers ``SystemExit`` (the job
    called ``sys.exit``), ``KeyboardInterrupt`` (workers run in their own session, so a terminal's Ctrl-C
    never reaches them: only the job itself raises it) and ``GeneratorExit`` raised by the job: none of them
    is aimed at the worker. What ends a worker is not an exception of its job: CLOSE from the scheduler
    (between jobs), the scheduler's death (the watchdogs), or the process dying (``os._exit``, a signal).
    Local workers and ``jobsched.dask`` both report through this, so their results and failures are the same.
    (``run`` and its arguments, not a closure: a worker's loop calls this once per job.)
    """
    try:
        result = run(*args)
    except BaseException as exc:  # the job's failure, whatever it is, is its result
        return _wire.ERROR, _error_body(exc)
    try:
        return _wire.RESULT, _shm.dumps_result(result, f"the result of job {index}", dumps)
    except BaseException as exc:  # TypeError, or a __reduce__ that raises anything else
        # The call fails as the pickler's own error (a PicklingError, or what a __reduce__ raised), as with
        # ProcessPoolExecutor, so that `except PicklingError` catches it; the message names the value.
        cause = exc.__cause__ if isinstance(exc, TypeError) else None
        return _wire.ERROR, _error_body(exc, cause if isinstance(cause, Exception) else None)


def run_remote_call_payload(payload: bytes) -> Any:
    """Unpickle a ``RemoteCall`` and run it (here, so that its frame counts as plumbing in tracebacks)."""
    call = _shm.loads(payload)
    if _seeding._current is not None:  # a seeded job on Dask: numpy is seeded after the call's imports
        if isinstance(call, RemoteCall):
            call.function  # noqa: B018
        _seeding.loaded()
    return run_remote_call(call)


def start_worker(run_job: Callable[[Job], Any], silent: bool = False) -> None:
    """Serve jobs from the scheduler that started this process until it says to close.

    Args:
        run_job: called with each ``Job``; its return value (any picklable value, ``None`` included)
            is the job's result. If it raises, the result is a ``JobError`` and the worker goes on.
        silent: suppress what ``run_job`` prints to stdout (stderr is untouched).
    """

    def run(index: int, cost: float, data: memoryview) -> Any:
        job = Job(index, cost, _shm.loads(data), time.time() * 1000.0)
        if _seeding._current is not None:
            _seeding.loaded()
        return run_job(job)

    if silent:
        quiet = contextlib.redirect_stdout(open(os.devnull, "w"))  # noqa: SIM115  # reusable: one for every job
        loud = run

        def run(index: int, cost: float, data: memoryview) -> Any:
            with quiet:
                return loud(index, cost, data)

    _serve(run)


def _serve(run: Callable[[int, float, memoryview], Any]) -> None:
    """The job loop: ``run(index, cost, pickled data)`` for each JOB frame, until CLOSE."""
    _enable_faulthandler()
    launcher = None
    if _by_hand is None:
        _DieWithScheduler(os.getppid()).arm()
        conn = _connect_from_environment()
    else:
        conn, launcher = _connect_by_hand(*_by_hand)
    # Orphans among the processes jobs start (a daemon, a setsid child whose parent exited) come back to this
    # process instead of init: the scheduler finds them all in our subtree when it kills us (``_local.tree``).
    subreaper = _tree.become_subreaper()
    reporter = _report.attach(conn.send_frame, _wire.PROGRESS)
    if launcher is not None:
        threading.Thread(target=_watch_launcher, args=(launcher, conn, reporter.lock), name="jobsched-launcher",
                         daemon=True).start()
    retiring = _retiring.is_set
    _report.install_tqdm_hook()
    # What each job starts from, restored after it (see the module docstring).
    home, getcwd, chdir = os.getcwd(), os.getcwd, os.chdir
    saved_environ = dict(os.environ)
    environ_data = getattr(os.environ, "_data", os.environ)  # CPython's encoded mapping: == without decoding
    environ_snapshot = dict(environ_data)
    recv_frame, send_frame, lock = conn.recv_frame, conn.send_frame, reporter.lock
    modules = sys.modules
    unpack_cost, unpack_int_cost = _wire.COST.unpack_from, _wire.INT_COST.unpack_from
    job_kind, job_int_kind, cost_size = _wire.JOB, _wire.JOB_INT, _wire.COST.size  # both costs take 8 bytes
    withdrawn = conn.withdrawn  # jobs sent ahead and cancelled before they started here
    unpack_seed, seeded_size = _wire.SEED.unpack_from, _wire.COST.size + _wire.SEED.size
    apply_seed = _seeding.apply
    seeded = False  # the last job had a seed: the next one without resets job_seed()
    try:
        while True:
            kind, index, body = recv_frame()
            cost: float
            start = cost_size
            if kind == job_int_kind:
                (cost,) = unpack_int_cost(body)
            elif kind == job_kind:
                (cost,) = unpack_cost(body)
            elif kind == _wire.JOB_SEED or kind == _wire.JOB_INT_SEED:
                (cost,) = (unpack_cost if kind == _wire.JOB_SEED else unpack_int_cost)(body)
                apply_seed(unpack_seed(body, cost_size)[0])
                seeded, start = True, seeded_size
            elif kind == _wire.CLOSE:
                return
            elif kind == _wire.DATA:  # a handle's data, ahead of the first job that takes it
                from .._data.handles import deliver

                deliver(bytes(body[:_wire.TOKEN_BYTES]).decode("ascii"), bytes(memoryview(body)[_wire.TOKEN_BYTES:]))
                continue
            else:
                raise ConnectionError(f"unexpected frame kind {kind} from the scheduler")
            if retiring():  # the jobs sent ahead go back to the queue: the scheduler re-queues them
                return
            if withdrawn and index in withdrawn:  # dropped unstarted: the job before it is left alone
                withdrawn.discard(index)
                with lock:
                    send_frame(_wire.WITHDRAWN, index)
                continue
            if seeded and start == cost_size:
                apply_seed(None)
                seeded = False
            reporter.job = index
            kind, out = run_to_frame(index, run, index, cost, memoryview(body)[start:])
            with lock:  # after a progress frame in flight, and no progress frame after the result
                reporter.job = reporter.pending = None
                send_frame(kind, index, out)
            # Restored after the result is on its way: off the round trip's critical path (< 1 µs anyway).
            try:
                if getcwd() != home:
                    chdir(home)
            except OSError:  # the job removed its working directory
                _chdir_quietly(home)
            if environ_data != environ_snapshot:
                _restore_environ(saved_environ)
            handles = modules.get("jobsched._data.handles")  # loaded by the first job that took a handle
            if handles is not None and handles._cache_names:
                handles.forget_released()  # released handles: their objects go (a stat per handle)
    except (ConnectionError, OSError):
        # The scheduler went away between jobs: nothing to report to anyone.
        os._exit(ORPHAN_EXIT)
    finally:
        conn.sock.close()
        if subreaper:  # what jobs started and left running outside our group ends with us, not after us
            _tree.kill_strays(os.getpid(), freeze_group=False)


def _chdir_quietly(path: str) -> None:
    try:
        os.chdir(path)
    except OSError:  # the worker's own directory is gone too: nothing to go back to
        pass


def _restore_environ(saved: dict[str, str]) -> None:
    """Undo a job's changes to ``os.environ`` (and so to the process environment, through putenv)."""
    environ = os.environ
    for key in [key for key in environ if key not in saved]:
        del environ[key]
    for key, value in saved.items():
        if environ.get(key) != value:
            environ[key] = value


def _enable_faulthandler() -> None:
    """Dump every thread's stack to stderr on a fatal signal (SIGSEGV, SIGABRT...): a crashing job leaves its
    stack in the worker's output, which the scheduler keeps. Costs a few microseconds, once."""
    import faulthandler  # built into the interpreter: no file to read

    if not faulthandler.is_enabled():
        try:
            faulthandler.enable()
        except (RuntimeError, ValueError, OSError):  # no usable sys.stderr (closed, replaced by a job-less object)
            pass


def start_simple_worker(run: Callable[[Any], Any], silent: bool = False) -> None:
    """Like ``start_worker``, but ``run`` receives the job's data instead of the ``Job``."""
    start_worker(lambda job: run(job.data), silent=silent)


def start_remote_call_worker() -> None:
    """Serve ``remote_call`` jobs: import (or unpickle) each function and call it with its arguments."""

    def run(index: int, cost: float, data: memoryview) -> Any:
        call = _shm.loads(data)  # what start_worker does, without a Job nobody looks at
        if _seeding._current is not None:
            if isinstance(call, RemoteCall):
                call.function  # noqa: B018  # imports its module now: numpy is seeded after that import
            _seeding.loaded()
        return run_remote_call(call)

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
    _enable_faulthandler()  # before a worker file is loaded: a crash while importing it shows its stack too
    if not (sys.argv[1:] if argv is None else argv):  # the default worker: no argparse to import
        _extend_sys_path()
        start_remote_call_worker()
        return
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobsched.worker",
                                     description="A jobsched worker (started by a scheduler).")
    parser.add_argument("--connect", metavar="HOST:PORT",
                        help="join the scheduler at this address (a worker started by hand: srun, ssh, a batch "
                             "script); needs --credentials")
    parser.add_argument("--credentials", metavar="FILE",
                        help="the credential file of Scheduler.write_credentials (mode 0600), or - to read it "
                             "from standard input")
    parser.add_argument("--file", help="worker file to load as a module (not as __main__)")
    parser.add_argument("--entry", default="worker", help="function of the file to call (default: worker)")
    parser.add_argument("args", nargs="*", help="arguments for the worker file (its sys.argv[1:])")
    ns = parser.parse_args(argv)
    if (ns.connect is None) != (ns.credentials is None):
        parser.error("--connect HOST:PORT and --credentials FILE go together (the file comes from "
                     "Scheduler.write_credentials)")
    if ns.connect is not None:
        global _by_hand
        _by_hand = (ns.connect, ns.credentials)
    _extend_sys_path()
    if ns.file is None:
        start_remote_call_worker()
        return
    sys.argv = [ns.file, *ns.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(ns.file)))
    try:
        module = load_file(ns.file)
    except MissingMainGuardError as exc:  # one clear line for WorkerStartupError, not the script's traceback
        sys.exit(f"jobsched worker: {exc}")
    entry = getattr(module, ns.entry, None)
    if not callable(entry):
        functions = sorted(name for name, value in vars(module).items()
                           if callable(value) and getattr(value, "__module__", None) == module.__name__
                           and not name.startswith("_"))
        defined = f"its functions: {', '.join(functions)}" if functions else "it defines no function"
        sys.exit(f"jobsched worker: {ns.file} has no function {ns.entry!r} to start the worker ({defined}); "
                 f"define `def {ns.entry}(): start_simple_worker(run)` (or pass entry=...)")
    entry()

