"""binder/ is enough: a fresh virtual environment built only from its files runs the quick-start notebook.

This is what a Binder launch does (repo2docker installs ``binder/requirements.txt``, then runs
``binder/postBuild`` from the repository root), without Docker: a clean copy of the repository, a new
``python -m venv`` with no access to this environment's packages, the two binder steps, and then
``notebooks/01-quickstart.ipynb`` executed top to bottom in a kernel of that venv. Slow (pip installs
JupyterLab and the notebook stack, from pip's cache when it can), so it is marked ``slow``; CI runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
# What a clone brings that the install and the notebooks need (no venvs, caches or test artifacts).
SHIPPED = ("pyproject.toml", "README.md", "LICENSE", "jobsched", "binder", "notebooks")
INSTALL_TIMEOUT = 1500  # seconds: pip may have to download JupyterLab and its dependencies

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TIMEOUT * 2)]


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``argv``; fail the test with the end of its output if it fails."""
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{proc.stdout[-4000:]}")
    return proc.stdout


def clean_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in SHIPPED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                            ".ipynb_checkpoints"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def test_binder_files_build_an_environment_that_runs_the_quickstart(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo = clean_copy(tmp_path / "repo")
    postbuild = repo / "binder" / "postBuild"
    assert os.access(postbuild, os.X_OK), "repo2docker runs binder/postBuild as a program: it must be executable"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")
    run([str(python), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], repo, env, INSTALL_TIMEOUT)
    run([str(postbuild)], repo, env, INSTALL_TIMEOUT)

    where = run([str(python), "-c", "import jobsched, ipywidgets, tqdm; print(jobsched.__file__)"], repo, env, 120)
    assert Path(where.strip()).resolve().is_relative_to(repo.resolve()), \
        f"the venv must import the checkout's jobsched (postBuild: pip install -e .), not {where.strip()}"

    # A kernel of that venv, found through a kernelspec of our own: nothing of this environment is used.
    kernels = tmp_path / "jupyter" / "kernels" / "binder-venv"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "binder venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PYTHONPATH", raising=False)

    notebook = repo / "notebooks" / "01-quickstart.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys, jobsched\nprint(sys.prefix)\nprint(jobsched.__file__)")
    nb.cells.insert(0, probe)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="binder-venv",
                                     resources={"metadata": {"path": str(notebook.parent)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    prefix, module = "".join(o.get("text", "") for o in probe.outputs).split()
    assert Path(prefix).resolve() == venv.resolve(), "the notebook must run in the venv's kernel"
    assert Path(module).resolve().is_relative_to(repo.resolve())
    statuses = ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells
                if cell.cell_type == "code" and "%jobsched status" in cell.source]
    assert statuses == ["jobsched: 2 workers, 0 queued, 0 active, 52 succeeded, 0 failed\n"]
