"""One owner per scheduler: which thread runs the loop, and the blocking calls that wait for it.

Exactly one thread runs a scheduler's loop at a time: the thread of a blocking ``start()`` (the manual's
scheduler-start: no thread hop per job), or the background thread "jobsched-scheduler" (``start(wait=False)``,
a kernel interrupted in a blocking start, ``close()`` of workers kept from an earlier start). Ownership is
taken and given back under the scheduler's lock, so two threads never both run the loop: the loser of a race
joins the running loop (a background one) or gets a clear error (another thread's blocking ``start()``).

Ctrl-C reaches these blocking calls only at safe points (``_core.interrupt.sigint_held``): then a Jupyter kernel
keeps the jobs running in the background, and a script closes everything (``after_interrupt``).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

from ..errors import SchedulerClosedError
from .checks import plural
from .interrupt import in_kernel, sigint_held

if TYPE_CHECKING:
    from ..scheduler import Scheduler
    from .bars import RunBar


def can_hold_sigint() -> bool:
    """Whether Ctrl-C can be held back in this thread (see ``_core.interrupt.sigint_held``)."""
    if threading.current_thread() is not threading.main_thread():
        return True
    return signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_IGN)


class LoopOwner:
    """Runs a scheduler's loop in one thread at a time, and waits for it."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.loop_done = threading.Event()  # set while no loop runs
        self.loop_done.set()
        self.background = False  # the owner is the "jobsched-scheduler" thread
        self.run_bar: RunBar | None = None  # start(progress=True): closed when the loop ends

    def new_thread(self) -> threading.Thread:
        return threading.Thread(target=self.run, name="jobsched-scheduler", daemon=True)

    def take(self, thread: threading.Thread | None) -> None:
        """Make ``thread`` (None: the calling thread) the loop's one owner; called under the scheduler's lock."""
        engine = self.sched._engine
        self.loop_done.clear()
        self.background = thread is not None
        engine.owner = thread or threading.current_thread()
        engine.interrupted = False
        if thread is not None:
            engine.open()  # listening before start() returns: sched.address is known at once
            thread.start()

    def run(self) -> None:
        """Run the loop until it may end, then hand ownership back (on the owner thread only)."""
        sched = self.sched
        engine, state, lock = sched._engine, sched._state, sched._lock
        try:
            while True:
                engine.open()
                engine.serve()
                with lock:
                    # A start() that came in while the loop was ending may want it to go on.
                    if engine.interrupted or state.poll_finished():
                        if state.stopped_on is not None and self.background and not sched._closed:
                            sched._broken = state.stopped_on
                        if not engine.interrupted:  # a blocking start() raises the error itself; its caller
                            state.stopped_on = None  # may queue jobs for the next one
                        engine.owner = None
                        break
        finally:
            with lock:
                engine.owner = None
                bar, self.run_bar = self.run_bar, None
            if bar is not None:
                bar.close()
            if sched._closed:  # before close() returns: its futures are settled and the backend released
                sched._settle_after_close()
            self.loop_done.set()
            with sched._idle:
                sched._idle.notify_all()

    def serve_here(self) -> None:
        """Run the loop in the calling thread until the jobs are done, as the manual's scheduler-start does.

        Ctrl-C (SIGINT) only sets a flag and wakes the loop, which stops between two events, never in the
        middle of one; then ``after_interrupt`` decides, and KeyboardInterrupt is raised.
        """
        engine = self.sched._engine
        with sigint_held(engine.interrupt):
            self.run()
        if engine.interrupted:
            engine.interrupted = False
            self.after_interrupt()
            raise KeyboardInterrupt
        with self.sched._lock:
            error = self.sched._state.take_error()
        if error is not None:
            raise error

    def wait_blocking(self, timeout: float | None, until_stopped: bool = False) -> bool:
        """Wait until idle (``wait``) or until the loop has stopped (``start(wait=True)`` joining a loop)."""
        sched = self.sched
        state = sched._state
        deadline = None if timeout is None else time.monotonic() + timeout
        ctrl_c: list[bool] = []  # Ctrl-C, held back to the top of the loop (see _interrupt)
        try:
            with sigint_held(lambda: ctrl_c.append(True)):
                while True:
                    if ctrl_c:
                        raise KeyboardInterrupt
                    running = sched.running
                    with sched._lock:
                        error = state.take_error() if (not until_stopped or not running) else None
                        idle = state.is_idle() and not state.ready
                    if error is not None:
                        raise error
                    if until_stopped:
                        if not running:
                            return True
                    elif idle:
                        return True
                    elif not running:
                        if sched._closed:
                            raise SchedulerClosedError(f"the scheduler is closed with {sched.n_queued_jobs} "
                                                       "jobs queued; they will not run")
                        raise RuntimeError(f"wait: {plural(sched.n_queued_jobs, 'job')} queued but the "
                                           "scheduler is not running; call start() first")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    with sched._idle:  # short slices: Ctrl-C / Jupyter's interrupt gets control back at once
                        sched._idle.wait(0.1 if remaining is None else min(0.1, remaining))
        except KeyboardInterrupt:
            self.after_interrupt()
            raise

    def after_interrupt(self) -> None:
        """Ctrl-C reached a blocking call: a Jupyter kernel keeps the jobs going, a script closes everything."""
        sched = self.sched
        if in_kernel():
            with sched._lock:
                sched._state.until_idle = False
                if sched._engine.owner is None and not sched._closed:
                    self.take(self.new_thread())
        else:
            sched.close(timeout=0.5)

    def wait_for_loop_end(self) -> None:
        """Wait until the loop has stopped (``close()``). Ctrl-C meanwhile kills every worker now, then raises."""
        ctrl_c: list[bool] = []
        killing = False
        with sigint_held(lambda: ctrl_c.append(True)):
            while not self.loop_done.wait(0.1):
                if ctrl_c and not killing:
                    killing = True
                    self.sched._engine.post(self._kill_all_now)
        if ctrl_c:
            raise KeyboardInterrupt

    def _kill_all_now(self) -> None:
        """SIGKILL every worker now (on the loop's thread); their jobs stay queued."""
        sched = self.sched
        with sched._lock:
            cmds = sched._state.kill_all()
        sched._engine.execute(cmds)
