"""The byte format of journal keys: each value a tag, a length and a payload (``_keys.derive`` says what is keyed).

Every encoder (``_keys.values``, ``_keys.functions``) and the fast path (``_keys.derive``) writes these frames, so the
same value gives the same bytes whichever way it was encoded.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable
from typing import Any

from ..errors import UnkeyableError

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


# What a function may read from its module and still be part of its key (see the module docstring).
_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes)

_MISSING = object()


def _is_constant(value: tuple[Any, ...] | frozenset[Any]) -> bool:
    return all(isinstance(x, _CONSTANT_TYPES) or (isinstance(x, (tuple, frozenset)) and _is_constant(x))
               for x in value)


def _typename(v: Any) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _immutable(value: object) -> bool:
    return isinstance(value, _CONSTANT_TYPES) or (isinstance(value, (tuple, frozenset)) and _is_constant(value))


def _class(cls: type) -> bytes:
    return _frame(b"C", _str(cls.__module__ or "") + _str(cls.__qualname__))


def _named(v: Any) -> bytes:
    """Name something importable by its module and qualified name, without looking at its code."""
    module = getattr(v, "__module__", None)
    qualname = getattr(v, "__qualname__", None) or getattr(v, "__name__", None)
    if not isinstance(qualname, str):
        raise UnkeyableError(f"{_typename(v)} {v!r} has no qualified name to be keyed by")
    return _frame(b"R", _str(module if isinstance(module, str) else "") + _str(qualname))


_SIMPLE: dict[type, Callable[[Any], bytes]] = {
    type(None): lambda v: b"0",
    bool: lambda v: b"1" if v else b"2",
    int: _int,
    float: _float,
    complex: lambda v: _frame(b"X", _float(v.real) + _float(v.imag)),
    str: _str,
    bytes: lambda v: _frame(b"Y", v),
}
