"""A failed job's exception, as the caller gets it: the job's own exception class *and* ``JobError``.

A worker reports a failure as text (type name, message, traceback) plus where the class lives
(``module``, ``qualname``): nothing of the job's exception object is unpickled here, so a hostile or
broken exception cannot hurt the scheduler. The caller then gets::

    class ZeroDivisionError_(JobError, ZeroDivisionError)      built once per class, cached
        remote_type, remote_message, remote_traceback, job_index, attempts
        __cause__ = RemoteTraceback(<the worker's traceback>)

as Ray does for its task errors, so ``except ZeroDivisionError`` and ``except JobError`` both work. The class
is looked up in the modules this process has already imported (nothing is imported for it); it is a plain
``JobError``, that still names the type, when:

- the class is not found here (defined only in the worker, or in a module this process has not imported);
- it is not an ``Exception``: a job's ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` must never
  look like the caller's own exit or Ctrl-C (``except Exception`` catches the ``JobError``);
- it cannot be combined with ``JobError``: an instance layout that conflicts, a metaclass, a ``__new__`` or
  ``__init_subclass__`` that refuses, or a ``JobError`` subclass already.

Results served from a journal are rebuilt the same way, from the qualified name in their traceback text.
"""

from __future__ import annotations

import builtins
import re
import sys
from typing import Any

from ..errors import JobError, RemoteTraceback

_combined: dict[type[BaseException], type[JobError] | None] = {}  # None: cannot be combined


def job_error(remote_type: str, message: str, tb: str, index: int | None, attempts: int = 1,
              module: str | None = None, qualname: str | None = None) -> JobError:
    """Return the exception a caller gets for a job that raised ``remote_type``; see the module docstring.

    Args:
        module, qualname: where the class lives in the worker; None: found from ``tb``'s last line, or among
            the builtins by ``remote_type``.
    """
    cls = _find_class(remote_type, tb, module, qualname)
    combined = _combine(cls) if cls is not None else None
    error: JobError | None = None
    if combined is not None:
        try:
            error = combined.__new__(combined)
            JobError.__init__(error, remote_type, message, tb, index, attempts)
        except Exception:  # a __new__ that needs its arguments: the plain JobError
            error = None
    if error is None:
        error = JobError(remote_type, message, tb, index, attempts)
    if tb:
        error.__cause__ = RemoteTraceback(tb)
    return error


def rebuild_job_error(module: str, qualname: str, remote_type: str, message: str, tb: str, index: int | None,
                      attempts: int) -> JobError:
    """Unpickle a combined ``JobError`` (its class is made at run time: see ``JobError.__reduce__``)."""
    return job_error(remote_type, message, tb, index, attempts, module, qualname)


def _find_class(remote_type: str, tb: str, module: str | None, qualname: str | None) -> type[BaseException] | None:
    if module is not None and qualname is not None:
        return _lookup(module, qualname, remote_type)
    if remote_type in ("WorkerDied", "JobTimeout", "JobCancelled"):
        return None
    dotted = _last_line_name(tb, remote_type)
    if dotted is not None:  # "package.module.Outer.Name": try each split between module and qualname
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            found = _lookup(".".join(parts[:cut]), ".".join(parts[cut:]), remote_type)
            if found is not None:
                return found
        return None
    return _lookup("builtins", remote_type, remote_type)


def _last_line_name(tb: str, remote_type: str) -> str | None:
    """The qualified name ``traceback`` printed for the exception (``mod.Name: message``), if it is qualified."""
    pattern = re.compile(r"^([A-Za-z_][\w.]*\." + re.escape(remote_type) + r")(?::|$)")
    for line in reversed(tb.splitlines()):
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


def _lookup(module: str, qualname: str, remote_type: str) -> type[BaseException] | None:
    if module == "__mp_main__" and module not in sys.modules:
        module = "__main__"  # a script's class, loaded in the worker under multiprocessing's name for it
    owner: Any = builtins if module == "builtins" else sys.modules.get(module)
    for part in qualname.split("."):
        if owner is None or part == "<locals>":
            return None
        owner = getattr(owner, part, None)
    if isinstance(owner, type) and issubclass(owner, BaseException) and owner.__name__ == remote_type:
        return owner
    return None


def _combine(cls: type[BaseException]) -> type[JobError] | None:
    if not issubclass(cls, Exception) or issubclass(cls, JobError):
        return None
    try:
        return _combined[cls]
    except KeyError:
        pass
    combined: type[JobError] | None
    try:
        combined = type(cls.__name__, (JobError, cls), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "_jobsched_combined": cls,
            "__str__": JobError.__str__, "__repr__": _repr, "__eq__": JobError.__eq__, "__hash__": JobError.__hash__,
        })
    except Exception:  # a layout conflict, a metaclass, an __init_subclass__ that refuses
        combined = None
    _combined[cls] = combined
    return combined


def _repr(self: JobError) -> str:
    return f"{type(self).__name__}{self.args!r}"
