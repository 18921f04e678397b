"""Utilities of the manual: command lines for worker interpreters, the calling file, the CPU count."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def processor_count() -> int:
    """Return the number of CPUs this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_python_cmd(
    path: str | os.PathLike[str], *args: str | os.PathLike[str], entry: str | None = None, debug: bool = False
) -> list[str]:
    """Return the argv that runs the Python program ``path`` in a fresh interpreter.

    Args:
        path: the Python file to run.
        *args: extra command-line arguments; the program sees them in ``sys.argv[1:]``.
        entry: if given, do not run the file as ``__main__``: load it as a module (so its
            ``if __name__ == "__main__":`` block does not run) and call its function ``entry``,
            which usually calls one of the ``start_*_worker`` functions.
        debug: run the interpreter in development mode with ``faulthandler`` on (Racket's ``errortrace?``).

    Returns:
        The argument list for ``subprocess`` (no shell involved).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: ``entry`` is not a name, or the file surely does not define it (the message lists the
            functions it does define); each version of a file is parsed once, never run.
    """
    file = os.fspath(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"make_python_cmd: no such file {file!r}; pass the path of a Python file")
    flags = ["-X", "dev", "-X", "faulthandler"] if debug else []
    rest = [os.fspath(a) for a in args]
    if entry is None:
        return [sys.executable, *flags, str(Path(file).resolve()), *rest]
    if not entry.isidentifier():
        raise ValueError(f"make_python_cmd: entry must be a function name, got {entry!r}")
    _check_entry_once(file, entry)
    return [sys.executable, *flags, "-m", "jobsched.worker", "--file", str(Path(file).resolve()),
            "--entry", entry, "--", *rest]


def check_main_guard(path: str | os.PathLike[str], where: str) -> None:
    """Raise ValueError if the script ``path`` runs as ``__main__`` and calls ``where`` outside its guard.

    Each worker loads the worker file to find its functions, which runs every line of it that is not
    under ``if __name__ == "__main__":``. A server started by such a line would start again in each worker:
    refused here, once, in the caller, before any worker starts (a worker refuses it too, as a fallback).
    """
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or not main_file or os.path.realpath(main_file) != os.path.realpath(os.fspath(path)):
        return
    frame = sys._getframe(1)
    while frame.f_code.co_name != "<module>" or frame.f_globals is not vars(main):
        if frame.f_back is None:
            return  # not called from the script's top-level code
        frame = frame.f_back
    line = frame.f_lineno
    import ast

    try:
        with open(main_file, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and _is_main_test(stmt.test) and stmt.lineno <= line <= (stmt.end_lineno or 0):
            return
    raise ValueError(f"{where}: {main_file} line {line} starts the server outside an `if __name__ == '__main__':` "
                     "block; each worker loads this file to find its functions and would run that line too. "
                     "Put the code that starts the server under the guard")


def _is_main_test(test: Any) -> bool:
    """Whether an ``if`` test compares ``__name__`` with ``"__main__"`` (in any order, in any part of it)."""
    import ast

    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    strings = {n.value for n in ast.walk(test) if isinstance(n, ast.Constant)}
    return "__name__" in names and "__main__" in strings


# (path, mtime, size, entry) of the worker files already checked: make_python_cmd runs once per worker start.
_CHECKED: set[tuple[str, int, int, str]] = set()


def _check_entry_once(file: str, entry: str) -> None:
    """``check_entry`` for ``make_python_cmd``, parsing each version of a file once.

    A file that surely lacks ``entry`` fails here, in the caller (or as the start's one error), with the
    functions it does define, instead of in every worker that would load it and exit.
    """
    st = os.stat(file)
    token = (os.path.realpath(file), st.st_mtime_ns, st.st_size, entry)
    if token not in _CHECKED:
        check_entry(file, entry, "make_python_cmd")
        _CHECKED.add(token)


# Names whose use at a file's top level can define a module attribute that no statement shows.
_DYNAMIC = frozenset({"globals", "vars", "exec", "eval", "setattr", "__getattr__", "__dict__", "modules"})


def check_entry(path: str | os.PathLike[str], entry: str, where: str = "make_server") -> None:
    """Raise ValueError unless the Python file ``path`` parses and may define ``entry`` at its top level.

    The file is parsed, never run (its ``__main__`` block and imports stay untouched). A name counts as
    defined by a ``def``, ``class``, assignment or import anywhere outside functions and classes (inside
    ``if``/``try``/``with`` too), by a ``global`` statement, or when the file defines names in ways a parser
    cannot follow (``from m import *``, ``globals()``, ``setattr``, ``exec``, a module ``__getattr__``): only a
    name that surely is not there is refused.

    Raises:
        ValueError: the file has a syntax error, or surely does not define ``entry``.
    """
    import ast  # only when a server is made: workers never need it

    file = os.fspath(path)
    with open(file, "rb") as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=file)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        line = f" line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ValueError(f"{where}: {file}{line}: {message} ({type(exc).__name__}); fix the worker file") from exc
    functions: set[str] = set()
    names: set[str] = set()
    _collect(tree.body, functions, names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            names.update(node.names)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif _may_define_anything(node, entry):
            return
    if entry in functions or entry in names:
        return
    defined = f"its functions: {', '.join(sorted(functions))}" if functions else "it defines no function"
    raise ValueError(f"{where}: {file} does not define {entry!r} ({defined}); pass entry=NAME, the function that "
                     f"starts the worker, or add `def {entry}(): start_simple_worker(run)` to the file")


def _may_define_anything(node: Any, entry: str) -> bool:
    """Whether ``node`` may define module names that the parser cannot see (``from m import *``, ``globals()``)."""
    import ast

    if isinstance(node, ast.ImportFrom):
        return any(a.name == "*" for a in node.names)
    if isinstance(node, ast.Name):
        return node.id in _DYNAMIC
    if isinstance(node, ast.Attribute):  # sys.modules[__name__].worker = ..., module.__dict__
        return node.attr in _DYNAMIC or (node.attr == entry and isinstance(node.ctx, ast.Store))
    return False


def _collect(body: list[Any], functions: set[str], names: set[str]) -> None:
    """Add the names that the statements ``body`` bind in their module (not inside functions or classes)."""
    import ast

    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.add(stmt.name)
        elif isinstance(stmt, ast.ClassDef):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        else:
            targets: list[Any] = []
            if isinstance(stmt, ast.Assign):
                targets = stmt.targets
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
                targets = [stmt.target]
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                targets = [item.optional_vars for item in stmt.items if item.optional_vars is not None]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):  # if/try/with/for/while/match
                inner = getattr(stmt, field, None)
                if isinstance(inner, list):
                    for part in inner:
                        if isinstance(part, ast.stmt):
                            _collect([part], functions, names)
                        else:  # an except handler or a match case: its own body
                            if getattr(part, "name", None):
                                names.add(part.name)
                            _collect(getattr(part, "body", []), functions, names)


def this_file() -> str | None:
    """Return the absolute path of the file that calls this function, or None (e.g. in a notebook cell)."""
    frame = sys._getframe(1)
    file = frame.f_globals.get("__file__")
    return os.path.abspath(file) if isinstance(file, str) else None
