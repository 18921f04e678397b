"""The cache of function encodings for journal keys: what a function's encoding read, and whether it is all
still the same object, so that a remote call's key costs the encoding of its arguments and a few identity checks.

``_keys.functions`` fills it; ``_keys.derive``'s fast path reads it.
"""

from __future__ import annotations

import functools
import types
import weakref
from typing import Any

from .frames import _CONSTANT_TYPES, _MISSING, _immutable, _is_constant

# code object -> (digest of its own code, every global name it or its nested code reads). Code objects
# are immutable, so the entry can never go stale; the function around a code object can (its defaults,
# closure, and the module's other functions): see _function_cache.
_code_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[bytes, tuple[str, ...]]] = weakref.WeakKeyDictionary()

# id(function) -> (weak reference to it, _Checks, its top-level encoding): see FunctionEncoder.function. The entry
# is used only while every object that the encoding read is still the same object (_still); the weak
# reference's callback removes it when the function dies (a notebook redefining a function, a reloaded
# module), so that an id() is never reused under an old entry.
_function_cache: dict[int, tuple[weakref.ref[types.FunctionType], tuple[_Checks, ...], bytes]] = {}

# id(builtin) -> (the builtin, module, qualified name, its encoding), for builtins that belong to a module or
# a class (operator.add, len, str.upper, dict.fromkeys): these take no weak reference, and are few; the
# dict is emptied if it ever grows past _BUILTINS_MAX (builtins made on the fly by some extension).
_builtin_cache: dict[int, tuple[Any, Any, Any, bytes]] = {}
_BUILTINS_MAX = 1024


# ---- the function cache: what a function's encoding read, and whether it is all still the same

# One function's part of a cache entry (the called function's, then those of the same-module functions
# that its code names): everything FunctionEncoder._function reads of it, kept by identity.
#   function: a weak reference to it, or None for the called function itself;
#   code, defaults, kwdefaults (a tuple of its items, or None), module, qualname: as read then;
#   cells: the closure's contents (_MISSING for an empty cell);
#   same: (global name, value) for globals that were missing (_MISSING) or plain constants (kept alive:
#       they refer to nothing else);
#   weak: (global name, weak reference, its __module__ or None) for functions, classes, modules... read
#       through a weak reference, so that the cache never keeps a namespace (and the function) alive;
#   kinds: (global name, type) for values that take no weak reference and are not encoded (a list, a dict):
#       any value of the same type is not encoded either.
_Checks = tuple[Any, types.CodeType, Any, Any, Any, Any, tuple[Any, ...], tuple[tuple[str, Any], ...],
                tuple[tuple[str, Any, Any], ...], tuple[tuple[str, type], ...]]

_PLAIN_TYPES = frozenset(_CONSTANT_TYPES)


def _plain(value: Any) -> bool:
    """A constant of an exact builtin type: immutable, and refers to nothing that could keep a namespace."""
    t = type(value)
    return t in _PLAIN_TYPES or ((t is tuple or t is frozenset) and all(_plain(x) for x in value))


def _forget(key: int, ref: weakref.ref[types.FunctionType]) -> None:
    """A cached function died: drop its entry (unless another entry took its place)."""
    entry = _function_cache.get(key)
    if entry is not None and entry[0] is ref:
        _function_cache.pop(key, None)


def _wrapped_function(value: Any) -> tuple[types.FunctionType, bool] | None:
    """Return the function behind a wrapper, and whether a ``functools.partial`` was on the way; None if
    ``value`` wraps no Python function.

    Follows ``__wrapped__`` (``functools.lru_cache``, ``functools.cache``, a ``functools.wraps`` decorator),
    ``functools.partial``'s function, and ``staticmethod`` / ``classmethod``'s ``__func__``, any number deep.
    """
    through_partial = False
    for _ in range(64):  # a chain longer than this is a cycle
        if isinstance(value, types.FunctionType):
            return value, through_partial
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, functools.partial):
            through_partial = True
            value = value.func
        elif isinstance(value, (type, types.ModuleType, types.BuiltinFunctionType)) or not callable(value):
            return None
        else:
            try:
                value = value.__dict__.get("__wrapped__") if hasattr(value, "__dict__") else None
            except Exception:  # an object whose attributes raise: nothing to follow
                return None
            if value is None:
                return None
    return None


def _checks_of(f: types.FunctionType) -> tuple[_Checks, ...] | None:
    """What ``_still`` compares to reuse the encoding of ``f``; None if ``f`` cannot be cached.

    Not cached: a function whose defaults or closure hold anything but plain constants (a list can change in
    place; an object may compare equal and encode differently), or that reads a global which is encoded but
    not a plain constant (an IntEnum member, say).
    """
    checks: list[_Checks] = []
    seen: set[int] = set()

    def visit(fn: types.FunctionType) -> bool:
        if id(fn) in seen:
            return True
        seen.add(id(fn))
        code = fn.__code__
        cached = _code_cache.get(code)
        if cached is None:
            return False
        defaults = fn.__defaults__
        if defaults is not None and not _plain(defaults):
            return False
        kwdefaults = fn.__kwdefaults__
        kw_items = None if kwdefaults is None else tuple(kwdefaults.items())
        if kw_items is not None and not all(_plain(value) for _, value in kw_items):
            return False
        cells = []
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # not assigned yet
                contents = _MISSING
            if contents is not _MISSING and not _plain(contents):
                return False
            cells.append(contents)
        same: list[tuple[str, Any]] = []
        weak: list[tuple[str, Any, Any]] = []
        kinds: list[tuple[str, type]] = []
        namespace = fn.__globals__
        for name in cached[1]:
            value = namespace.get(name, _MISSING)
            if value is _MISSING or _plain(value):
                same.append((name, value))
            elif isinstance(value, types.FunctionType):
                weak.append((name, weakref.ref(value), value.__module__))
                if value.__module__ == fn.__module__ and not visit(value):
                    return False
            elif (inner := _wrapped_function(value)) is not None:  # lru_cache, partial...: its code counts
                function, through_partial = inner
                if through_partial:
                    return False  # its bound arguments count too, and may change in place
                try:
                    weak.append((name, weakref.ref(value), None))
                except TypeError:  # no weak reference to it: no way to tell it is still the same
                    return False
                if function.__module__ == fn.__module__ and not visit(function):
                    return False
            elif _immutable(value):
                return False  # encoded, but not a plain constant
            else:
                try:
                    weak.append((name, weakref.ref(value), None))
                except TypeError:
                    kinds.append((name, type(value)))
        checks.append((None if fn is f else weakref.ref(fn), code, defaults, kw_items, fn.__module__,
                       fn.__qualname__, tuple(cells), tuple(same), tuple(weak), tuple(kinds)))
        return True

    return tuple(checks) if visit(f) else None


def _still(f: types.FunctionType, checks: tuple[_Checks, ...]) -> bool:
    """Whether everything that the cached encoding of ``f`` read is still the same object."""
    for function, code, defaults, kw_items, module, qualname, cells, same, weak, kinds in checks:
        fn = f if function is None else function()
        if (fn is None or fn.__code__ is not code or fn.__defaults__ is not defaults or fn.__module__ is not module
                or fn.__qualname__ is not qualname):
            return False
        kwdefaults = fn.__kwdefaults__
        if kw_items is None:
            if kwdefaults is not None:
                return False
        elif kwdefaults is None or len(kwdefaults) != len(kw_items) or any(
                kwdefaults.get(name, _MISSING) is not value for name, value in kw_items):
            return False
        if cells:
            for cell, expected in zip(fn.__closure__ or (), cells, strict=True):
                try:
                    contents = cell.cell_contents
                except ValueError:
                    contents = _MISSING
                if contents is not expected:
                    return False
        namespace = fn.__globals__
        for name, value in same:
            if namespace.get(name, _MISSING) is not value:
                return False
        for name, ref, value_module in weak:
            value = ref()
            if value is None or namespace.get(name, _MISSING) is not value or (
                    value_module is not None and value.__module__ is not value_module):
                return False
        for name, kind in kinds:
            other = namespace.get(name, _MISSING)
            if type(other) is not kind or (isinstance(other, (tuple, frozenset)) and _is_constant(other)):
                return False
    return True


def _cached_function(f: types.FunctionType) -> bytes | None:
    """The cached top-level encoding of ``f``, if everything it read is unchanged."""
    entry = _function_cache.get(id(f))
    if entry is not None and entry[0]() is f and _still(f, entry[1]):
        return entry[2]
    return None


def _builtin_names(v: Any) -> tuple[Any, Any]:
    """What _key_frames._named reads of a builtin (compared with == before a cached encoding is reused)."""
    return getattr(v, "__module__", None), getattr(v, "__qualname__", None) or getattr(v, "__name__", None)
