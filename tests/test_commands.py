"""make_python_cmd, this_file, processor_count."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from jobsched import make_python_cmd, processor_count, this_file


def test_make_python_cmd_runs_a_file_or_an_entry(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text("def worker():\n    pass\n")
    assert make_python_cmd(prog, "a", tmp_path) == [sys.executable, str(prog.resolve()), "a", str(tmp_path)]
    assert make_python_cmd(prog, "x", entry="worker", debug=True) == [
        sys.executable, "-X", "dev", "-X", "faulthandler", "-m", "jobsched.worker",
        "--file", str(prog.resolve()), "--entry", "worker", "--", "x"]


def test_make_python_cmd_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        make_python_cmd(tmp_path / "missing.py")
    prog = tmp_path / "prog.py"
    prog.write_text("")
    with pytest.raises(ValueError, match="entry must be a function name"):
        make_python_cmd(prog, entry="not a name")


def test_make_python_cmd_refuses_an_entry_the_file_surely_lacks_and_lists_its_functions(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text("def run(data):\n    return data\n\ndef work():\n    pass\n")
    with pytest.raises(ValueError) as info:
        make_python_cmd(prog, entry="worker")
    assert str(info.value).startswith(f"make_python_cmd: {prog} does not define 'worker' (its functions: run, work)")
    assert make_python_cmd(prog, entry="work")[-3:] == ["--entry", "work", "--"]
    prog.write_text("def worker():\n    pass\n# a new version of the file is checked again\n")
    assert make_python_cmd(prog, entry="worker")[-3:] == ["--entry", "worker", "--"]


def test_this_file_is_the_callers_file() -> None:
    assert this_file() == os.path.abspath(__file__)
    namespace: dict[str, object] = {"this_file": this_file}
    exec("result = this_file()", namespace)  # like a notebook cell: no __file__
    assert namespace["result"] is None


def test_processor_count_is_the_affinity() -> None:
    assert processor_count() == len(os.sched_getaffinity(0)) >= 1
