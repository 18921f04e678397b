"""Layers point one way: each subpackage imports only the layers below it, and imports form no cycle.

The import graph is read from the source with ``ast``: only imports that run when a module is imported
count (module level, including ``try``/``if`` blocks, but not function bodies and not ``if TYPE_CHECKING:``
blocks). The lazy entry points that users call (``Scheduler.dashboard()``, ``load_ipython_extension``)
import the notebook layer inside a function body, so they are allowed by construction.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import TIMEOUT

import jobsched

PACKAGE = Path(jobsched.__file__).parent
NOTEBOOK = "jobsched.notebook"
NOTEBOOK_STACK = ("IPython", "ipywidgets", "ipykernel")


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (``jobsched.notebook`` for its ``__init__.py``)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_statements(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module body runs (not in functions, classes' methods, or
    ``if TYPE_CHECKING:``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _import_time_statements(node.body)
            found += _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _import_time_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):  # a class body runs at import time too
            found += _import_time_statements(node.body)
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules ``name`` imports at import time, absolute, with relative imports resolved.

    ``from .x import y`` counts as an import of ``pkg.x.y`` when that is a module, else of ``pkg.x``.
    Importing ``a.b.c`` also runs ``a`` and ``a.b``: those edges are added too (for jobsched modules).
    """
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_time_statements(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base_parts = package.split(".")
            if node.level > 1:
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        targets.add(base)
        for alias in node.names:
            if f"{base}.{alias.name}" in modules:
                targets.add(f"{base}.{alias.name}")
    edges: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, then a.b.c
            prefix = ".".join(parts[:i])
            if prefix in modules or i == len(parts):
                edges.add(prefix)
    edges.discard(name)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one cycle among the package's modules (``[a, b, ..., a]``), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in graph:
                continue  # outside the package
            if colour[nxt] == GREY:
                return [*stack[stack.index(nxt):], nxt]
            if colour[nxt] == WHITE:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _is_parent_package(importer: str, imported: str) -> bool:
    """Importing ``jobsched.x`` runs ``jobsched/__init__.py``: that edge is Python's, not a design choice."""
    return importer.startswith(imported + ".")


def in_notebook_layer(name: str) -> bool:
    return name == NOTEBOOK or name.startswith(NOTEBOOK + ".")


# ---------------------------------------------------------------------- the checker checks what it claims


def test_the_checker_resolves_relative_imports_and_skips_lazy_and_type_checking_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "jobsched"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import x\n",
        "a.py": ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\nimport os\n"
                 "from . import b\nfrom .sub import c\ntry:\n    import IPython\nexcept ImportError:\n    pass\n"
                 "if TYPE_CHECKING:\n    from .d import D\ndef lazy():\n    from .notebook import magics\n"),
        "b.py": "", "d.py": "", "sub/__init__.py": "", "sub/c.py": "from ..b import y\nfrom .. import d\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    modules = {"jobsched": pkg / "__init__.py", "jobsched.a": pkg / "a.py", "jobsched.b": pkg / "b.py",
               "jobsched.d": pkg / "d.py", "jobsched.sub": pkg / "sub/__init__.py", "jobsched.sub.c": pkg / "sub/c.py"}
    assert imports_of("jobsched.a", pkg / "a.py", modules) == {
        "__future__", "typing", "os", "jobsched", "jobsched.b", "jobsched.sub", "jobsched.sub.c", "IPython"}
    assert imports_of("jobsched.sub.c", pkg / "sub/c.py", modules) == {"jobsched", "jobsched.b", "jobsched.d"}
    assert imports_of("jobsched", pkg / "__init__.py", modules) == {"jobsched.a"}
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y", "os"}, "y": set()}) is None


# ---------------------------------------------------------------------- the package


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    # A submodule importing its own package (``from . import x`` in jobsched/a.py, or simply being imported
    # as jobsched.a) is how Python packages work, not a cycle of design: leave parent-package edges out.
    graph = {m: {t for t in targets if not _is_parent_package(m, t)} for m, targets in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_nothing_outside_the_notebook_layer_imports_it_or_the_notebook_stack_at_import_time() -> None:
    bad = []
    for module, targets in sorted(import_graph().items()):
        if in_notebook_layer(module):
            continue
        for target in sorted(targets):
            if in_notebook_layer(target) or target.split(".")[0] in NOTEBOOK_STACK:
                bad.append(f"{module} imports {target}")
    assert not bad, "the core must not import the notebook layer at import time: " + "; ".join(bad)


def test_what_a_worker_imports_to_run_a_cell_lives_outside_the_notebook_layer() -> None:
    from jobsched.notebook import magics

    assert not in_notebook_layer(magics.run_cell.__module__), magics.run_cell.__module__
    # It travels by reference: the worker imports that module, not the magics'.
    assert jobsched.remote_call(magics.run_cell, "1", {}, {}, "<cell>").module == "jobsched.worker.cell"


def test_importing_every_core_module_leaves_the_notebook_stack_out() -> None:
    core = sorted(m for m in module_names() if not in_notebook_layer(m) and m != "jobsched.dask"
                  and not m.startswith("jobsched.examples") and not m.endswith(".__main__"))
    assert "jobsched.scheduler" in core and "jobsched.background" in core and "jobsched.worker.cell" in core
    code = (f"import importlib, sys\nfor m in {core!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(set({[*NOTEBOOK_STACK, NOTEBOOK]!r}) & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n", f"importing the core loaded {out.stdout.strip()}"


@pytest.mark.parametrize("module", ["jobsched.notebook.dashboard", "jobsched.notebook.magics"])
def test_the_notebook_modules_import_on_their_own(module: str) -> None:
    """No cycle at run time either: each notebook module imports first in a fresh interpreter."""
    pytest.importorskip("ipywidgets")
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                         timeout=TIMEOUT, check=False)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------- the subpackages and what each may import

# The public modules: the package root holds these and nothing private.
PUBLIC_MODULES = {"background", "commands", "dask", "errors", "executor", "job", "joblib", "journal", "remote_call",
                  "scheduler", "server", "states"}
# The vocabulary every layer may use: the names users see in errors, states, jobs and remote calls.
VOCABULARY = {"jobsched", "jobsched.errors", "jobsched.states", "jobsched.job", "jobsched.remote_call"}
# For each subpackage, what its modules may import at import time (a name allows its submodules too).
MAY_IMPORT = {
    "jobsched._data": {"jobsched", "jobsched._data", "jobsched.errors"},
    "jobsched._keys": {"jobsched", "jobsched._keys", "jobsched.errors", "jobsched.remote_call"},
    "jobsched._core": VOCABULARY | {"jobsched._core", "jobsched._data", "jobsched._keys"},
    "jobsched._local": VOCABULARY | {"jobsched._local", "jobsched._core", "jobsched._data", "jobsched.commands"},
    "jobsched._timeline": VOCABULARY | {"jobsched._timeline"},
    "jobsched._journaling": VOCABULARY | {"jobsched._journaling", "jobsched._core", "jobsched._data", "jobsched._keys",
                                          "jobsched._timeline"},
    "jobsched._dask": VOCABULARY | {"jobsched._dask", "jobsched._core", "jobsched._data", "jobsched._local",
                                    "jobsched.worker"},
    # Both ends use the wire protocol and the process tree (a worker is a subreaper and kills its own strays).
    "jobsched.worker": VOCABULARY | {"jobsched.worker", "jobsched._data", "jobsched._local.wire",
                                     "jobsched._local.tree"},
    # The notebook layer reads the public API, snapshots and timeline views; it runs cells through the worker's
    # cell runner, by reference.
    "jobsched.notebook": {f"jobsched.{name}" for name in PUBLIC_MODULES} | VOCABULARY | {
        "jobsched.notebook", "jobsched._core.snapshot", "jobsched._core.checks", "jobsched._timeline",
        "jobsched._data", "jobsched.worker.cell"},
}


def _allowed(target: str, allowed: set[str]) -> bool:
    # "jobsched" allows the package's own __init__ (which every submodule runs), not all of it; importing an
    # allowed module runs its parent packages' __init__ too.
    return any(target == name or name.startswith(target + ".") or (name != "jobsched" and target.startswith(name + "."))
               for name in allowed)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import-time edge from a subpackage's module to a jobsched module its layer may not import."""
    bad = []
    for module, targets in sorted(graph.items()):
        layer = next((name for name in MAY_IMPORT if module == name or module.startswith(name + ".")), None)
        if layer is None:
            continue
        for target in sorted(targets):
            if target.split(".")[0] == "jobsched" and not _allowed(target, MAY_IMPORT[layer]):
                bad.append(f"{module} imports {target}")
    return bad


def test_the_layer_checker_finds_an_import_against_the_rules() -> None:
    graph = {"jobsched._core.state": {"jobsched._local.wire", "jobsched.errors", "heapq"},
             "jobsched._data.shm": {"jobsched._data.pickling", "jobsched.scheduler"},
             "jobsched.scheduler": {"jobsched._local.backend"}}
    assert layer_violations(graph) == ["jobsched._core.state imports jobsched._local.wire",
                                       "jobsched._data.shm imports jobsched.scheduler"]


def test_each_subpackage_imports_only_the_layers_below_it() -> None:
    """``_core`` imports no backend, journal, timeline or notebook code; workers import no scheduler code; the
    notebook layer reads the public API and snapshots."""
    assert layer_violations(import_graph()) == []


def test_the_package_root_holds_only_public_modules_and_each_subpackage_says_what_it_owns() -> None:
    root = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert root == PUBLIC_MODULES
    for sub in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((sub / "__init__.py").read_text()))
        assert doc, f"{sub.name}/__init__.py has no docstring saying what it owns"
        if sub.name.startswith("_"):
            assert "May import" in doc, f"{sub.name}/__init__.py does not say what it may import"


def test_no_two_modules_share_a_name_that_differs_only_by_an_underscore() -> None:
    by_name: dict[str, set[str]] = {}
    for name in module_names():
        if name.rpartition(".")[2] in {"__init__", "__main__"}:
            continue
        by_name.setdefault(name.rpartition(".")[2].lstrip("_"), set()).add(name)
    # A public module and the private subpackage that holds its parts (``dask`` and ``_dask``) are one concept:
    # the face and what is behind it.
    faces = {f"jobsched.{name}" for name in PUBLIC_MODULES}
    clashes = {stem: sorted(names) for stem, names in by_name.items()
               if len({n.rpartition(".")[2] for n in names}) > 1
               and not (names == {f"jobsched.{stem}", f"jobsched._{stem}"} and f"jobsched.{stem}" in faces)}
    assert clashes == {}


def test_the_core_reports_frames_numbered_as_on_the_wire() -> None:
    from jobsched._core import backend
    from jobsched._local import wire

    assert (backend.RESULT, backend.ERROR, backend.PROGRESS) == (wire.RESULT, wire.ERROR, wire.PROGRESS)
