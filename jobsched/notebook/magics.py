"""IPython magics: ``%jobsched`` drives ``jobsched.default_scheduler()``; ``%%jobsched`` runs a cell in a worker.

``%load_ext jobsched`` calls ``load_ipython_extension``, which registers ``JobschedMagics``. The magics are
thin: the default scheduler comes from ``jobsched.background``'s public functions (``default_scheduler``,
``replace_default_scheduler``); each subcommand is one call on it (``start``, ``scale``, ``pause``,
``resume``, ``cancel``), ``status`` reads its ``snapshot()``, ``stop`` closes its workers and keeps it
(``_common.stop_workers``: a ``sched`` kept from an earlier cell goes on working after ``%jobsched start``),
and the dashboard is ``Scheduler.dashboard()``.

``%%jobsched [-o NAME]`` ships the cell to a worker::

    kernel                                                  worker
    ──────                                                  ──────
    cell ─> transform IPython syntax ─> parse ─> names it uses
            values of those names in user_ns ─> pickled one by one (cloudpickle for notebook
                                                 functions; modules by name; unpicklable: skipped + warned)
    default_scheduler().submit(run_cell, source, values, modules) ─────> run_cell: import modules, unpickle
                                                                         values, exec the cell, eval its
    done callback: user_ns[NAME] = value  <──── value of the last ────── last expression
                   or show the remote traceback     expression

The cell magic returns at once; the kernel stays free while the worker runs the cell.
"""

from __future__ import annotations

import argparse
import ast
import keyword
import os
import re
import reprlib
import shlex
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from types import ModuleType
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .._core.checks import plural
from .._data.pickling import dumps
from ..background import default_scheduler, replace_default_scheduler
from ..errors import JobError
from ..scheduler import Scheduler
from ..worker.cell import run_cell
from ._common import STOP_TIMEOUT, busy_lines, outcome_text, scale_to, status_line, stop_workers

USAGE = """\
usage:
  %jobsched                  show the live dashboard of the default scheduler
  %jobsched start [-n N]     start N workers in the background (default: one per CPU)
  %jobsched start --dask ADDRESS [-n N]
                             run the jobs on the Dask cluster at ADDRESS (N: its threads to use; default all)
  %jobsched start --journal PATH [-n N]
                             record results in the SQLite journal PATH; jobs already in it are not run again
  %jobsched start --seed S [-n N]
                             give each job a seed derived from S and its key (random, numpy, job_seed())
  %jobsched scale N          run N workers from now on (busy workers beyond N finish their job first)
  %jobsched pause            stop handing out jobs (running jobs finish)
  %jobsched resume           hand out jobs again
  %jobsched cancel INDEX     cancel job INDEX, queued or running (its worker is replaced)
  %jobsched debug N [--journal PATH]
                             run failed job N (an index, or a journal key) here, with its arguments and seed;
                             on an error, the post-mortem debugger (%debug) opens where it raised
  %jobsched status           print the counts (workers, queued, active, succeeded, failed; cancelled and
                             from journal when not 0: each finished job in one of them), then per busy
                             worker: its job, how long it has run, progress
  %jobsched wait [TIMEOUT]   block until no job is queued or active and every %%jobsched cell is done
  %jobsched stop             close the workers (running jobs finish first); the scheduler, its queue and
                             counts stay: `%jobsched start` runs it again
  %%jobsched [-o NAME]       run the cell in a worker; bind the value of its last expression to NAME"""

HELP = f"""Drive jobsched's default scheduler, or run a cell in a worker.

The scheduler is ``jobsched.default_scheduler()``, one object for the whole session: ``%jobsched stop``
closes its workers but not the scheduler, so ``sched = jobsched.default_scheduler()`` from an earlier
cell still works after ``%jobsched start``. ``--dask ADDRESS`` (described in ``jobsched.dask``) and
``--journal PATH`` replace it by a new one when it is idle (stop it first); a later plain
``%jobsched start`` keeps them.

{USAGE}

``%%jobsched [-o NAME]`` runs the cell body in a worker, as a background job of the default scheduler
(started if it is not running), and returns at once. The names the body uses that exist in the notebook
are sent along: values are pickled (cloudpickle for functions and classes defined in the notebook),
modules are imported again by name in the worker; a value that cannot be pickled (a lock, a socket, a
generator) is not sent, with a warning. When the job finishes, the value of the body's last expression
is bound to ``NAME`` in the notebook. The body must be plain Python (no %magics or !shell lines).
Assignments in the body happen in the worker, not in the notebook.

Where the outcome shows: in a Jupyter kernel, the cell that ran ``%%jobsched`` displays a small output
area that says "running", then "done" or the *remote traceback*. The outcome goes there rather than to
stdout because a background thread's prints land in whichever cell runs at that moment. Outside a kernel
(terminal IPython) the traceback is printed to stderr when the job fails. Either way, ``_jobsched_cell``
in the notebook is the last ``CellJob``: ``_jobsched_cell.result()`` returns the value or raises the
``JobError``; ``%jobsched wait`` blocks until every cell is done.

Bad subcommands or arguments raise ``UsageError`` (a message, no traceback).
"""

_SUBCOMMANDS = ("start", "scale", "pause", "resume", "cancel", "debug", "status", "wait", "stop")
# Names IPython puts in the user namespace (outputs, inputs, history): never shipped to a worker.
_IPYTHON_NAMES = re.compile(r"_+|_i+|_\d+|_i\d+|_[iod]h|In|Out|get_ipython|exit|quit")
# The frame of run_cell itself, in a remote traceback: plumbing, not the user's code.
_RUN_CELL_FRAME = re.compile(r'  File "[^"]*_cell\.py", line \d+, in run_cell\n(?:    .*\n)*')
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (IPython shows the message, no traceback) instead of exiting."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog, add_help=False)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{USAGE}")


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _identifier(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise argparse.ArgumentTypeError(f"NAME must be a Python identifier, got {text!r}")
    return text


def _parsers() -> dict[str, _Parser]:
    parsers = {sub: _Parser(f"%jobsched {sub}") for sub in _SUBCOMMANDS}
    parsers["start"].add_argument("-n", "--workers", type=_count(1), default=None, dest="n")
    parsers["start"].add_argument("--dask", metavar="ADDRESS", default=None, dest="dask")
    parsers["start"].add_argument("--journal", metavar="PATH", default=None, dest="journal")
    parsers["start"].add_argument("--seed", type=_count(0), default=None, dest="seed")
    parsers["debug"].add_argument("job")
    parsers["debug"].add_argument("--journal", metavar="PATH", default=None, dest="journal")
    parsers["scale"].add_argument("n", type=_count(0))
    parsers["cancel"].add_argument("index", type=_count(0))
    parsers["wait"].add_argument("timeout", type=_seconds, nargs="?", default=None)
    return parsers


_PARSERS = _parsers()
_CELL_PARSER = _Parser("%%jobsched")
_CELL_PARSER.add_argument("-o", "--out", type=_identifier, default=None, dest="name")


def _split(prog: str, line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)  # `%jobsched start -n 4  # four workers` as in a cell
    except ValueError as exc:
        raise UsageError(f"{prog}: cannot parse {line!r}: {exc}\n{USAGE}") from None


# How the magics made a default scheduler: (Dask address, journal path, seed), None for "local" / "no journal" /
# "no seed".
_made_with: weakref.WeakKeyDictionary[Scheduler, tuple[str | None, str | None, int | None]] = \
    weakref.WeakKeyDictionary()


def _default_with(dask: str | None, journal: str | None, seed: int | None = None) -> Scheduler:
    """Return the default scheduler, replaced by one on ``dask`` / with ``journal`` if those are asked for.

    An option not given keeps the current scheduler's. The default scheduler is replaced only while it is
    idle (no worker, no job): its jobs would be lost.
    """
    if dask is None and journal is None and seed is None:
        return default_scheduler()
    if dask is not None and "://" not in dask:
        dask = f"tcp://{dask}"
    if journal is not None:
        journal = os.path.abspath(os.path.expanduser(journal))
    option = "--dask" if dask is not None else "--journal" if journal is not None else "--seed"

    def factory(current: Scheduler | None) -> Scheduler:
        old = _made_with.get(current, (None, None, None)) if current is not None else (None, None, None)
        wanted = (dask if dask is not None else old[0], journal if journal is not None else old[1],
                  seed if seed is not None else old[2])
        if current is not None:
            if wanted == old:
                return current
            stats = current.snapshot().stats
            if stats["workers"] or stats["active"] or stats["queued"]:
                raise UsageError(f"%jobsched start {option}: the default scheduler is running ("
                                 f"{plural(stats['workers'], 'worker')}, {stats['queued']} queued and "
                                 f"{stats['active']} active jobs); `%jobsched stop` it first (and let its jobs finish)")
        new = _new_scheduler(option, *wanted)
        if current is not None:
            current.close()
        _made_with[new] = wanted
        return new

    return replace_default_scheduler(factory)


def _new_scheduler(option: str, dask: str | None, journal: str | None, seed: int | None = None) -> Scheduler:
    options: dict[str, Any] = {}
    if journal is not None:
        options["journal"] = journal
    if seed is not None:
        options["seed"] = seed
    if dask is not None:
        try:
            from ..dask import DaskBackend
        except ImportError as exc:
            raise UsageError(f"%jobsched start --dask: {exc}") from None
        try:
            options["backend"] = DaskBackend(dask)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"%jobsched start --dask: no Dask scheduler answers at {dask!r} ({exc}); "
                             "pass the address its scheduler prints, e.g. tcp://10.0.0.5:8786") from None
    try:
        return Scheduler(**options)
    except TypeError as exc:  # a jobsched whose Scheduler has no journal= yet
        raise UsageError(f"%jobsched start {option}: {exc}") from None


class CellJob:
    """A cell that ``%%jobsched`` sent to a worker.

    Attributes:
        name: the user-namespace name bound to the cell's value when it succeeds (or None).
        future: resolves *after* ``name`` is bound: to the value, or to the ``JobError`` of a failure.
        output: the ``ipywidgets.Output`` in the cell's output area that shows the outcome (None outside
            a Jupyter kernel).
        skipped: names the cell uses whose values could not be pickled, so were not sent.
    """

    def __init__(self, name: str | None, output: Any, skipped: list[str]) -> None:
        self.name = name
        self.future: Future[Any] = Future()
        self.output = output
        self.skipped = skipped

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the cell's value (raises its ``JobError`` if it failed)."""
        return self.future.result(timeout)

    def __repr__(self) -> str:
        target = f" -> {self.name}" if self.name else ""
        if not self.future.done():
            state = "running"
        elif self.future.cancelled():
            state = "cancelled"
        else:
            state = "failed" if self.future.exception() is not None else "done"
        return f"<CellJob{target}: {state}>"


@magics_class
class JobschedMagics(Magics):
    """The ``%jobsched`` line magic and the ``%%jobsched`` cell magic."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer IPython
        self.cells: list[CellJob] = []  # cells sent and not finished yet (and the last one)
        self._cells_lock = threading.Lock()

    @line_cell_magic  # type: ignore[untyped-decorator, unused-ignore]
    def jobsched(self, line: str, cell: str | None = None) -> None:
        """Drive jobsched's default scheduler, or run a cell in a worker (the full text: ``HELP``)."""
        if cell is not None:
            self._run_cell(line, cell)
            return
        tokens = _split("%jobsched", line)
        if not tokens:
            self._show_dashboard()
            return
        sub, rest = tokens[0], tokens[1:]
        if sub in ("-h", "--help", "help"):
            print(USAGE)
            return
        if sub not in _PARSERS:
            raise UsageError(f"%jobsched: unknown subcommand {sub!r}\n{USAGE}")
        args = _PARSERS[sub].parse_args(rest)
        getattr(self, f"_{sub}")(args)

    @property
    def _shell(self) -> Any:
        """The IPython shell (always set once the magics are registered)."""
        shell = self.shell
        assert shell is not None, "JobschedMagics used before it was registered with an IPython shell"
        return shell

    # ------------------------------------------------------------------ line magic

    def _show_dashboard(self) -> None:
        from IPython.display import display

        display(default_scheduler().dashboard())  # type: ignore[no-untyped-call]

    def _start(self, args: argparse.Namespace) -> None:
        sched = _default_with(args.dask, args.journal, args.seed)
        if sched.running and sched.n_workers > 0:  # a second `%jobsched start`: say so, start nothing
            if args.n is not None and args.n != sched.n_workers:
                print(f"jobsched: already running with {plural(sched.n_workers, 'worker')}; "
                      f"scaling to {plural(args.n, 'worker')}")
                scale_to(sched, args.n)
            else:
                print(f"jobsched: already running with {plural(sched.n_workers, 'worker')} "
                      "(`%jobsched scale N` changes how many, `%jobsched stop` stops them)")
            return
        sched.start(args.n, wait=False)
        print(f"jobsched: started {plural(sched.n_workers, 'worker')} in the background")

    def _scale(self, args: argparse.Namespace) -> None:
        scale_to(default_scheduler(), args.n)
        print(f"jobsched: scaling to {plural(args.n, 'worker')}")

    def _pause(self, args: argparse.Namespace) -> None:
        default_scheduler().pause()
        print("jobsched: paused (running jobs finish; `%jobsched resume` goes on)")

    def _resume(self, args: argparse.Namespace) -> None:
        default_scheduler().resume()
        print("jobsched: resumed")

    def _cancel(self, args: argparse.Namespace) -> None:
        if default_scheduler().cancel(args.index):
            print(f"jobsched: cancelled job {args.index}")
        else:
            print(f"jobsched: job {args.index} is neither queued nor running: nothing to cancel")

    def _debug(self, args: argparse.Namespace) -> None:
        job: str | int = int(args.job) if args.job.isdigit() else args.job
        sched = default_scheduler()
        journal = args.journal or _made_with.get(sched, (None, None, None))[1]
        if isinstance(job, int) and job in (sched._engine.failed_calls or {}):
            sched.rerun_here(job)
            return
        if journal is None:
            raise UsageError(f"%jobsched debug {args.job}: the default scheduler has no failed job {args.job}; "
                             "after a restart, name the journal that recorded it: "
                             f"%jobsched debug {args.job} --journal PATH")
        from ..errors import JournalError
        from ..journal import Journal

        try:
            reader = Journal(os.path.abspath(os.path.expanduser(journal)))
            reader._find(job)
        except (JournalError, KeyError, TypeError) as exc:
            raise UsageError(f"%jobsched debug {args.job}: {exc}") from None
        reader.rerun_here(job)

    def _status(self, args: argparse.Namespace) -> None:
        snap = default_scheduler().snapshot()
        stats = snap.stats
        print("\n".join([status_line(stats), *busy_lines(snap)]))
        if stats["error"]:
            print(f"jobsched: error: {stats['error']}", file=sys.stderr)

    def _wait(self, args: argparse.Namespace) -> None:
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        sched = default_scheduler()
        if sched.n_queued_jobs and sched.running and sched.n_workers == 0:
            raise UsageError(f"%jobsched wait: {sched.n_queued_jobs} jobs are queued and no worker runs them; "
                             "`%jobsched start` first")
        if (sched.running or sched.n_queued_jobs) and not sched.wait(args.timeout):
            raise TimeoutError(f"%jobsched wait: still busy after {args.timeout:g} s: {status_line(sched.stats())}")
        with self._cells_lock:
            cells = list(self.cells)
        for job in cells:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                job.future.exception(remaining)  # the cell's own failure is shown in its cell, not here
            except CancelledError:
                pass
            except TimeoutError:
                raise TimeoutError(f"%jobsched wait: a %%jobsched cell is still running after "
                                   f"{args.timeout:g} s") from None

    def _stop(self, args: argparse.Namespace) -> None:
        snap = stop_workers(default_scheduler(), STOP_TIMEOUT)
        stats = snap.stats
        counts = outcome_text(stats)
        queued = f"; {stats['queued']} queued jobs wait for `%jobsched start`" if stats["queued"] else ""
        busy = [r for r in snap.workers if r.job is not None]
        if not snap.workers:
            print(f"jobsched: stopped ({counts}{queued})")
        else:
            jobs = ", ".join(f"job {r.job} on worker {r.index}" for r in busy) or "workers closing"
            print(f"jobsched: stopping ({counts}{queued}); still running after {STOP_TIMEOUT:g} s: {jobs}. "
                  "They exit when their job ends; `%jobsched cancel INDEX` stops one now")

    # ------------------------------------------------------------------ cell magic

    def _run_cell(self, line: str, cell: str) -> None:
        args = _CELL_PARSER.parse_args(_split("%%jobsched", line))
        source = self._shell.transform_cell(cell)
        if "get_ipython()" in source and "get_ipython()" not in cell:
            raise UsageError("%%jobsched: the cell uses IPython syntax (%magic, !shell or ?help), which a worker "
                             "cannot run; write the cell in plain Python")
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise UsageError(f"%%jobsched: the cell is not valid Python: {exc}") from None
        values, modules, skipped = self._capture(sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}))
        if skipped:
            print(f"jobsched: not sent to the worker (they cannot be pickled): {', '.join(skipped)}; "
                  "the cell fails with NameError if it needs them", file=sys.stderr)
        sched = default_scheduler()
        if not sched.running or sched.n_workers == 0:  # never started, or %jobsched stop
            sched.start(wait=False)
        output = self._output_area(args.name)
        job = CellJob(args.name, output, skipped)
        filename = f"<%%jobsched cell {self._shell.execution_count}>"
        inner = sched.submit(run_cell, source, values, modules, filename)
        with self._cells_lock:
            self.cells = [c for c in self.cells if not c.future.done()] + [job]
        self._shell.user_ns["_jobsched_cell"] = job
        inner.add_done_callback(lambda f: self._finish(job, f))

    def _capture(self, names: Sequence[str]) -> tuple[dict[str, bytes], dict[str, str], list[str]]:
        """Split the names the cell uses into pickled values, modules, and unpicklable ones (skipped)."""
        user_ns = self._shell.user_ns
        hidden = getattr(self._shell, "user_ns_hidden", {})
        values: dict[str, bytes] = {}
        modules: dict[str, str] = {}
        skipped: list[str] = []
        for name in names:
            if name not in user_ns or name in hidden or _IPYTHON_NAMES.fullmatch(name):
                continue
            value = user_ns[name]
            if isinstance(value, ModuleType) and value.__name__ != "__main__":
                modules[name] = value.__name__
                continue
            try:
                values[name] = dumps(value, f"%%jobsched: variable {name!r}")
            except TypeError:
                skipped.append(f"{name} ({type(value).__name__})")
        return values, modules, skipped

    def _output_area(self, name: str | None) -> Any:
        """In a Jupyter kernel, display an output area in this cell for the job's outcome; else None."""
        if getattr(self._shell, "kernel", None) is None:
            print(f"jobsched: running the cell in a worker{f'; {name} is bound when it finishes' if name else ''}")
            return None
        import ipywidgets  # type: ignore[import-untyped]
        from IPython.display import display

        output = ipywidgets.Output()
        output.add_class("jobsched-cell")
        output.append_stdout(f"jobsched: running in a worker{f' (result -> {name})' if name else ''}\n")
        display(output)  # type: ignore[no-untyped-call]
        return output

    def _finish(self, job: CellJob, inner: Future[Any]) -> None:
        """Bind the value (or report the failure), then resolve ``job.future``; runs on the scheduler thread."""
        if inner.cancelled():
            message, error = "jobsched: cancelled (the scheduler was stopped)", None
            value = None
        elif inner.exception() is not None:
            error = inner.exception()
            message = (_RUN_CELL_FRAME.sub("", str(error)) if isinstance(error, JobError)
                       else f"{type(error).__name__}: {error}")
            value = None
        else:
            value, error = inner.result(), None
            if job.name is not None:
                self._shell.user_ns[job.name] = value
            target = f"{job.name} = " if job.name else ""
            message = f"jobsched: done: {target}{_short.repr(value)}"
        try:
            self._report(job, message, failed=error is not None or inner.cancelled())
        finally:
            if inner.cancelled():
                job.future.cancel()
                job.future.set_running_or_notify_cancel()
            elif error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(value)

    def _report(self, job: CellJob, message: str, failed: bool) -> None:
        output = job.output
        if output is not None:
            output.outputs = ()
            if failed:
                output.append_stderr(message + "\n")
            else:
                output.append_stdout(message + "\n")
        elif failed:
            stream = sys.stderr
            try:
                stream.write(message + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass


# What ``%jobsched?`` shows: the magic's docstring, made from USAGE rather than a second copy of it.
JobschedMagics.jobsched.__doc__ = HELP


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jobsched``: register ``%jobsched`` and ``%%jobsched``."""
    ipython.register_magics(JobschedMagics)

