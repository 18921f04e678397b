"""CPython's own ``concurrent.futures`` test suite, run against ``jobsched.Executor``.

The test classes are imported from the running interpreter's ``test.test_concurrent_futures`` package
(never copied): every class of it that tests an executor (``ProcessPoolExecutorTest``, which includes
``ExecutorTest``; ``WaitTests``; ``AsCompletedTests``; ``ProcessPoolShutdownTest``, which includes
``ExecutorShutdownTest``; ``ExecutorDeadlockTest``; the initializer mixins), combined with a mixin that makes
``jobsched.Executor`` the executor under test, and ``FutureTests`` over jobsched's own future class. Only the
thread-pool classes are left out: they test ``ThreadPoolExecutor``'s threads.

Every test runs; those named in ``conformance_differences`` (a deliberate difference of jobsched, or a test
of ``ProcessPoolExecutor``'s internals) are skipped with their reason. Anything else that does not pass fails
here. Where the interpreter ships no ``test`` package (3.11 and 3.12 here; 3.10 has it as a single module),
the whole file is skipped with a message.

The suite builds process pools with ``mp_context=multiprocessing.get_context("spawn")``. jobsched refuses
``mp_context``: its workers are always fresh interpreters, as spawn's are. So the executor under test takes
the suite's spawn context as "no context"; any other context is still refused.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import unittest
import unittest.mock
from typing import Any

import pytest

try:
    from test.test_concurrent_futures import util as _util
except ImportError:  # no stdlib test package, or the single-file one of older Pythons
    pytest.skip("this Python ships no test.test_concurrent_futures package (the stdlib's own tests): "
                "CPython's concurrent.futures suite runs with Python 3.13", allow_module_level=True)

from conformance_differences import DIFFERENCES, NOT_APPLICABLE

import jobsched
from jobsched._core.futures import JobFuture

# module of test.test_concurrent_futures -> the classes of it that test an executor
MIXINS = {
    "test_process_pool": ["ProcessPoolExecutorTest"],
    "test_wait": ["WaitTests"],
    "test_as_completed": ["AsCompletedTests"],
    "test_shutdown": ["ProcessPoolShutdownTest"],
    "test_deadlock": ["ExecutorDeadlockTest"],
    "test_init": ["InitializerMixin", "FailingInitializerMixin"],
}
SPAWN = multiprocessing.get_context("spawn")


class SuiteExecutor(jobsched.Executor):
    """``jobsched.Executor`` as the suite builds it: its spawn context means jobsched's own fresh workers."""

    def __init__(self, max_workers: int | None = None, mp_context: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(max_workers, None if mp_context is SPAWN else mp_context, *args, **kwargs)


class JobschedMixin(_util.ExecutorMixin):  # type: ignore[misc]
    """``ExecutorMixin`` with ``jobsched.Executor``; ``get_context()`` is the spawn context some tests use."""

    executor_type = SuiteExecutor
    worker_count = 5

    def get_context(self) -> Any:
        return SPAWN


def _skipped(cls: type, attr: str) -> str | None:
    """The reason to skip test ``attr`` of ``cls``, or None: keyed by the class that defines it."""
    name = getattr(cls, attr).__qualname__
    if name in DIFFERENCES:
        return f"deliberate difference: {DIFFERENCES[name]}"
    if name in NOT_APPLICABLE:
        return f"not about jobsched: {NOT_APPLICABLE[name]}"
    return None


def _with_skips(cls: type) -> dict[str, Any]:
    attrs: dict[str, Any] = {"__module__": __name__}
    for attr in dir(cls):
        if attr.startswith("test"):
            reason = _skipped(cls, attr)
            if reason is not None:
                attrs[attr] = unittest.skip(reason)(getattr(cls, attr))
    return attrs


def _build() -> dict[str, type]:
    classes: dict[str, type] = {}
    for module_name, names in MIXINS.items():
        module = importlib.import_module(f"test.test_concurrent_futures.{module_name}")
        for mixin_name in names:
            mixin: Any = getattr(module, mixin_name)
            name = f"Jobsched{mixin_name}"
            classes[name] = type(name, (mixin, JobschedMixin, _util.BaseTestCase), _with_skips(mixin))
    return classes


globals().update(_build())


def _job_future() -> JobFuture[Any]:
    return JobFuture(lambda entry: False)


_future_tests: Any = importlib.import_module("test.test_concurrent_futures.test_future")


class JobschedFutureTests(_future_tests.FutureTests):  # type: ignore[misc]
    """``FutureTests`` over ``JobFuture``, the future that jobsched's ``submit`` returns."""

    def setUp(self) -> None:
        super().setUp()
        # A callback's error goes to the concurrent.futures logger; without a handler of its own, logging's
        # last resort prints it on stderr, where the suite looks for it (pytest's log capture would take it).
        patcher = unittest.mock.patch.object(logging.getLogger("concurrent.futures"), "propagate", False)
        patcher.start()
        self.addCleanup(patcher.stop)
        names = {"Future": _job_future, "create_future": _create_job_future}
        names |= {f"{state}_FUTURE": _create_job_future(**how) for state, how in _CONSTANTS.items()}
        for module in (_future_tests, _util):
            for attr, value in names.items():
                if hasattr(module, attr):
                    patcher = unittest.mock.patch.object(module, attr, value)
                    patcher.start()
                    self.addCleanup(patcher.stop)


def _create_job_future(state: str = _util.PENDING, exception: BaseException | None = None,
                       result: Any = None) -> JobFuture[Any]:
    f = _job_future()
    f._state = state
    f._exception = exception
    f._result = result
    return f


_CONSTANTS: dict[str, dict[str, Any]] = {
    "PENDING": {"state": _util.PENDING}, "RUNNING": {"state": _util.RUNNING},
    "CANCELLED": {"state": _util.CANCELLED}, "CANCELLED_AND_NOTIFIED": {"state": _util.CANCELLED_AND_NOTIFIED},
    "EXCEPTION": {"state": _util.FINISHED, "exception": OSError()},
    "SUCCESSFUL": {"state": _util.FINISHED, "result": 42},
}
for _attr, _reason in _with_skips(_future_tests.FutureTests).items():
    if _attr != "__module__":
        setattr(JobschedFutureTests, _attr, _reason)


def test_every_skipped_test_exists() -> None:
    """The lists of skipped tests stay short and true: each names a test of the suite that runs here."""
    names = {f"{_future_tests.FutureTests.__name__}.{a}" for a in dir(_future_tests.FutureTests)
             if a.startswith("test")}
    for module_name, mixins in MIXINS.items():
        module = importlib.import_module(f"test.test_concurrent_futures.{module_name}")
        for mixin_name in mixins:
            mixin = getattr(module, mixin_name)
            names |= {getattr(mixin, a).__qualname__ for a in dir(mixin) if a.startswith("test")}
    assert set(DIFFERENCES) <= names and set(NOT_APPLICABLE) <= names
    assert not set(DIFFERENCES) & set(NOT_APPLICABLE)
