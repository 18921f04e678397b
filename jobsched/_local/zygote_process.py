"""The zygote process: a small interpreter that forks jobsched workers (``_local.zygote`` is the scheduler's side).

A scheduler starts one as ``python -c "from jobsched._local.zygote_process import main; main()" FD PARENT`` the first
time it needs a worker (``-c``, not ``-m``: the interpreter's ``__main__`` module stays empty, for the worker).
FD is the zygote's end of a socketpair the scheduler created and handed over at start: the zygote listens
nowhere, and only its scheduler can talk to it. PARENT is the scheduler's pid. It imports what every default
worker imports (``jobsched.worker``, and what a worker loads when it starts serving), nothing of the user's and
never the notebook stack, says ``ready PID``, then answers its scheduler's requests one at a time. A request
is a 4-byte big-endian length, then fields separated by NUL bytes, as ``execve`` takes its argv and envp (none
can hold a NUL); a reply is one line of text::

    1. fork CWD N ARG1 .. ARGn NAME=VALUE ..   with two descriptors attached (SCM_RIGHTS): the read end of
       the worker's stdin pipe and the write end of its output pipe (both created by the scheduler)
       -> "pid PID" | "error TEXT"
    2. wait PID BLOCK (1 or 0)
       -> "status RETURNCODE" (``subprocess``'s convention: -N for signal N) | "running" | "error TEXT"
    3. end of file: the scheduler closed the pair, or died. The zygote exits.

The secret never comes here: the scheduler writes it into the worker's stdin pipe itself, and the worker
does the normal handshake on its own connection. Nothing here is decoded beyond splitting bytes: no pickle,
and not even JSON, whose import would cost the zygote's boot a millisecond and a half (see ``_preload``).

The zygote reaps a worker only when asked (``wait``), as ``Popen.wait`` does: until then the dead worker is
a zombie, so its pid - which is also its process group's id - cannot be reused while the scheduler may still
signal that group.

Deaths. The kernel sends the zygote SIGTERM when its scheduler's process dies (``PR_SET_PDEATHSIG``, armed
for the scheduler's spawner thread, which lives as long as that process), and SIGKILLs each forked worker when
the zygote dies (the same, armed for the zygote). The zygote is a child subreaper (``_local.tree``): when a
worker dies, however it dies, the processes its jobs started that left its group are handed to the zygote,
which kills every child that is not a worker, with its subtree. When its scheduler goes (SIGTERM, or the end of
the pair), the zygote freezes and kills its whole tree before it exits: workers, and what their jobs started,
in any group or session. So a dead scheduler takes every worker and every job's process along, even a worker
whose job holds the GIL; a dead zygote takes its workers along too, and the scheduler replaces them.

A forked child leaves the request loop and becomes ``python -m jobsched.worker ARGS`` run by this same
interpreter, as ``-m`` runs it (in the ``__main__`` module, which ``_data.pickling`` aliases as ``__mp_main__``, so
that a worker file's classes pickle as in a spawned worker): its exit - an exception, ``SystemExit``,
``atexit`` handlers, threads still running - is an interpreter's ordinary exit.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_workers: set[int] = set()  # the pids this zygote forked as workers and has not reaped: its other children are orphans
_keep: list[socket.socket] = []  # the write end of the SIGCHLD wakeup, open for as long as the zygote runs


class _SchedulerGone(Exception):
    """SIGTERM: the scheduler's process died (``PR_SET_PDEATHSIG``), or someone asks the zygote to end."""
ORPHAN_EXIT = 70  # as jobsched.worker.ORPHAN_EXIT: the process it belongs to is gone
MAX_REQUEST = 1 << 24  # an environment of 16 MB is not an environment
IDLE = 0.05  # seconds without a request before the zygote loads what only some workers need


class _Request:
    """What a forked child is to become: a worker with these arguments, environment and directory."""

    __slots__ = ("args", "env", "cwd")

    def __init__(self, args: list[str], env: list[bytes], cwd: bytes) -> None:
        self.args = args
        self.env = env  # NAME=VALUE
        self.cwd = cwd


def _die_with(parent: int, sig: int) -> None:
    """Have the kernel send this process ``sig`` when ``parent`` (the thread that started it) dies."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0 and os.getppid() != parent:
        os._exit(ORPHAN_EXIT)  # it died before the signal was armed


def _preload() -> None:
    """Import what every worker imports, so that a forked worker finds it loaded.

    No more: the scheduler's first worker is spawned while the zygote boots (``_local.zygote``), and the zygote
    must be ready by the time that worker is, or the second worker of a cold start would wait.
    """
    import ctypes  # noqa: F401  # the worker arms PR_SET_PDEATHSIG with it
    import faulthandler  # noqa: F401
    import runpy  # noqa: F401  # how a child becomes the worker

    import jobsched.worker  # noqa: F401


def _preload_when_idle() -> None:
    """Import what some workers need: argparse (a worker file's arguments), cloudpickle (functions that travel
    by value: notebooks, lambdas).

    Not before the first forks: the first workers would wait for it (a cold start). A worker that needs them
    before the zygote loaded them imports them itself.
    """
    import argparse  # noqa: F401

    try:
        import cloudpickle  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        pass


def _say(control: socket.socket, *words: object) -> None:
    control.sendall(" ".join(str(w) for w in words).replace("\n", " ").encode(errors="replace") + b"\n")


def _receive(control: socket.socket) -> tuple[list[bytes], list[int]] | None:
    """The next request's fields and the descriptors that came with it; None at the end of the pair."""
    try:
        data, fds, _flags, _address = socket.recv_fds(control, 65536, 2)
    except OSError:  # ECONNRESET: the scheduler closed its end with a reply unread, or died
        return None
    received = bytearray(data)
    # The scheduler sends one request and waits for its reply: a request never shares a read with the next.
    while data and (len(received) < 4 or len(received) < 4 + int.from_bytes(received[:4], "big")):
        if len(received) > MAX_REQUEST:
            data = b""  # out of bounds: treated as the end
            break
        try:
            data = control.recv(65536)
        except OSError:
            data = b""
        received += data
    if not data:  # the pair closed (mid-request too)
        _close(fds)
        return None
    return bytes(received[4:]).split(b"\0"), fds


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _watch_children() -> socket.socket:
    """Become the subreaper of the workers' orphans; return the socket that wakes the loop at each SIGCHLD."""
    from jobsched._local import tree

    tree.become_subreaper()
    wake, wake_write = socket.socketpair()
    wake.setblocking(False)
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup byte is what matters

    def scheduler_gone(signum: int, frame: object) -> None:
        raise _SchedulerGone

    signal.signal(signal.SIGTERM, scheduler_gone)
    _keep.append(wake_write)  # the fd must stay open for as long as the wakeup refers to it
    return wake



def _reap_orphans(wake: socket.socket) -> None:
    """At a SIGCHLD: kill each child that is not a worker (an orphan a dead worker's job left), and reap it."""
    from jobsched._local import tree

    try:
        while wake.recv(512):
            pass
    except BlockingIOError:
        pass
    for pid in tree.children(os.getpid()):
        if pid in _workers:
            continue  # reaped when the scheduler asks (``wait``)
        tree.kill_tree(pid)
        try:
            os.waitpid(pid, os.WNOHANG)  # not dead yet: its SIGCHLD comes, and the next call reaps it
        except ChildProcessError:
            pass


def _serve(control: socket.socket, wake: socket.socket) -> _Request | None:
    """Answer requests until the scheduler hangs up (None); in a forked child, return what it is to become."""
    import select

    idle_work = [_preload_when_idle]
    while True:
        ready = select.select([control, wake], [], [], IDLE if idle_work else None)[0]
        if not ready:
            idle_work.pop()()
            continue
        if wake in ready:
            _reap_orphans(wake)
            if control not in ready:
                continue
        received = _receive(control)
        if received is None:
            return None
        fields, fds = received
        if fields[0] == b"fork" and len(fds) == 2:
            n_args = int(fields[2])
            child = _fork(control, _Request([os.fsdecode(a) for a in fields[3:3 + n_args]], fields[3 + n_args:],
                                            fields[1]), fds)
            if child is not None:
                return child
            continue
        _close(fds)
        if fields[0] == b"wait":
            _say(control, *_wait(int(fields[1]), fields[2] == b"1"))
        else:
            _say(control, "error", f"not a request: {fields[0]!r} with {len(fds)} descriptors")


def _fork(control: socket.socket, child: _Request, fds: list[int]) -> _Request | None:
    """Fork a worker (in the child, return what it is to become); tell the scheduler its pid."""
    stdin_fd, out_fd = fds
    zygote = os.getpid()
    try:
        pid = os.fork()  # runs the os.register_at_fork handlers: random, for one, re-seeds in the child
    except OSError as exc:
        _close(fds)
        _say(control, "error", f"fork failed: {exc}")
        return None
    if pid == 0:
        try:
            control.close()
            _become_child(zygote, stdin_fd, out_fd)
        except BaseException:
            os._exit(1)  # nowhere to report it: the output pipe may not be stderr yet
        return child
    _workers.add(pid)
    _close(fds)  # the child holds them now; kept here, the output pipe would never reach its end
    _say(control, "pid", pid)
    return None


def _become_child(zygote: int, stdin_fd: int, out_fd: int) -> None:
    """In the forked child: its own session, death with the zygote, the scheduler's pipes as stdio, no other fd."""
    # None of the zygote's signal handling: a worker's jobs see the defaults, as in a spawned worker.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Its own session and process group, as a spawned worker's (start_new_session): a terminal's Ctrl-C
    # never reaches it, and one signal to the group stops it and every process its job started.
    os.setsid()
    _die_with(zygote, signal.SIGKILL)
    os.dup2(stdin_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    # Nothing else of the zygote's: not its control socket (closed above), not another worker's pipes. No
    # Python object of the zygote's owns another fd (tests/test_zygote.py compares the fds a job sees in a
    # forked and in a spawned worker).
    os.closerange(3, _max_fd())


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def _wait(pid: int, block: bool) -> tuple[object, ...]:
    try:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError as exc:
        return "error", f"pid {pid} is not a child of the zygote: {exc}"
    if got == 0:
        return ("running",)
    _workers.discard(pid)
    return "status", os.waitstatus_to_exitcode(status)


def _become_worker(request: _Request) -> None:
    """Turn this forked child into ``python -m jobsched.worker ARGS`` started in the scheduler's cwd and environment."""
    import runpy

    os.chdir(request.cwd)
    # ``-c`` put "" (the current directory) first on sys.path; ``-m`` puts the directory it started in.
    if sys.path and sys.path[0] == "":
        sys.path[0] = os.fsdecode(request.cwd)
    os.environ.clear()  # unsetenv and putenv too: the processes a job starts see the scheduler's environment
    environ = os.environb  # the same variables as os.environ, as bytes: nothing to decode
    for entry in request.env:
        name, _, value = entry.partition(b"=")
        environ[name] = value
    argv = [sys.executable, "-m", "jobsched.worker", *request.args]
    _set_title(argv)
    sys.orig_argv = argv
    sys.argv = ["-m", *request.args]  # argv[0] becomes the file of jobsched/worker/__main__.py, as with -m
    # What the interpreter itself calls for -m: runs the module's code in the existing __main__ module
    # (run_module would make a new one, and __mp_main__ would no longer be __main__).
    run_as_main = getattr(runpy, "_run_module_as_main", None)
    if run_as_main is not None:
        run_as_main("jobsched.worker", True)
    else:  # pragma: no cover - every CPython from 3.4 to 3.14 has it
        runpy.run_module("jobsched.worker", run_name="__main__", alter_sys=True)


def _set_title(argv: list[str]) -> None:
    """Show ``argv`` as this process's command line (``ps``, ``/proc/PID/cmdline``), as far as it fits.

    A forked child keeps the zygote's command line; without this, ``ps`` would list every worker as a zygote.
    The kernel reads the command line from the memory that held the original argv, so the new one is written
    there (as PostgreSQL and setproctitle do): whole arguments that fit, the rest of the area zeroed.
    CPython copied its argv at start-up and never reads that memory again.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49 of proc(5)
    except (OSError, IndexError, ValueError):
        return
    size = end - start
    title = b""
    for arg in argv:
        piece = arg.encode(errors="surrogateescape") + b"\0"
        if len(title) + len(piece) > size:
            break
        title += piece
    if not title or size <= 0:
        return
    import ctypes

    ctypes.memmove(start, title.ljust(size, b"\0"), size)


def main() -> None:
    """The zygote: ``python -c "from jobsched._local.zygote_process import main; main()" FD PARENT``."""
    fd, parent = int(sys.argv[1]), int(sys.argv[2])
    control = socket.socket(fileno=fd)
    _die_with(parent, signal.SIGTERM)
    _preload()
    try:
        wake = _watch_children()
        _say(control, "ready", os.getpid())
        child = _serve(control, wake)
    except (BrokenPipeError, _SchedulerGone):  # the scheduler went away: as the end of the pair
        child = None
    if child is None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not stop the killing halfway
        from jobsched._local import tree

        tree.kill_descendants(os.getpid())  # the workers and every process their jobs started
        control.close()
        return
    _become_worker(child)

