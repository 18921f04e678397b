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
"""

from __future__ import annotations

import enum
import functools
import hashlib
import io
import math
import struct
import sys
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .errors import UnkeyableError as UnkeyableError
from .remote_call import RemoteCall

KEY_VERSION = 1
"""Bumped whenever the encoding changes, so that keys of an older encoding can never match."""

_LEN = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_BIG = 4096  # payloads longer than this are replaced by their digest: memory stays bounded for big arrays


def _within(exc: UnkeyableError, step: str) -> UnkeyableError:
    exc.path.insert(0, step)
    exc.args = (str(exc),)
    return exc


def _frame(tag: bytes, payload: bytes) -> bytes:
    if len(payload) > _BIG:
        return tag.lower() + _LEN(32) + hashlib.sha256(payload).digest()
    return tag + _LEN(len(payload)) + payload


# The tag and length of short str and int payloads, ready made: the two most common values cost one
# conversion, one list index and one concatenation (what _frame would produce, byte for byte).
_STR_HEAD = [b"S" + _LEN(n) for n in range(256)]
_INT_HEAD = [b"I" + _LEN(n) for n in range(256)]


def _str(s: str) -> bytes:
    payload = s.encode("utf-8", "surrogatepass")
    if len(payload) < 256:
        return _STR_HEAD[len(payload)] + payload
    return _frame(b"S", payload)


def _int(n: int) -> bytes:
    payload = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    if len(payload) < 256:
        return _INT_HEAD[len(payload)] + payload
    return _frame(b"I", payload)


def _float(x: float) -> bytes:
    return _frame(b"F", b"nan" if math.isnan(x) else _DOUBLE(x))


# Types that are never keyed, with the reason given to the user. Most of them also refuse to pickle, but
# some (iterators over a file, for example) would otherwise reduce to something that looks harmless.
_REFUSED: tuple[tuple[type, str], ...] = (
    (types.GeneratorType, "a generator is consumed as it runs; pass the values (a list or tuple) instead"),
    (types.CoroutineType, "a coroutine is process state"),
    (types.AsyncGeneratorType, "an async generator is process state"),
    (types.ModuleType, "a module is process state; pass the values you need from it"),
    (types.FrameType, "a frame is process state"),
    (types.TracebackType, "a traceback is process state"),
    (io.IOBase, "an open file or stream is process state; pass its path or its contents"),
    (weakref.ref, "a weak reference is process state"),
)

# What a function may read from its module and still be part of its key (see the module docstring).
_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes)

# code object -> (digest of its own code, every global name it or its nested code reads). Code objects
# are immutable, so the entry can never go stale; the function around a code object can (its defaults,
# closure, and the module's other functions): see _function_cache.
_code_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[bytes, tuple[str, ...]]] = weakref.WeakKeyDictionary()

# id(function) -> (weak reference to it, _Checks, its top-level encoding): see _Encoder.function. The entry
# is used only while every object that the encoding read is still the same object (_still); the weak
# reference's callback removes it when the function dies (a notebook redefining a function, a reloaded
# module), so that an id() is never reused under an old entry.
_function_cache: dict[int, tuple[weakref.ref[types.FunctionType], tuple[_Checks, ...], bytes]] = {}

# id(builtin) -> (the builtin, module, qualified name, its encoding), for builtins that belong to a module or
# a class (operator.add, len, str.upper, dict.fromkeys): these take no weak reference, and are few; the
# dict is emptied if it ever grows past _BUILTINS_MAX (builtins made on the fly by some extension).
_builtin_cache: dict[int, tuple[Any, Any, Any, bytes]] = {}
_BUILTINS_MAX = 1024


class _Encoder:
    """One encoding pass: remembers what is being encoded, to refuse cycles instead of looping."""

    __slots__ = ("_active", "_functions")

    def __init__(self) -> None:
        self._active: set[int] = set()
        self._functions: set[int] = set()  # functions whose digest is being computed (recursion)

    def encode(self, v: Any) -> bytes:
        t = type(v)
        # Exact types first: the common case costs one dict lookup. Subclasses go the long way, through
        # the checks below, so that their class is part of the key.
        simple = _SIMPLE.get(t)
        if simple is not None:
            return simple(v)
        if t is tuple or t is list:
            return self._sequence(b"T" if t is tuple else b"L", v)
        if t is dict:
            return self._mapping(b"D", v)
        if t is set or t is frozenset:
            return self._set(b"E" if t is set else b"Z", v)
        return self._other(v)

    def _guarded(self, v: Any) -> int:
        key = id(v)
        if key in self._active:
            raise UnkeyableError(f"the {type(v).__name__} contains itself (a cycle), which has no finite key")
        self._active.add(key)
        return key

    def _sequence(self, tag: bytes, v: Any) -> bytes:
        key = self._guarded(v)
        parts = []
        for i, item in enumerate(v):
            try:
                parts.append(self.encode(item))
            except UnkeyableError as exc:
                raise _within(exc, f"[{i}]") from exc.__cause__
        self._active.discard(key)
        return _frame(tag, b"".join(parts))

    def _mapping(self, tag: bytes, v: Any) -> bytes:
        key = self._guarded(v)
        parts = []
        for k, item in v.items():
            try:
                parts.append(self.encode(k) + self.encode(item))
            except UnkeyableError as exc:
                raise _within(exc, f"[{k!r}]") from exc.__cause__
        self._active.discard(key)
        parts.sort()
        return _frame(tag, b"".join(parts))

    def _set(self, tag: bytes, v: Any) -> bytes:
        key = self._guarded(v)
        try:
            parts = sorted(self.encode(item) for item in v)
        except UnkeyableError as exc:
            raise _within(exc, "{element}") from exc.__cause__
        self._active.discard(key)
        return _frame(tag, b"".join(parts))

    def _other(self, v: Any) -> bytes:
        if isinstance(v, enum.Enum):
            return _frame(b"N", self._class(type(v)) + _str(v.name))
        if isinstance(v, type):
            return self._class(v)
        if isinstance(v, types.FunctionType):
            return self.function(v)
        if isinstance(v, types.MethodType):
            return _frame(b"M", self.encode(v.__func__) + self._attr(v.__self__, "__self__"))
        if isinstance(v, (types.BuiltinFunctionType, types.MethodWrapperType, types.WrapperDescriptorType,
                          types.MethodDescriptorType, types.ClassMethodDescriptorType)):
            return self._builtin(v)
        if isinstance(v, (bytearray, memoryview)):
            return _frame(b"A", bytes(v))
        if isinstance(v, types.CodeType):
            return self._code(v)[0]
        if v is Ellipsis or v is NotImplemented:
            return _frame(b"G", repr(v).encode())
        for refused, reason in _REFUSED:
            if isinstance(v, refused):
                raise UnkeyableError(f"a {_typename(v)} cannot be keyed: {reason}")
        np = sys.modules.get("numpy")
        if np is not None and isinstance(v, (np.ndarray, np.generic)):
            return self._numpy(np, v)
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(v, (pd.DataFrame, pd.Series, pd.Index)):
            return self._pandas(pd, v)
        if hasattr(type(v), "__dataclass_fields__") and not isinstance(v, type):
            return self._dataclass(v)
        if isinstance(v, (set, frozenset)):  # a subclass: hash order would leak through its reduction
            return _frame(b"e", self._class(type(v)) + self._set(b"E", v) + self._attr(getattr(v, "__dict__", {}),
                                                                                     "__dict__"))
        return self._reduced(v)

    # ---- classes and functions

    @staticmethod
    def _class(cls: type) -> bytes:
        return _frame(b"C", _str(cls.__module__ or "") + _str(cls.__qualname__))

    @staticmethod
    def _named(v: Any) -> bytes:
        """Name something importable by its module and qualified name, without looking at its code."""
        module = getattr(v, "__module__", None)
        qualname = getattr(v, "__qualname__", None) or getattr(v, "__name__", None)
        if not isinstance(qualname, str):
            raise UnkeyableError(f"{_typename(v)} {v!r} has no qualified name to be keyed by")
        return _frame(b"R", _str(module if isinstance(module, str) else "") + _str(qualname))

    def _builtin(self, v: Any) -> bytes:
        owner = getattr(v, "__self__", None)
        if owner is None or isinstance(owner, (types.ModuleType, type)):
            cached = _builtin_cache.get(id(v))
            module, name = _builtin_names(v)
            if cached is not None and cached[0] is v and cached[1] == module and cached[2] == name:
                return cached[3]
            encoded = _frame(b"B", self._named(v))
            if type(module) in (str, type(None)) and type(name) is str:  # compared with == next time
                if len(_builtin_cache) >= _BUILTINS_MAX:
                    _builtin_cache.clear()
                _builtin_cache[id(v)] = (v, module, name, encoded)
            return encoded
        return _frame(b"b", self._named(v) + self._attr(owner, "__self__"))  # e.g. [].append

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
            return _frame(b"P", b"".join(parts))
        finally:
            self._functions.discard(id(f))

    def called(self, f: Any) -> bytes:
        """Encode the function a remote call runs: what it runs, not only what it is named.

        A ``functools.partial``: its function (encoded this way too), arguments and keywords. A bound method:
        its function and the object it is bound to. A callable object: the object and the code of its class's
        ``__call__``. A wrapper object with ``__wrapped__`` (``functools.lru_cache``): itself and what it wraps.
        Anything else (functions, builtins, classes): as a value.
        """
        if isinstance(f, types.FunctionType):
            return self.function(f)
        if isinstance(f, functools.partial):
            return _frame(b"Q", self._class(type(f)) + self._called_attr(f.func, "the partial's function")
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
        try:
            return self.called(f)
        except UnkeyableError as exc:
            raise _within(exc, step) from exc.__cause__

    # ---- the rest

    def _attr(self, v: Any, step: str) -> bytes:
        try:
            return self.encode(v)
        except UnkeyableError as exc:
            raise _within(exc, step) from exc.__cause__

    def _dataclass(self, v: Any) -> bytes:
        key = self._guarded(v)
        parts = [self._class(type(v))]
        for name in type(v).__dataclass_fields__:
            value = getattr(v, name, _MISSING)
            parts.append(_str(name) + (b"U" if value is _MISSING else self._attr(value, f".{name}")))
        self._active.discard(key)
        return _frame(b"d", b"".join(parts))

    def _numpy(self, np: Any, v: Any) -> bytes:
        dtype = v.dtype
        kind = _str(dtype.str if dtype.names is None else repr(dtype.descr))
        if isinstance(v, np.generic):
            return _frame(b"n", kind + (self.encode(v.item()) if dtype.hasobject else _frame(b"A", v.tobytes())))
        shape = _frame(b"T", b"".join(_int(n) for n in v.shape))
        if dtype.hasobject:
            return _frame(b"o", kind + shape + self._sequence(b"L", v.ravel(order="C").tolist()))
        return _frame(b"a", kind + shape + _frame(b"A", np.ascontiguousarray(v).tobytes()))

    def _pandas(self, pd: Any, v: Any) -> bytes:
        cls = _str(type(v).__name__)
        if isinstance(v, pd.Index):
            return _frame(b"p", cls + self.encode(list(v.names)) + _str(str(v.dtype)) + self.encode(v.to_numpy()))
        if isinstance(v, pd.Series):
            return _frame(b"p", cls + self._attr(v.name, ".name") + self.encode(v.index) + _str(str(v.dtype))
                          + self._attr(v.to_numpy(), ".values"))
        columns = [_str(str(dtype)) + self._attr(v.iloc[:, i].to_numpy(), f"[column {i}]")
                   for i, dtype in enumerate(v.dtypes)]
        return _frame(b"p", cls + self.encode(v.index) + self.encode(v.columns) + b"".join(columns))

    def _reduced(self, v: Any) -> bytes:
        """Key an object by what pickling it would send: its reconstructor, arguments, state and items."""
        try:
            reduced = v.__reduce_ex__(5)
        except Exception as exc:
            raise UnkeyableError(f"a {_typename(v)} cannot be keyed: it cannot be pickled ({exc})") from exc
        if isinstance(reduced, str):  # a module-level singleton, pickled by name
            return _frame(b"g", _str(getattr(v, "__module__", None) or type(v).__module__) + _str(reduced))
        if not isinstance(reduced, tuple) or not 2 <= len(reduced) <= 6:
            raise UnkeyableError(f"a {_typename(v)} cannot be keyed: its __reduce_ex__ returned {type(reduced)}")
        constructor, args, *rest = reduced + (None,) * (6 - len(reduced))
        state, listitems, dictitems, _setter = rest
        if isinstance(args, tuple) and any(type(a) is int and a == id(v) for a in args):
            raise UnkeyableError(f"a {_typename(v)} cannot be keyed: it pickles as its id(), which is process state")
        key = self._guarded(v)
        parts = [self._named(constructor) if isinstance(constructor, (type, types.FunctionType,
                                                                        types.BuiltinFunctionType))
                 else self._attr(constructor, "reconstructor"),
                 self._attr(args, "arguments"), self._attr(state, "state")]
        if listitems is not None:
            parts.append(self._attr(list(listitems), "items"))
        if dictitems is not None:
            pairs = list(dictitems)
            if isinstance(v, OrderedDict) or not isinstance(v, dict):
                parts.append(self._attr(pairs, "items"))
            else:  # a dict subclass compares as a dict: its order must not count
                parts.append(self._attr(dict(pairs), "items"))
        self._active.discard(key)
        return _frame(b"O", self._class(type(v)) + b"".join(parts))


_MISSING = object()


def _immutable(value: object) -> bool:
    return isinstance(value, _CONSTANT_TYPES) or (isinstance(value, (tuple, frozenset)) and _is_constant(value))


# ---- the function cache: what a function's encoding read, and whether it is all still the same

# One function's part of a cache entry (the called function's, then those of the same-module functions
# that its code names): everything _Encoder._function reads of it, kept by identity.
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
    """What _Encoder._named reads of a builtin (compared with == before a cached encoding is reused)."""
    return getattr(v, "__module__", None), getattr(v, "__qualname__", None) or getattr(v, "__name__", None)


def _is_constant(value: tuple[Any, ...] | frozenset[Any]) -> bool:
    return all(isinstance(x, _CONSTANT_TYPES) or (isinstance(x, (tuple, frozenset)) and _is_constant(x))
               for x in value)


def _typename(v: Any) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


_SIMPLE: dict[type, Callable[[Any], bytes]] = {
    type(None): lambda v: b"0",
    bool: lambda v: b"1" if v else b"2",
    int: _int,
    float: _float,
    complex: lambda v: _frame(b"X", _float(v.real) + _float(v.imag)),
    str: _str,
    bytes: lambda v: _frame(b"Y", v),
}


def encode(value: Any) -> bytes:
    """Return the canonical encoding of ``value`` (hash it to get a key).

    Raises:
        UnkeyableError: the value, or something inside it, cannot be keyed stably.
    """
    try:
        return _Encoder().encode(value)
    except RecursionError as exc:
        raise UnkeyableError("the value is nested too deeply to be keyed") from exc


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
