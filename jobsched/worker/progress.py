"""Progress from inside a job: ``jobsched.progress(done, total=None, note="")``, and tqdm bars in workers.

::

    job code ── progress(done, total, note) ──> Reporter.pending ──(at most every INTERVAL s)──> PROGRESS frame
    tqdm bar ── display() (patched in workers) ─┘        └── "jobsched-progress" thread: sends a value left
                                                              pending when the job stops calling
                                                              (the last value always gets through)

``progress`` is cheap enough for a tight loop (well under 2 µs a call): a call checks its arguments and stores
them; a frame is sent only when the rate window (``INTERVAL``) has reopened. A value that a later call does
not replace is sent by a daemon thread as soon as the window reopens, so a job that reports 5/10 and then
computes for a minute shows 5/10 within ``INTERVAL``.

Every frame on the worker's connection is sent under ``Reporter.lock``: the job loop sends its RESULT or ERROR
under it too, after it has marked the job finished, so a progress frame never interleaves with another frame
and never follows its job's result.

Outside a worker (no ``Reporter`` attached) ``progress`` checks its arguments and does nothing else. This
module is imported by ``import jobsched``: it imports nothing at import time beyond ``time``.
"""

from __future__ import annotations

import sys
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

# Seconds between two PROGRESS frames of one worker: at most about 10 a second.
INTERVAL = 0.1
# Longest note sent (characters): a progress frame stays a few dozen bytes.
MAX_NOTE = 200


class Reporter:
    """A worker's progress channel: the pending value, the rate window, the send lock and the sender thread."""

    __slots__ = ("send_frame", "kind", "lock", "job", "pending", "sent", "next_send", "armed", "_wake", "_thread")

    def __init__(self, send_frame: Callable[[int, int, bytes], None], kind: int) -> None:
        import threading

        self.send_frame = send_frame  # the connection's send_frame: call it only under ``lock``
        self.kind = kind  # _wire.PROGRESS
        self.lock = threading.Lock()  # serialises every frame sent on the connection
        self.job: int | None = None  # index of the running job; None between jobs
        self.pending: tuple[Any, Any, str] | None = None  # the last value reported in this job
        self.sent: tuple[Any, Any, str] | None = None  # the last value sent (identity: a new tuple per call)
        self.next_send = 0.0  # monotonic time when the rate window reopens
        self.armed = False  # the sender thread has been asked to send what is pending
        self._wake: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def flush(self) -> None:
        """Send the pending value if it is new and a job is running, and close the rate window."""
        with self.lock:
            value, job = self.pending, self.job
            if value is None or value is self.sent or job is None:
                return
            self.sent = value
            self.next_send = _monotonic() + INTERVAL
            done, total, note = value
            if len(note) > MAX_NOTE:
                note = note[:MAX_NOTE]
            import pickle  # already loaded by every worker: a dictionary lookup

            try:
                self.send_frame(self.kind, job, pickle.dumps((done, total, note), 5))
            except OSError:
                pass  # the scheduler is gone: the job loop finds out when it sends the result

    def arm(self) -> None:
        """Have the sender thread send the pending value when the rate window reopens."""
        self.armed = True
        if self._wake is None:
            import threading

            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._send_late, name="jobsched-progress", daemon=True)
            self._thread.start()
        self._wake.set()

    def _send_late(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            wake.wait()
            wake.clear()
            while (delay := self.next_send - _monotonic()) > 0:
                _sleep(delay)
            # Disarm before reading ``pending`` (in flush): a value stored after that read finds the thread
            # disarmed and arms it again, so no value is ever left behind.
            self.armed = False
            self.flush()


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


_reporter: Reporter | None = None


def attach(send_frame: Callable[[int, int, bytes], None], kind: int) -> Reporter:
    """Make this process a worker whose jobs report on ``send_frame`` (called by the job loop, once)."""
    global _reporter
    _reporter = Reporter(send_frame, kind)
    import os

    # A process that a job forks (multiprocessing's "fork", os.fork) shares the worker's socket: its reports
    # would interleave with the worker's frames. It reports nothing.
    os.register_at_fork(after_in_child=_detach)
    return _reporter


def _detach() -> None:
    global _reporter
    _reporter = None


def _number(value: Any, name: str) -> int | float:
    """Return ``value`` as an int or float (numpy scalars and other real numbers too), or raise TypeError."""
    if isinstance(value, (int, float)):  # bool, int and float subclasses
        return int(value) if isinstance(value, int) else float(value)
    index = getattr(type(value), "__index__", None)
    if index is not None:
        return int(index(value))
    import numbers

    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"progress: {name} must be a number, got {type(value).__name__}: {value!r:.60}")


def progress(done: float, total: float | None = None, note: str = "") -> None:
    """Report how far the running job has got: ``done`` out of ``total`` (if known), with a short note.

    Cheap enough for a tight loop: at most about 10 reports a second leave the worker, and the last one
    always does (within about 0.1 s, even if the job never calls again). The scheduler shows the last report
    as ``worker.progress``. Outside a job run by a worker, it only checks its arguments.

    Args:
        done: units of work done (an int or float).
        total: units of work in all, or None if unknown.
        note: a short text (at most 200 characters are sent).

    Raises:
        TypeError: ``done`` or ``total`` is not a number, or ``note`` is not a str.
    """
    if type(done) is not int and type(done) is not float:
        done = _number(done, "done")
    if total is not None and type(total) is not int and type(total) is not float:
        total = _number(total, "total")
    if type(note) is not str:
        if not isinstance(note, str):
            raise TypeError(f"progress: note must be a str, got {type(note).__name__}: {note!r:.60}")
        note = str.__str__(note)
    r = _reporter
    if r is None or r.job is None:
        return
    r.pending = (done, total, note)
    if _monotonic() >= r.next_send:
        r.flush()
    elif not r.armed:
        r.arm()


# ---------------------------------------------------------------------------------------- tqdm inside a job


class _Discard:
    """Where a tqdm bar in a worker draws: nowhere (its state travels as progress instead)."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


_DISCARD = _Discard()


def patch_tqdm(std: Any) -> None:
    """Make the bars of module ``tqdm.std`` report through ``progress`` instead of redrawing on a terminal.

    Every bar class (``tqdm.tqdm``, ``tqdm.auto.tqdm``, ``trange``, ``tqdm.asyncio``...) derives from
    ``tqdm.std.tqdm`` and draws through its ``display``; a bar writing to the standard streams gets a file
    that discards, so that carriage-return redraws flood neither the worker's output nor the scheduler's
    stderr. A bar given another file (a log file of the job's own) still writes there. Never raises: a tqdm
    whose internals differ is left as it is.
    """
    try:
        cls = std.tqdm
        if getattr(cls, "_jobsched_patched", False):
            return
        init, draw = cls.__init__, cls.display
        streams = (None, sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            quiet = len(args) < 5 and any(kwargs.get("file") is s for s in streams)  # file: the 5th parameter
            if quiet:
                kwargs["file"] = _DISCARD
            self._jobsched_quiet = quiet
            init(self, *args, **kwargs)

        def display(self: Any, msg: Any = None, pos: Any = None) -> Any:
            try:
                progress(self.n, self.total, self.desc or "")
            except TypeError:
                pass
            if getattr(self, "_jobsched_quiet", True):
                return True
            return draw(self, msg, pos)

        __init__.__wrapped__ = init  # type: ignore[attr-defined]
        cls.__init__ = __init__
        cls.display = display
        cls._jobsched_patched = True
    except Exception:  # an unknown tqdm: bars draw as they would anywhere
        pass


class TqdmHook:
    """A ``sys.meta_path`` finder that patches ``tqdm.std`` right after a job imports it (one shot).

    Workers stay lean: tqdm is not imported until a job imports it, and then it is patched before any bar
    exists. Only the name ``tqdm.std`` is intercepted; every other import costs one string comparison.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "tqdm.std":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            patch_tqdm(module)

        try:
            loader.exec_module = exec_and_patch  # this module's own loader instance
        except AttributeError:
            return None  # a loader that cannot be wrapped: let the next finder load tqdm.std unpatched
        return spec


def install_tqdm_hook() -> None:
    """Have tqdm bars in this process report as progress: patch tqdm now if loaded, else when imported."""
    std = sys.modules.get("tqdm.std")
    if std is not None:
        patch_tqdm(std)
    elif not any(isinstance(f, TqdmHook) for f in sys.meta_path):
        sys.meta_path.insert(0, TqdmHook())
