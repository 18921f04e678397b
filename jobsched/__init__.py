"""jobsched: run many jobs in parallel on worker processes, from scripts and from Jupyter.

A Python port of the Racket package ``jobsched``: a scheduler keeps a priority queue of jobs ordered by
cost and hands one job at a time to each of K worker processes, each on its own authenticated TCP
connection to 127.0.0.1. See README.md for a tour.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .remote_call import RemoteCall as RemoteCall
from .remote_call import is_remote_call as is_remote_call
from .remote_call import remote_call as remote_call

# Imported eagerly (it is light, and the worker needs it anyway): the function ``remote_call`` must win
# over the submodule of the same name, which an import of ``jobsched.remote_call`` binds on the package.
from .worker.progress import progress as progress

# The other public names and the module that defines each. They are imported on first use (PEP 562), so that
# ``import jobsched`` - and every worker process, which imports the package - stays fast and lean.
_EXPORTS = {
    "Progress": "._core.slot",
    "Worker": "._core.slot",
    "default_scheduler": ".background",
    "make_python_cmd": ".commands",
    "processor_count": ".commands",
    "this_file": ".commands",
    "InvalidStateError": ".errors",
    "JobCancelled": ".errors",
    "JobError": ".errors",
    "Handle": "._data.handles",
    "JobschedError": ".errors",
    "JournalError": ".errors",
    "UnkeyableError": ".errors",
    "JobTimeout": ".errors",
    "ProtocolError": ".errors",
    "SchedulerBrokenError": ".errors",
    "SchedulerClosedError": ".errors",
    "WorkerStartupError": ".errors",
    "Executor": ".executor",
    "Job": ".job",
    "Journal": ".journal",
    "Scheduler": ".scheduler",
    "make_scheduler": ".scheduler",
    "make_server": ".server",
    "server_close": ".server",
    "server_start": ".server",
    "start_simple_server": ".server",
    "WorkerState": ".states",
    "start_remote_call_worker": ".worker",
    "start_simple_worker": ".worker",
    "start_worker": ".worker",
    "job_rng": ".worker.seeding",
    "job_seed": ".worker.seeding",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from ._core.slot import Progress as Progress
    from ._core.slot import Worker as Worker
    from ._data.handles import Handle as Handle
    from .background import default_scheduler as default_scheduler
    from .commands import make_python_cmd as make_python_cmd
    from .commands import processor_count as processor_count
    from .commands import this_file as this_file
    from .errors import InvalidStateError as InvalidStateError
    from .errors import JobCancelled as JobCancelled
    from .errors import JobError as JobError
    from .errors import JobschedError as JobschedError
    from .errors import JobTimeout as JobTimeout
    from .errors import JournalError as JournalError
    from .errors import ProtocolError as ProtocolError
    from .errors import SchedulerBrokenError as SchedulerBrokenError
    from .errors import SchedulerClosedError as SchedulerClosedError
    from .errors import UnkeyableError as UnkeyableError
    from .errors import WorkerStartupError as WorkerStartupError
    from .executor import Executor as Executor
    from .job import Job as Job
    from .journal import Journal as Journal
    from .scheduler import Scheduler as Scheduler
    from .scheduler import make_scheduler as make_scheduler
    from .server import make_server as make_server
    from .server import server_close as server_close
    from .server import server_start as server_start
    from .server import start_simple_server as start_simple_server
    from .states import WorkerState as WorkerState
    from .worker import start_remote_call_worker as start_remote_call_worker
    from .worker import start_simple_worker as start_simple_worker
    from .worker import start_worker as start_worker
    from .worker.seeding import job_rng as job_rng
    from .worker.seeding import job_seed as job_seed

__version__ = "0.1.0"

__all__ = [
    "Executor",
    "Handle",
    "InvalidStateError",
    "Job",
    "JobCancelled",
    "JobError",
    "JobTimeout",
    "JobschedError",
    "Journal",
    "JournalError",
    "Progress",
    "ProtocolError",
    "RemoteCall",
    "Scheduler",
    "SchedulerBrokenError",
    "SchedulerClosedError",
    "UnkeyableError",
    "Worker",
    "WorkerStartupError",
    "WorkerState",
    "default_scheduler",
    "is_remote_call",
    "job_rng",
    "job_seed",
    "make_python_cmd",
    "make_scheduler",
    "make_server",
    "processor_count",
    "progress",
    "remote_call",
    "server_close",
    "server_start",
    "start_remote_call_worker",
    "start_simple_server",
    "start_simple_worker",
    "start_worker",
    "this_file",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jobsched``: register the ``%jobsched`` magics (IPython is imported only here)."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jobsched' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
