"""Argument checks shared by the public entry points: each message names the rule, the value and the fix."""

from __future__ import annotations

import math
import reprlib

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60

# Beyond this a number of seconds is no timeout a machine can wait out (about 30,000 years), and adding it to
# a clock would lose the clock's precision: refuse it rather than let it overflow inside the loop.
MAX_SECONDS = 1e12


_FLOAT_INT = 2**1023  # ints up to this are orderable as floats (beyond 1.8e308, float() overflows)


def describe(value: object) -> str:
    """A short description of a bad value: its repr, after its type's name unless the repr shows the type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return _short.repr(value)
    return f"{type(value).__name__} {_short.repr(value)}"


def check_cost(cost: object, where: str = "add_job") -> None:
    cls = cost.__class__
    if (cls is int and -_FLOAT_INT <= cost <= _FLOAT_INT) or (cls is float and cost == cost):  # type: ignore[operator]
        return  # the common case, checked once per job: a plain int that a float can hold, or a float not nan
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        raise TypeError(f"{where}: cost must be a real number (lowest runs first), got {describe(cost)}")
    try:
        as_float = float(cost)
    except OverflowError:
        raise ValueError(f"{where}: cost {cost!r} is too large to order jobs by; use a number below 1e308 "
                         "(for example its logarithm)") from None
    if math.isnan(as_float):
        raise TypeError(f"{where}: cost must be a real number (lowest runs first), got nan")


def check_timeout(where: str, timeout: object) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{where}: timeout must be a positive number of seconds or None, got {describe(timeout)}")
    try:
        ok = 0 < float(timeout) <= MAX_SECONDS
    except OverflowError:
        ok = False
    if not ok:
        raise ValueError(f"{where}: timeout must be a positive number of seconds up to {MAX_SECONDS:g}, or None "
                         f"for no limit; got {timeout!r}")


def check_max_retries(where: str, value: object) -> None:
    """Refuse a ``max_retries`` that is not an integer >= 1, saying that it counts attempts."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: max_retries must be an integer >= 1, got {describe(value)}; it counts attempts, "
                         "not retries: a job whose worker dies is run again until it has been tried max_retries "
                         "times (1: never run again, 3: the default)")


def check_positive_int(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {describe(value)}")


def check_prefetch(what: str, value: object) -> None:
    if value == "auto" and isinstance(value, str):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1 (jobs in flight per worker) or \"auto\" (as many as "
                         f"hide the round trip), got {describe(value)}")


def check_n_workers(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n_workers must be an integer >= 0, got {describe(n)}")


def plural(n: int, word: str) -> str:
    """``1 worker``, ``2 workers``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def type_name(cls: type) -> str:
    """The name an exception type goes by when matching ``retry_on``: ``module.qualname``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def check_retry_on(where: str, retry_on: object) -> frozenset[str]:
    """Return ``retry_on`` (an exception class, or a tuple of them) as the set of their ``type_name``s."""
    classes = retry_on if isinstance(retry_on, (tuple, list, set, frozenset)) else (retry_on,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{where}: retry_on must be an exception class or a tuple of them, got "
                            f"{describe(cls)}; e.g. retry_on=(ConnectionError, TimeoutError)")
    return frozenset(type_name(cls) for cls in classes)  # type: ignore[arg-type]


def check_delay(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"{what} must be a number of seconds from 0 to {MAX_SECONDS:g}, got {describe(value)}")
