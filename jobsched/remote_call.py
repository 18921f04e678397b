"""Remote calls: a function call captured on the server and executed in a worker.

A ``RemoteCall`` names its function in one of three ways, chosen once, when it is created:

* **by reference** ``(module, qualname)`` for a function of an importable module (the worker imports it);
* **by file** ``(path, qualname)`` for a function of a script run as ``__main__``; the worker loads the
  file under another name, as ``multiprocessing`` does, so its ``if __name__ == "__main__":`` block does
  not run;
* **by value** (cloudpickle) for functions that have no importable home: notebook cells, lambdas,
  closures, bound methods, and the functions of a script without a file (``python - < script.py``, a shell
  heredoc, ``python -c``, code run by ``exec``).

The arguments are evaluated and pickled on the server when the call is created, so a value that cannot
travel raises ``TypeError`` right there, naming the argument.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from ._data import handles as _handles
from ._data import shm as _shm
from ._data.pickling import dumps
from ._data.shm import OutOfBand

# The fix for plain data sent to a remote-call worker (the scheduler and the worker both say it).
NOT_A_REMOTE_CALL = ("queue remote_call(f, *args) or use submit(f, *args) instead; to send plain data, write a "
                     "worker file whose worker() calls start_simple_worker(run), and use make_server(worker_file)")

# Name under which a worker loads a script, as multiprocessing's spawn does.
SCRIPT_MODULE_NAME = "__mp_main__"


class RemoteCall:
    """A captured call ``fun(*args, **kwargs)`` to be run by a worker.

    Attributes:
        fun_name: the function's ``__qualname__``.
        args: positional arguments (tuple).
        kwargs: keyword arguments (dict).
        module: importable module name, the file path of a script's ``__main__``, or None when the
            function travels by value.
    """

    __slots__ = ("fun_name", "args", "kwargs", "module", "_function", "_payload", "_handles")

    def __init__(
        self,
        fun_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        module: str | None,
        function: Callable[..., Any] | None = None,
    ) -> None:
        self.fun_name = fun_name
        self.args = args
        self.kwargs = kwargs
        self.module = module
        self._function = function
        self._payload: bytes | OutOfBand | None = None  # large buffers still out of band (_shm)
        self._handles: tuple[Any, ...] = ()  # the ``put`` handles among its arguments (``_data.handles``)

    @property
    def function(self) -> Callable[..., Any]:
        """The function itself, imported (or loaded from its file) on first use."""
        if self._function is None:
            self._function = resolve(self.module, self.fun_name)
        return self._function

    def __call__(self) -> Any:
        """Run the call here, in this process."""
        return self.function(*self.args, **self.kwargs)

    def _jobsched_call_parts(self) -> tuple[Any, ...]:
        """The values this call carries (for ``_data.shm``: whether any may be a large buffer)."""
        return (self.args, self.kwargs, None if self.module is not None else self._function)

    def __reduce__(self) -> tuple[Any, ...]:
        shipped = self._function if self.module is None else None
        return (RemoteCall, (self.fun_name, self.args, self.kwargs, self.module, shipped))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteCall)
            and (self.module, self.fun_name, self.args, self.kwargs)
            == (other.module, other.fun_name, other.args, other.kwargs)
            and (self.module is not None or self._function is other._function)
        )

    __hash__ = None  # type: ignore[assignment]  # kwargs is a dict

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"remote_call({self.fun_name}, {', '.join(parts)})" if parts else f"remote_call({self.fun_name})"


def remote_call(fun: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteCall:
    """Capture the call ``fun(*args, **kwargs)`` as a job to run in a worker.

    Raises:
        TypeError: ``fun`` is not callable, or it or an argument cannot be pickled (the message names it).
    """
    return make_call("remote_call", fun, args, kwargs)


def make_call(where: str, fun: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> RemoteCall:
    """``remote_call(fun, *args, **kwargs)``, whose errors name ``where``: the call the user made (``submit``)."""
    if not callable(fun):
        raise TypeError(f"{where}: the first argument must be a function, got {type(fun).__name__}: {fun!r}")
    module = _home_of(fun)
    rc = RemoteCall(getattr(fun, "__qualname__", repr(fun)), args, kwargs, module, fun)
    try:
        if _handles.live:  # some handle exists: note those among the arguments, as they are pickled
            with _handles.collecting() as seen:
                rc._payload = _dumps_shipped(rc)
            rc._handles = tuple(dict.fromkeys(seen))
        else:
            rc._payload = _dumps_shipped(rc)
    except TypeError:
        _raise_for_culprit(where, fun, module, args, kwargs)
        raise
    return rc


def is_remote_call(value: object) -> bool:
    """Return whether ``value`` is a RemoteCall."""
    return isinstance(value, RemoteCall)


def payload_of(rc: RemoteCall) -> bytes | OutOfBand:
    """Return the pickled RemoteCall, computed once (remote_call() already did it)."""
    if rc._payload is None:
        rc._payload = _dumps_shipped(rc)
    return rc._payload


def _dumps_shipped(rc: RemoteCall) -> bytes | OutOfBand:
    """Pickle ``rc``, its large buffers left out of band (``_data.shm``: no copy until ``add_job``)."""
    plain, may_hold_buffers = _shm.PLAIN, _shm.may_hold_buffers
    # Inline loops, no generator: this runs for every job. A plain small value (an int, a str) is not even
    # looked at; a small numpy array is one call.
    for values in (rc.args, rc.kwargs.values()):
        for arg in values:
            if arg.__class__ not in plain and may_hold_buffers(arg, 1):
                break
        else:
            continue
        break
    else:  # nothing that may hold a large buffer: pickled as before
        return dumps(rc, "remote_call")
    args, kwargs = _shm.wrap(rc.args), _shm.wrap(rc.kwargs)
    if args is not rc.args or kwargs is not rc.kwargs:  # a large bytes-like argument: through a stand-in
        rc = RemoteCall(rc.fun_name, args, kwargs, rc.module, rc._function)
    return _shm.dumps(rc, "remote_call")


def run_remote_call(rc: RemoteCall) -> Any:
    """Run a RemoteCall received by a worker; raise TypeError if the job's data is something else."""
    if not isinstance(rc, RemoteCall):
        raise TypeError(f"this job's data is a {type(rc).__name__}, but this worker (python -m jobsched.worker) "
                        f"runs remote calls: {NOT_A_REMOTE_CALL}")
    return rc()


def _home_of(fun: Callable[..., Any]) -> str | None:
    """Return where a worker can find ``fun`` by name, or None if it must travel by value."""
    module_name = getattr(fun, "__module__", None)
    qualname = getattr(fun, "__qualname__", None)
    if not module_name or not qualname or "<" in qualname:  # lambdas, closures: "<lambda>", "<locals>"
        return None
    module = sys.modules.get(module_name)
    if module is None or _lookup(module, qualname) is not fun:
        return None
    if module_name != "__main__":
        return str(module_name)
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        return str(spec.name)  # run with ``python -m package.module``: importable under its real name
    file = getattr(module, "__file__", None)
    if not file:
        return None  # a notebook: by value
    path = _script_paths.get(file)
    if path is None:  # a script by path; cached once absolute (a relative one depends on the cwd of the call)
        if file.startswith("<") or not os.path.isfile(file):
            return None  # no file to load: a script read from standard input ("<stdin>"), exec'd code: by value
        path = os.path.abspath(file)
        if os.path.isabs(file) and len(_script_paths) < 64:
            _script_paths[file] = path
    return path


_script_paths: dict[str, str] = {}  # __main__.__file__ -> its absolute path: abspath was 7 % of a submit


def _lookup(module: Any, qualname: str) -> Any:
    if "." not in qualname:  # a module-level function: the common case, once per job in a worker
        return getattr(module, qualname, None)
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


_files: dict[str, Any] = {}
_loading: list[str] = []  # paths whose top-level code load_file is running, innermost last


def loading_script() -> str | None:
    """Return the path of the script whose top-level code this process is running as ``__mp_main__``, or None.

    A worker loads a user's script to find its functions (``load_file``): code of the script that is not
    under ``if __name__ == "__main__":`` runs then, in the worker. If that code starts a scheduler, the
    script lacks the guard; ``refuse_while_loading_script`` turns that into one clear error.
    """
    return _loading[-1] if _loading else None


class MissingMainGuardError(RuntimeError):
    """A script started a scheduler while a worker was loading it: it has no ``__main__`` guard."""


def refuse_while_loading_script(what: str) -> None:
    """Raise MissingMainGuardError if a worker is running a script's top-level code (see ``loading_script``).

    Args:
        what: what was called, for the message (e.g. ``"Scheduler.start()"``).
    """
    path = loading_script()
    if path is not None:
        raise MissingMainGuardError(
            f"{what} was called in a worker process while it loaded {path}: the script has no "
            "`if __name__ == '__main__':` guard. Put the code that starts the scheduler under it "
            "(workers load the script to find its functions, and run all of its unguarded code)."
        )


def load_file(path: str) -> Any:
    """Load a Python file as a module named ``__mp_main__`` (once per path and process)."""
    path = os.path.realpath(path)
    module = _files.get(path)
    if module is not None:
        return module
    import importlib.util  # only for scripts: a worker of importable functions never needs it

    spec = importlib.util.spec_from_file_location(SCRIPT_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    current = sys.modules.get(SCRIPT_MODULE_NAME)
    if current is None or current is sys.modules.get("__main__"):  # absent, or only the alias of _pickling
        sys.modules[SCRIPT_MODULE_NAME] = module
    _files[path] = module
    _loading.append(path)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del _files[path]
        raise
    finally:
        _loading.pop()
    return module


# Modules that remote calls named, by the name they travel with: a worker would otherwise look each one up
# again for every job (``importlib.import_module`` for a module, ``os.path.realpath``, an lstat per path
# component, for a script). The function itself is looked up in the module each time, so a module
# attribute that a job reassigns is seen by the next job, as without the cache.
_modules: dict[str, Any] = {}


def resolve(module: str | None, qualname: str) -> Callable[..., Any]:
    """Find the function ``qualname`` in an importable module or a script file."""
    if module is None:
        raise LookupError(f"function {qualname} was shipped by value but its value is missing")
    mod = _modules.get(module)
    if mod is None:
        mod = load_file(module) if os.sep in module or module.endswith(".py") else importlib.import_module(module)
        _modules[module] = mod
    fun = _lookup(mod, qualname)
    if fun is None:
        raise AttributeError(f"module {module!r} has no function {qualname!r}")
    return fun  # type: ignore[no-any-return]


def _raise_for_culprit(where: str, fun: Callable[..., Any], module: str | None, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> None:
    """Re-pickle piece by piece to name the value that cannot travel."""
    name = getattr(fun, "__qualname__", fun)
    from ._core.dependencies import futures_in

    if futures_in(args, kwargs):
        raise TypeError(f"{where}({name}): an argument is a Future, which cannot travel to a worker; pass "
                        "future.result(), or pass the future to submit() or Executor.submit(), which wait for it "
                        "and pass its result")
    if module is None:
        dumps(fun, f"{where}: function {name!r}")
    for i, arg in enumerate(args):
        dumps(arg, f"{where}({name}): argument {i}")
    for key, arg in kwargs.items():
        dumps(arg, f"{where}({name}): keyword argument {key!r}")
