"""One serialisation policy for everything that travels to or from a worker.

Plain data and functions of importable modules are pickled by reference with the standard library
(fast). Anything that the standard pickler cannot take, or that refers to ``__main__`` (a notebook cell,
a lambda, a closure, a class defined in a script), is pickled *by value* with cloudpickle, because a
worker's ``__main__`` is not the caller's. Pickling by value every time also means that a function
redefined in a later notebook cell travels in its new form: no stale copy is cached anywhere.
"""

from __future__ import annotations

import pickle
import reprlib
import sys
from typing import Any

PROTOCOL = 5
_MAIN = b"__main__"

# A worker loads a script under the name ``__mp_main__`` (``remote_call.load_file``), so a class defined in
# the script pickles there as ``__mp_main__.Point``. Here that name means our own ``__main__``, as it does
# once ``multiprocessing`` is imported: the caller's script is this process's ``__main__`` (in a notebook,
# ``__main__`` has no file, classes travel by value and the alias is never used). ``setdefault``: a
# process started by multiprocessing's spawn, or a worker that loaded a script, keeps its real module.
if "__main__" in sys.modules:
    sys.modules.setdefault("__mp_main__", sys.modules["__main__"])

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40


def dumps(obj: Any, what: str = "value") -> bytes:
    """Pickle ``obj`` for a worker; raise TypeError naming ``what`` if it cannot travel.

    Args:
        obj: the value to send.
        what: how to name the value in an error message (e.g. ``"add_job: data"``).
    """
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:
        pass
    else:
        # A reference to __main__ would resolve to the worker's own __main__: ship it by value instead.
        if _MAIN not in data:
            return data
    import cloudpickle  # type: ignore[import-untyped]  # deferred: most payloads never need it

    try:
        by_value: bytes = cloudpickle.dumps(obj, PROTOCOL)
        return by_value
    except Exception as exc:
        raise TypeError(
            f"{what} ({type(obj).__name__}: {_short.repr(obj)}) cannot be pickled: {exc}. "
            "Pass plain data (numbers, strings, containers, picklable objects), not open files, "
            "sockets, locks or generators."
        ) from exc


loads = pickle.loads
