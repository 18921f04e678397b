"""The worker side: failures always become one ERROR frame, state between jobs, faulthandler, scripts.

Most cases call ``run_to_frame`` in-process (as the Dask backend does on its workers); the ones that matter
end to end run through a real scheduler and real worker processes.
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import helpers
import pytest

import jobsched
from jobsched import JobError, Scheduler
from jobsched import worker as worker_module
from jobsched._local import wire as _wire
from jobsched.worker import run_to_frame

remote_call_module = importlib.import_module("jobsched.remote_call")  # the module: jobsched.remote_call is the function

# ---------------------------------------------------------------- in-process: what a failing job reports

# kind, expected remote type name, expected message (None: any), a text the traceback must contain
ERROR_CASES = [
    ("str_raises", "StrRaises", "<str() of the StrRaises raised an exception>", "raise_after_logging"),
    ("repr_and_str_raise", "ReprAndStrRaise", "<str() of the ReprAndStrRaise raised an exception>",
     "raise_after_logging"),
    ("str_subclass", "StrReturnsSubclass", "a str subclass", "raise_after_logging"),
    ("weird_type_name", helpers.WEIRD_TYPE_NAME, "weird", "raise_after_logging"),
    ("module_not_str", "ModuleNotStr", "module is an int", "raise_after_logging"),
    ("bad_notes", "ValueError", "with notes", "raise_after_logging"),
    ("keyboard_interrupt", "KeyboardInterrupt", "interrupted by the job", "raise_after_logging"),
    ("custom_base_exception", "CustomBaseException", "custom", "raise_after_logging"),
    ("generator_exit", "GeneratorExit", "generator exit", "raise_after_logging"),
    ("system_exit", "SystemExit", "3", "raise_after_logging"),
]


def _decode(frame: tuple[int, bytes]) -> tuple[str, str, str]:
    kind, body = frame
    assert kind == _wire.ERROR
    fields = pickle.loads(body)  # type, message, traceback, where the class lives (module, qualname), its MRO
    assert len(fields) in (3, 6)  # 3: the last line of defence, when the six cannot be pickled
    # exact str (or None for a class's place that is not plain text): nothing for a scheduler to import
    assert all(type(part) is str for part in fields[:3]), fields
    assert all(part is None or type(part) is str for part in fields[3:5]), fields
    types = fields[5] if len(fields) == 6 else ()
    assert type(types) is tuple and all(type(name) is str for name in types), types  # the MRO, for retry_on
    return fields[:3]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("kind", "remote_type", "message", "in_traceback"), ERROR_CASES,
                         ids=[case[0] for case in ERROR_CASES])
def test_a_hard_to_report_exception_becomes_one_error_frame(tmp_path: Path, kind: str, remote_type: str,
                                                            message: str, in_traceback: str) -> None:
    log = tmp_path / "runs"
    name, text, tb = _decode(run_to_frame(0, helpers.raise_after_logging, str(log), kind))
    assert (name, text) == (remote_type, message)
    assert in_traceback in tb
    assert log.read_text() == "ran\n"


def test_a_result_whose_pickling_raises_a_base_exception_is_an_error() -> None:
    name, text, _ = _decode(run_to_frame(4, helpers.result_whose_reduce_raises))
    assert name == "KeyboardInterrupt"
    assert "__reduce__ raised KeyboardInterrupt" in text


def test_a_traceback_that_cannot_be_formatted_falls_back_to_the_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    import traceback

    def broken(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("format_exception is broken")

    monkeypatch.setattr(traceback, "format_exception", broken)
    name, text, tb = _decode(run_to_frame(0, helpers.raise_value_error, "boom"))
    assert (name, text) == ("ValueError", "boom")
    assert "raise_value_error" in tb and "ValueError: boom" in tb


def test_an_error_triple_that_cannot_be_pickled_still_gives_an_error_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    real_dumps = worker_module.dumps
    calls: list[object] = []

    def dumps_failing_once(obj: Any, what: str = "value") -> bytes:
        calls.append(obj)
        if len(calls) == 1:
            raise TypeError("cannot pickle this triple")
        return real_dumps(obj, what)

    monkeypatch.setattr(worker_module, "dumps", dumps_failing_once)
    name, text, _ = _decode(run_to_frame(0, helpers.raise_value_error, "boom"))
    assert name == "UnreportableError"
    assert "could not be reported" in text


# ---------------------------------------------------------------- real workers: run once, the worker goes on

END_TO_END_CASES = ["str_raises", "keyboard_interrupt", "custom_base_exception", "weird_type_name"]


@pytest.mark.parametrize("kind", END_TO_END_CASES)
def test_a_job_raising_anything_runs_once_and_its_worker_goes_on(sched: Scheduler, tmp_path: Path,
                                                                 kind: str) -> None:
    sched.start(1, wait=False)
    pid = sched.submit(os.getpid).result(timeout=60)
    log = tmp_path / "runs"
    with pytest.raises(JobError) as info:
        sched.submit(helpers.raise_after_logging, str(log), kind).result(timeout=60)
    expected = next(case for case in ERROR_CASES if case[0] == kind)
    assert (info.value.remote_type, info.value.remote_message) == expected[1:3]
    assert "raise_after_logging" in info.value.remote_traceback
    assert log.read_text() == "ran\n"  # once: the worker did not die (a death would re-run it)
    assert sched.submit(os.getpid).result(timeout=60) == pid
    assert [w.n_restarts for w in sched.workers] == [0]


# ---------------------------------------------------------------- state between jobs


def test_each_job_starts_in_the_workers_directory_and_environment(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSCHED_TEST_KEPT", "kept")  # inherited by the worker
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Scheduler() as sched:
        sched.start(1, wait=False)
        cwd, added, kept, path, pid = sched.submit(helpers.cwd_and_environ).result(timeout=60)
        assert (added, kept) == (None, "kept")
        assert sched.submit(helpers.change_cwd_and_environ, str(elsewhere)).result(timeout=60) == str(elsewhere)
        assert sched.submit(helpers.cwd_and_environ).result(timeout=60) == (cwd, None, "kept", path, pid)


def test_a_job_that_removes_its_working_directory_does_not_break_the_next(tmp_path: Path) -> None:
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    with Scheduler() as sched:
        sched.start(1, wait=False)
        cwd, *_ = sched.submit(helpers.cwd_and_environ).result(timeout=60)
        pid = sched.submit(helpers.remove_own_cwd, str(doomed)).result(timeout=60)
        assert sched.submit(helpers.cwd_and_environ).result(timeout=60)[0::4] == (cwd, pid)


# ---------------------------------------------------------------- faulthandler


def test_workers_run_with_faulthandler(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.faulthandler_enabled).result(timeout=60) is True


def test_a_segfaulting_job_leaves_its_stack_in_the_workers_output(capfd: pytest.CaptureFixture[str]) -> None:
    with Scheduler(max_retries=1) as sched:
        sched.start(1, wait=False)
        with pytest.raises(JobError):
            sched.submit(helpers.segfault).result(timeout=60)
    err = capfd.readouterr().err
    assert "Fatal Python error: Segmentation fault" in err
    assert "in segfault" in err  # the job's own frame, from faulthandler's dump


# ---------------------------------------------------------------- scripts: __mp_main__ and the missing guard


@pytest.fixture
def keep_mp_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give back this process's ``__mp_main__`` after a test that loads a script here."""
    monkeypatch.setitem(sys.modules, "__mp_main__", sys.modules.get("__mp_main__"))


@pytest.mark.usefixtures("keep_mp_main")
def test_loading_script_names_the_script_while_its_top_level_code_runs(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("from jobsched.remote_call import loading_script\nSEEN = loading_script()\n")
    assert remote_call_module.loading_script() is None
    module = remote_call_module.load_file(str(script))
    assert os.path.realpath(script) == module.SEEN
    assert remote_call_module.loading_script() is None


@pytest.mark.usefixtures("keep_mp_main")
def test_refuse_while_loading_script_says_to_add_the_guard(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text("from jobsched.remote_call import refuse_while_loading_script\n"
                      "refuse_while_loading_script('Scheduler.start()')\n")
    with pytest.raises(remote_call_module.MissingMainGuardError, match="if __name__ == '__main__':"):
        remote_call_module.load_file(str(script))
    assert remote_call_module.loading_script() is None
    remote_call_module.refuse_while_loading_script("Scheduler.start()")  # not loading: no error


def test_a_worker_file_without_a_guard_fails_to_start_with_one_line(tmp_path: Path) -> None:
    # What the worker does once make_server() calls refuse_while_loading_script (here the file calls it).
    script = tmp_path / "unguarded_worker.py"
    script.write_text(textwrap.dedent("""
        from jobsched import start_simple_worker
        from jobsched.remote_call import refuse_while_loading_script

        def worker():
            start_simple_worker(lambda data: data)

        refuse_while_loading_script("make_server()")
    """))
    sched = jobsched.make_server(str(script), n_workers=1)
    try:
        with pytest.raises(jobsched.WorkerStartupError) as info:
            jobsched.server_start(sched, [1], lambda data, result: None)
    finally:
        jobsched.server_close(sched)
    message = str(info.value)
    assert "jobsched worker: make_server() was called in a worker process while it loaded" in message
    assert "if __name__ == '__main__':" in message
    assert "Traceback" not in message


def _run_script(path: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(jobsched.__file__))  # this checkout, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout,
                          cwd=path.parent, env=env)


def test_a_script_gets_back_instances_of_its_own_dataclass(tmp_path: Path) -> None:
    script = tmp_path / "points.py"
    script.write_text(textwrap.dedent("""
        from dataclasses import dataclass

        import jobsched

        @dataclass
        class Point:
            x: int
            y: int

        def make_point(x):
            return Point(x, 2 * x)

        if __name__ == "__main__":
            with jobsched.Scheduler(echo_output=False) as sched:
                sched.start(1, wait=False)
                point = sched.submit(make_point, 3).result(timeout=60)
                print(type(point) is Point, point)
    """))
    out = _run_script(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True Point(x=3, y=6)"


def test_a_script_without_a_main_guard_fails_once_saying_to_add_it(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import jobsched

        def double(x):
            return 2 * x

        with jobsched.Scheduler(echo_output=False) as sched:
            sched.start(1, wait=False)
            print(sched.submit(double, 3).result(timeout=60))
    """))
    try:
        out = _run_script(script, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the unguarded script did not end")
    assert out.returncode != 0
    assert "if __name__ == '__main__':" in out.stderr
    assert out.stderr.count("JobError") <= 1, out.stderr  # one error, not one nested in another
    assert "__mp_main__" not in out.stderr
