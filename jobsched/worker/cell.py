"""The worker side of ``%%jobsched``: run a notebook cell's code in a worker process.

Workers import this module to run a ``%%jobsched`` cell, so it lives outside ``jobsched.notebook`` (the
notebook layer, which workers never import) and imports neither IPython nor ipywidgets. ``run_cell``
travels by reference (``jobsched.worker.cell.run_cell``); the cell's source, the values it refers to (pickled in
the kernel, one by one) and the names of the modules it uses travel as its arguments.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import linecache
import pickle
from typing import Any


def run_cell(source: str, values: dict[str, bytes], modules: dict[str, str], filename: str) -> Any:
    """Execute ``source`` as a cell would, and return the value of its last expression (or None).

    Args:
        source: the cell's code, plain Python (IPython syntax already transformed).
        values: pickled values of the user-namespace names the cell refers to.
        modules: ``{name: module}`` for names bound to modules; they are imported here by name.
        filename: the name the cell's code has in tracebacks.
    """
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for name, module in modules.items():
        namespace[name] = importlib.import_module(module)
    for name, data in values.items():
        namespace[name] = pickle.loads(data)
    # Register the source so that a traceback shows the cell's lines, as it would in the kernel.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    tree = ast.parse(source, filename, "exec")
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):  # a cell's value is its last expression, as in IPython
        tree.body.pop()
    exec(compile(tree, filename, "exec"), namespace)
    if not isinstance(last, ast.Expr):
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
