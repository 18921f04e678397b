"""Every ```python block of README.md runs, and succeeds.

No block is skipped; each one is one of three kinds, told apart by its text alone:

* **A file**: its first line is ``# file: NAME.py`` or ``# worker file: NAME.py``. It is written to the test
  directory under that name before any block runs, so that other blocks can use it
  (``make_python_cmd("NAME.py", ...)``). If it has an ``if __name__ == "__main__":`` block it is also run, as
  ``python NAME.py``; if not, another block must name it (and so runs it, as its worker file).
* **A notebook cell**: a line starts with an IPython magic (``%``). It runs in a subprocess, as one cell of
  an IPython shell (``InteractiveShell.run_cell``), and must succeed.
* **A script**: anything else. It is written to ``readme_block_LINE.py`` and run with ``python``.

Each block runs in its own process with the test directory as its working directory, this checkout first on
the import path, and a timeout; it must exit with status 0. A block that imports ``dask`` needs
dask.distributed (skipped on a developer's machine without it, a failure in CI).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import conftest
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 180.0  # seconds per block (a Dask LocalCluster takes a few to start on a busy 2-core machine)

FILE_HEADER = re.compile(r"#\s*(?:worker )?file:\s*(?P<name>[\w.-]+\.py)\s*$")
MAIN_GUARD = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
MAGIC = re.compile(r"^\s*%", re.MULTILINE)

# Runs a notebook block as one IPython cell: exit status 1 if it raised.
IPYTHON_DRIVER = """
import sys
from traitlets.config import Config
from IPython.core.interactiveshell import InteractiveShell

config = Config()
config.HistoryManager.enabled = False
shell = InteractiveShell.instance(config=config)
with open(sys.argv[1], encoding="utf-8") as f:
    result = shell.run_cell(f.read())
sys.exit(0 if result.success else 1)
"""


class Block(NamedTuple):
    line: int  # where the block's code starts in README.md (1-based)
    code: str

    @property
    def file_name(self) -> str | None:
        match = FILE_HEADER.fullmatch(self.code.split("\n", 1)[0])
        return match["name"] if match else None

    @property
    def kind(self) -> str:
        if self.file_name is not None:
            return "file"
        return "notebook" if MAGIC.search(self.code) else "script"

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.file_name or self.kind}"


def python_blocks(markdown: str) -> list[Block]:
    """Return the ```python blocks of ``markdown``, in order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    start: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if start is None and stripped == "```python":
            start = i + 1
        elif start is not None and stripped == "```":
            blocks.append(Block(start + 1, "\n".join(lines[start:i]) + "\n"))
            start = None
    assert start is None, f"README.md: the ```python block at line {start} is never closed"
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.kind != "file" or MAIN_GUARD.search(b.code)]


def test_the_readme_has_python_blocks_and_each_file_block_is_run() -> None:
    assert len(BLOCKS) >= 5
    names = [b.file_name for b in BLOCKS if b.file_name is not None]
    assert len(names) == len(set(names)), f"two README blocks are the same file: {names}"
    for block in BLOCKS:
        if block in RUN or block.file_name is None:
            continue
        users = [b for b in RUN if block.file_name in b.code]
        assert users, (f"README.md line {block.line}: {block.file_name} has no __main__ block and no other block "
                       "names it, so nothing would run it")


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every file block of the README under its name."""
    directory = tmp_path_factory.mktemp("readme")
    for block in BLOCKS:
        if block.file_name is not None:
            (directory / block.file_name).write_text(block.code, encoding="utf-8")
    return directory


def run_process(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a session of its own; on timeout, kill the whole session and fail."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["IPYTHONDIR"] = str(cwd / ".ipython")  # no profile or history of the user's
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"{argv} did not finish within {timeout:g} s\nstdout:\n{out}\nstderr:\n{err}")
    left = left_in(cwd)
    assert not left, f"{argv} left processes running in {cwd}: {[(p.pid, p.cmdline()) for p in left]}"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def left_in(cwd: Path, wait: float = 10.0) -> list[psutil.Process]:
    """Return the processes (workers, a Dask cluster) still running in ``cwd`` after ``wait`` s; kill them."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        for p in psutil.process_iter():
            try:
                if p.cwd() == str(cwd) and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.Error:
                pass
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    return left


@pytest.mark.parametrize("block", [
    pytest.param(b, id=b.id, marks=[pytest.mark.dask] if re.search(r"^\s*(from|import) dask", b.code, re.M) else [])
    for b in RUN
])
def test_a_readme_block_runs(block: Block, readme_dir: Path) -> None:
    if "dask" in block.code:
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            conftest.skip_or_fail(f"README.md line {block.line} needs dask.distributed: {exc}")
    if block.kind == "file":
        assert block.file_name is not None
        argv = [sys.executable, block.file_name]
    else:
        path = readme_dir / f"readme_block_{block.line}.{'ipy' if block.kind == 'notebook' else 'py'}"
        path.write_text(block.code, encoding="utf-8")
        argv = ([sys.executable, "-c", IPYTHON_DRIVER, path.name] if block.kind == "notebook"
                else [sys.executable, path.name])
    result = run_process(argv, readme_dir, TIMEOUT)
    assert result.returncode == 0, (f"README.md line {block.line} ({block.kind}) exited with "
                                    f"{result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr
