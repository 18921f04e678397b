"""``Executor(initializer=...)`` inside a worker: run the initializer once per worker before the call.

Each call of such an executor travels as ``run_initialized(token, init, call)``. The first call of an executor
(``token``) in a worker runs ``init``; a worker whose initializer raised fails every later call of that
executor with the same ``WorkerInitializerError`` (a ``concurrent.futures.BrokenExecutor``), as
``ProcessPoolExecutor`` breaks when an initializer fails.
"""

from __future__ import annotations

from typing import Any

from ..errors import WorkerInitializerError
from ..remote_call import RemoteCall

_ran: dict[str, str | None] = {}  # executor token -> None (ran), or the text of the initializer's failure


def run_initialized(token: str, init: RemoteCall, call: RemoteCall) -> Any:
    """Run ``init`` if this worker has not run it for the executor ``token``, then return ``call()``."""
    if token not in _ran:
        try:
            init()
        except BaseException as exc:  # whatever it raised breaks the executor, in this worker
            import traceback

            text = _ran[token] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            raise WorkerInitializerError(_message(init, text)) from exc
        _ran[token] = None
    failure = _ran[token]
    if failure is not None:
        raise WorkerInitializerError(_message(init, failure))
    return call()


def _message(init: RemoteCall, failure: str) -> str:
    return (f"Executor: the initializer {init.fun_name} raised in this worker, so the executor is broken "
            f"(as ProcessPoolExecutor's BrokenProcessPool):\n{failure.rstrip()}")
