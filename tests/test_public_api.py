"""The public API: every name of api.md is exported once; the core and the workers stay lean."""

from __future__ import annotations

import builtins
import importlib
import keyword
import re
import subprocess
import sys
from pathlib import Path

import conftest
import helpers
import pytest
from waiting import TIMEOUT

import jobsched
from jobsched import Scheduler

ROOT = Path(__file__).resolve().parent.parent


def find_api_md() -> Path | None:
    """The contract, ``shared/docs/api.md``: beside the clone (``../shared``, as in CI) or beside an ancestor.

    A git worktree sits deeper than the main clone (``wt/<branch>``), so every ancestor's ``shared`` is tried.
    """
    for parent in ROOT.parents:
        candidate = parent / "shared" / "docs" / "api.md"
        if candidate.is_file():
            return candidate
    return None


# Identifiers that api.md writes as calls or class names but that jobsched does not export, and why.
NOT_EXPORTED = {
    "run", "run_job", "make_worker_command", "before_start", "after_stop",  # callbacks the user writes
    "Future",  # concurrent.futures.Future, the stdlib's
}
# Exported beyond api.md (which says "add what users need beyond it"). Each is documented: the errors on the
# docs site's API page (docs/api.md, "Errors"), raised where their names say.
DOCUMENTED_EXTRAS = {
    "JobschedError",  # the root of every jobsched exception
    "JobTimeout",  # a job over its timeout= (a JobError and a TimeoutError)
    "WorkerStartupError",  # workers that cannot start
    "SchedulerClosedError",  # add_job/submit after close()
    "SchedulerBrokenError",  # add_job/submit after the loop stopped on an error
    "JournalError",  # a journal path that cannot be used (missing folder, read-only, not a journal, newer schema)
    "UnkeyableError",  # a job that cannot be keyed stably for the journal: pass key=
    "InvalidStateError",  # a worker state change that the transition table forbids
    "ProtocolError",  # a peer that breaks the wire protocol
    "Handle",  # what put() returns: data sent once, passed in jobs' arguments
}


def api_md_names(text: str) -> set[str]:
    """The top-level names api.md fixes: ``jobsched.NAME``, and code spans that open with a call or a class name."""
    names = set(re.findall(r"(?<!-m )\bjobsched\.([A-Za-z_]\w*)", text))  # not `python -m jobsched.journal`
    for span in re.findall(r"`([^`\n]+)`", text):
        m = re.match(r"([A-Za-z_]\w*)(\(|$)", span)  # `make_server(...)`, `RemoteCall`; not `sched.wait(...)`
        if m and (m.group(2) == "(" or re.fullmatch(r"[A-Z]\w*[a-z]\w*", m.group(1))):
            names.add(m.group(1))
    return names - set(dir(builtins)) - set(keyword.kwlist) - NOT_EXPORTED


HEAVY = ("IPython", "ipywidgets", "ipykernel", "tqdm", "dask", "distributed")


def test_api_md_is_parsed_into_the_names_it_fixes() -> None:
    sample = ("| `remote_call(f, a, k=v)` → `RemoteCall` | `isinstance(x, Worker)` | `sched.wait(timeout=None)` |\n"
              "`jobsched.progress(done)`; `python -m jobsched.journal PATH`; `None`; `run(data) -> result`")
    assert api_md_names(sample) == {"remote_call", "RemoteCall", "progress"}


def test_all_is_exactly_the_api_md_names_and_the_documented_extras() -> None:
    api_md = find_api_md()
    if api_md is None:
        conftest.skip_or_fail(f"shared/docs/api.md is not beside {ROOT} or any of its parents")
        return
    api_names = api_md_names(api_md.read_text(encoding="utf-8"))
    assert not api_names & DOCUMENTED_EXTRAS, "an extra that api.md now names belongs to api.md alone"
    assert len(jobsched.__all__) == len(set(jobsched.__all__)), "a name is listed twice in __all__"
    exported = set(jobsched.__all__)
    assert sorted(api_names - exported) == [], "api.md names these, jobsched does not export them"
    assert sorted(exported - api_names - DOCUMENTED_EXTRAS) == [], "exported, but neither in api.md nor listed"
    assert sorted(DOCUMENTED_EXTRAS - exported) == [], "listed as extras but no longer exported"


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
