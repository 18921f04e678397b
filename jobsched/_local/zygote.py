"""Starting workers from a zygote: a clean, pre-imported interpreter that forks each new worker.

Starting a worker by ``subprocess`` costs a whole interpreter start-up (about 30 ms of CPU here): 120 workers
on 2 cores take seconds. Forking a process that has already imported ``jobsched.worker`` costs about a
millisecond. The process forked from must not be the scheduler's own (a notebook kernel, with its threads,
its sockets and the user's state), so each backend starts a zygote, as ``multiprocessing``'s forkserver does::

    LocalBackend ── Starter.start(argv, env) ──> Zygote (this module) ══ socketpair ══> zygote process
         │   creates the worker's stdin and output pipes,                    (_zygote_process)
         │   passes their child ends over the pair (SCM_RIGHTS),                    │ fork
         │   writes the secret into stdin itself                                    ▼
         └──────── pidfd, output pipe, TCP connection + HMAC handshake ───────> worker (setsid)

* When: the first ``DIRECT_SPAWNS`` workers of a run (one per core) are spawned, side by side, as without a
  zygote: a pool no bigger than the machine starts exactly as fast, each worker has its process at once,
  and no zygote is started for it. A backend starts its zygote when one more worker is asked for (a bigger
  pool, a replacement, a recycled worker), and stops it in ``shutdown()``, once every worker has exited
  (``close()``, or a run that ends). One zygote per scheduler, not per process: its life is the scheduler's,
  and so is its environment. Workers asked for while it boots (booting costs what a worker's interpreter
  does) wait for it without blocking the loop (``Starter.start`` returns None; the backend watches
  ``Starter.booting``), then fork in a millisecond each.
* Which workers: only the default command's form, ``[sys.executable, "-m", "jobsched.worker", ...]`` (remote
  calls, and worker files through ``make_server``: the file is loaded by the forked child, fresh in each
  worker). Any other command - interpreter flags (``debug=True``), another program - is spawned as before.
  So is a worker whose environment differs from the zygote's (``os.environ`` changed since the zygote
  started) in anything but jobsched's own per-worker variables: what the interpreter read at start-up
  (``PYTHON*``, locale, ``LD_*``) would otherwise differ from a spawned worker's.
* What a forked worker shares with its siblings: the hash seed (``PYTHONHASHSEED``), as ``multiprocessing``'s
  fork and forkserver workers do. ``random`` re-seeds in each child (``os.register_at_fork``); numpy and the
  like are not imported by the zygote, so each worker seeds its own.
* Deaths: see ``_local.zygote_process``. A dead zygote takes its workers along (they must die with their scheduler
  even when a job holds the GIL, and the zygote is the parent their kernel-side signal is tied to): they
  end as ``crashed=False`` exits, so the scheduler replaces them and runs their jobs again without counting
  it against ``max_retries``. From then on this backend spawns its workers, until its next ``shutdown()``.
* Exit codes: only a parent can reap a process, so the zygote reaps its workers on request and reports the
  status (``ForkedProcess.wait``): ``WorkerDied`` still says "exit code 3" or "killed by signal SIGKILL".
* ``JOBSCHED_ZYGOTE=0`` in the environment turns it off: every worker is spawned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

from .._data import shm as _shm
from . import tree as _tree
from . import wire as _wire
from .processes import Reaper, WorkerProcess, on_spawner_thread, spawn

ENV_SWITCH = "JOBSCHED_ZYGOTE"
# -c, not -m: the zygote's __main__ module stays empty, for the worker that a forked child becomes.
ZYGOTE_CODE = "from jobsched._local.zygote_process import main; main()"
START_TIMEOUT = 30.0  # seconds for the zygote to import what a worker needs; a loaded machine is slow
REPLY_TIMEOUT = 30.0  # a fork, or the status of a worker already dead (or SIGKILLed just before)
# They differ from one worker to the next, and a forked worker gets its own (most are read and removed by the
# worker when it starts). Any other difference from the zygote's environment means "spawn this one".
PER_WORKER = frozenset({_wire.ENV_ADDRESS, _wire.ENV_WORKER, _wire.ENV_SYS_PATH, _shm.ENV_PREFIX, _tree.ENV_TAG})
DIED_WITH_ZYGOTE = "killed with the zygote that forked it (exit status unknown)"
# Workers of a run spawned before the zygote is started: as many interpreters as the cores boot side by side.
DIRECT_SPAWNS = os.cpu_count() or 1
ZYGOTE_GRACE = 2.0  # seconds a zygote has to kill its tree and exit when it is closed, before SIGKILL


class ZygoteGone(Exception):
    """The zygote died, hung up, or broke the protocol: start workers by spawning."""


def enabled() -> bool:
    """Whether workers may be forked from a zygote here: Linux with pidfds, and not turned off."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "no", "false", "off"):
        return False
    if not sys.platform.startswith("linux") or not hasattr(socket, "send_fds"):
        return False
    try:  # the scheduler sees a forked worker exit through its pidfd: it cannot wait for a grandchild
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def forkable(argv: list[str]) -> bool:
    """Whether ``argv`` starts the worker a zygote forks: ``python -m jobsched.worker ...``, no flags."""
    return argv[:3] == [sys.executable, "-m", "jobsched.worker"]


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in PER_WORKER}


class ForkedProcess:
    """A worker forked by a zygote: the part of ``subprocess.Popen`` that ``_local.backend`` uses."""

    def __init__(self, zygote: Zygote, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        # The zygote died before it could report this worker's exit: PR_SET_PDEATHSIG killed the worker.
        self.died_with_zygote = False
        self._zygote = zygote

    def poll(self) -> int | None:
        if self.returncode is None:
            self._ask(block=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Return the exit status (the zygote reaps the worker); ``timeout`` is ignored: ask only for the
        status of a worker that has exited or was just SIGKILLed."""
        while self.returncode is None:
            self._ask(block=True)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet, so the pid is still this worker's
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _ask(self, block: bool) -> None:
        try:
            self.returncode = self._zygote.status(self.pid, block)
        except ZygoteGone:
            self.returncode, self.died_with_zygote = -signal.SIGKILL, True


class Zygote:
    """The scheduler's end of one zygote process: fork workers, ask for their exit status, stop it."""

    def __init__(self, env: dict[str, str]) -> None:
        """Start a zygote with ``env`` (a worker's, the per-worker variables left out); do not wait for it.

        Raises:
            ZygoteGone: it could not start.
        """
        self.env = _startup_env(env)
        self.alive = 0  # forked workers not reaped yet
        self._owner = os.getpid()
        self._buffer = b""
        self.ready = False  # it said so: it forks now
        self._deadline = time.monotonic() + START_TIMEOUT
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control = ours
        argv = [sys.executable, "-c", ZYGOTE_CODE, str(theirs.fileno()), str(os.getpid())]
        try:
            # From the spawner thread: the zygote's PR_SET_PDEATHSIG is tied to the thread that started it.
            self._proc: subprocess.Popen[bytes] | None = on_spawner_thread(lambda: subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=self.env, close_fds=True,
                pass_fds=(theirs.fileno(),),
                # Its own session: a terminal's Ctrl-C (sent to our process group) must not kill it.
                start_new_session=True))
        except OSError as exc:
            ours.close()
            raise ZygoteGone(f"the zygote could not start: {exc}") from exc
        finally:
            theirs.close()
        self.pid = self._proc.pid

    def fileno(self) -> int:
        """The scheduler's end of the pair: readable when the booting zygote says it is ready (or dies)."""
        return self._control.fileno()

    def check_ready(self, wait: bool = False) -> bool:
        """Read the zygote's ready line if it came (``wait``: until it comes): whether it is ready.

        Raises:
            ZygoteGone: it died, broke the protocol, or was not ready within ``START_TIMEOUT`` (it is closed).
        """
        if not self.ready:
            try:
                left = self._deadline - time.monotonic()
                reply = self._reply(left) if wait and left > 0 else self._reply_if_any()
            except ZygoteGone as exc:
                raise ZygoteGone(f"the zygote did not start: {exc}") from exc
            if reply is None:
                if time.monotonic() < self._deadline:
                    return False
                self.close()
                raise ZygoteGone(f"the zygote did not start within {START_TIMEOUT:g} s")
            if reply[0] != "ready":
                self.close()
                raise ZygoteGone(f"the zygote did not start: it said {reply[0]!r}")
            self.ready = True
        return True

    def fork(self, argv: list[str], env: dict[str, str], secret: bytes) -> ForkedProcess:
        """Fork a worker running ``argv`` (see ``forkable``) with ``env`` in our working directory.

        Raises:
            ZygoteGone: the zygote is dead or broke the protocol (it is closed).
            OSError: the pipes could not be made, or the fork failed (the zygote goes on).
        """
        assert self.ready, "fork only from a zygote that said it is ready (check_ready)"
        args = argv[3:]
        fields = ["fork", os.getcwd(), str(len(args)), *args, *(f"{k}={v}" for k, v in env.items())]
        if any("\0" in field for field in fields):
            raise OSError("a worker's argument or environment holds a NUL byte")  # spawning says the same
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            answer, detail = self._request(fields, [stdin_r, out_w])
        except BaseException:
            os.close(stdin_w)
            os.close(out_r)
            raise
        finally:
            os.close(stdin_r)  # the worker's ends: the zygote passed them on, or it never will
            os.close(out_w)
        if answer != "pid":
            os.close(stdin_w)
            os.close(out_r)
            raise OSError(f"the zygote could not fork a worker: {detail}")
        self.alive += 1
        stdin = os.fdopen(stdin_w, "wb")
        try:  # as _pool.spawn: the secret never leaves this process otherwise
            stdin.write(secret.hex().encode() + b"\n")
            stdin.flush()
        except BrokenPipeError:
            pass  # it died already: its exit is seen (pidfd) and reported, as any other
        os.set_blocking(out_r, False)
        return ForkedProcess(self, int(detail), stdin, os.fdopen(out_r, "rb", buffering=0))

    def status(self, pid: int, block: bool) -> int | None:
        """Return the exit status of worker ``pid`` (it is reaped then), or None if it still runs (``block`` False).

        Raises:
            ZygoteGone: the zygote died first (it is closed).
        """
        answer, detail = self._request(["wait", str(pid), "1" if block else "0"], [])
        if answer == "status":
            self.alive -= 1
            return int(detail)
        if answer == "running":
            return None
        self.close()
        raise ZygoteGone(f"the zygote cannot tell how worker {pid} ended: {detail}")

    def close(self) -> None:
        """Stop the zygote, at once: it holds nothing to save (a worker still alive dies with it)."""
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is not None:
            # Not "close the pair and wait": a copy of our end (LocalBackend's, while workers wait for the
            # boot) would keep the pair open, and a hung zygote would not read it anyway. Signalled before
            # the pair closes: closing it with a reply unread (its "ready") would fail the zygote's recv.
            # SIGTERM, so that it kills its tree first (what dead workers' jobs left it); SIGKILL if it hangs.
            proc.terminate()
            try:
                proc.wait(ZYGOTE_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._control.close()

    @property
    def closed(self) -> bool:
        return self._proc is None

    def _request(self, fields: list[str], fds: list[int]) -> tuple[str, str]:
        """Send one request (see ``_local.zygote_process``) and return its reply: ``(word, rest of the line)``."""
        if self._proc is None or os.getpid() != self._owner:  # closed, or we are a fork of the scheduler
            raise ZygoteGone("the zygote is closed")
        payload = b"\0".join(os.fsencode(field) for field in fields)
        data = len(payload).to_bytes(4, "big") + payload
        self._control.settimeout(REPLY_TIMEOUT)  # it may be non-blocking since _reply_if_any
        try:
            sent = socket.send_fds(self._control, [data], fds) if fds else 0
            self._control.sendall(data[sent:])
        except OSError as exc:
            self.close()
            raise ZygoteGone(f"the zygote is gone: {exc}") from exc
        return self._reply(REPLY_TIMEOUT)

    def _reply(self, timeout: float) -> tuple[str, str]:
        """The next reply, ``(word, rest of the line)``; a zygote silent for ``timeout`` seconds is as good as
        dead (it is closed)."""
        self._control.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                self._receive()
            except TimeoutError as exc:
                self.close()
                raise ZygoteGone(f"the zygote did not answer within {timeout:g} s") from exc
        return self._take_line()

    def _reply_if_any(self) -> tuple[str, str] | None:
        """The next reply if the whole of it has come, without waiting; else None."""
        self._control.setblocking(False)
        try:
            while b"\n" not in self._buffer:
                self._receive()
        except BlockingIOError:
            return None
        return self._take_line()

    def _receive(self) -> None:
        try:
            chunk = self._control.recv(65536)
        except (BlockingIOError, TimeoutError):
            raise  # nothing yet: the caller decides whether that is the end
        except OSError as exc:
            self.close()
            raise ZygoteGone(f"the zygote is gone: {exc}") from exc
        if not chunk:
            self.close()
            raise ZygoteGone("the zygote exited")
        self._buffer += chunk

    def _take_line(self) -> tuple[str, str]:
        line, self._buffer = self._buffer.split(b"\n", 1)
        word, _, rest = line.decode(errors="replace").partition(" ")
        return word, rest


class Starter:
    """How a backend starts its workers: forked by its zygote when it can, else spawned (``_local.processes.spawn``)."""

    def __init__(self) -> None:
        self._zygote: Zygote | None = None
        self._spawn_only = False  # the zygote failed this run: spawn until shutdown
        self._spawned = 0  # workers of this run spawned before its zygote (DIRECT_SPAWNS)

    @property
    def zygote_pid(self) -> int | None:
        z = self._zygote
        return z.pid if z is not None and not z.closed else None

    @property
    def booting(self) -> Zygote | None:
        """The zygote that workers wait for (``start`` returned None): watch it, then call ``settle``."""
        z = self._zygote
        return z if z is not None and not z.ready and not z.closed else None

    def start(self, argv: list[str], env: dict[str, str], secret: bytes, reaper: Reaper,
              log: Callable[[str], None], base_env: dict[str, str] | None = None) -> WorkerProcess | None:
        """Start one worker: fork it if ``argv`` and ``env`` allow, else spawn it.

        ``base_env`` is ``env`` without the slot's own variables (``Scheduler(worker_env=...)``): the zygote is
        started with it and compared to it, and a forked worker gets ``env``, as a spawned one does.

        Returns:
            Its process; None if it is to be forked once the zygote, which is booting, is ready: call again
            then (``booting`` is readable, or ``settle`` says so).
        """
        shared = env if base_env is None else base_env
        if self._forks(argv, shared, reaper, log):
            if self._zygote is None:
                if self._spawned < DIRECT_SPAWNS:  # one per core, side by side: see the module's docstring
                    self._spawned += 1
                    return spawn(argv, env, secret)
                self._launch(shared, reaper, log)  # if it cannot start, we spawn from now on
            zygote = self._zygote
            if zygote is not None:
                try:
                    if not zygote.check_ready():
                        return None
                    return zygote.fork(argv, env, secret)
                except ZygoteGone as exc:
                    self._give_up(reaper, log, exc)
                except OSError as exc:  # this fork failed; the next may not
                    log(f"jobsched: {exc}; spawning this worker instead")
        return spawn(argv, env, secret)

    def settle(self, reaper: Reaper | None, log: Callable[[str], None], wait: bool = False) -> bool:
        """The booting zygote said something, or may be overdue: whether waiting workers can start now (it is
        ready, or it failed and they will be spawned). ``wait``: until they can."""
        zygote = self.booting
        if zygote is None:
            return True
        try:
            return zygote.check_ready(wait)
        except ZygoteGone as exc:
            self._give_up(reaper, log, exc)
            return True

    def close(self, reaper: Reaper | None) -> None:
        """Every worker has exited: stop the zygote; the next run starts a fresh one."""
        zygote, self._zygote = self._zygote, None
        self._spawn_only = False
        self._spawned = 0
        if zygote is not None:
            if reaper is not None:  # dead or alive: its group id must not stay listed, it may be reused
                reaper.forget(zygote.pid)
            zygote.close()

    def _forks(self, argv: list[str], env: dict[str, str], reaper: Reaper, log: Callable[[str], None]) -> bool:
        """Whether this worker is the zygote's: ``self._zygote`` forks it, or None: one is to be launched."""
        if self._spawn_only or not forkable(argv):
            return False
        zygote = self._zygote
        if zygote is not None and zygote.closed:  # it died; a worker's exit status told us
            self._give_up(reaper, log, ZygoteGone("the zygote died"))
            return False
        if zygote is not None and zygote.env != _startup_env(env):
            if zygote.alive or not zygote.ready:
                return False  # os.environ changed while its workers run (or wait for it): spawn this one
            self.close(reaper)  # changed between runs of workers: a zygote for the new environment
        if self._zygote is None and not enabled():
            self._spawn_only = True
            return False
        return True

    def _launch(self, env: dict[str, str], reaper: Reaper, log: Callable[[str], None]) -> None:
        try:
            self._zygote = Zygote(env)
        except ZygoteGone as exc:
            self._give_up(reaper, log, exc)
            return
        reaper.watch(self._zygote.pid, zygote=True)  # its own group, ended with the workers' if we die

    def _give_up(self, reaper: Reaper | None, log: Callable[[str], None], exc: ZygoteGone) -> None:
        log(f"jobsched: {exc}; starting workers by spawning them from now on")
        self.close(reaper)
        self._spawn_only = True
