"""Journal keys see through wrappers: an edit behind ``lru_cache``, ``cache``, a ``functools.wraps`` decorator,
a ``partial``, ``staticmethod`` or ``classmethod`` gives a new key, so a rerun never serves a stale result.

Each case runs a real scheduler with a journal in a fresh process, three times: the first run computes, the
second (nothing changed) takes the result from the journal, the third (after one edit) must compute again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from waiting import TIMEOUT

HELPERS = {
    "lru_cache": """
        @functools.lru_cache
        def helper(x):
            return x * FACTOR
        def run(x):
            return helper(x)
    """,
    "cache": """
        @functools.cache
        def helper(x):
            return x * FACTOR
        def run(x):
            return helper(x)
    """,
    "wraps": """
        def logged(g):
            @functools.wraps(g)
            def inner(*args):
                return g(*args)
            return inner
        @logged
        def helper(x):
            return x * FACTOR
        def run(x):
            return helper(x)
    """,
    "partial": """
        def _times(x, k):
            return x * k
        helper = functools.partial(_times, k=FACTOR)
        def run(x):
            return helper(x)
    """,
    "staticmethod": """
        class Tools:
            @staticmethod
            @functools.lru_cache
            def scale(x):
                return x * FACTOR
        helper = Tools.__dict__["scale"]
        def run(x):
            return helper.__func__(x)
    """,
    "classmethod": """
        class Tools:
            @classmethod
            def scale(cls, x):
                return x * FACTOR
        helper = Tools.__dict__["scale"]
        def run(x):
            return helper.__func__(Tools, x)
    """,
}

DRIVER = """
import sys
import jobsched
import helpermod

if __name__ == "__main__":
    with jobsched.Scheduler(journal=sys.argv[1]) as sched:
        sched.start(1, wait=False)
        value = sched.submit(helpermod.run, 3).result(timeout=60)
        print(value, sched.stats()["from_journal"])
"""


def _module(case: str, factor: int) -> str:
    # FACTOR written as a literal inside the helper's code, so that the edit is one of the helper's own.
    body = textwrap.dedent(HELPERS[case]).replace("FACTOR", str(factor))
    return "import functools\n" + body


def _run(folder: Path) -> tuple[int, int]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join([str(folder), root, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": path}  # no stale .pyc after an edit
    out = subprocess.run([sys.executable, str(folder / "driver.py"), str(folder / "journal.sqlite")],
                         capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=folder)
    assert out.returncode == 0, out.stderr
    value, from_journal = out.stdout.split()
    return int(value), int(from_journal)


@pytest.mark.parametrize("case", sorted(HELPERS))
def test_an_edit_behind_a_wrapper_changes_the_key(tmp_path: Path, case: str) -> None:
    """Same code: the journal's result; one edit behind the wrapper: computed again, never the old result."""
    (tmp_path / "driver.py").write_text(DRIVER)
    module = tmp_path / "helpermod.py"
    module.write_text(_module(case, 2))
    assert _run(tmp_path) == (6, 0)
    assert _run(tmp_path) == (6, 1)  # a fresh process derives the same key
    module.write_text(_module(case, 5))
    assert _run(tmp_path) == (15, 0)


def test_key_version_invalidates_on_purpose(tmp_path: Path) -> None:
    """``jobsched.journal.key_version`` on a helper: bumping it runs the job again, the code unchanged."""
    (tmp_path / "driver.py").write_text(DRIVER)
    module = tmp_path / "helpermod.py"
    text = ("import functools\nfrom jobsched.journal import key_version\n"
            "@key_version(VERSION)\n@functools.lru_cache\ndef helper(x):\n    return x * 2\n"
            "def run(x):\n    return helper(x)\n")
    module.write_text(text.replace("VERSION", "1"))
    assert _run(tmp_path) == (6, 0)
    assert _run(tmp_path) == (6, 1)
    module.write_text(text.replace("VERSION", "'1b'"))
    assert _run(tmp_path) == (6, 0)


def test_key_version_refuses_what_it_cannot_mark() -> None:
    from jobsched.journal import key_version

    with pytest.raises(TypeError, match="must be a str or an int"):
        key_version(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a Python function"):
        key_version(1)(len)
