"""One serialisation policy for everything that travels to or from a worker.

Plain data and functions of importable modules are pickled by reference with the standard library
(fast). Anything that the standard pickler cannot take, or that refers to ``__main__`` (a notebook cell,
a lambda, a closure, a class defined in a script), is pickled *by value* with cloudpickle, because a
worker's ``__main__`` is not the caller's. Pickling by value every time also means that a function
redefined in a later notebook cell travels in its new form: no stale copy is cached anywhere.
"""

from __future__ import annotations

import io
import pickle
import reprlib
import sys
from collections.abc import Callable, Iterator
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

# Bounds of the search for the value that cannot be pickled (it runs only after pickling failed).
_MAX_DEPTH = 32
_MAX_TRIES = 2000  # values pickled on their own before giving up and naming the innermost failing one
_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray)


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
    try:
        return by_value(obj, PROTOCOL)
    except Exception as exc:
        raise TypeError(_cannot_pickle(obj, what, exc, by_value)) from exc


def cannot_travel(obj: object) -> str | None:
    """Say why ``obj`` itself cannot travel to a worker although a pickler might take it, or return None.

    cloudpickle pickles a file open for reading as a copy of its contents: the worker would get a
    snapshot in memory, not the file, and writes would be lost. An open file is refused instead, as
    sockets, locks and generators are (no pickler takes those). In-memory streams (``io.BytesIO``,
    ``io.StringIO``) are plain data and travel, and so do ``sys.stdout`` and ``sys.stderr`` (by name).
    """
    if isinstance(obj, io.IOBase) and not isinstance(obj, (io.BytesIO, io.StringIO)):
        if obj is sys.stdout or obj is sys.stderr:
            return None
        return "an open file"
    return None


def by_value(obj: Any, protocol: int = PROTOCOL, buffer_callback: Callable[[Any], Any] | None = None) -> bytes:
    """Pickle ``obj`` with cloudpickle (functions and classes by value), refusing what ``cannot_travel``."""
    buffer = io.BytesIO()
    _refusing_pickler()(buffer, protocol, buffer_callback=buffer_callback).dump(obj)
    return buffer.getvalue()


_PICKLER: type[Any] | None = None


def _refusing_pickler() -> type[Any]:
    """cloudpickle's Pickler, with ``cannot_travel`` checked first (made once, on first use)."""
    global _PICKLER
    if _PICKLER is None:
        import cloudpickle  # type: ignore[import-untyped]  # deferred: most payloads never need it

        class RefusingPickler(cloudpickle.Pickler):  # type: ignore[misc]
            def reducer_override(self, obj: Any) -> Any:
                reason = cannot_travel(obj)
                if reason is not None:
                    raise TypeError(f"cannot pickle {reason} ({_typename(obj)})")
                return super().reducer_override(obj)

        _PICKLER = RefusingPickler
    return _PICKLER


def _cannot_pickle(obj: Any, what: str, exc: Exception, pickle_it: Callable[[Any, int], bytes]) -> str:
    """Name the value inside ``obj`` that cannot be pickled: its type and where it sits.

    E.g. ``add_job: data['cfg'][2] is a _thread.lock, which cannot be pickled; ...``.
    """
    path, kind, culprit, error = _Search(pickle_it, obj, exc).find(obj) or ("", "", obj, exc)
    prefix, sep, noun = what.rpartition(": ")
    if path and noun[-1:].isalnum() and not noun[-1:].isdigit():
        where = noun + path  # data['cfg'], data.lock
    else:
        where = f"{noun} {path}" if path else noun  # keyword argument 'cfg' ['a'], argument 0 .lock
    if kind:
        where = f"{kind} of {where}"  # a key of data['m']
    if cannot_travel(culprit) is not None:
        name = getattr(culprit, "name", None)
        named = f" {name!r}" if isinstance(name, (str, int)) else ""
        return (f"{prefix}{sep}{where} is an open file ({_typename(culprit)}{named}), which cannot travel to a "
                "worker; pass its path and open it in the job, or pass its contents")
    detail = str(error)
    detail = "" if "cannot pickle" in detail or not detail else f" ({type(error).__name__}: {_short.repr(detail)})"
    return (f"{prefix}{sep}{where} is a {_typename(culprit)}, which cannot be pickled{detail}; pass plain data "
            "(numbers, strings, containers, picklable objects), not open files, sockets, locks or generators")


def _typename(v: Any) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class _Search:
    """Depth-first search for the first value that does not pickle while everything inside it does.

    A value that pickles on its own is not searched further, so only the failing branch is walked. Cycles
    are visited once; depth and the number of values pickled are bounded.
    """

    def __init__(self, pickle_it: Callable[[Any, int], bytes], root: Any, root_error: Exception) -> None:
        self._pickle = pickle_it
        self._root, self._root_error = root, root_error  # known to fail: not pickled again
        self._seen: set[int] = set()
        self._tries = 0

    def _error(self, v: Any) -> Exception | None:
        if v is self._root:
            return self._root_error
        self._tries += 1
        try:
            self._pickle(v, PROTOCOL)
        except Exception as exc:
            return exc
        return None

    def find(self, v: Any, path: str = "", kind: str = "",
             depth: int = 0) -> tuple[str, str, Any, Exception] | None:
        """Return ``(path, kind, value, error)`` of the innermost value of ``v`` that fails, or None."""
        if type(v) in _ATOMS or id(v) in self._seen or self._tries >= _MAX_TRIES:
            return None
        self._seen.add(id(v))
        error = self._error(v)
        if error is None:
            return None
        if depth < _MAX_DEPTH:
            for step, step_kind, child in _children(v):
                found = self.find(child, path + step, step_kind, depth + 1)
                if found is not None:
                    return found
                if self._tries >= _MAX_TRIES:
                    break
        return path, kind, v, error


def _children(v: Any) -> Iterator[tuple[str, str, Any]]:
    """Yield ``(path step, kind, value)`` for what ``v`` holds; kind is "a key" or "an element" or ""."""
    if isinstance(v, dict):
        for key in v:
            yield "", "a key", key
        for key, value in v.items():
            yield f"[{_short.repr(key)}]", "", value
    elif isinstance(v, (list, tuple)):
        fields = getattr(v, "_fields", None)  # a namedtuple: by field name
        for i, value in enumerate(v):
            yield (f".{fields[i]}" if isinstance(fields, tuple) and i < len(fields) else f"[{i}]"), "", value
    elif isinstance(v, (set, frozenset)):
        for value in v:
            yield "", "an element", value
    elif _pickles_its_attributes(type(v)):
        for name, value in list(getattr(v, "__dict__", {}).items()):
            yield f".{name}", "", value
        for cls in type(v).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                if name not in ("__dict__", "__weakref__") and hasattr(v, name):
                    yield f".{name}", "", getattr(v, name)


def _pickles_its_attributes(cls: type) -> bool:
    """Whether instances of ``cls`` pickle as their attributes (no ``__reduce__`` or ``__getstate__`` of theirs)."""
    return (getattr(cls, "__reduce_ex__", None) is object.__reduce_ex__
            and getattr(cls, "__reduce__", None) is object.__reduce__
            and getattr(cls, "__getstate__", None) is getattr(object, "__getstate__", None))


loads = pickle.loads
