"""The notebooks in ``notebooks/`` run top to bottom in a real kernel, as nbval (``--nbval-lax``) runs them.

Each cell must run without error; cells tagged ``nbval-check-output`` (in the cell's metadata, as nbval reads
it) must reproduce their stored output exactly; and when the last cell has run, the kernel has no worker
process left. The cells hold code for users: no test markers, lint pragmas or private APIs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psutil
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CHECK_TAG = "nbval-check-output"
CELL_TIMEOUT = 120  # seconds per cell: generous for a loaded machine; the notebooks take seconds


def checked(cell: Any) -> bool:
    return bool(cell.cell_type == "code" and CHECK_TAG in cell.metadata.get("tags", []))


def text_of(outputs: list[Any]) -> list[str]:
    """The outputs nbval compares, as text: streams (merged) and plain-text results."""
    parts: list[str] = []
    for out in outputs:
        if out.output_type == "stream":
            if parts and parts[-1].startswith(f"{out.name}:"):
                parts[-1] += out.text
            else:
                parts.append(f"{out.name}:{out.text}")
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.data:
            parts.append(f"{out.output_type}:{out.data['text/plain']}")
        elif out.output_type == "error":
            parts.append(f"error:{out.ename}: {out.evalue}")
    return parts


def is_helper(cmdline: list[str]) -> bool:
    """Whether a process is a scheduler's reaper (``jobsched._local.processes.Reaper``), its zygote
    (``jobsched._local.zygote``), or multiprocessing's resource tracker (which Dask's spawned workers start,
    and which lives as long as the kernel)."""
    reaper = cmdline[:2] == ["/bin/sh", "-c"] and len(cmdline) >= 3 and "kill -KILL" in cmdline[2]
    line = " ".join(cmdline)
    return reaper or "jobsched._local.zygote_process" in line or "multiprocessing.resource_tracker" in line


def test_the_notebooks_exist() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert {"01-quickstart.ipynb", "02-live-session.ipynb", "03-lower-level.ipynb"} <= set(names)


SCAFFOLDING = re.compile(r"NBVAL|# *noqa|# *type: *ignore|\bjobsched\._|\bresource_tracker\b|\._\w+\(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_holds_no_test_markers_or_private_calls(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    found = [(i, m.group()) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             for m in SCAFFOLDING.finditer(cell.source)]
    assert found == [], f"{path.name}: (cell, text) of test scaffolding or private API in code cells"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    expected = {i: text_of(cell.outputs) for i, cell in enumerate(nb.cells) if checked(cell)}
    assert expected, f"{path.name} has no cell tagged {CHECK_TAG}: nothing of its results would be checked"
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        kernel_pid = client.km.provisioner.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError, with the cell's traceback
        # Every worker has exited. A scheduler that is not closed (the default one after `%jobsched stop`
        # stays usable) keeps its reaper, a `/bin/sh` that kills the workers' groups if the kernel dies, and
        # its zygote, which forks its next workers: neither is a worker, and both end with the kernel.
        left = [(p.pid, p.cmdline()) for p in psutil.Process(kernel_pid).children(recursive=True)
                if not is_helper(p.cmdline())]
        assert left == [], f"{path.name} left processes behind in its kernel: {left}"
        if path.name == "01-quickstart.ipynb":
            # The dashboard displayed in the notebook reached the final count (a browser test watches it).
            # Its thread renders the final state within an update interval of `%jobsched stop`, then ends.
            probe = nbformat.v4.new_code_cell(
                "import time\n"
                "dashes = [d for d in Out.values() if type(d).__name__ == 'Dashboard']\n"
                "deadline = time.monotonic() + 30\n"
                "while any(d.updating for d in dashes) and time.monotonic() < deadline:\n"
                "    time.sleep(0.05)\n"
                "print(sorted(d.counts['succeeded'].value for d in dashes))")
            nb.cells.append(probe)
            client.execute_cell(probe, len(nb.cells) - 1)
            nb.cells.pop()
            assert text_of(probe.outputs) == ["stdout:['52']\n"]
    for i, want in expected.items():
        got = text_of(nb.cells[i].outputs)
        assert got == want, f"{path.name}, cell {i}:\n{nb.cells[i].source}\n--- got {got!r}\n--- want {want!r}"
