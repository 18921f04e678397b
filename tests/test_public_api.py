"""The public API: ``__all__`` is what the API reference (docs/api.md) documents; the core and workers stay lean."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import helpers
import pytest
from waiting import TIMEOUT

import jobsched
from jobsched import Scheduler

ROOT = Path(__file__).resolve().parent.parent


API_PAGE = ROOT / "docs" / "api.md"


def api_page_names(text: str) -> list[str]:
    """The top-level names the API reference documents: its ``::: jobsched.NAME`` lines.

    ``jobsched.remote_call`` is also a module, so the page names the function through it
    (``::: jobsched.remote_call.remote_call``); names of public submodules (``jobsched.dask.DaskBackend``)
    are not top-level names.
    """
    names = []
    for line in text.splitlines():
        m = re.fullmatch(r"::: jobsched\.(?:(?P<module>\w+)\.)?(?P<name>\w+)", line.strip())
        if m and (m["module"] is None or m["module"] == m["name"]):
            names.append(m["name"])
    return names


HEAVY = ("IPython", "ipywidgets", "ipykernel", "tqdm", "dask", "distributed")


def test_the_api_page_is_parsed_into_the_names_it_documents() -> None:
    sample = "## A\n\n::: jobsched.Scheduler\n\n::: jobsched.remote_call.remote_call\n\n::: jobsched.dask.DaskBackend\n"
    assert api_page_names(sample) == ["Scheduler", "remote_call"]


def test_all_is_exactly_the_names_the_api_reference_documents() -> None:
    documented = api_page_names(API_PAGE.read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "the API reference documents a name twice"
    assert len(jobsched.__all__) == len(set(jobsched.__all__)), "a name is listed twice in __all__"
    exported = set(jobsched.__all__)
    assert sorted(exported - set(documented)) == [], "exported, but docs/api.md does not document them"
    assert sorted(set(documented) - exported) == [], "docs/api.md documents them, jobsched does not export them"


@pytest.mark.parametrize("name", sorted(jobsched.__all__))
def test_each_name_is_the_object_its_module_defines(name: str) -> None:
    obj = getattr(jobsched, name)
    module_name, qualname = obj.__module__, obj.__qualname__
    assert module_name.startswith("jobsched."), f"{name} comes from {module_name}, not from jobsched"
    module = importlib.import_module(module_name)
    assert qualname == name and getattr(module, name) is obj, f"jobsched.{name} is not {module_name}.{name}"


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
