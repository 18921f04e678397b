"""CPython's own ``concurrent.futures`` test suite, run against ``jobsched.Executor``.

The mixins are imported from the running interpreter's ``test.test_concurrent_futures`` package (never
copied) and combined with a mixin that makes ``jobsched.Executor`` the executor under test. Every test
runs; the few that pin a deliberate difference of jobsched are skipped with the reason, in ``DIFFERENCES``.
Anything else that does not pass fails here. Where the interpreter ships no ``test`` package (3.11 and 3.12
here; 3.10 has it as a single module), the whole file is skipped with a message.
"""

from __future__ import annotations

import importlib
import unittest
from typing import Any

import pytest

try:
    from test.test_concurrent_futures import util as _util
except ImportError:  # no stdlib test package, or the single-file one of older Pythons
    pytest.skip("this Python ships no test.test_concurrent_futures package (the stdlib's own tests): "
                "CPython's concurrent.futures suite runs with Python 3.13", allow_module_level=True)

import jobsched

# test name (the mixin's class name, then the test) -> why jobsched differs on purpose.
_CHILD = ("its child interpreter imports the executor class by name from concurrent.futures, which has no "
          "jobsched.Executor; tests/test_executor_contract.py runs the same scenario with it")
DIFFERENCES: dict[str, str] = {
    "ExecutorShutdownTest.test_interpreter_shutdown": _CHILD,
    "ExecutorShutdownTest.test_submit_after_interpreter_shutdown": _CHILD,
    "ExecutorShutdownTest.test_hang_gh83386": _CHILD,
    "ExecutorShutdownTest.test_cancel_futures": "a call has started only once a worker holds it: "
    "shutdown(cancel_futures=True) right after submitting, while the workers still start, cancels every call "
    "(ProcessPoolExecutor has already moved a few to its call queue, and runs them)",
}

MODULES = ["executor", "test_wait", "test_as_completed", "test_shutdown", "test_init"]
MIXINS = {
    "executor": ["ExecutorTest"],
    "test_wait": ["WaitTests"],
    "test_as_completed": ["AsCompletedTests"],
    "test_shutdown": ["ExecutorShutdownTest"],
    "test_init": ["InitializerMixin", "FailingInitializerMixin"],
}


class JobschedMixin(_util.ExecutorMixin):  # type: ignore[misc]
    """``ExecutorMixin`` with ``jobsched.Executor`` (no ``mp_context``: jobsched starts its own workers)."""

    executor_type = jobsched.Executor
    worker_count = 5


def _build() -> dict[str, type]:
    classes: dict[str, type] = {}
    for module_name in MODULES:
        module = importlib.import_module(f"test.test_concurrent_futures.{module_name}")
        for mixin_name in MIXINS[module_name]:
            mixin: Any = getattr(module, mixin_name)
            bases = (mixin, JobschedMixin)
            name = f"Jobsched{mixin_name}"
            attrs: dict[str, Any] = {"__module__": __name__}
            for attr in dir(mixin):
                reason = DIFFERENCES.get(f"{mixin_name}.{attr}")
                if reason is not None:
                    attrs[attr] = unittest.skip(f"deliberate difference: {reason}")(getattr(mixin, attr))
            classes[name] = type(name, (*bases, _util.BaseTestCase), attrs)
    return classes


globals().update(_build())


def test_every_difference_names_a_test_that_exists() -> None:
    """The list of deliberate differences stays short and true: each names a test of the suite."""
    names = set()
    for module_name in MODULES:
        module = importlib.import_module(f"test.test_concurrent_futures.{module_name}")
        for mixin_name in MIXINS[module_name]:
            names |= {f"{mixin_name}.{attr}" for attr in dir(getattr(module, mixin_name)) if attr.startswith("test")}
    assert set(DIFFERENCES) <= names
