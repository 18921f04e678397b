"""Ctrl-C: held back to safe points in the main thread, then a Jupyter kernel keeps going and a script stops.

Python raises KeyboardInterrupt between any two bytecodes of the main thread: inside a lock's acquire or
release (leaving the lock held, and the scheduler's loop stuck on it), or between taking a job off the queue
and recording which worker has it. Code under ``sigint_held`` notes the interrupt instead, and raises
KeyboardInterrupt itself where nothing is half done.

What then happens to the jobs is one policy (``Scheduler._after_interrupt``): in a Jupyter kernel the ■
button must give control back and leave the jobs running in the background; in a script, Ctrl-C ends the
program, so every worker is closed.

A Ctrl-C that leaves a ``with Scheduler()`` block (or an interpreter exit that waits for an ``Executor``'s
pending calls) must not turn into a silent wait: ``say_waiting`` prints one line on stderr saying what is
waited for and that a second Ctrl-C stops it now.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator


def say_waiting(what: str) -> None:
    """Print the one line that says what a Ctrl-C'd exit still waits for: ``jobsched: waiting WHAT; press ...``."""
    try:
        sys.stderr.write(f"jobsched: waiting {what}; press Ctrl-C again to stop them now\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # no usable stderr: the wait goes on all the same
        pass


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where an interrupt must not end the scheduler)."""
    return "ipykernel" in sys.modules and type(sys.stdout).__name__ == "OutStream"


@contextlib.contextmanager
def sigint_held(on_sigint: Callable[[], None]) -> Iterator[bool]:
    """Hold Ctrl-C back while the main thread runs scheduler code: SIGINT calls ``on_sigint`` instead.

    Yields False, changing nothing, in the main thread of a program whose SIGINT handler is not Python's
    own (a Jupyter kernel installs Python's own while a cell runs): that handler stays in charge. Other
    threads never receive KeyboardInterrupt, and an ignored SIGINT needs no holding back: True, as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield True
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield previous is signal.SIG_IGN
        return

    def handler(signum: int, frame: object) -> None:  # a signal handler only sets a flag (via on_sigint)
        on_sigint()

    signal.signal(signal.SIGINT, handler)
    try:
        yield True
    finally:
        signal.signal(signal.SIGINT, previous)
