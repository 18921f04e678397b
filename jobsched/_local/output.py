"""What workers print: split into lines, kept per worker (the last ``OUTPUT_LINES``), echoed to stderr.

A worker's stdout and stderr share one pipe. Lines are kept in ``Worker.output`` (the dashboard's log and
the ``WorkerDied`` error's last lines) and, with ``echo_output``, copied to this process's stderr prefixed
with ``[worker N]``: in a Jupyter kernel to the kernel's own terminal, never into whichever cell runs.
"""

from __future__ import annotations

from .._core.slot import Worker
from .._core.stderr import write_stderr

MAX_LINE = 65536  # a line without end is shown in pieces of this size


class OutputLines:
    """The line splitter of one worker process's output pipe."""

    __slots__ = ("worker", "echo", "_partial")

    def __init__(self, worker: Worker, echo: bool) -> None:
        self.worker = worker
        self.echo = echo
        self._partial = b""

    def feed(self, data: bytes) -> None:
        """Take a chunk read from the pipe; emit its complete lines."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        self._emit(lines)

    def end(self) -> None:
        """The pipe is closed: emit the last, unfinished line."""
        if self._partial:
            self._emit([self._partial])
            self._partial = b""

    def _emit(self, lines: list[bytes]) -> None:
        if not lines:
            return
        # A carriage return redraws a line in a terminal (progress bars): keep only what it ends up showing.
        text = [line.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1] for line in lines]
        self.worker.output.extend(text)
        if self.echo:
            prefix = f"[worker {self.worker.index}] "
            write_stderr("".join(f"{prefix}{line}\n" for line in text))
