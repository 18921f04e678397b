"""Journal keys: a stable name for a job, derived from what the job computes.

The journal (``jobsched.journal``) remembers results by key. A key is either given (``key=`` on
``add_job``/``submit``, normalised by ``normalize_key``) or derived from the job's content by
``derive_key``: the same call made again from a fresh process, with the same code and equal arguments,
gets the same key; a change of the function's code or of an argument gives another one.

How a value is keyed
--------------------
A value is written in a canonical byte encoding (a tag, a length, a payload; containers hold their
elements' encodings) that is hashed with SHA-256. Nothing in it depends on the process: not ``id()``,
not ``hash()`` (str hashing is randomised per process, so the iteration order of a set is not stable),
not pickle or cloudpickle output (neither promises a stable byte stream).

* ``None``, ``bool``, ``int`` (of any size), ``float`` (every NaN is the same NaN; ``-0.0`` is not
  ``0.0``), ``complex``, ``str``, ``bytes``/``bytearray``/``memoryview``: by value and type. Values
  that compare equal across types (``1``, ``1.0``, ``True``) get *different* keys: that can only cause
  a re-run, never a wrong result.
* ``tuple`` and ``list`` in order; ``dict`` (and dict subclasses but ``OrderedDict``), ``set`` and
  ``frozenset`` in an order that does not depend on insertion: their entries sorted by encoding, as
  their equality ignores order.
* ``Enum`` members: class and member name. Classes: module and qualified name.
* Functions (the called one, and functions passed as arguments): module, qualified name and a hash of
  their code: bytecode, constants (nested functions included), names, argument names, defaults, the
  values in their closure, the values of module-level constants they read (``None``, numbers,
  strings, bytes, and tuples or frozensets of those) and, recursively, the code of the functions of
  the *same module* that they name. Not part of it: line numbers, comments and blank lines (moving a
  function does not change its key; editing its body or docstring does), other global values (a
  list, a dict, a class, an imported module: pass them as arguments, or pass ``key=``), methods it
  calls through an object, and the code of other modules (a new version of a library does not change
  the key). Bytecode changes between Python versions (3.11 to 3.12), and so do these keys.
* The function a remote call runs is keyed by what it runs, not by its ``repr()`` (which may hold an
  address): a ``functools.partial`` by its function (keyed by these rules, recursively) and its
  arguments and keywords (as values); a bound method by its function and the object it is bound to (its
  class and state, as a value); a callable object by itself (as a value) and the code of its class's
  ``__call__``; a wrapper object with ``__wrapped__`` (``functools.lru_cache``) by itself and what it
  wraps. A class called as a function, and a builtin, by module and qualified name only.
* Dataclass instances: class and fields. NumPy arrays and scalars: dtype, shape and the bytes in C
  order; pandas ``DataFrame``/``Series``/``Index``: type, index, columns, dtypes and values (only if
  the program has imported numpy or pandas: this module never imports them).
* Any other object: through its ``__reduce_ex__(5)`` output, which is what a worker would receive
  (the reconstructor by module and qualified name, its arguments, its state, its items): this covers
  ``datetime``, ``date``, ``Decimal``, ``Fraction``, ``UUID``, ``pathlib`` paths, ``range``,
  ``functools.partial`` and plain objects with a ``__dict__``.

What cannot be keyed raises ``UnkeyableError`` (a ``TypeError``) naming where it sits, e.g.
``argument 1 -> ['cfg'] -> .lock``: locks, files, sockets, generators, modules, frames, objects that
refuse to pickle, reductions that carry the object's own ``id()``, and cyclic structures. Pass
``key=`` for such jobs. A key is never guessed: a value is keyed exactly, or not at all.

Where it is done
----------------
* ``_keys.derive`` (here): ``derive_key`` and ``normalize_key``, and the fast path: a remote call of a function
  whose encoding is cached, with arguments of common types, is keyed without an encoding pass.
* ``_keys.values``: an encoding pass (``_Encoder``) over values: containers, enums, dataclasses, NumPy,
  pandas, reductions; refusals and cycles.
* ``_keys.functions``: its other half (``FunctionEncoder``): functions (identity and code digest), builtins,
  and the callables a remote call runs.
* ``_keys.cache``: the function encodings kept between passes, and the checks that they still hold.
* ``_keys.frames``: the byte format they all write (tags, lengths, digests of long payloads).
"""

from __future__ import annotations

import hashlib
import types
from typing import Any

from ..errors import UnkeyableError as UnkeyableError
from ..remote_call import RemoteCall
from .cache import _builtin_cache as _builtin_cache
from .cache import _builtin_names, _cached_function
from .cache import _function_cache as _function_cache
from .frames import _SIMPLE, _frame, _int, _str, _typename
from .values import _Encoder
from .values import encode as encode

KEY_VERSION = 1
"""Bumped whenever the encoding changes, so that keys of an older encoding can never match."""


def derive_key(data: Any) -> str:
    """Return the journal key of a job: a SHA-256 hex digest of its content.

    For a ``RemoteCall``, the content is the called function (module, qualified name, code digest: see
    the module docstring) and the positional and keyword arguments (keyword order does not count). For
    any other job, it is the job's data.

    Args:
        data: a ``jobsched.RemoteCall`` or the data of an ``add_job``.

    Returns:
        64 lowercase hexadecimal characters; equal for the same call made again in another process.

    Raises:
        UnkeyableError: something in the job cannot be keyed stably; the message names where it is and
            asks for ``key=``.
    """
    if type(data) is RemoteCall:
        key = _call_key(data)
    else:
        encoded = _fast(data, 0)
        key = None if encoded is None else hashlib.sha256(_frame(b"J", _DATA_HEAD + encoded)).hexdigest()
    return key if key is not None else _derive_key(data)


# ---- the fast path: remote calls of a cached function, with arguments of common types

_FAST_DEPTH = 8  # containers nested deeper go the long way (which also refuses cycles)
_DATA_HEAD = _int(KEY_VERSION) + _str("data")
_NO_KWARGS = _frame(b"D", b"")
# (module, fun_name) -> the start of a call's encoding, up to its function; emptied past _HEADS_MAX.
_call_heads: dict[tuple[str | None, str], bytes] = {}
_HEADS_MAX = 4096


def _fast(v: Any, depth: int) -> bytes | None:
    """``_Encoder().encode(v)``, byte for byte, for the common types; None for any other (or a deep nest).

    No cycle check: containers nested deeper than ``_FAST_DEPTH`` return None, and a cycle is that deep.
    """
    t = type(v)
    if t is int:
        return _int(v)
    if t is str:
        return _str(v)
    simple = _SIMPLE.get(t)
    if simple is not None:
        return simple(v)
    if depth >= _FAST_DEPTH:
        return None
    parts = []
    if t is tuple or t is list:
        for item in v:
            encoded = _fast(item, depth + 1)
            if encoded is None:
                return None
            parts.append(encoded)
        return _frame(b"T" if t is tuple else b"L", b"".join(parts))
    if t is dict:
        for k, item in v.items():
            encoded_key = _fast(k, depth + 1)
            encoded = _fast(item, depth + 1)
            if encoded_key is None or encoded is None:
                return None
            parts.append(encoded_key + encoded)
        parts.sort()
        return _frame(b"D", b"".join(parts))
    if t is set or t is frozenset:
        for item in v:
            encoded = _fast(item, depth + 1)
            if encoded is None:
                return None
            parts.append(encoded)
        parts.sort()
        return _frame(b"E" if t is set else b"Z", b"".join(parts))
    return None


def _call_key(data: RemoteCall) -> str | None:
    """The key of a remote call whose function's encoding is cached and whose arguments ``_fast`` encodes.

    None otherwise: ``_derive_key`` then encodes it in full (and fills the cache), with the same result.
    """
    function = data._function
    if type(function) is types.FunctionType:
        encoded_function = _cached_function(function)
    elif function is not None:
        cached = _builtin_cache.get(id(function))
        encoded_function = None
        if cached is not None and cached[0] is function:
            module, name = _builtin_names(function)
            if cached[1] == module and cached[2] == name:
                encoded_function = cached[3]
    else:
        return None
    if encoded_function is None:
        return None
    head = _call_heads.get((data.module, data.fun_name))
    if head is None:
        if (data.module is not None and type(data.module) is not str) or type(data.fun_name) is not str:
            return None
        head = _int(KEY_VERSION) + _str("call") + _str(data.module if data.module is not None else "<by value>") \
            + _str(data.fun_name)
        if len(_call_heads) >= _HEADS_MAX:
            _call_heads.clear()
        _call_heads[(data.module, data.fun_name)] = head
    parts = [head, encoded_function]
    for arg in data.args:
        encoded = _fast(arg, 0)
        if encoded is None:
            return None
        parts.append(encoded)
    kwargs = data.kwargs
    if kwargs:
        kw = []
        for name, arg in kwargs.items():
            encoded = _fast(arg, 0)
            if encoded is None or type(name) is not str:
                return None
            kw.append(_str(name) + encoded)
        kw.sort()
        parts.append(_frame(b"D", b"".join(kw)))
    else:
        parts.append(_NO_KWARGS)
    return hashlib.sha256(_frame(b"J", b"".join(parts))).hexdigest()


def _derive_key(data: Any) -> str:
    """``derive_key`` the long way: any job, with the path to what cannot be keyed in the error."""
    enc = _Encoder()
    try:
        if isinstance(data, RemoteCall):
            what = f"remote_call({data.fun_name})"
            try:
                function = data.function
            except Exception as exc:  # the function cannot even be found (a call unpickled elsewhere)
                raise UnkeyableError(f"its function cannot be loaded here: {exc}") from exc
            fun = enc._called_attr(function, "the function")
            parts = [_str("call"), _str(data.module if data.module is not None else "<by value>"),
                     _str(_call_name(data, function)), fun]
            for i, arg in enumerate(data.args):
                parts.append(enc._attr(arg, f"argument {i}"))
            kw = []
            for name, arg in data.kwargs.items():
                kw.append(_str(name) + enc._attr(arg, f"keyword argument {name!r}"))
            parts.append(_frame(b"D", b"".join(sorted(kw))))
            encoded = _frame(b"J", _int(KEY_VERSION) + b"".join(parts))
        else:
            what = "add_job"
            encoded = _frame(b"J", _int(KEY_VERSION) + _str("data") + enc._attr(data, "data"))
    except RecursionError as exc:
        raise UnkeyableError(f"{what}: the job is nested too deeply to be keyed; pass key= to name it") from exc
    except UnkeyableError as exc:
        exc.path.insert(0, what)
        exc.reason += (". jobsched cannot derive a journal key that would be the same in the next run: "
                       "pass key=... (a str, an int, or a tuple of them) to add_job() or submit()")
        exc.args = (str(exc),)
        raise
    return hashlib.sha256(encoded).hexdigest()


def _call_name(data: RemoteCall, function: Any) -> str:
    """The name a call's key holds: ``fun_name`` (the qualified name), or, for a callable that has none (a
    partial, a callable object), its type's name: ``fun_name`` is then its ``repr()``, which may hold an
    address."""
    return data.fun_name if isinstance(getattr(function, "__qualname__", None), str) else _typename(function)


def normalize_key(key: object) -> str:
    """Return the canonical string form of an explicit ``key=``.

    A ``str`` is itself; an ``int`` is its decimal text (so ``key=7`` and ``key="7"`` are the same key);
    a tuple of str, int and such tuples is its JSON text (``("fit", 3)`` is ``'["fit",3]'``).

    Raises:
        TypeError: the key is of another type (a bool, a float, a list...) or an empty str.
    """
    if type(key) is str:
        if not key:
            raise TypeError("key= must not be an empty string; pass a str, an int or a tuple of them")
        return key
    if type(key) is int:
        return str(key)
    if type(key) is tuple and _is_plain_key(key):
        import json

        return json.dumps(_as_lists(key), ensure_ascii=False, separators=(",", ":"))
    raise TypeError(
        f"key= must be a str, an int, or a tuple of str and int (nested tuples allowed), "
        f"got {_typename(key)}: {key!r}; convert it, e.g. key=str(value)"
    )


def _is_plain_key(key: tuple[Any, ...]) -> bool:
    return all(type(k) in (str, int) or (type(k) is tuple and _is_plain_key(k)) for k in key)


def _as_lists(key: tuple[Any, ...]) -> list[Any]:
    return [_as_lists(k) if type(k) is tuple else k for k in key]
