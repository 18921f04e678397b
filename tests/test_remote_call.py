"""remote_call: functions by reference, by script file, by value; what cannot travel fails at once."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import helpers
import pytest

from jobsched import RemoteCall, Scheduler, is_remote_call, remote_call


def test_an_importable_function_travels_by_reference() -> None:
    rc = remote_call(helpers.add, 1, y=5)
    assert isinstance(rc, RemoteCall) and is_remote_call(rc) and not is_remote_call(helpers.add)
    assert (rc.fun_name, rc.args, rc.kwargs, rc.module) == ("add", (1,), {"y": 5}, "helpers")
    assert rc() == 6
    data = pickle.dumps(rc)
    assert b"add" in data and b"helpers" in data
    assert pickle.loads(data) == rc


def test_lambdas_and_closures_travel_by_value(sched: Scheduler) -> None:
    k = 10

    def closure(x: int) -> int:
        return x * k

    rc = remote_call(closure, 4)
    assert rc.module is None and rc.fun_name.endswith("closure")
    sched.start(1, wait=False)
    assert sched.submit(closure, 4).result(timeout=60) == 40
    assert sched.submit(lambda x: x + 0.5, 1).result(timeout=60) == 1.5
    assert sched.submit(rc).result(timeout=60) == 40


def test_bound_methods_travel_by_value(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    assert sched.submit("a-b-c".split, "-").result(timeout=60) == ["a", "b", "c"]
    assert sched.submit(len, [1, 2, 3]).result(timeout=60) == 3


def test_what_cannot_be_pickled_fails_at_creation_naming_it() -> None:
    import threading

    with pytest.raises(TypeError, match=r"argument 0 is a _thread\.lock, which cannot be pickled"):
        remote_call(helpers.identity, threading.Lock())
    with pytest.raises(TypeError, match="first argument must be a function"):
        remote_call(42)  # type: ignore[arg-type]


SCRIPT = textwrap.dedent('''
    import sys
    from jobsched import Scheduler, remote_call

    def square(x):
        return x * x

    class Point:
        def __init__(self, x):
            self.x = x

    def norm(p):
        return abs(p.x)

    if __name__ == "__main__":
        rc = remote_call(square, 7)
        print("module", rc.module == __file__)
        with Scheduler() as s:
            s.start(1, wait=False)
            print("square", s.submit(square, 7).result(timeout=60))
            print("norm", s.submit(norm, Point(-3)).result(timeout=60))
            print("lambda", s.submit(lambda: __name__).result(timeout=60))
''')


def test_a_scripts_main_functions_travel_by_file_path(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # The worker loaded the script under another name, so its __main__ block did not run there.
    assert proc.stdout.split("\n")[:4] == ["module True", "square 49", "norm 3", "lambda __main__"]


def test_a_function_redefined_later_is_used_in_its_new_form(tmp_path: Path) -> None:
    # As in a notebook: __main__ without a file; each cell redefines f.
    code = textwrap.dedent('''
        from jobsched import Scheduler
        with Scheduler() as s:
            s.start(1, wait=False)
            def f(x):
                return x + 1
            a = s.submit(f, 1).result(timeout=60)
            def f(x):
                return x * 100
            b = s.submit(f, 1).result(timeout=60)
            print(a, b)
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "100"]
