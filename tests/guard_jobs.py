"""Jobs for tests/test_loop_guards.py: results that are hostile to the scheduler that unpickles them.

A worker pickles these results without trouble (``__reduce__`` names an importable function); it is the
scheduler's ``loads`` that calls that function, and so raises there, on the loop's thread.
"""

from __future__ import annotations

import sys
from typing import Any


class GuardBaseException(BaseException):
    """Neither an Exception, SystemExit, KeyboardInterrupt nor GeneratorExit."""


def raise_on_load(kind: str) -> None:
    """What unpickling a ``Hostile`` result calls: raise the exception named by ``kind``."""
    if kind == "Exception":
        raise ValueError("raised while unpickling")
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt("raised while unpickling")
    if kind == "GeneratorExit":
        raise GeneratorExit("raised while unpickling")
    if kind == "GuardBaseException":
        raise GuardBaseException("raised while unpickling")
    raise AssertionError(f"unknown kind {kind!r}")


class Hostile:
    """A value whose unpickling raises ``kind`` (``SystemExit`` through ``sys.exit(3)`` itself)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> Any:
        if self.kind == "SystemExit":
            return (sys.exit, (3,))
        return (raise_on_load, (self.kind,))


HOSTILE_KINDS = ["Exception", "SystemExit", "KeyboardInterrupt", "GeneratorExit", "GuardBaseException"]


def hostile_result(kind: str) -> Hostile:
    return Hostile(kind)


def recursive_list() -> list[Any]:
    """A list that contains itself (pickle keeps the cycle)."""
    cycle: list[Any] = [1, 2]
    cycle.append(cycle)
    return cycle


def length(data: bytes) -> int:
    return len(data)
