"""What a newcomer's mistakes print: each error names the call that was made, the bad value and the fix, once."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import helpers
import pytest
from waiting import TIMEOUT

import jobsched
from jobsched import Executor, Scheduler

ROOT = Path(__file__).resolve().parent.parent


def run_script(path: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``python path`` in its own session, this checkout first on the path; kill the session on timeout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, path.name], cwd=path.parent, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"{path.name} did not finish within {timeout:g} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# ------------------------------------------------------------------------------------ parameters of a call


def test_submit_names_itself_and_says_that_max_retries_counts_attempts(sched: Scheduler) -> None:
    with pytest.raises(ValueError) as info:
        sched.submit(helpers.add, 1, max_retries=0)
    message = str(info.value)
    assert message.startswith("submit: max_retries must be an integer >= 1, got 0; it counts attempts")
    assert "1: never run again" in message
    with pytest.raises(TypeError, match=r"^submit: cost must be a real number"):
        sched.submit(helpers.add, 1, cost="high")
    with pytest.raises(ValueError, match=r"^submit: timeout must be a positive number"):
        sched.submit(helpers.add, 1, timeout=-1)
    assert sched.n_queued_jobs == 0


def test_add_job_and_scheduler_name_themselves_for_max_retries(sched: Scheduler) -> None:
    with pytest.raises(ValueError, match=r"^add_job: max_retries must be an integer >= 1, got 0; it counts attempts"):
        sched.add_job(jobsched.remote_call(helpers.add, 1), max_retries=0)
    with pytest.raises(ValueError, match=r"^Scheduler: max_retries must be an integer >= 1, got -1; it counts"):
        Scheduler(max_retries=-1)
    assert sched.n_queued_jobs == 0


# ------------------------------------------------------------------------------- arguments that cannot travel


def test_an_open_file_is_refused_at_submit_with_the_path_to_it(sched: Scheduler, tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with open(path) as f, pytest.raises(TypeError) as info:
        sched.submit(helpers.identity, 1, [0, {"f": f}])
    message = str(info.value)
    assert message.startswith("submit(identity): argument 1 [1]['f'] is an open file (_io.TextIOWrapper ")
    assert str(path) in message and "pass its path" in message
    assert sched.n_queued_jobs == 0


CANNOT_TRAVEL = [
    ("an open binary file", lambda p: open(p, "rb"), "is an open file (_io.BufferedReader"),  # noqa: SIM115
    ("a socket", lambda p: socket.socket(), "is a socket.socket, which cannot be pickled"),
    ("a lock", lambda p: threading.Lock(), "is a _thread.lock, which cannot be pickled"),
    ("a generator", lambda p: (x for x in range(3)), "is a generator, which cannot be pickled"),
]


@pytest.mark.parametrize(("make", "says"), [c[1:] for c in CANNOT_TRAVEL], ids=[c[0] for c in CANNOT_TRAVEL])
def test_a_value_that_cannot_travel_is_refused_by_each_entry_point(sched: Scheduler, tmp_path: Path, make: Any,
                                                                   says: str) -> None:
    (tmp_path / "f.bin").write_bytes(b"x")
    value = make(tmp_path / "f.bin")
    try:
        with pytest.raises(TypeError) as info:
            sched.submit(helpers.identity, {"cfg": value})
        assert str(info.value).startswith(f"submit(identity): argument 0 ['cfg'] {says}")
        with pytest.raises(TypeError) as info:
            sched.add_job(jobsched.remote_call(helpers.identity, k=[value]))
        assert str(info.value).startswith(f"remote_call(identity): keyword argument 'k' [0] {says}")
        with Executor(1) as ex, pytest.raises(TypeError) as info:
            ex.submit(helpers.identity, value)
        assert str(info.value).startswith(f"Executor.submit(identity): argument 0 {says}")
    finally:
        close = getattr(value, "close", None)
        if close is not None:
            close()
    assert sched.n_queued_jobs == 0


def test_in_memory_streams_still_travel(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.identity, io.BytesIO(b"abc")).result(timeout=TIMEOUT).getvalue() == b"abc"
    assert sched.submit(helpers.identity, [io.StringIO("d")]).result(timeout=TIMEOUT)[0].getvalue() == "d"


# ------------------------------------------------------------------------------ worker files: printed once


WORKER_FILE = """
from jobsched import start_simple_worker

def run(data):
    return data

def work():
    start_simple_worker(run)
"""


def test_a_wrong_entry_lists_the_functions_of_the_file_and_is_printed_once(tmp_path: Path) -> None:
    (tmp_path / "products.py").write_text(WORKER_FILE)
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent("""
        from jobsched import make_python_cmd, make_scheduler

        sched = make_scheduler(lambda i: make_python_cmd("products.py", entry="worker"))
        sched.add_job(1)
        sched.start(2)
    """))
    done = run_script(script)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert output.count("does not define 'worker'") == 1, output
    assert "(its functions: run, work)" in output
    assert "[worker" not in output  # no worker started, so none printed it


def test_a_worker_that_cannot_find_its_entry_lists_the_functions_it_has(tmp_path: Path) -> None:
    (tmp_path / "products.py").write_text(WORKER_FILE)
    done = subprocess.run([sys.executable, "-m", "jobsched.worker", "--file", str(tmp_path / "products.py"),
                           "--entry", "worker"], capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    assert "has no function 'worker' to start the worker (its functions: run, work)" in done.stderr


@pytest.mark.parametrize("call", ["start_simple_server(this_file(), [1, 2], print, n_workers=2)",
                                  "main()"])
def test_a_missing_main_guard_is_printed_once_before_any_worker_starts(tmp_path: Path, call: str) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from jobsched import start_simple_server, start_simple_worker, this_file

        def worker():
            start_simple_worker(lambda data: data)

        def main():
            start_simple_server(this_file(), [1, 2], print, n_workers=2)

        {call}
    """))
    done = run_script(script)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert output.count("outside an `if __name__ == '__main__':` block") == 1, output
    assert "start_simple_server: " in output and "unguarded.py line 10 " in output
    assert "[worker" not in output


def test_a_guarded_script_starts_its_server(tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent("""
        from jobsched import start_simple_server, start_simple_worker, this_file

        def worker():
            start_simple_worker(lambda data: data * 2)

        def main():
            start_simple_server(this_file(), [1, 2], lambda data, result: print(data, result), n_workers=2)

        if __name__ == "__main__":
            main()
    """))
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["1 2", "2 4"]
