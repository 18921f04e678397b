"""Messages of the scheduler's own, written to this process's stderr (worker output echoed, warnings)."""

from __future__ import annotations

import os
import sys


def write_stderr(text: str) -> None:
    """Write to this process's stderr; in a Jupyter kernel, to the kernel's terminal, never into a cell."""
    stream = sys.stderr
    try:
        if type(stream).__name__ == "OutStream":
            # ipykernel forwards sys.stderr *and* fd 2 (sys.__stderr__) to whichever cell runs now;
            # OutStream.fileno() is its copy of the original fd 2, which reaches only the terminal.
            os.write(stream.fileno(), text.encode("utf-8", "replace"))
        elif stream is not None:
            stream.write(text)
            stream.flush()
    except (OSError, ValueError):
        pass
