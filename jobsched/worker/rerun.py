"""Run a job's call here, in this process: ``future.rerun_here()``, ``Scheduler.rerun_here``,
``Journal.rerun_here`` and ``%jobsched debug N`` all come here.

The call is the job's pickled remote call, byte for byte as it was sent to its worker; it runs with the job's
seed (``random``, numpy's global state if imported, ``job_seed()``) and in the working directory the job had.
If it raises, the post-mortem debugger opens at the frame that raised (IPython's in an IPython session,
``pdb`` elsewhere); after it, the job's own exception is raised, with its own type. IPython is imported only
when this process already runs it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .._data import shm as _shm
from ..remote_call import RemoteCall
from . import seeding as _seeding


def rerun_here(call: bytes, seed: int | None, cwd: str | None, what: str, *, debug: bool = True) -> Any:
    """Run the pickled remote call ``call`` here with ``seed`` in ``cwd``; return its result.

    Args:
        call: the job's call, pickled as it was sent.
        seed: the job's seed (None: the job had none).
        cwd: the working directory to run it in (None: this process's).
        what: the job's name in messages (``"job 3"``).
        debug: open the post-mortem debugger if the call raises.

    Raises:
        RuntimeError: the call cannot be loaded here (its function's module is gone or changed).
        TypeError: the job's data is not a remote call (a worker file's job: run its ``run`` function yourself).
        BaseException: what the job raised, after the debugger.
    """
    try:
        job = _shm.loads(call)
        function = job.function if isinstance(job, RemoteCall) else None
    except Exception as exc:
        raise RuntimeError(f"{what}: its function can no longer be loaded here ({type(exc).__name__}: {exc}); "
                           "make its module importable again (sys.path, the same file), then retry") from exc
    if function is None:
        raise TypeError(f"{what}: its data is a {type(job).__name__}, not a remote call: only remote calls can be "
                        "rerun here; call your worker's run function on it yourself")
    home = os.getcwd()
    if cwd is not None and os.path.isdir(cwd):
        os.chdir(cwd)
    _seeding.apply(seed)
    try:
        return function(*job.args, **job.kwargs)
    except BaseException as exc:
        if debug:
            post_mortem(exc)
        raise
    finally:
        _seeding.apply(None)
        os.chdir(home)


def post_mortem(exc: BaseException) -> None:
    """Open the post-mortem debugger at the frame that raised ``exc``: IPython's in IPython, else ``pdb``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if "IPython" in sys.modules:
        # IPython 8 (the last for Python 3.10) neither re-exports nor types get_ipython: ask the module
        shell: Any = getattr(sys.modules["IPython"], "get_ipython")()  # noqa: B009
        if shell is not None:
            debugger = shell.debugger_cls()
            debugger.reset()
            debugger.interaction(None, tb)
            return
    import pdb

    pdb.post_mortem(tb)
