"""Journal keys of functions: their identity and a digest of their code and of what it depends on (see
``_keys.derive`` for exactly what counts), and of the callables a remote call runs (partials, bound methods...).

``FunctionEncoder`` is the half of an encoding pass that knows functions; ``_keys.values._Encoder`` is the
other half, values, and calls back into this one for the functions it meets (and this one into it for the
values a function holds: defaults, closure contents, constants).
"""

from __future__ import annotations

import functools
import hashlib
import types
import weakref
from collections.abc import Callable
from typing import Any

from ..errors import UnkeyableError
from .cache import (
    _BUILTINS_MAX,
    _builtin_cache,
    _builtin_names,
    _cached_function,
    _checks_of,
    _code_cache,
    _forget,
    _function_cache,
    _wrapped_function,
)
from .frames import _CONSTANT_TYPES, _MISSING, _class, _frame, _int, _is_constant, _named, _str, _within

KEY_VERSION_ATTRIBUTE = "__jobsched_key_version__"  # set by jobsched.journal.key_version


class FunctionEncoder:
    """The functions' half of an encoding pass (``_keys.values._Encoder`` is the whole)."""

    __slots__ = ("_functions",)

    def __init__(self) -> None:
        self._functions: set[int] = set()  # functions whose digest is being computed (recursion)

    def encode(self, v: Any) -> bytes:
        """Encode any value (``_keys.values._Encoder.encode``)."""
        raise NotImplementedError

    def _attr(self, v: Any, step: str) -> bytes:
        """Encode the value ``v``; an ``UnkeyableError`` names ``step`` in its path."""
        return _at(self.encode, v, step)

    def _builtin(self, v: Any) -> bytes:
        owner = getattr(v, "__self__", None)
        if owner is None or isinstance(owner, (types.ModuleType, type)):
            cached = _builtin_cache.get(id(v))
            module, name = _builtin_names(v)
            if cached is not None and cached[0] is v and cached[1] == module and cached[2] == name:
                return cached[3]
            encoded = _frame(b"B", _named(v))
            if type(module) in (str, type(None)) and type(name) is str:  # compared with == next time
                if len(_builtin_cache) >= _BUILTINS_MAX:
                    _builtin_cache.clear()
                _builtin_cache[id(v)] = (v, module, name, encoded)
            return encoded
        return _frame(b"b", _named(v) + self._attr(owner, "__self__"))  # e.g. [].append

    def _code(self, code: types.CodeType) -> tuple[bytes, tuple[str, ...]]:
        cached = _code_cache.get(code)
        if cached is not None:
            return cached
        names = set(code.co_names)
        consts = []
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                digest, nested = self._code(c)
                names.update(nested)
                consts.append(digest)
            else:
                consts.append(self.encode(c))
        digest = _frame(b"K", b"".join([
            _int(code.co_argcount), _int(code.co_posonlyargcount), _int(code.co_kwonlyargcount),
            _int(code.co_flags), _frame(b"A", code.co_code), _frame(b"T", b"".join(consts)),
            self.encode(code.co_names), self.encode(code.co_varnames), self.encode(code.co_freevars),
            self.encode(code.co_cellvars),
        ]))
        entry = (hashlib.sha256(digest).digest(), tuple(sorted(names)))
        _code_cache[code] = entry
        return entry

    def function(self, f: types.FunctionType) -> bytes:
        """Encode a function: its name, and a digest of its code and of what its code depends on.

        At the top level (not inside another function's encoding, whose recursion marks would differ), the
        encoding is cached while the function's fingerprint stays the same: a remote call's key then costs
        the encoding of its arguments and a few identity checks.
        """
        if self._functions:
            return self._function(f)
        cached = _cached_function(f)
        if cached is not None:
            return cached
        encoded = self._function(f)
        checks = _checks_of(f)
        if checks is not None:
            key = id(f)
            _function_cache[key] = (weakref.ref(f, lambda ref: _forget(key, ref)), checks, encoded)
        return encoded

    def _function(self, f: types.FunctionType) -> bytes:
        identity = _str(f.__module__ or "") + _str(f.__qualname__)
        if id(f) in self._functions:  # recursion (f calls itself, or a helper that calls f): already in
            return _frame(b"f", identity)
        self._functions.add(id(f))
        try:
            code_digest, names = self._code(f.__code__)
            parts = [identity, _frame(b"A", code_digest)]
            version = f.__dict__.get(KEY_VERSION_ATTRIBUTE, _MISSING)
            if version is not _MISSING:  # jobsched.journal.key_version: the user invalidates on purpose
                parts.append(_frame(b"v", self.encode(version)))
            for what, value in (("default", f.__defaults__), ("keyword default", f.__kwdefaults__)):
                try:
                    parts.append(self.encode(value))
                except UnkeyableError as exc:
                    raise _within(exc, f"{what} of {f.__qualname__}") from exc.__cause__
            for name, cell in zip(f.__code__.co_freevars, f.__closure__ or (), strict=False):
                try:
                    contents = cell.cell_contents
                except ValueError:  # a cell not assigned yet
                    parts.append(_frame(b"U", _str(name)))
                    continue
                try:
                    parts.append(_str(name) + self.encode(contents))
                except UnkeyableError as exc:
                    raise _within(exc, f"closure variable {name!r} of {f.__qualname__}") from exc.__cause__
            module_globals = f.__globals__
            for name in names:
                value = module_globals.get(name, _MISSING)
                if isinstance(value, types.FunctionType):
                    if value.__module__ == f.__module__:
                        parts.append(_str(name) + self.function(value))
                elif isinstance(value, _CONSTANT_TYPES) or (
                        isinstance(value, (tuple, frozenset)) and _is_constant(value)):
                    parts.append(_str(name) + self.encode(value))
                elif (inner := _wrapped_function(value)) is not None and inner[0].__module__ == f.__module__:
                    # A same-module helper behind lru_cache, cache, a functools.wraps decorator, a partial,
                    # staticmethod or classmethod: its code counts, as a plain helper's does.
                    parts.append(_str(name) + _frame(b"w", self.function(inner[0])
                                                     + self._partial_arguments(value)))
            return _frame(b"P", b"".join(parts))
        finally:
            self._functions.discard(id(f))

    def _partial_arguments(self, value: Any) -> bytes:
        """Encode the bound arguments of the partials in a helper's wrapper chain (b"" if none)."""
        parts = []
        for _ in range(64):
            if isinstance(value, functools.partial):
                parts.append(self._attr((value.args, value.keywords), f"the arguments of {value!r:.60}"))
                value = value.func
            elif isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            else:
                inner = getattr(value, "__dict__", {}).get("__wrapped__") if not isinstance(
                    value, types.FunctionType) else None
                if inner is None:
                    break
                value = inner
        return b"".join(parts)

    def called(self, f: Any) -> bytes:
        """Encode the function a remote call runs: what it runs, not only what it is named.

        A ``functools.partial``: its function (encoded this way too), arguments and keywords. A bound method:
        its function and the object it is bound to. A callable object: the object and the code of its class's
        ``__call__``. A wrapper object with ``__wrapped__`` (``functools.lru_cache``): itself and what it wraps.
        Anything else (functions, builtins, classes): as a value.
        """
        if isinstance(f, types.FunctionType):  # a functools.wraps decorator holds what it wraps in its closure
            return self.function(f)
        if isinstance(f, (staticmethod, classmethod)):
            return _frame(b"S", _class(type(f)) + self._called_attr(f.__func__, "__func__"))
        if isinstance(f, functools.partial):
            return _frame(b"Q", _class(type(f)) + self._called_attr(f.func, "the partial's function")
                          + self._attr(f.args, "the partial's arguments")
                          + self._attr(f.keywords, "the partial's keywords")
                          + self._attr(getattr(f, "__dict__", None) or {}, "the partial's attributes"))
        if isinstance(f, types.MethodType):  # as a value, byte for byte, when __func__ is a function
            return _frame(b"M", self._called_attr(f.__func__, "__func__") + self._attr(f.__self__, "__self__"))
        encoded = self.encode(f)
        if isinstance(f, type):
            return encoded
        wrapped = getattr(f, "__wrapped__", None)
        if wrapped is not None and not isinstance(f, types.BuiltinFunctionType):
            return _frame(b"W", encoded + self._called_attr(wrapped, "__wrapped__"))
        call = type(f).__call__ if callable(f) else None
        if isinstance(call, types.FunctionType):
            return _frame(b"c", encoded + self._called_attr(call, f"{type(f).__qualname__}.__call__"))
        return encoded

    def _called_attr(self, f: Any, step: str) -> bytes:
        """Encode the callable ``f`` (``called``); an ``UnkeyableError`` names ``step`` in its path."""
        return _at(self.called, f, step)


def _at(encode: Callable[[Any], bytes], v: Any, step: str) -> bytes:
    try:
        return encode(v)
    except UnkeyableError as exc:
        raise _within(exc, step) from exc.__cause__
