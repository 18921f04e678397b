"""Utilities of the manual: command lines for worker interpreters, the calling file, the CPU count."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def processor_count() -> int:
    """Return the number of CPUs this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_python_cmd(
    path: str | os.PathLike[str], *args: str | os.PathLike[str], entry: str | None = None, debug: bool = False
) -> list[str]:
    """Return the argv that runs the Python program ``path`` in a fresh interpreter.

    Args:
        path: the Python file to run.
        *args: extra command-line arguments; the program sees them in ``sys.argv[1:]``.
        entry: if given, do not run the file as ``__main__``: load it as a module (so its
            ``if __name__ == "__main__":`` block does not run) and call its function ``entry``,
            which usually calls one of the ``start_*_worker`` functions.
        debug: run the interpreter in development mode with ``faulthandler`` on (Racket's ``errortrace?``).

    Returns:
        The argument list for ``subprocess`` (no shell involved).
    """
    file = os.fspath(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"make_python_cmd: no such file {file!r}; pass the path of a Python file")
    flags = ["-X", "dev", "-X", "faulthandler"] if debug else []
    rest = [os.fspath(a) for a in args]
    if entry is None:
        return [sys.executable, *flags, str(Path(file).resolve()), *rest]
    if not entry.isidentifier():
        raise ValueError(f"make_python_cmd: entry must be a function name, got {entry!r}")
    return [sys.executable, *flags, "-m", "jobsched.worker", "--file", str(Path(file).resolve()),
            "--entry", entry, "--", *rest]


def this_file() -> str | None:
    """Return the absolute path of the file that calls this function, or None (e.g. in a notebook cell)."""
    frame = sys._getframe(1)
    file = frame.f_globals.get("__file__")
    return os.path.abspath(file) if isinstance(file, str) else None
