"""Journal keys of values: the canonical encoding of arguments and data (see ``_keys.derive`` for what counts).

``_Encoder`` is one encoding pass: values here, functions in its base ``_keys.functions.FunctionEncoder``.
"""

from __future__ import annotations

import enum
import io
import sys
import types
import weakref
from collections import OrderedDict
from typing import Any

from ..errors import UnkeyableError
from .frames import _MISSING, _SIMPLE, _class, _frame, _int, _named, _str, _typename, _within
from .functions import FunctionEncoder

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


class _Encoder(FunctionEncoder):
    """One encoding pass: remembers what is being encoded, to refuse cycles instead of looping."""

    __slots__ = ("_active",)

    def __init__(self) -> None:
        super().__init__()
        self._active: set[int] = set()

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
            return _frame(b"N", _class(type(v)) + _str(v.name))
        if isinstance(v, type):
            return _class(v)
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
        handles = sys.modules.get("jobsched._data.handles")
        if handles is not None and isinstance(v, handles.Handle):  # its content, digested once at put()
            return _frame(b"H", _str(v.digest))
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(v, (pd.DataFrame, pd.Series, pd.Index)):
            return self._pandas(pd, v)
        if hasattr(type(v), "__dataclass_fields__") and not isinstance(v, type):
            return self._dataclass(v)
        if isinstance(v, (set, frozenset)):  # a subclass: hash order would leak through its reduction
            return _frame(b"e", _class(type(v)) + self._set(b"E", v) + self._attr(getattr(v, "__dict__", {}),
                                                                                     "__dict__"))
        return self._reduced(v)

    def _dataclass(self, v: Any) -> bytes:
        key = self._guarded(v)
        parts = [_class(type(v))]
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
        parts = [_named(constructor) if isinstance(constructor, (type, types.FunctionType,
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
        return _frame(b"O", _class(type(v)) + b"".join(parts))


def encode(value: Any) -> bytes:
    """Return the canonical encoding of ``value`` (hash it to get a key).

    Raises:
        UnkeyableError: the value, or something inside it, cannot be keyed stably.
    """
    try:
        return _Encoder().encode(value)
    except RecursionError as exc:
        raise UnkeyableError("the value is nested too deeply to be keyed") from exc
