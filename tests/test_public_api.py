"""The public API: every name of api.md is exported once; the core and the workers stay lean."""

from __future__ import annotations

import subprocess
import sys

import helpers
from waiting import TIMEOUT

import jobsched
from jobsched import Scheduler

API_NAMES = {
    "remote_call", "RemoteCall", "is_remote_call", "start_remote_call_worker", "start_simple_worker",
    "start_simple_server", "make_server", "server_start", "server_close", "Job", "Scheduler", "Worker",
    "make_scheduler", "processor_count", "start_worker", "make_python_cmd", "this_file", "JobError",
    "Executor", "default_scheduler", "WorkerState",
}
HEAVY = ("IPython", "ipywidgets", "ipykernel", "tqdm", "dask", "distributed")


def test_all_lists_every_api_name_once() -> None:
    assert len(jobsched.__all__) == len(set(jobsched.__all__))
    assert set(jobsched.__all__) >= API_NAMES
    for name in jobsched.__all__:
        assert getattr(jobsched, name) is not None


def test_job_fields() -> None:
    job = jobsched.Job(3, 1.5, "data", 1000.0, 1250.0)
    assert (job.index, job.cost, job.data, job.start_ms, job.stop_ms, job.elapsed_ms) == (3, 1.5, "data", 1000.0,
                                                                                          1250.0, 250.0)


def test_import_jobsched_is_lean() -> None:
    code = f"import sys, jobsched; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def loaded_heavy_modules() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def test_a_worker_process_is_lean(sched: Scheduler) -> None:
    sched.start(1, wait=False)
    assert sched.submit(helpers.add, 1).result(timeout=TIMEOUT) == 2
    assert sched.submit(loaded_heavy_modules).result(timeout=TIMEOUT) == []


# Imported by a worker only when it needs them (a failing job, a worker file, arguments): each costs a few
# milliseconds of every worker's start-up, which adds up with 120 workers on 2 cores.
STARTUP_EXTRAS = ("dataclasses", "argparse", "json", "traceback", "importlib.util")


def test_the_default_worker_imports_no_extras_at_start_up() -> None:
    code = "import sys; before = set(sys.modules); import jobsched.worker; print(sorted(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    imported = set(out.stdout.strip().strip("[]").replace("'", "").split(", "))
    assert "jobsched.worker" in imported
    assert sorted(imported & {*STARTUP_EXTRAS, *HEAVY}) == []


def test_names_resolve_lazily_and_remote_call_is_the_function() -> None:
    code = ("import sys, jobsched, jobsched.remote_call, jobsched.scheduler; "
            "print(callable(jobsched.remote_call), jobsched.remote_call.__module__, "
            "'jobsched.executor' in sys.modules, jobsched.Executor.__module__, 'Executor' in dir(jobsched))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "jobsched.remote_call", "False", "jobsched.executor", "True"]
