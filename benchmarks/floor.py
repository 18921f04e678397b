"""The protocol floor of ``benchmarks/run.py``: a minimal length-prefixed TCP ping-pong from Python.

What one job costs with nothing but a socket, ``pickle`` and a ``selectors`` loop: worker processes
(``python -c``, stdlib only) each connect to a listener on 127.0.0.1, and the pool keeps 1 or 2 frames in
flight per worker. No authentication, no priorities, no futures: no pool can beat it from Python by much.
"""

from __future__ import annotations

import pickle
import selectors
import socket
import struct
import subprocess
import sys
import time
from typing import Any

# The floor's worker: stdlib only, one frame = 4-byte length + pickle((op, x)); op 0: x + 1, op 1: sleep x.
# It answers every complete frame of one recv() with one sendall(), as any pipelining server would.
FLOOR_WORKER = r"""
import pickle, socket, struct, sys, time
H = struct.Struct("!I")
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = bytearray()
try:
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
        out = []
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = H.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            op, x = pickle.loads(buf[pos + 4:pos + 4 + n])
            pos += 4 + n
            if op == 0:
                r = x + 1
            else:
                time.sleep(x)
                r = None
            body = pickle.dumps(r)
            out.append(H.pack(len(body)) + body)
        del buf[:pos]
        if out:
            s.sendall(b"".join(out))
except OSError:
    pass
"""
_H = struct.Struct("!I")
_DONE = object()  # the end of the jobs


class _FloorConn:
    __slots__ = ("sock", "buf", "inflight")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.inflight = 0


class FloorPool:
    """The raw-socket floor: what one TCP round trip per job (no authentication) costs from Python."""

    def __init__(self, workers: int, inflight: int = 1, timeout: float = 600.0) -> None:
        self.inflight = inflight
        self.timeout = timeout  # seconds any single wait may take
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        port = str(self.listener.getsockname()[1])
        self.procs = [subprocess.Popen([sys.executable, "-c", FLOOR_WORKER, port]) for _ in range(workers)]
        self.conns: list[_FloorConn] = []
        self.sel = selectors.DefaultSelector()
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _FloorConn(sock)
            self.conns.append(conn)
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def wait_connected(self, n: int) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.conns) < n:
            if time.monotonic() > deadline:
                raise TimeoutError("floor workers did not connect")
            for key, _ in self.sel.select(1.0):
                if key.data is None:
                    self._accept()

    def run(self, jobs: list[Any], op: int = 0) -> list[Any]:
        """Run ``jobs`` with up to ``inflight`` frames outstanding per connected worker; return results."""
        results: list[Any] = []
        todo = iter(jobs)
        remaining = len(jobs)
        pending = [True]  # whether `todo` may still yield

        def feed(conn: _FloorConn) -> None:
            frames = []
            while conn.inflight < self.inflight and pending[0]:
                x = next(todo, _DONE)
                if x is _DONE:
                    pending[0] = False
                    break
                body = pickle.dumps((op, x))
                frames.append(_H.pack(len(body)) + body)
                conn.inflight += 1
            if frames:
                conn.sock.sendall(b"".join(frames))  # small frames: the send buffer takes them at once

        for conn in self.conns:
            feed(conn)
        deadline = time.monotonic() + self.timeout
        while remaining:
            events = self.sel.select(1.0)
            if not events and time.monotonic() > deadline:
                raise TimeoutError("floor: results did not arrive")
            for key, _ in events:
                conn = key.data
                if conn is None:
                    before = len(self.conns)
                    self._accept()
                    for new in self.conns[before:]:
                        feed(new)
                    continue
                chunk = conn.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("a floor worker died")
                buf = conn.buf
                buf += chunk
                pos = 0
                while len(buf) - pos >= 4:
                    (n,) = _H.unpack_from(buf, pos)
                    if len(buf) - pos - 4 < n:
                        break
                    results.append(pickle.loads(buf[pos + 4:pos + 4 + n]))
                    pos += 4 + n
                    conn.inflight -= 1
                    remaining -= 1
                del buf[:pos]
                feed(conn)
        return results

    def close(self) -> None:
        self.sel.close()
        self.listener.close()
        for conn in self.conns:
            conn.sock.close()  # EOF: the worker's loop ends
        for proc in self.procs:
            try:
                proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.timeout)

