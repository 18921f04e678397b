"""jobsched: run many jobs in parallel on worker processes, from scripts and from Jupyter.

A Python port of the Racket package ``jobsched``: a scheduler keeps a priority queue of jobs ordered by
cost and hands one job at a time to each of K worker processes, each on its own authenticated TCP
connection to 127.0.0.1. See README.md for a tour.
"""

from __future__ import annotations

from typing import Any

from ._pool import Worker as Worker
from .background import default_scheduler as default_scheduler
from .commands import make_python_cmd as make_python_cmd
from .commands import processor_count as processor_count
from .commands import this_file as this_file
from .errors import CallbackError as CallbackError
from .errors import InvalidStateError as InvalidStateError
from .errors import JobError as JobError
from .errors import JobschedError as JobschedError
from .errors import JobTimeout as JobTimeout
from .errors import ProtocolError as ProtocolError
from .errors import SchedulerClosedError as SchedulerClosedError
from .errors import WorkerStartupError as WorkerStartupError
from .executor import Executor as Executor
from .job import Job as Job
from .remote_call import RemoteCall as RemoteCall
from .remote_call import is_remote_call as is_remote_call
from .remote_call import remote_call as remote_call
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

__version__ = "0.1.0"

__all__ = [
    "CallbackError",
    "Executor",
    "InvalidStateError",
    "Job",
    "JobError",
    "JobTimeout",
    "JobschedError",
    "ProtocolError",
    "RemoteCall",
    "Scheduler",
    "SchedulerClosedError",
    "Worker",
    "WorkerStartupError",
    "WorkerState",
    "default_scheduler",
    "is_remote_call",
    "make_python_cmd",
    "make_scheduler",
    "make_server",
    "processor_count",
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
