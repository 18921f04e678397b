"""Jobs for tests/test_executor_contract.py: plain importable functions, so that workers find them by name."""

from __future__ import annotations

import time
from typing import Any


class PickyError(ValueError):
    """An exception class whose constructor needs two arguments (not what JobError passes)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a, b)


def divide(x: float, y: float) -> float:
    return x / y


def raise_picky() -> None:
    raise PickyError(1, 2)


def raise_runtime(message: str) -> None:
    raise RuntimeError(message)


def local_error_class() -> None:
    class OnlyHere(Exception):
        pass

    raise OnlyHere("defined inside the job")


def keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def sleep_and_return(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def total(values: list[Any], extra: dict[str, Any]) -> Any:
    return sum(values) + extra["k"]


_INIT: Any = None


def set_init(value: Any) -> None:
    global _INIT
    _INIT = value


def get_init() -> Any:
    return _INIT


def fail_init() -> None:
    raise ValueError("error in initializer")


def nbytes(array: Any) -> int:
    return int(array.nbytes)


def big_list(n: int) -> list[int]:
    return list(range(n))


class Box:
    """A result that can be weakly referenced."""

    def __init__(self, n: int) -> None:
        self.n = n


def make_box(n: int) -> Box:
    return Box(n)


class FailsToPickle:
    """A result whose pickling raises ``pickle.PicklingError`` in the worker."""

    def __reduce__(self) -> Any:
        import pickle

        raise pickle.PicklingError("refused by __reduce__")


def _raise_unpickling_error() -> None:
    import pickle

    raise pickle.UnpicklingError("refused at unpickling")


class FailsToUnpickle:
    """A result that pickles in the worker and raises ``pickle.UnpicklingError`` when the caller unpickles it."""

    def __reduce__(self) -> Any:
        return _raise_unpickling_error, ()


def make(cls: type) -> Any:
    return cls()


def raise_with_comment() -> None:
    raise RuntimeError(123)  # the line a remote traceback shows
