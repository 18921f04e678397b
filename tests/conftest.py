"""Shared fixtures: schedulers that are always closed, and a check that no test leaves a process behind."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import jobsched

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import helpers  # noqa: E402  # tests/ is on the path only from here on

# In CI, a test that cannot run its real component (browser, Dask) fails instead of skipping.
STRICT = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where everything must be installed."""
    if STRICT:
        pytest.fail(f"CI must run this test, but: {reason}")
    pytest.skip(reason)


def _children() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a child process (a worker) running; kill what it left."""
    before = {p.pid for p in _children()}
    yield
    deadline = time.monotonic() + 10.0
    leaked: list[psutil.Process] = []
    while time.monotonic() < deadline:
        leaked = [p for p in _children() if p.pid not in before and helpers.is_live(p)]
        if not leaked:
            break
        time.sleep(0.05)
    for p in leaked:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not leaked, f"the test left processes behind: {[(p.pid, p.cmdline()) for p in leaked]}"


@pytest.fixture(autouse=True)
def no_leaked_scheduler_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        alive = [t.name for t in threading.enumerate() if t.name == "jobsched-scheduler" and t.is_alive()]
        if not alive:
            return
        time.sleep(0.05)
    pytest.fail(f"a scheduler thread is still running after the test: {alive}; close() the scheduler")


@pytest.fixture
def sched() -> Iterator[jobsched.Scheduler]:
    """A remote-call scheduler (default worker), closed after the test whatever happens."""
    s = jobsched.Scheduler()
    try:
        yield s
    finally:
        s.close(timeout=5.0)


@pytest.fixture
def dash(sched: jobsched.Scheduler) -> Iterator[Any]:
    """The live dashboard of ``sched`` (skips without ipywidgets), closed after the test."""
    pytest.importorskip("ipywidgets")
    d = sched.dashboard()
    try:
        yield d
    finally:
        d.close()
