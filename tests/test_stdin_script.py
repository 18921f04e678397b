"""A script without a file (standard input, a heredoc) ships its own functions by value, as ``python -c`` does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from waiting import TIMEOUT

SCRIPT = textwrap.dedent("""
    import jobsched

    def triple(x):
        return 3 * x

    if __name__ == "__main__":
        with jobsched.Scheduler() as sched:
            sched.start(2, wait=False)
            print(sorted(f.result(timeout=60) for f in [sched.submit(triple, i) for i in range(5)]))
        with jobsched.Executor(2) as ex:
            print(list(ex.map(triple, [10, 20])))
""")


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("how", ["stdin", "dash", "exec"])
def test_a_script_without_a_file_runs_its_own_functions(tmp_path: Path, how: str) -> None:
    """``python < script.py``, ``python - < script.py`` and ``exec`` of its text all run the script's jobs."""
    if how == "exec":
        argv = [sys.executable, "-c", f"exec(compile({SCRIPT!r}, '<script>', 'exec'))"]
    else:
        argv = [sys.executable, "-"] if how == "dash" else [sys.executable]
    out = subprocess.run(argv, input=SCRIPT, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
                         env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0, 3, 6, 9, 12]", "[30, 60]"], out.stderr
